//! The binary's admin verbs: without a daemon, account verbs work on storage and daemon
//! verbs say it is not running; with one, every verb goes over its admin socket (so a
//! deletion ends sessions there). Bad `[general] admins` and `[admin]` values name their
//! file, line and key.

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

use crate::common;

use common::xmppd;

fn write_config(dir: &std::path::Path, extra: &str) -> std::io::Result<std::path::PathBuf> {
    let path = dir.join("xmppd.toml");
    let text = format!(
        "[general]\ndata_dir = \"data\"\n{extra}\n[[host]]\nname = \"localhost\"\n\n\
         [[listen]]\nkind = \"c2s\"\naddress = \"127.0.0.1\"\nport = 0\n"
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

fn run(config: &std::path::Path, args: &[&str], input: &str) -> anyhow::Result<Output> {
    let mut child = xmppd()
        .arg("--config")
        .arg(config)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn without_a_daemon_accounts_work_on_storage_and_daemon_verbs_say_so() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path(), "")?;
    let out = run(&config, &["adduser", "alice@localhost"], "pw\n")?;
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&config, &["user", "list", "localhost"], "")?;
    assert_eq!(stdout(&out), "alice@localhost\n");
    let out = run(&config, &["registered_users", "localhost"], "")?;
    assert_eq!(stdout(&out), "alice@localhost\n");
    for verb in [
        &["sessions"][..],
        &["stats"],
        &["kick", "alice@localhost"],
        &["announce", "localhost", "hi"],
    ] {
        let out = run(&config, verb, "")?;
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("xmppd is not running"),
            "{verb:?}: {}",
            stderr(&out)
        );
    }
    Ok(())
}

#[test]
fn with_a_daemon_every_verb_goes_through_its_socket() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path(), "")?;
    let common::Serving { mut child, .. } =
        common::serve(&config).map_err(|e| anyhow::anyhow!(e))?;
    let result = (|| -> anyhow::Result<()> {
        let out = run(&config, &["register", "bob@localhost"], "pw\n")?;
        assert!(out.status.success(), "{}", stderr(&out));
        let out = run(&config, &["registered_users", "localhost"], "")?;
        assert_eq!(stdout(&out), "bob@localhost\n");
        let out = run(&config, &["change_password", "bob@localhost"], "pw2\n")?;
        assert!(out.status.success(), "{}", stderr(&out));
        let out = run(&config, &["connected_users"], "")?;
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), "");
        let out = run(&config, &["stats"], "")?;
        assert!(
            stdout(&out).contains("localhost: 1 users, 0 online, 0 sessions"),
            "{}",
            stdout(&out)
        );
        let out = run(&config, &["kick_session", "bob@localhost/phone"], "")?;
        assert!(
            stderr(&out).contains("has no session online"),
            "{}",
            stderr(&out)
        );
        let out = run(&config, &["announce", "localhost", "hello"], "")?;
        assert_eq!(stdout(&out), "sent to 0 sessions\n");
        let out = run(&config, &["deluser", "bob@localhost"], "")?;
        assert_eq!(stdout(&out), "deleted bob@localhost (0 sessions ended)\n");
        // The daemon's data changed: the account is gone there too.
        let out = run(&config, &["unregister", "bob@localhost"], "")?;
        assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
        Ok(())
    })();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let exit = child.wait()?;
    result?;
    assert!(exit.success(), "{exit:?}");
    assert!(!dir.path().join("data/xmppd.sock").exists());
    Ok(())
}

#[test]
fn bad_admins_and_tokens_name_file_line_and_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path(), "admins = [\"alice@localhost\", \"@@\"]\n")?;
    let out = run(&config, &["check"], "")?;
    let expected = format!("{}:3: `general.admins[1]`", config.display());
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    let config = write_config(dir.path(), "\n[admin]\napi_tokens = [\"short\"]\n")?;
    let out = run(&config, &["check"], "")?;
    let expected = format!("{}:5: `admin.api_tokens[0]`", config.display());
    assert!(stderr(&out).contains(&expected), "{}", stderr(&out));
    Ok(())
}
