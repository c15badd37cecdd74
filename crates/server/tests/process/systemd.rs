//! The `xmppd` process under a `Type=notify` unit: the datagrams systemd reads from
//! `NOTIFY_SOCKET` (sd_notify(3)), received here on a socket of the test's own.

use crate::common;

use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

fn write_config(dir: &Path) -> anyhow::Result<PathBuf> {
    let path = dir.join("xmppd.toml");
    std::fs::write(
        &path,
        "[general]\ndata_dir = \"data\"\nlog = \"info\"\n\n[[host]]\nname = \"localhost\"\n\n\
         [[listen]]\nkind = \"c2s\"\naddress = \"127.0.0.1\"\nport = 0\n",
    )?;
    Ok(path)
}

/// The service manager's end: a datagram socket the server is pointed at.
struct Manager {
    socket: UnixDatagram,
    path: PathBuf,
}

impl Manager {
    fn bind(dir: &Path) -> anyhow::Result<Self> {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path)?;
        Ok(Manager { socket, path })
    }

    /// The notifications received within `within`, each datagram's lines.
    fn receive_for(&self, within: Duration) -> anyhow::Result<Vec<Vec<String>>> {
        let deadline = Instant::now() + within;
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(seen);
            }
            self.socket.set_read_timeout(Some(left))?;
            match self.socket.recv(&mut buf) {
                Ok(n) => seen.push(
                    String::from_utf8_lossy(&buf[..n])
                        .lines()
                        .map(str::to_owned)
                        .collect(),
                ),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(seen);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Waits (at most 20 s) for a datagram holding `line`; returns it.
    fn wait_for(&self, line: &str) -> anyhow::Result<Vec<String>> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no {line} within 20 s");
            }
            self.socket.set_read_timeout(Some(left))?;
            let n = self
                .socket
                .recv(&mut buf)
                .with_context(|| format!("waiting for {line}"))?;
            let lines: Vec<String> = String::from_utf8_lossy(&buf[..n])
                .lines()
                .map(str::to_owned)
                .collect();
            if lines.iter().any(|l| l == line) {
                return Ok(lines);
            }
        }
    }
}

fn terminate(child: &mut std::process::Child) -> anyhow::Result<std::process::ExitStatus> {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    if !status.success() {
        bail!("kill -TERM failed");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the server did not exit within 30 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The server started as systemd would start it: `NOTIFY_SOCKET` pointing at the test's
/// socket, `WATCHDOG_USEC`, and `WATCHDOG_PID` when given.
fn start(
    dir: &Path,
    watchdog_usec: &str,
    watchdog_pid: Option<&str>,
) -> anyhow::Result<(Manager, common::Serving)> {
    let config = write_config(dir)?;
    let manager = Manager::bind(dir)?;
    let mut command = common::xmppd();
    command
        .args(["--config", &config.to_string_lossy(), "serve"])
        .env("NOTIFY_SOCKET", &manager.path)
        .env("WATCHDOG_USEC", watchdog_usec);
    match watchdog_pid {
        Some(pid) => command.env("WATCHDOG_PID", pid),
        None => command.env_remove("WATCHDOG_PID"),
    };
    let serving = common::serve_command(command).map_err(anyhow::Error::msg)?;
    Ok((manager, serving))
}

#[test]
fn ready_watchdog_and_stopping_reach_the_service_manager() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (manager, mut serving) = start(dir.path(), "200000", None)?;

    let ready = manager.wait_for("READY=1")?;
    assert!(
        ready.iter().any(|l| l == "STATUS=serving localhost"),
        "{ready:?}"
    );
    // READY=1 means clients can connect: the listener is open by then.
    TcpStream::connect(&serving.addr).context("the c2s listener after READY=1")?;

    // A ping every 100 ms (half of WATCHDOG_USEC): at least a few in 2 s, none of them
    // anything but WATCHDOG=1.
    let pings = manager.receive_for(Duration::from_secs(2))?;
    let watchdog = pings
        .iter()
        .filter(|d| d.iter().any(|l| l == "WATCHDOG=1"))
        .count();
    assert!(watchdog >= 3, "{pings:?}");

    // SIGHUP: RELOADING=1 with the monotonic time systemd 253+ requires, then READY=1.
    let hup = Command::new("kill")
        .args(["-HUP", &serving.child.id().to_string()])
        .status()?;
    assert!(hup.success());
    let reloading = manager.wait_for("RELOADING=1")?;
    assert!(
        reloading.iter().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{reloading:?}"
    );
    manager.wait_for("READY=1")?;

    let status = terminate(&mut serving.child)?;
    assert!(status.success(), "{status}");
    let mut after = manager.receive_for(Duration::from_millis(200))?;
    after.retain(|d| !d.iter().any(|l| l == "WATCHDOG=1"));
    assert!(
        after.iter().any(|d| d.iter().any(|l| l == "STOPPING=1")),
        "{after:?}"
    );
    Ok(())
}

#[test]
fn a_watchdog_meant_for_another_process_is_not_fed() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (manager, mut serving) = start(dir.path(), "100000", Some("1"))?;
    manager.wait_for("READY=1")?;
    let seen = manager.receive_for(Duration::from_secs(1))?;
    assert!(
        !seen.iter().any(|d| d.iter().any(|l| l == "WATCHDOG=1")),
        "{seen:?}"
    );
    let status = terminate(&mut serving.child)?;
    assert!(status.success(), "{status}");
    Ok(())
}
