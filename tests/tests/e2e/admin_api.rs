//! The HTTP admin API end to end (`POST /admin/api/v1/VERB`, JSON, bearer tokens): every
//! verb, 401 without a token and with a wrong one, 422 for a body that is not the verb's
//! JSON or names a bad JID, 404 for an unknown account and an unknown verb, 409 for an
//! account that exists, and off (404) when no token is configured.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{CLIENT, add_users, online, password};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use xmppd::config::HttpListenConfig;
use xmppd_http::HttpKind;
use xmppd_testkit::TestServer;

const TOKEN: &str = "0123456789abcdef0123456789abcdef-admin";

async fn server(tokens: &[&str]) -> anyhow::Result<TestServer> {
    let tokens: Vec<String> = tokens.iter().map(|t| (*t).to_owned()).collect();
    let server = TestServer::start_with(move |c| {
        c.http_listen = vec![HttpListenConfig {
            kind: HttpKind::Plain,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            read_rate: None,
        }];
        c.admin.api_tokens = tokens;
    })
    .await?;
    add_users(&server, &["alice", "bob"]).await?;
    Ok(server)
}

/// POSTs `body` to the verb with `token`; the status and the JSON answer.
async fn call(
    server: &TestServer,
    method: &str,
    verb: &str,
    token: Option<&str>,
    body: &str,
) -> anyhow::Result<(u16, Value)> {
    let addr = server
        .server
        .http_addr(HttpKind::Plain)
        .ok_or_else(|| anyhow::anyhow!("no HTTP listener"))?;
    let mut io = TcpStream::connect(addr).await?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let request = format!(
        "{method} /admin/api/v1/{verb} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         {auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    io.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), io.read_to_end(&mut response)).await??;
    let (status, _, body) = common::ws::parse_response(&response)?;
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok((status, json))
}

async fn post(server: &TestServer, verb: &str, body: Value) -> anyhow::Result<(u16, Value)> {
    call(server, "POST", verb, Some(TOKEN), &body.to_string()).await
}

#[tokio::test]
async fn without_the_right_token_nothing_is_done() -> anyhow::Result<()> {
    let server = server(&[TOKEN]).await?;
    let body = json!({"jid": "alice@localhost"}).to_string();
    assert_eq!(
        call(&server, "POST", "delete_user", None, &body).await?.0,
        401
    );
    let wrong = "0123456789abcdef0123456789abcdef-wrong";
    assert_eq!(
        call(&server, "POST", "delete_user", Some(wrong), &body)
            .await?
            .0,
        401
    );
    // A prefix of the token is not the token.
    assert_eq!(
        call(&server, "POST", "delete_user", Some(&TOKEN[..32]), &body)
            .await?
            .0,
        401
    );
    server.login("alice", &password("alice"), "r").await?;
    Ok(())
}

#[tokio::test]
async fn the_api_is_off_without_tokens() -> anyhow::Result<()> {
    let server = server(&[]).await?;
    assert_eq!(
        call(&server, "POST", "stats", Some(TOKEN), "{}").await?.0,
        404
    );
    Ok(())
}

#[tokio::test]
async fn bad_input_is_422_and_unknown_things_404() -> anyhow::Result<()> {
    let server = server(&[TOKEN]).await?;
    let cases = [
        ("add_user", "{not json"),
        ("add_user", "[1, 2]"),
        ("add_user", r#"{"jid": "carol@localhost"}"#),
        (
            "add_user",
            r#"{"jid": "carol@localhost", "password": "x", "admin": true}"#,
        ),
        ("add_user", r#"{"jid": "@@", "password": "x"}"#),
        (
            "add_user",
            r#"{"jid": "carol@elsewhere.example", "password": "x"}"#,
        ),
        ("add_user", r#"{"jid": "carol@localhost", "password": ""}"#),
        ("kick", r#"{"jid": "localhost"}"#),
    ];
    for (verb, body) in cases {
        let (status, answer) = call(&server, "POST", verb, Some(TOKEN), body).await?;
        assert_eq!(status, 422, "{verb} {body}: {answer}");
        assert_eq!(answer["error"], "invalid");
    }
    assert_eq!(
        post(&server, "delete_user", json!({"jid": "nobody@localhost"}))
            .await?
            .0,
        404
    );
    assert_eq!(
        post(&server, "kick", json!({"jid": "bob@localhost"}))
            .await?
            .0,
        404
    );
    assert_eq!(post(&server, "reboot", json!({})).await?.0, 404);
    assert_eq!(call(&server, "GET", "stats", Some(TOKEN), "").await?.0, 405);
    let (status, _) = post(
        &server,
        "add_user",
        json!({"jid": "alice@localhost", "password": "x"}),
    )
    .await?;
    assert_eq!(status, 409);
    Ok(())
}

#[tokio::test]
async fn every_verb_does_what_it_says() -> anyhow::Result<()> {
    let server = server(&[TOKEN]).await?;
    let (status, answer) = post(
        &server,
        "add_user",
        json!({"jid": "carol@localhost", "password": "c-1"}),
    )
    .await?;
    assert_eq!(
        (status, &answer["created"]),
        (201, &json!("carol@localhost"))
    );
    server.login("carol", "c-1", "r").await?;
    let (status, answer) = post(&server, "list_users", json!({"host": "localhost"})).await?;
    assert_eq!(status, 200);
    assert_eq!(
        answer["users"],
        json!(["alice@localhost", "bob@localhost", "carol@localhost"])
    );
    let (status, _) = post(
        &server,
        "change_password",
        json!({"jid": "carol@localhost", "password": "c-2"}),
    )
    .await?;
    assert_eq!(status, 200);
    server.login("carol", "c-2", "r").await?;

    let mut alice = online(&server, "alice", "desk", 3).await?;
    let (status, answer) = post(&server, "sessions", json!({})).await?;
    assert_eq!(status, 200);
    assert_eq!(answer["sessions"][0]["jid"], "alice@localhost/desk");
    assert_eq!(answer["sessions"][0]["priority"], 3);
    assert_eq!(answer["sessions"][0]["ip"], "127.0.0.1");
    assert_eq!(answer["sessions"][0]["transport"], "tcp");
    assert_eq!(answer["sessions"][0]["tls"], true);
    assert!(
        answer["sessions"][0]["since"]
            .as_u64()
            .is_some_and(|t| t > 1_700_000_000)
    );
    let (_, stats) = post(&server, "stats", json!({})).await?;
    assert_eq!(stats["hosts"][0]["users"], 3);
    assert_eq!(stats["hosts"][0]["online_users"], 1);
    assert_eq!(stats["sessions"], 1);

    let (status, answer) = post(
        &server,
        "announce",
        json!({"host": "localhost", "message": "hello all"}),
    )
    .await?;
    assert_eq!((status, &answer["sessions"]), (200, &json!(1)));
    let message = alice
        .expect("announcement", |e| e.is("message", CLIENT))
        .await?;
    assert_eq!(common::body(&message).as_deref(), Some("hello all"));

    let (status, answer) = post(
        &server,
        "kick",
        json!({"jid": "alice@localhost/desk", "reason": "testing"}),
    )
    .await?;
    assert_eq!((status, &answer["sessions_ended"]), (200, &json!(1)));
    assert_eq!(
        alice.expect_stream_error_skipping().await?,
        "policy-violation"
    );

    let mut bob = online(&server, "bob", "phone", 0).await?;
    let (status, answer) = post(&server, "delete_user", json!({"jid": "bob@localhost"})).await?;
    assert_eq!((status, &answer["sessions_ended"]), (200, &json!(1)));
    assert_eq!(bob.expect_stream_error_skipping().await?, "not-authorized");
    assert!(server.login("bob", &password("bob"), "r").await.is_err());
    Ok(())
}
