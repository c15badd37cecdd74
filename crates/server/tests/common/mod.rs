//! Running the `xmppd` binary from tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn xmppd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_xmppd"))
}

/// Creates an account with `xmppd adduser`, the password on standard input.
pub fn add_user(config: &Path, jid: &str, password: &str) -> Result<(), String> {
    use std::io::Write as _;
    let mut child = xmppd()
        .args(["--config", &config.to_string_lossy(), "adduser", jid])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run xmppd adduser: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        writeln!(stdin, "{password}").map_err(|e| format!("adduser's stdin: {e}"))?;
    }
    match child.wait() {
        Ok(status) if status.success() => Ok(()),
        _ => Err(format!("adduser {jid} failed")),
    }
}

/// A server process that logged where it listens for clients.
pub struct Serving {
    /// The process.
    pub child: Child,
    /// The client listener's address, as logged.
    pub addr: String,
    /// The log lines up to and including the one with the address.
    pub log: Vec<String>,
}

/// Runs `xmppd --config CONFIG serve` and waits (at most 20 s) for it to log its client
/// address; the rest of its log is drained on a thread so it never blocks on a full pipe.
pub fn serve(config: &Path) -> Result<Serving, String> {
    let mut command = xmppd();
    command.args(["--config", &config.to_string_lossy(), "serve"]);
    serve_command(command)
}

/// As [`serve`], for a command prepared by the caller (its environment, say).
pub fn serve_command(mut command: Command) -> Result<Serving, String> {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run xmppd: {e}"))?;
    let Some(stdout) = child.stdout.take() else {
        return Err("no stdout".into());
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut log = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the server did not log its address within 20 s".into());
        };
        let addr = line
            .contains("listening for clients")
            .then(|| line.split("addr=").nth(1))
            .flatten()
            .and_then(|a| a.split_whitespace().next())
            .map(str::to_owned);
        log.push(line);
        if let Some(addr) = addr {
            std::thread::spawn(move || for _ in rx {});
            return Ok(Serving { child, addr, log });
        }
    }
}

/// A client of `addr` logged in as `user` over STARTTLS (trusting `pki`) with `mechanism`,
/// its resource bound.
pub async fn log_in(
    pki: &xmppd_testkit::TestPki,
    addr: std::net::SocketAddr,
    mechanism: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<xmppd_testkit::TestClient> {
    let mut client = xmppd_testkit::TestClient::connect(addr).await?;
    client.open_stream("localhost").await?;
    client
        .starttls(pki.tls_client_config(), "localhost")
        .await?;
    client.authenticate(mechanism, user, password).await?;
    client.bind(Some("desk")).await?;
    Ok(client)
}

/// Runs `xmppd serve` from `config`, then `checks` against its client address, then kills
/// the server whatever the checks found.
pub async fn while_serving<T>(
    config: &Path,
    checks: impl AsyncFnOnce(std::net::SocketAddr) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut serving = serve(config).map_err(anyhow::Error::msg)?;
    let result = match serving.addr.parse() {
        Ok(addr) => checks(addr).await,
        Err(e) => Err(anyhow::Error::new(e)),
    };
    let _ = serving.child.kill();
    let _ = serving.child.wait();
    result
}

/// `xmppd --config CONFIG ARGS...`, run to completion.
pub fn run(config: &Path, args: &[&str]) -> std::io::Result<std::process::Output> {
    xmppd().arg("--config").arg(config).args(args).output()
}
