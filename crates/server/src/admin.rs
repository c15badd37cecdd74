//! The CLI's admin verbs. Account verbs go through the running server's admin socket when it
//! answers there (so that, say, a deleted account's sessions end at once) and straight to
//! storage when no server runs; the other verbs need the running server.

use std::io::{BufRead as _, IsTerminal as _};

use anyhow::Context as _;
use jid::BareJid;
use serde_json::json;

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
        host_names(config)
    );
    Ok(jid)
}

/// The configured hosts, for messages: `a.example, b.example`.
pub fn host_names(config: &Config) -> String {
    config
        .hosts
        .iter()
        .map(|h| h.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
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

/// `xmppd adduser JID`: through the running server, else on storage.
pub async fn add_user(config: &Config, jid: &str) -> anyhow::Result<()> {
    let jid = account_jid(config, jid)?;
    let password = read_password()?;
    let request = json!({"verb": "add_user", "jid": jid.to_string(), "password": password});
    if via_daemon(config, request).await?.is_none() {
        let storage = crate::open_storage(config).await?;
        crate::accounts(&storage).create(&jid, &password).await?;
    }
    println!("created {jid}");
    Ok(())
}

/// `xmppd passwd JID`: through the running server, else on storage.
pub async fn change_password(config: &Config, jid: &str) -> anyhow::Result<()> {
    let jid = account_jid(config, jid)?;
    let password = read_password()?;
    let request = json!({"verb": "change_password", "jid": jid.to_string(), "password": password});
    if via_daemon(config, request).await?.is_none() {
        let storage = crate::open_storage(config).await?;
        crate::accounts(&storage)
            .set_password(&jid, &password)
            .await?;
    }
    println!("changed the password of {jid}");
    Ok(())
}

/// `xmppd deluser JID`: through the running server (which ends the account's sessions),
/// else on storage.
pub async fn delete_user(config: &Config, jid: &str) -> anyhow::Result<()> {
    let jid = account_jid(config, jid)?;
    let request = json!({"verb": "delete_user", "jid": jid.to_string()});
    match via_daemon(config, request).await? {
        Some(result) => {
            let ended = result.get("sessions_ended").cloned().unwrap_or_default();
            println!("deleted {jid} ({ended} sessions ended)");
        }
        None => {
            let storage = crate::open_storage(config).await?;
            crate::accounts(&storage).delete(&jid).await?;
            println!("deleted {jid}");
        }
    }
    Ok(())
}

/// `xmppd user list HOST`: through the running server, else from storage.
pub async fn list_users(config: &Config, host: &str) -> anyhow::Result<()> {
    match via_daemon(config, json!({"verb": "list_users", "host": host})).await? {
        Some(result) => print_result(&result),
        None => {
            anyhow::ensure!(
                config.hosts.iter().any(|h| h.name == host),
                "{host} is not a host of this server"
            );
            let storage = crate::open_storage(config).await?;
            for user in crate::accounts(&storage).list(host).await? {
                println!("{user}@{host}");
            }
        }
    }
    Ok(())
}

/// Sends a verb to the running daemon over the admin socket. `Ok(None)`: no daemon listens
/// (or the socket is turned off), so the caller may work on storage directly; a refused
/// request is an error with the daemon's message.
pub async fn via_daemon(
    config: &Config,
    request: serde_json::Value,
) -> anyhow::Result<Option<serde_json::Value>> {
    let Some(path) = config.admin_socket() else {
        return Ok(None);
    };
    match xmppd_admin::socket::request(&path, &request).await {
        Ok(Ok(result)) => Ok(Some(result)),
        Ok(Err((_, message))) => anyhow::bail!("{message}"),
        Err(xmppd_admin::socket::SocketError::NotRunning(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Like [`via_daemon`], for verbs that only the running daemon can answer.
pub async fn daemon(
    config: &Config,
    request: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    match config.admin_socket() {
        None => anyhow::bail!(
            "the admin socket is turned off ([admin] socket = \"\"): this needs the running server"
        ),
        Some(path) => match via_daemon(config, request).await? {
            Some(result) => Ok(result),
            None => anyhow::bail!(
                "xmppd is not running (nothing listens on {}): this needs the running server",
                path.display()
            ),
        },
    }
}

/// Prints a verb's JSON result for people: sessions one per line, users one per line,
/// statistics as `key: value` lines, anything else as it came.
pub fn print_result(result: &serde_json::Value) {
    use serde_json::Value;
    if let Some(Value::Array(users)) = result.get("users") {
        for u in users {
            println!("{}", u.as_str().unwrap_or_default());
        }
    } else if let Some(Value::Array(sessions)) = result.get("sessions") {
        for s in sessions {
            let field = |k: &str| s.get(k).cloned().unwrap_or(Value::Null);
            let state = if field("available").as_bool() == Some(true) {
                format!("available (priority {})", field("priority"))
            } else {
                "not available".to_owned()
            };
            let transport = field("transport");
            let tls = if field("tls").as_bool() == Some(true) {
                "+tls"
            } else {
                ""
            };
            println!(
                "{}\t{state}\t{}{tls}\t{}",
                field("jid").as_str().unwrap_or_default(),
                transport.as_str().unwrap_or_default(),
                field("ip").as_str().unwrap_or("-"),
            );
        }
    } else if let Some(Value::Array(hosts)) = result.get("hosts") {
        for h in hosts {
            println!(
                "{}: {} users, {} online, {} sessions",
                h.get("host").and_then(Value::as_str).unwrap_or_default(),
                h.get("users").cloned().unwrap_or(Value::Null),
                h.get("online_users").cloned().unwrap_or(Value::Null),
                h.get("sessions").cloned().unwrap_or(Value::Null),
            );
        }
        for key in ["sessions", "uptime_secs", "s2s_in", "s2s_out"] {
            if let Some(v) = result.get(key) {
                println!("{key}: {v}");
            }
        }
    } else if let Value::Object(fields) = result {
        for (k, v) in fields {
            match v {
                Value::String(s) => println!("{k}: {s}"),
                other => println!("{k}: {other}"),
            }
        }
    }
}
