//! The `xmppd` binary as an admin uses it.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common;

use common::xmppd;

fn write_config(dir: &std::path::Path, extra: &str) -> std::io::Result<std::path::PathBuf> {
    let path = dir.join("xmppd.toml");
    let text = format!(
        "[general]\ndata_dir = \"data\"\n\n[[host]]\nname = \"localhost\"\n\n\
         [[listen]]\nkind = \"c2s\"\naddress = \"127.0.0.1\"\nport = 0\n{extra}"
    );
    std::fs::write(&path, text)?;
    Ok(path)
}

#[test]
fn adduser_reads_the_password_from_stdin_and_refuses_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "").unwrap();
    let run = |verb: &str, jid: &str, input: &str| {
        let mut child = xmppd()
            .args(["--config", config.to_str().unwrap(), verb, jid])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = run("adduser", "alice@localhost", "s3cret\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "created alice@localhost"
    );

    let out = run("register", "alice@localhost", "other\n");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    let out = run("adduser", "bob@elsewhere.org", "pw\n");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("elsewhere.org is not a host of this server")
    );

    let out = run("passwd", "alice@localhost", "new\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run("deluser", "alice@localhost", "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run("deluser", "alice@localhost", "");
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
}

/// What `xmppd COMMAND` says on stderr when it refuses the configuration `extra` completes.
fn refused(
    dir: &std::path::Path,
    extra: &str,
    command: &str,
) -> anyhow::Result<(std::path::PathBuf, String)> {
    let config = write_config(dir, extra)?;
    let path = config.to_str().ok_or_else(|| anyhow::anyhow!("path"))?;
    let out = xmppd().args(["--config", path, command]).output()?;
    anyhow::ensure!(!out.status.success(), "the configuration was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    anyhow::ensure!(!stderr.contains("panicked"), "{stderr}");
    Ok((config, stderr))
}

#[test]
fn bad_configuration_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let (config, stderr) =
        refused(dir.path(), "\n[storage]\nbackend = \"mongodb\"\n", "check").unwrap();
    let expected = format!(
        "{}:13: `storage.backend`: unknown backend 'mongodb'",
        config.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");

    let (_, stderr) = refused(dir.path(), "\n[limits]\nmax_stanzas = 3\n", "serve").unwrap();
    assert!(
        stderr.contains("line 13") && stderr.contains("max_stanzas"),
        "{stderr}"
    );

    let http =
        "\n[[listen]]\nkind = \"https\"\nport = 0\n\n[http]\ntrusted_proxies = [\"10.0.0.0/40\"]\n";
    let (config, stderr) = refused(dir.path(), http, "check").unwrap();
    let expected = format!(
        "{}:17: `http.trusted_proxies[0]`: '10.0.0.0/40' is not an IP address or a range like 10.0.0.0/8",
        config.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
}

#[test]
fn check_reports_a_certificate_that_does_not_fit_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["other.example".to_owned()]).unwrap();
    std::fs::write(dir.path().join("c.pem"), generated.cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("k.pem"),
        generated.signing_key.serialize_pem(),
    )
    .unwrap();
    let path = dir.path().join("xmppd.toml");
    std::fs::write(
        &path,
        "[[host]]\nname = \"localhost\"\ncert = \"c.pem\"\nkey = \"k.pem\"\n",
    )
    .unwrap();
    let out = xmppd()
        .args(["--config", path.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("does not name localhost"), "{stdout}");
}

#[test]
fn sigterm_sends_system_shutdown_to_clients() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "").unwrap();
    let common::Serving {
        mut child,
        addr,
        log,
    } = common::serve(&config).unwrap();
    for line in &log {
        assert!(
            !line.contains('\u{1b}'),
            "escape codes in a log that is not a terminal: {line}"
        );
    }
    let mut socket = TcpStream::connect(&addr).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    socket
        .write_all(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
        .unwrap();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&received).contains("</stream:features>") {
        let n = socket.read(&mut buf).unwrap();
        assert!(n > 0, "closed before features");
        received.extend_from_slice(&buf[..n]);
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    received.clear();
    loop {
        match socket.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => received.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&received);
    assert!(
        text.contains("<system-shutdown xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>"),
        "{text}"
    );
    assert!(text.ends_with("</stream:stream>"), "{text}");
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}
