//! The local admin socket the `xmppd` CLI talks to, against a real server: every verb over
//! its line-delimited JSON, deleting a user ends their session, and bad requests (not JSON,
//! unknown verbs or fields, a line over the limit) get an error answer, never a crash.
//! (`crates/server/tests/cli.rs` runs the binary's verbs against a running server.)

use crate::common;

use std::path::PathBuf;

use common::{CLIENT, add_users, online, password};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::UnixStream;
use xmppd_testkit::TestServer;

fn socket(server: &TestServer) -> anyhow::Result<PathBuf> {
    server
        .server
        .admin_socket
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no admin socket"))
}

async fn verb(
    server: &TestServer,
    request: Value,
) -> anyhow::Result<Result<Value, (String, String)>> {
    Ok(xmppd_admin::socket::request(&socket(server)?, &request).await?)
}

#[tokio::test]
async fn the_socket_is_private_and_every_verb_answers() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let path = socket(&server)?;
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path)?.permissions());
    assert_eq!(mode & 0o777, 0o600);

    let created = verb(
        &server,
        json!({"verb": "add_user", "jid": "carol@localhost", "password": "c"}),
    )
    .await?;
    assert_eq!(created, Ok(json!({"created": "carol@localhost"})));
    server.login("carol", "c", "r").await?;
    let users = verb(&server, json!({"verb": "list_users", "host": "localhost"})).await?;
    assert_eq!(
        users,
        Ok(json!({"users": ["alice@localhost", "bob@localhost", "carol@localhost"]}))
    );
    verb(
        &server,
        json!({"verb": "change_password", "jid": "carol@localhost", "password": "d"}),
    )
    .await?
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    server.login("carol", "d", "r").await?;

    let mut alice = online(&server, "alice", "desk", 0).await?;
    let sessions = verb(&server, json!({"verb": "sessions", "host": "localhost"})).await?;
    let sessions = sessions.map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert_eq!(sessions["sessions"][0]["jid"], "alice@localhost/desk");
    let stats = verb(&server, json!({"verb": "stats"}))
        .await?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert_eq!(stats["hosts"][0]["users"], 3);
    assert_eq!(stats["sessions"], 1);
    verb(
        &server,
        json!({"verb": "announce", "host": "localhost", "message": "hi"}),
    )
    .await?
    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let message = alice
        .expect("announcement", |e| e.is("message", CLIENT))
        .await?;
    assert_eq!(common::body(&message).as_deref(), Some("hi"));
    let kicked = verb(&server, json!({"verb": "kick", "jid": "alice@localhost"})).await?;
    assert_eq!(kicked, Ok(json!({"sessions_ended": 1})));
    assert_eq!(
        alice.expect_stream_error_skipping().await?,
        "policy-violation"
    );

    let mut bob = online(&server, "bob", "phone", 0).await?;
    let deleted = verb(
        &server,
        json!({"verb": "delete_user", "jid": "bob@localhost"}),
    )
    .await?;
    assert_eq!(
        deleted,
        Ok(json!({"deleted": "bob@localhost", "sessions_ended": 1}))
    );
    assert_eq!(bob.expect_stream_error_skipping().await?, "not-authorized");
    assert!(server.login("bob", &password("bob"), "r").await.is_err());
    Ok(())
}

#[tokio::test]
async fn refusals_name_their_class() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    let class = |r: Result<Value, (String, String)>| r.err().map(|(c, _)| c);
    let exists = verb(
        &server,
        json!({"verb": "add_user", "jid": "alice@localhost", "password": "x"}),
    )
    .await?;
    assert_eq!(class(exists).as_deref(), Some("conflict"));
    let missing = verb(
        &server,
        json!({"verb": "delete_user", "jid": "zed@localhost"}),
    )
    .await?;
    assert_eq!(class(missing).as_deref(), Some("not_found"));
    let foreign = verb(
        &server,
        json!({"verb": "list_users", "host": "elsewhere.example"}),
    )
    .await?;
    assert_eq!(class(foreign).as_deref(), Some("invalid"));
    let unknown = verb(&server, json!({"verb": "reboot"})).await?;
    assert_eq!(class(unknown).as_deref(), Some("invalid"));
    Ok(())
}

#[tokio::test]
async fn malformed_and_oversized_lines_get_errors_not_a_crash() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let stream = UnixStream::connect(socket(&server)?).await?;
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"this is not json\n").await?;
    let answer: Value = serde_json::from_str(&lines.next_line().await?.unwrap_or_default())?;
    assert_eq!(answer["ok"], false);
    assert_eq!(answer["error"], "invalid");
    // The same connection goes on.
    write.write_all(b"{\"verb\":\"stats\"}\n").await?;
    let answer: Value = serde_json::from_str(&lines.next_line().await?.unwrap_or_default())?;
    assert_eq!(answer["ok"], true);
    // A line over 64 KiB is refused and the connection closed.
    write.write_all(&vec![b'x'; 70 * 1024]).await?;
    write.write_all(b"\n").await?;
    let answer: Value = serde_json::from_str(&lines.next_line().await?.unwrap_or_default())?;
    assert_eq!(answer["ok"], false);
    assert_eq!(lines.next_line().await?, None);
    // The server still answers.
    let stats = verb(&server, json!({"verb": "stats"})).await?;
    assert!(stats.is_ok());
    Ok(())
}

#[tokio::test]
async fn a_second_server_on_the_same_data_refuses_to_start() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut config = server.config.clone();
    config.listen.clear();
    let second = xmppd::start(&config).await;
    let error = format!(
        "{:#}",
        second.err().ok_or_else(|| anyhow::anyhow!("it started"))?
    );
    assert!(error.contains("in use by a running xmppd"), "{error}");
    let path = socket(&server)?;
    server.stop().await;
    assert!(!path.exists(), "the socket is removed at shutdown");
    Ok(())
}

#[tokio::test]
async fn sessions_say_how_they_are_connected() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.http_listen = vec![xmppd::config::HttpListenConfig {
            kind: xmppd_http::HttpKind::Tls,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            read_rate: None,
        }];
    })
    .await?;
    add_users(&server, &["alice"]).await?;
    let addr = server
        .server
        .http_addr(xmppd_http::HttpKind::Tls)
        .ok_or_else(|| anyhow::anyhow!("no HTTPS listener"))?;
    let _web = common::ws::login(&server, addr, "alice", &password("alice"), "web").await?;
    let _tcp = server.login("alice", &password("alice"), "tcp").await?;
    let sessions = verb(&server, json!({"verb": "sessions"}))
        .await?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let list = &sessions["sessions"];
    assert_eq!(list[0]["jid"], "alice@localhost/tcp");
    assert_eq!(list[0]["transport"], "tcp");
    assert_eq!(list[1]["jid"], "alice@localhost/web");
    assert_eq!(list[1]["transport"], "websocket");
    for s in [&list[0], &list[1]] {
        assert_eq!(s["tls"], true);
        assert_eq!(s["ip"], "127.0.0.1");
        assert_eq!(s["available"], false);
    }
    Ok(())
}
