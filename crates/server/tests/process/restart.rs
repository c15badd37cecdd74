//! The `xmppd` process stopped and started again under clients that use stream management:
//! stopped with SIGTERM, a resumable session comes back and its client gets what it had not
//! acknowledged, exactly once; killed with SIGKILL in the middle of a flood, no message the
//! server acknowledged is missing afterwards.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use crate::common;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use xmppd_testkit::{TestClient, TestPki};
use xmppd_xml::{Element, StreamEvent};

const SM: &str = "urn:xmpp:sm:3";

/// One xmppd process over a data directory that outlives it.
struct Server {
    child: Child,
    addr: SocketAddr,
}

fn write_config(dir: &Path, pki: &TestPki) -> anyhow::Result<PathBuf> {
    let (cert, key) = pki
        .cert_paths("localhost")
        .context("no certificate for localhost")?;
    let path = dir.join("xmppd.toml");
    let text = format!(
        "[general]\ndata_dir = \"data\"\nlog = \"info\"\n\n[[host]]\nname = \"localhost\"\n\
         cert = \"{}\"\nkey = \"{}\"\n\n[[listen]]\nkind = \"c2s\"\naddress = \"127.0.0.1\"\n\
         port = 0\n\n[limits]\nmax_offline_messages = 100000\n",
        cert.display(),
        key.display()
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

impl Server {
    /// Starts the server and waits for it to listen.
    fn start(config: &Path) -> anyhow::Result<Server> {
        let serving = common::serve(config).map_err(anyhow::Error::msg)?;
        Ok(Server {
            child: serving.child,
            addr: serving.addr.parse()?,
        })
    }

    fn signal(&mut self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill {signal} failed");
        }
        // Bounded: a stopped server exits within its shutdown limits.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        bail!("the server did not exit within 30 s of {signal}")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn authenticated(pki: &TestPki, addr: SocketAddr, user: &str) -> anyhow::Result<TestClient> {
    let mut client = TestClient::connect(addr).await?;
    client.open_stream("localhost").await?;
    client
        .starttls(pki.tls_client_config(), "localhost")
        .await?;
    client.authenticate("SCRAM-SHA-256", user, "secret").await?;
    Ok(client)
}

async fn enable(client: &mut TestClient, resume: bool) -> anyhow::Result<Option<String>> {
    client
        .send(&format!("<enable xmlns='{SM}' resume='{resume}'/>"))
        .await?;
    let enabled = client.expect("enabled", |e| e.is("enabled", SM)).await?;
    Ok(enabled.attr("id").map(str::to_owned))
}

fn chat(to: &str, id: &str) -> String {
    format!("<message to='{to}' type='chat' id='{id}'><body>{id}</body></message>")
}

async fn message_ids(client: &mut TestClient, n: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    for _ in 0..(n + 1000) {
        if ids.len() == n {
            break;
        }
        let el: Element = client.recv().await?;
        if el.name() == "message" {
            ids.extend(el.attr("id").map(str::to_owned));
        }
    }
    Ok(ids)
}

#[tokio::test]
async fn a_session_resumes_after_the_server_was_stopped_with_sigterm() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(&["localhost"])?;
    let config = write_config(dir.path(), &pki)?;
    common::add_user(&config, "alice@localhost", "secret").map_err(anyhow::Error::msg)?;
    common::add_user(&config, "bob@localhost", "secret").map_err(anyhow::Error::msg)?;
    let mut server = Server::start(&config)?;

    let mut alice = authenticated(&pki, server.addr, "alice").await?;
    alice.bind(Some("phone")).await?;
    let id = enable(&mut alice, true).await?.context("not resumable")?;
    let mut bob = authenticated(&pki, server.addr, "bob").await?;
    bob.bind(Some("desk")).await?;
    for id in ["m1", "m2"] {
        bob.send(&chat("alice@localhost/phone", id)).await?;
    }
    assert_eq!(message_ids(&mut alice, 2).await?, ["m1", "m2"]);
    alice.send(&format!("<a xmlns='{SM}' h='1'/>")).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.signal("-TERM")?;
    let server = Server::start(&config)?;
    let mut alice = authenticated(&pki, server.addr, "alice").await?;
    alice
        .send(&format!("<resume xmlns='{SM}' previd='{id}' h='1'/>"))
        .await?;
    alice.expect("resumed", |e| e.is("resumed", SM)).await?;
    assert_eq!(message_ids(&mut alice, 1).await?, ["m2"]);
    alice.expect_silence(Duration::from_millis(300)).await?;
    Ok(())
}

/// Floods `bob` (offline) from alice with acknowledged messages until the process is killed;
/// returns how many the server acknowledged.
async fn flood_until_killed(
    pki: &TestPki,
    server: &mut Server,
    round: usize,
) -> anyhow::Result<u32> {
    let mut alice = authenticated(pki, server.addr, "alice").await?;
    alice.bind(Some("phone")).await?;
    enable(&mut alice, false).await?;
    let kill_after = Duration::from_millis(50 + (round as u64 * 37) % 300);
    let started = Instant::now();
    let mut acked = 0u32;
    let mut sent = 0u32;
    while started.elapsed() < kill_after && sent < 20_000 {
        for _ in 0..10 {
            alice
                .send(&chat("bob@localhost", &format!("r{round}-{sent}")))
                .await?;
            sent += 1;
        }
        alice.send(&format!("<r xmlns='{SM}'/>")).await?;
        let a = alice.expect("ack", |e| e.is("a", SM)).await?;
        acked = a.attr("h").and_then(|h| h.parse().ok()).unwrap_or(acked);
    }
    // More in flight when the process dies: these may or may not have been handled.
    for extra in 0..50 {
        let _ = alice
            .send(&chat(
                "bob@localhost",
                &format!("r{round}-{}", sent + extra),
            ))
            .await;
    }
    server.signal("-KILL")?;
    // Acks that arrived before the kill count too.
    for _ in 0..1000 {
        match alice.next_event_within(Duration::from_millis(100)).await {
            Ok(Some(StreamEvent::Stanza(el))) if el.is("a", SM) => {
                acked = el.attr("h").and_then(|h| h.parse().ok()).unwrap_or(acked);
            }
            Ok(Some(_)) => {}
            _ => break,
        }
    }
    Ok(acked)
}

/// XEP-0198's `h` is the server's promise; this holds it to that across `kill -9`.
#[tokio::test]
async fn no_acknowledged_message_is_lost_when_the_process_is_killed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(&["localhost"])?;
    let config = write_config(dir.path(), &pki)?;
    common::add_user(&config, "alice@localhost", "secret").map_err(anyhow::Error::msg)?;
    common::add_user(&config, "bob@localhost", "secret").map_err(anyhow::Error::msg)?;
    let mut lost = Vec::new();
    for round in 0..20 {
        let mut server = Server::start(&config)?;
        let acked = flood_until_killed(&pki, &mut server, round).await?;
        assert!(
            acked > 0,
            "round {round}: nothing was acknowledged before the kill"
        );
        let server = Server::start(&config)?;
        let mut bob = authenticated(&pki, server.addr, "bob").await?;
        bob.bind(Some("desk")).await?;
        bob.send("<presence/>").await?;
        let mut got = std::collections::HashSet::new();
        // Offline messages come right after initial presence; stop at the first quiet spell.
        for _ in 0..100_000 {
            match bob.next_event_within(Duration::from_millis(500)).await? {
                Some(StreamEvent::Stanza(el)) if el.name() == "message" => {
                    got.extend(el.attr("id").map(str::to_owned));
                }
                Some(_) => {}
                None => break,
            }
        }
        for n in 0..acked {
            let id = format!("r{round}-{n}");
            if !got.contains(&id) {
                lost.push(id);
            }
        }
        drop(bob);
        drop(server);
    }
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    Ok(())
}
