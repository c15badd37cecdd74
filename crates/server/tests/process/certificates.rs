//! Certificates as an admin renews them: `xmppd cert import` from a certbot live directory
//! into the certificates directory, `xmppd check` showing where each host's certificate comes
//! from and when it expires, and the server presenting the imported one.

use crate::common;

use anyhow::{Context as _, bail};
use xmppd_testkit::{TestClient, TestPki};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn an_imported_certificate_is_checked_and_served() -> anyhow::Result<()> {
    let pki = TestPki::new(&["localhost"])?;
    let (cert, key) = pki.cert_paths("localhost").context("no localhost pair")?;
    let dir = tempfile::tempdir()?;
    // certbot's layout: live/DOMAIN/fullchain.pem and privkey.pem.
    let live = dir.path().join("live");
    std::fs::create_dir_all(live.join("localhost"))?;
    std::fs::copy(&cert, live.join("localhost/fullchain.pem"))?;
    std::fs::copy(&key, live.join("localhost/privkey.pem"))?;
    let config = dir.path().join("xmppd.toml");
    std::fs::write(
        &config,
        "[general]\ndata_dir = \"data\"\nlog = \"info\"\n\n[[host]]\nname = \"localhost\"\n\n\
         [[host]]\nname = \"elsewhere.test\"\n\n\
         [[listen]]\nkind = \"c2s\"\naddress = \"127.0.0.1\"\nport = 0\n",
    )?;

    // Before the import: nothing in the certificates directory, so a self-signed pair.
    let before = common::run(&config, &["check"])?;
    assert!(
        stdout(&before).contains("localhost: self-signed certificate"),
        "{}",
        stdout(&before)
    );

    let import = common::run(&config, &["cert", "import", &live.to_string_lossy()])?;
    let text = stdout(&import);
    assert!(import.status.success(), "{text}");
    assert!(text.contains("localhost: imported"), "{text}");
    assert!(
        text.contains("elsewhere.test: no certificate found"),
        "{text}"
    );
    let certs = dir.path().join("certs");
    assert_eq!(
        std::fs::read(certs.join("localhost.crt"))?,
        std::fs::read(&cert)?
    );

    let check = common::run(&config, &["check"])?;
    let text = stdout(&check);
    assert!(check.status.success(), "{text}");
    assert!(
        text.contains("localhost.crt (certificates directory) is valid until"),
        "{text}"
    );
    assert!(text.contains("days left"), "{text}");

    // The server presents the imported certificate: a client trusting only the test CA
    // completes STARTTLS and sees exactly that certificate.
    common::while_serving(&config, async |addr| {
        let mut client = TestClient::connect(addr).await?;
        client.open_stream("localhost").await?;
        client
            .starttls(pki.tls_client_config(), "localhost")
            .await?;
        let presented = client
            .server_certificate()
            .context("no server certificate")?;
        let imported = xmppd::certs::read_chain(&certs.join("localhost.crt"))?;
        if presented != imported[0].as_ref() {
            bail!("the server presented another certificate");
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
}

#[test]
fn an_import_that_finds_nothing_usable_fails() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let live = dir.path().join("live/localhost");
    std::fs::create_dir_all(&live)?;
    // A certificate for another name under the host's directory.
    let other = rcgen::generate_simple_self_signed(vec!["other.test".to_owned()])?;
    std::fs::write(live.join("fullchain.pem"), other.cert.pem())?;
    std::fs::write(live.join("privkey.pem"), other.signing_key.serialize_pem())?;
    let config = dir.path().join("xmppd.toml");
    std::fs::write(&config, "[[host]]\nname = \"localhost\"\n")?;

    let out = common::run(
        &config,
        &["cert", "import", &dir.path().join("live").to_string_lossy()],
    )?;
    let text = stdout(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("does not name localhost"), "{text}");
    assert!(!dir.path().join("certs/localhost.crt").exists());
    Ok(())
}
