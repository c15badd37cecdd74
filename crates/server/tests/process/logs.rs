//! The `xmppd` process's logs: JSON lines with `log_format = "json"`, text lines by default,
//! every login with its mechanism and channel binding, and, even at TRACE level of every
//! crate, no password, SASL payload or message body.

use crate::common;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use xmppd_testkit::TestPki;

const PASSWORDS: [(&str, &str); 3] = [
    ("alice", "alice-Pa55word-plain"),
    ("bob", "bob-Pa55word-scram"),
    ("carol", "carol-Pa55word-plus"),
];
const WRONG_PASSWORD: &str = "mallory-Wr0ng-guess";
const BODY: &str = "the-secret-body-of-a-message";

/// A server process whose standard output is collected line by line.
struct LoggingServer {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl LoggingServer {
    fn start(config: &Path) -> anyhow::Result<Self> {
        let mut child = common::xmppd()
            .args(["--config", &config.to_string_lossy(), "serve"])
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot run xmppd")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(LoggingServer {
            child,
            lines,
            seen: Vec::new(),
        })
    }

    /// Reads lines (at most 20 s) until one satisfies `found`, which returns what it found.
    fn wait_for<T>(&mut self, mut found: impl FnMut(&str) -> Option<T>) -> anyhow::Result<T> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).context("no such log line")?;
            let result = found(&line);
            self.seen.push(line);
            if let Some(result) = result {
                return Ok(result);
            }
        }
    }

    /// SIGTERM, then every line up to the process's exit (bounded to 30 s).
    fn stop(mut self) -> anyhow::Result<Vec<String>> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -TERM failed");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => bail!("the server did not stop"),
            }
        }
        self.child.wait()?;
        Ok(std::mem::take(&mut self.seen))
    }
}

impl Drop for LoggingServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn write_config(dir: &Path, pki: &TestPki, general: &str) -> anyhow::Result<PathBuf> {
    let (cert, key) = pki.cert_paths("localhost").context("no certificate")?;
    let path = dir.join("xmppd.toml");
    let text = format!(
        "[general]\ndata_dir = \"data\"\n{general}\n\n[[host]]\nname = \"localhost\"\n\
         cert = \"{}\"\nkey = \"{}\"\n\n[[listen]]\nkind = \"c2s\"\naddress = \"127.0.0.1\"\n\
         port = 0\n",
        cert.display(),
        key.display()
    );
    std::fs::write(&path, text)?;
    for (user, password) in PASSWORDS {
        common::add_user(&path, &format!("{user}@localhost"), password)
            .map_err(anyhow::Error::msg)?;
    }
    Ok(path)
}

/// A server with these `[general]` lines, in a directory that lives as long as it must.
fn started(general: &str) -> anyhow::Result<(tempfile::TempDir, TestPki, LoggingServer)> {
    let dir = tempfile::tempdir()?;
    let pki = TestPki::new(&["localhost"])?;
    let config = write_config(dir.path(), &pki, general)?;
    let server = LoggingServer::start(&config)?;
    Ok((dir, pki, server))
}

/// Three logins (PLAIN, SCRAM, SCRAM-PLUS), a failed one, and a message.
async fn exercise(pki: &TestPki, addr: SocketAddr) -> anyhow::Result<()> {
    let mut alice = common::log_in(pki, addr, "PLAIN", "alice", PASSWORDS[0].1).await?;
    let mut bob = common::log_in(pki, addr, "SCRAM-SHA-256", "bob", PASSWORDS[1].1).await?;
    let carol = common::log_in(pki, addr, "SCRAM-SHA-256-PLUS", "carol", PASSWORDS[2].1).await?;
    let failed = common::log_in(pki, addr, "PLAIN", "alice", WRONG_PASSWORD).await;
    assert_eq!(
        failed.err().map(|e| e.to_string()).as_deref(),
        Some("sasl failure: not-authorized")
    );
    alice
        .send(&format!(
            "<message to='bob@localhost/desk' type='chat' id='m1'><body>{BODY}</body></message>"
        ))
        .await?;
    let got = bob.expect("the message", |e| e.name() == "message").await?;
    assert_eq!(
        got.child("body", "jabber:client").map(|b| b.text()),
        Some(BODY.into())
    );
    for client in [alice, bob, carol] {
        client.close().await?;
    }
    Ok(())
}

/// What must never be in a log line: the passwords, PLAIN's payloads, SCRAM client-final
/// messages (which carry the proof), the body, and raw SASL or message elements.
fn secrets() -> Vec<String> {
    let mut secrets: Vec<String> = PASSWORDS.iter().map(|(_, p)| (*p).to_owned()).collect();
    secrets.push(WRONG_PASSWORD.into());
    for password in [PASSWORDS[0].1, WRONG_PASSWORD] {
        secrets.push(BASE64.encode(format!("\0alice\0{password}")));
    }
    // Prefixes of three-byte multiples encode to a fixed prefix of the whole message.
    secrets.push(BASE64.encode("c=biws,r="));
    secrets.push(BASE64.encode("c=cD10bHMtZXhwb3J0"));
    secrets.extend([
        BODY.into(),
        "<body".into(),
        "<auth".into(),
        "<response".into(),
    ]);
    secrets
}

/// The client listener's address, from its JSON log line.
fn listening_addr(line: &str) -> Option<SocketAddr> {
    let record: Value = serde_json::from_str(line).ok()?;
    let fields = record.get("fields")?;
    (fields.get("message")? == "listening for clients")
        .then(|| fields.get("addr")?.as_str()?.parse().ok())?
}

#[tokio::test]
async fn json_logs_at_trace_record_logins_and_no_secrets() -> anyhow::Result<()> {
    let (_dir, pki, mut server) = started("log = \"trace\"\nlog_format = \"json\"")?;
    let addr: SocketAddr = server.wait_for(listening_addr)?;
    exercise(&pki, addr).await?;
    let lines = server.stop()?;

    let mut logins = Vec::new();
    let mut failures = Vec::new();
    let mut levels = std::collections::BTreeSet::new();
    for line in &lines {
        let record: Value =
            serde_json::from_str(line).with_context(|| format!("not JSON: {line}"))?;
        levels.extend(
            record
                .get("level")
                .and_then(Value::as_str)
                .map(str::to_owned),
        );
        let fields = record.get("fields").context("no fields")?;
        let field = |name: &str| {
            let value = fields.get(name).and_then(Value::as_str).unwrap_or("");
            value.to_owned()
        };
        match field("message").as_str() {
            "authenticated" => logins.push((field("mechanism"), field("channel_binding"))),
            "authentication failed" => failures.push((field("mechanism"), field("condition"))),
            _ => {}
        }
    }
    assert!(levels.contains("TRACE"), "levels seen: {levels:?}");
    logins.sort_unstable();
    let logins: Vec<(&str, &str)> = logins
        .iter()
        .map(|(m, c)| (m.as_str(), c.as_str()))
        .collect();
    let failures: Vec<(&str, &str)> = failures
        .iter()
        .map(|(m, c)| (m.as_str(), c.as_str()))
        .collect();
    assert_eq!(
        logins,
        [
            ("PLAIN", "none"),
            ("SCRAM-SHA-256", "none"),
            ("SCRAM-SHA-256-PLUS", "tls-exporter")
        ]
    );
    assert_eq!(failures, [("PLAIN", "not-authorized")]);
    for secret in secrets() {
        let leaks: Vec<&String> = lines.iter().filter(|l| l.contains(&secret)).collect();
        assert!(leaks.is_empty(), "{secret} is logged: {leaks:?}");
    }
    Ok(())
}

#[tokio::test]
async fn logs_are_text_lines_by_default() -> anyhow::Result<()> {
    let (_dir, pki, mut server) = started("log = \"info\"")?;
    let addr: SocketAddr = server.wait_for(|line| {
        line.contains("listening for clients").then(|| {
            line.split("addr=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })?
    })?;
    let bob = common::log_in(&pki, addr, "SCRAM-SHA-256", "bob", PASSWORDS[1].1).await?;
    let login = server.wait_for(|line| line.contains("authenticated").then(|| line.to_owned()))?;
    assert!(!login.starts_with('{'), "{login}");
    assert!(
        login.contains(" INFO ")
            && login.contains("jid=bob@localhost")
            && login.ends_with("authenticated mechanism=SCRAM-SHA-256 channel_binding=none"),
        "{login}"
    );
    bob.close().await?;
    server.stop()?;
    Ok(())
}

/// The longest run of `ch` in `line`.
fn longest_run(line: &str, ch: char) -> usize {
    line.split(|c| c != ch)
        .map(|run| run.len())
        .max()
        .unwrap_or(0)
}

/// How far a connection gets before an attack's bytes go.
#[derive(Clone, Copy)]
enum Stage {
    /// A new connection: the bytes are its first.
    Connected,
    /// The stream is open, before TLS.
    Plain,
    /// After STARTTLS, before SASL.
    Tls,
    /// Logged in as bob, a resource bound.
    Bound,
}

/// Sends `bytes` at `stage` on a new connection, then reads what the server answers (at most
/// ten events, each within two seconds) until the stream ends.
async fn attack(pki: &TestPki, addr: SocketAddr, stage: Stage, bytes: &str) -> anyhow::Result<()> {
    let mut client = match stage {
        Stage::Bound => common::log_in(pki, addr, "SCRAM-SHA-256", "bob", PASSWORDS[1].1).await?,
        _ => xmppd_testkit::TestClient::connect(addr).await?,
    };
    if matches!(stage, Stage::Plain | Stage::Tls) {
        client.open_stream("localhost").await?;
    }
    if matches!(stage, Stage::Tls) {
        client
            .starttls(pki.tls_client_config(), "localhost")
            .await?;
    }
    client.send(bytes).await?;
    for _ in 0..10 {
        match client.next_event_within(Duration::from_secs(2)).await {
            Ok(Some(xmppd_xml::StreamEvent::Close)) | Ok(None) | Err(_) => break,
            Ok(Some(_)) => continue,
        }
    }
    Ok(())
}

/// Most bytes of what a peer sent that a log line may quote: the stream error texts are cut
/// to this (`xmppd_proto::error::MAX_TEXT`), and nothing else quotes peers at all.
const SHORT_PREFIX: usize = 256;

#[tokio::test]
async fn logs_never_echo_more_than_a_short_prefix_of_what_peers_send() -> anyhow::Result<()> {
    let (_dir, pki, mut server) = started("log = \"trace\"\nlog_format = \"json\"")?;
    let addr: SocketAddr = server.wait_for(listening_addr)?;
    // Each attack repeats its own letter 12,000 times.
    let long = |ch: char| ch.to_string().repeat(12_000);
    let element = |ch: char| format!("<q{} xmlns='jabber:client'/>", long(ch));
    let attacks = [
        // An unknown element with a 12 KB name: before TLS, after TLS, after binding.
        ('y', Stage::Plain, element('y')),
        ('x', Stage::Tls, element('x')),
        ('u', Stage::Bound, element('u')),
        // A stanza with a 12 KB attribute value, before TLS.
        (
            'z',
            Stage::Plain,
            format!(
                "<message to='alice@localhost' id='{}'><body>hi</body></message>",
                long('z')
            ),
        ),
        // A SASL mechanism of 12 KB.
        (
            'v',
            Stage::Tls,
            format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='{}'>=</auth>",
                long('v')
            ),
        ),
        // A stream header to a 12 KB domain.
        (
            'w',
            Stage::Connected,
            format!(
                "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{}.test' version='1.0'>",
                long('w')
            ),
        ),
    ];
    for (_, stage, bytes) in &attacks {
        attack(&pki, addr, *stage, bytes).await?;
    }

    let lines = server.stop()?;
    // The stream errors quoted the names (cut short).
    let quoted = lines
        .iter()
        .filter(|l| l.contains("closing with stream error"))
        .filter(|l| l.contains("xxxx") || l.contains("uuuu"))
        .count();
    assert!(quoted > 0, "no stream error quoted an element name");
    for (ch, _, _) in attacks {
        let (longest, line) = lines
            .iter()
            .map(|l| (longest_run(l, ch), l))
            .max_by_key(|(run, _)| *run)
            .context("no log lines")?;
        assert!(
            longest <= SHORT_PREFIX,
            "{longest} of 12000 '{ch}'s in a log line: {}…",
            line.chars().take(400).collect::<String>()
        );
    }
    Ok(())
}
