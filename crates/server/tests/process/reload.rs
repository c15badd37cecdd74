//! `xmppd reload` and SIGHUP: a renewed certificate is served to new connections at once while
//! established ones go on, and a broken file changes nothing.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, bail};
use xmppd_testkit::{TestClient, TestPki};

/// The certificate the server presents to a client that trusts only `pki`.
async fn presented(pki: &TestPki, addr: SocketAddr) -> anyhow::Result<Vec<u8>> {
    let mut client = TestClient::connect(addr).await?;
    client.open_stream("localhost").await?;
    client
        .starttls(pki.tls_client_config(), "localhost")
        .await?;
    client.server_certificate().context("no certificate")
}

/// The established session still answers: a ping to the server and its result.
async fn ping(client: &mut TestClient, id: &str) -> anyhow::Result<()> {
    client
        .send(&format!(
            "<iq type='get' id='{id}'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await?;
    client
        .expect("the ping's answer", |e| e.attr("id") == Some(id))
        .await?;
    Ok(())
}

fn install(pki: &TestPki, certs: &Path) -> anyhow::Result<Vec<u8>> {
    let (cert, key) = pki.cert_paths("localhost").context("no pair")?;
    std::fs::copy(&cert, certs.join("localhost.crt"))?;
    std::fs::copy(&key, certs.join("localhost.key"))?;
    let chain = xmppd::certs::read_chain(&cert)?;
    Ok(chain[0].as_ref().to_vec())
}

#[tokio::test]
async fn a_renewed_certificate_is_served_after_a_reload_and_a_broken_file_changes_nothing()
-> anyhow::Result<()> {
    let (old_pki, new_pki) = (TestPki::new(&["localhost"])?, TestPki::new(&["localhost"])?);
    let dir = tempfile::tempdir()?;
    let certs = dir.path().join("certs");
    std::fs::create_dir(&certs)?;
    let old_cert = install(&old_pki, &certs)?;
    let config = dir.path().join("xmppd.toml");
    let text = "[general]\ndata_dir = \"data\"\nlog = \"info\"\n\n[[host]]\nname = \"localhost\"\n\n\
                [[listen]]\nkind = \"c2s\"\naddress = \"127.0.0.1\"\nport = 0\n";
    std::fs::write(&config, text)?;

    common::while_serving(&config, async |addr| {
        if presented(&old_pki, addr).await? != old_cert {
            bail!("not the configured certificate at first");
        }
        // An established, logged-in connection must outlive the reload.
        common::add_user(&config, "alice@localhost", "alice-pw").map_err(anyhow::Error::msg)?;
        let mut alice =
            common::log_in(&old_pki, addr, "SCRAM-SHA-256", "alice", "alice-pw").await?;

        let new_cert = install(&new_pki, &certs)?;
        let out = common::run(&config, &["reload"])?;
        if !out.status.success() {
            bail!("reload: {}", String::from_utf8_lossy(&out.stderr));
        }
        // The signal is handled asynchronously: the next handshakes show when it was.
        let mut served = Vec::new();
        for _ in 0..50 {
            served = presented(&new_pki, addr).await.unwrap_or_default();
            if served == new_cert {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if served != new_cert {
            bail!("the renewed certificate is not served after the reload");
        }
        ping(&mut alice, "p1").await?;

        // A broken file: `xmppd reload` says where and signals nothing; the server keeps
        // serving what it served.
        std::fs::write(
            &config,
            format!("{text}\n[limits]\nmax_stanza_bytes = \"big\"\n"),
        )?;
        let out = common::run(&config, &["reload"])?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || !stderr.contains(&format!("{}:", config.display())) {
            bail!("a broken file was accepted: {stderr}");
        }
        // SIGHUP straight to the server with the broken file: refused there too, and the
        // server goes on with what it had.
        let pid = std::fs::read_to_string(dir.path().join("data/xmppd.pid"))?;
        let status = std::process::Command::new("kill")
            .args(["-HUP", pid.trim()])
            .status()?;
        if !status.success() {
            bail!("kill -HUP failed");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        if presented(&new_pki, addr).await? != new_cert {
            bail!("the broken file changed the certificate");
        }
        ping(&mut alice, "p2").await?;
        Ok(())
    })
    .await
}
