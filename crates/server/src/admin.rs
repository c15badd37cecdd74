//! Admin verbs that work with the daemon stopped, straight against storage.

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::Context as _;
use jid::BareJid;

use crate::Config;

/// Parses an account JID given on the command line, checking its domain is served.
pub fn account_jid(config: &Config, text: &str) -> anyhow::Result<BareJid> {
    let jid = BareJid::new(text).with_context(|| format!("'{text}' is not a valid JID"))?;
    anyhow::ensure!(
        jid.node().is_some(),
        "'{text}' has no user part; write user@{}",
        jid.domain()
    );
    let domain = jid.domain().as_str();
    anyhow::ensure!(
        config.hosts.iter().any(|h| h.name == domain),
        "{domain} is not a host of this server (configured: {})",
        config
            .hosts
            .iter()
            .map(|h| h.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(jid)
}

/// The new password: prompted twice on a terminal, else the first line of standard input.
pub fn read_password() -> anyhow::Result<String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let second = rpassword::prompt_password("Again: ")?;
        anyhow::ensure!(first == second, "the passwords do not match");
        Ok(first)
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        let password = line.trim_end_matches(['\n', '\r']).to_owned();
        anyhow::ensure!(!password.is_empty(), "no password on standard input");
        Ok(password)
    }
}

/// The running server's PID, in `data_dir/xmppd.pid` while it serves: how `xmppd reload`
/// finds it. Removed when dropped (at a clean exit).
#[derive(Debug)]
pub struct PidFile(std::path::PathBuf);

impl PidFile {
    /// Writes this process's PID.
    pub fn create(data_dir: &std::path::Path) -> anyhow::Result<Self> {
        let path = data_dir.join("xmppd.pid");
        std::fs::write(&path, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(PidFile(path))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Sends SIGHUP to the server whose PID `data_dir/xmppd.pid` holds; returns the PID.
pub fn signal_reload(data_dir: &std::path::Path) -> anyhow::Result<i32> {
    let path = data_dir.join("xmppd.pid");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: is xmppd running with this configuration?",
            path.display()
        )
    })?;
    let pid: i32 = text
        .trim()
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .with_context(|| format!("{} does not hold a process id", path.display()))?;
    let target = rustix::process::Pid::from_raw(pid)
        .with_context(|| format!("{} does not hold a process id", path.display()))?;
    rustix::process::kill_process(target, rustix::process::Signal::HUP).with_context(|| {
        format!(
            "cannot signal xmppd (pid {pid} from {}): is it running?",
            path.display()
        )
    })?;
    Ok(pid)
}
