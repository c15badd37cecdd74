//! `xmppd invite create|list|revoke` as an admin runs them: what they print, what they refuse,
//! and that what one writes the next reads from the store.

use std::process::Output;

use crate::common;

use common::xmppd;

fn write_config(dir: &std::path::Path, invites: &str) -> std::io::Result<std::path::PathBuf> {
    let path = dir.join("xmppd.toml");
    let text = format!(
        "[general]\ndata_dir = \"data\"\n\n[[host]]\nname = \"localhost\"\n\n\
         [[listen]]\nkind = \"c2s\"\naddress = \"127.0.0.1\"\nport = 0\n\n[invites]\n{invites}"
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

fn try_run(config: &std::path::Path, args: &[&str]) -> std::io::Result<Output> {
    let mut command = xmppd();
    command.arg("--config").arg(config).arg("invite");
    command.args(args).output()
}

#[track_caller]
fn run(config: &std::path::Path, args: &[&str]) -> Output {
    match try_run(config, args) {
        Ok(out) => out,
        Err(e) => panic!("cannot run xmppd invite {args:?}: {e}"),
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn create_prints_the_uri_and_landing_page_and_list_and_revoke_see_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        "expiry = \"1h\"\nlanding_page_url = \"https://chat.example/i\"",
    )
    .unwrap();
    let out = run(&config, &["create"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("invitation for a new account on localhost, valid until "));
    let token = lines[1]
        .strip_prefix("xmpp:localhost?register;preauth=")
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(token.len(), 40);
    assert_eq!(lines[2], format!("https://chat.example/i/{token}"));

    let listed = stdout(&run(&config, &["list"]));
    assert!(listed.contains("a new account on localhost"), "{listed}");
    assert!(
        !listed.contains(token),
        "list shows ids, never tokens: {listed}"
    );

    let out = run(&config, &["revoke", token]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout(&run(&config, &["list"])), "");
    let out = run(&config, &["revoke", token]);
    assert!(!out.status.success(), "revoked once only");
}

#[test]
fn create_refuses_what_cannot_be_invited() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "").unwrap();
    for args in [
        &["create", "--contact", "nobody@localhost"][..],
        &["create", "--reset", "nobody"],
        &["create", "example.net"],
        &["create", "--expires", "0d"],
    ] {
        let out = run(&config, args);
        assert!(!out.status.success(), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no account") || err.contains("not a host") || err.contains("duration"),
            "{args:?}: {err}"
        );
    }
    // Without an HTTP listener or a configured URL there is no landing page to print.
    let out = run(&config, &["create", "localhost", "--expires", "30m"]);
    assert!(stdout(&out).contains("no landing page"), "{out:?}");
}

#[test]
fn a_named_account_invitation_reserves_its_name_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "").unwrap();
    let out = run(&config, &["create", "--username", "Juliet"]);
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.starts_with("invitation for the new account juliet@localhost, valid until "),
        "{text}"
    );
    assert!(
        text.contains("xmpp:juliet@localhost?register;preauth="),
        "§4.2: {text}"
    );
    for (name, refusal) in [
        ("juliet", "already reserves juliet@localhost"),
        ("jul@iet", "not a valid username"),
    ] {
        let out = run(&config, &["create", "--username", name]);
        assert!(!out.status.success(), "{name}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(refusal), "{name}: {err}");
    }
}

#[test]
fn a_bad_expiry_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "expiry = \"7w\"").unwrap();
    let out = run(&config, &["list"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("xmppd.toml") && err.contains("invites.expiry") && err.contains(":13"),
        "{err}"
    );
}
