//! XMPP over WebSocket (RFC 7395) end to end, over wss with tokio-tungstenite as the client:
//! login with SCRAM (and SCRAM-PLUS bound to the wss connection), messages both ways with a
//! TCP client, stream management resumed on a new WebSocket, and the refusals: a frame over
//! the limit (1009), a flood of continuation frames (1008), no `xmpp` subprotocol (400),
//! malformed and restricted XML (stream error, `<close/>`, close frame), a binary frame
//! (1003) and a host that has WebSocket turned off.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::ws::{
    self, FRAMING, Received, SASL, STREAM, Wss, expect, expect_stream_error, open, raw_frame, recv,
    recv_el, send,
};
use common::{CLIENT, add_users, body, expect_message, online, password};
use futures::SinkExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use xmppd::config::{HostConfig, HttpListenConfig};
use xmppd_http::HttpKind;
use xmppd_testkit::TestServer;

const SM: &str = "urn:xmpp:sm:3";

/// A server with an HTTPS listener beside its TCP ones, and alice and bob.
async fn server(
    adjust: impl FnOnce(&mut xmppd::Config),
) -> anyhow::Result<(TestServer, SocketAddr)> {
    let server = TestServer::start_with(|c| {
        c.http_listen = vec![HttpListenConfig {
            kind: HttpKind::Tls,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            read_rate: None,
        }];
        adjust(c);
    })
    .await?;
    add_users(&server, &["alice", "bob"]).await?;
    let addr = server
        .server
        .http_addr(HttpKind::Tls)
        .ok_or_else(|| anyhow::anyhow!("no HTTPS listener"))?;
    Ok((server, addr))
}

/// Adds a plain HTTP listener.
fn with_plain_http(c: &mut xmppd::Config) {
    c.http_listen.push(HttpListenConfig {
        kind: HttpKind::Plain,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        read_rate: None,
    });
}

/// The SASL mechanisms of a features element.
fn mechanisms(features: &xmppd_xml::Element) -> Vec<String> {
    features
        .child("mechanisms", SASL)
        .map(|m| m.children().map(|c| c.text()).collect())
        .unwrap_or_default()
}

async fn login(
    server: &TestServer,
    addr: SocketAddr,
    user: &str,
    resource: &str,
) -> anyhow::Result<Wss> {
    Ok(ws::login(server, addr, user, &password(user), resource)
        .await?
        .0)
}

#[tokio::test]
async fn login_over_wss_and_exchange_messages_with_a_tcp_client() -> anyhow::Result<()> {
    let (server, addr) = server(|_| {}).await?;
    let mut ws = ws::connect(&server, addr).await?;
    let (open_el, features) = open(&mut ws, "localhost").await?;
    // RFC 7395 "Stream Initiation": the server's <open/> names itself and the stream.
    assert_eq!(open_el.attr("from"), Some("localhost"));
    assert_eq!(open_el.attr("version"), Some("1.0"));
    assert!(open_el.attr("id").is_some_and(|id| !id.is_empty()));
    // No STARTTLS over WebSocket; PLAIN and channel binding because this is wss.
    assert!(!features.has_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls"));
    let offered = mechanisms(&features);
    assert!(
        offered.iter().any(|m| m == "SCRAM-SHA-256-PLUS"),
        "{offered:?}"
    );
    assert!(offered.iter().any(|m| m == "PLAIN"), "{offered:?}");
    ws::authenticate(&mut ws, "SCRAM-SHA-256", "alice", &password("alice")).await?;
    let (_, bound_features) = open(&mut ws, "localhost").await?;
    assert!(bound_features.has_child("bind", "urn:ietf:params:xml:ns:xmpp-bind"));
    assert!(bound_features.has_child("sm", SM));
    ws::bind(&mut ws, "web").await?;
    send(&mut ws, "<presence xmlns='jabber:client'/>").await?;
    expect(&mut ws, "own presence", |e| e.is("presence", CLIENT)).await?;

    let mut bob = online(&server, "bob", "tcp", 0).await?;
    send(
        &mut ws,
        "<message xmlns='jabber:client' to='bob@localhost/tcp' type='chat' id='m1'><body>hello from the web</body></message>",
    )
    .await?;
    expect_message(
        &mut bob,
        "alice@localhost/web",
        "bob@localhost/tcp",
        "hello from the web",
    )
    .await?;
    // A message without xmlns is jabber:client too (the stream's content namespace).
    send(
        &mut ws,
        "<message to='bob@localhost/tcp'><body>no xmlns</body></message>",
    )
    .await?;
    expect_message(
        &mut bob,
        "alice@localhost/web",
        "bob@localhost/tcp",
        "no xmlns",
    )
    .await?;

    bob.send(
        "<message to='alice@localhost/web' type='chat'><body>hello &lt;web&gt;</body></message>",
    )
    .await?;
    let got = expect(&mut ws, "bob's message", |e| e.is("message", CLIENT)).await?;
    assert_eq!(got.attr("from"), Some("bob@localhost/tcp"));
    assert_eq!(body(&got).as_deref(), Some("hello <web>"));

    // RFC 7395 "Closing the Connection": <close/> is answered with <close/> and a close frame.
    send(&mut ws, &format!("<close xmlns='{FRAMING}'/>")).await?;
    let close = recv_el(&mut ws).await?;
    assert!(close.is("close", FRAMING), "{close}");
    assert!(matches!(recv(&mut ws).await?, Received::Closed(Some(1000))));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn scram_plus_binds_to_the_wss_connection() -> anyhow::Result<()> {
    let (server, addr) = server(|_| {}).await?;
    let mut ws = ws::connect(&server, addr).await?;
    open(&mut ws, "localhost").await?;
    ws::authenticate(&mut ws, "SCRAM-SHA-256-PLUS", "alice", &password("alice")).await?;
    open(&mut ws, "localhost").await?;
    ws::bind(&mut ws, "plus").await?;
    server.stop().await;
    Ok(())
}

/// Enables resumable stream management; returns the SM id.
async fn enable_sm(ws: &mut Wss) -> anyhow::Result<String> {
    send(ws, &format!("<enable xmlns='{SM}' resume='true'/>")).await?;
    let enabled = expect(ws, "<enabled/>", |e| e.is("enabled", SM)).await?;
    enabled
        .attr("id")
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no id in {enabled}"))
}

#[tokio::test]
async fn stream_management_resumes_on_a_new_websocket() -> anyhow::Result<()> {
    let (server, addr) = server(|_| {}).await?;
    let mut ws = login(&server, addr, "alice", "web").await?;
    let id = enable_sm(&mut ws).await?;
    let mut bob = online(&server, "bob", "tcp", 0).await?;
    bob.send("<message to='alice@localhost/web'><body>one</body></message>")
        .await?;
    expect(&mut ws, "the first message", |e| {
        body(e).as_deref() == Some("one")
    })
    .await?;
    // The link dies without <close/>: the session waits to be resumed.
    drop(ws);
    tokio::time::sleep(Duration::from_millis(200)).await;
    bob.send("<message to='alice@localhost/web'><body>two</body></message>")
        .await?;

    let mut ws = ws::connect(&server, addr).await?;
    open(&mut ws, "localhost").await?;
    ws::authenticate(&mut ws, "SCRAM-SHA-256", "alice", &password("alice")).await?;
    open(&mut ws, "localhost").await?;
    // Nothing was acknowledged: both messages come again after <resumed/>.
    send(
        &mut ws,
        &format!("<resume xmlns='{SM}' previd='{id}' h='0'/>"),
    )
    .await?;
    let resumed = expect(&mut ws, "<resumed/>", |e| e.is("resumed", SM)).await?;
    assert_eq!(resumed.attr("previd"), Some(id.as_str()));
    expect(&mut ws, "the first message again", |e| {
        body(e).as_deref() == Some("one")
    })
    .await?;
    expect(&mut ws, "the second message", |e| {
        body(e).as_deref() == Some("two")
    })
    .await?;
    // The resumed session counts: <r/> gets <a h/> for the stanzas the server handled.
    send(&mut ws, &format!("<r xmlns='{SM}'/>")).await?;
    let ack = expect(&mut ws, "<a/>", |e| e.is("a", SM)).await?;
    assert!(ack.attr("h").is_some());
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_frame_over_the_limit_is_closed_with_1009() -> anyhow::Result<()> {
    let (server, addr) = server(|c| c.limits.max_stanza_bytes = 20_000).await?;
    let mut ws = login(&server, addr, "alice", "big").await?;
    // A frame that announces 30,000 bytes: refused from its header, before its payload.
    let frame = raw_frame(true, 0x1, b"<message>", Some(30_000));
    ws.get_mut().write_all(&frame).await?;
    ws.get_mut().flush().await?;
    assert!(matches!(recv(&mut ws).await?, Received::Closed(Some(1009))));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn ten_thousand_one_byte_continuation_frames_are_refused() -> anyhow::Result<()> {
    let (server, addr) = server(|_| {}).await?;
    let ws = login(&server, addr, "alice", "flood").await?;
    let mut flood = raw_frame(false, 0x1, b"<", None);
    for _ in 0..10_000 {
        flood.extend(raw_frame(false, 0x0, b"a", None));
    }
    // Written while the answer is read: the server refuses after its cap and stops reading.
    let (mut read, mut write) = tokio::io::split(ws.into_inner());
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&flood).await;
        let _ = write.flush().await;
    });
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        use tokio::io::AsyncReadExt as _;
        let mut buf = [0u8; 4096];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the server must end the connection");
    // The close frame with 1008 (policy violation): 0x88, length 2, code.
    assert!(
        seen.windows(4).any(|w| w == [0x88, 0x02, 0x03, 0xF0]),
        "no close frame with 1008 in {seen:x?}"
    );
    let _ = writer.await;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn without_the_xmpp_subprotocol_the_upgrade_is_refused() -> anyhow::Result<()> {
    let (server, addr) = server(|_| {}).await?;
    let url = format!("wss://localhost:{}/xmpp-websocket", addr.port());
    for protocol in [None, Some("chat")] {
        let io = ws::tls(&server, addr, "localhost").await?;
        match ws::handshake(io, &url, protocol).await {
            Err(WsError::Http(response)) => assert_eq!(response.status().as_u16(), 400),
            other => panic!(
                "expected a refusal for {protocol:?}, got {:?}",
                other.map(|_| ())
            ),
        }
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn malformed_xml_is_a_stream_error_then_close() -> anyhow::Result<()> {
    let (server, addr) = server(|_| {}).await?;
    let cases = [
        ("<message><body>half", "not-well-formed"),
        ("<message><!-- no --></message>", "restricted-xml"),
        ("<message xmlns='jabber:client'></mess>", "not-well-formed"),
    ];
    for (text, condition) in cases {
        let mut ws = login(&server, addr, "alice", "bad").await?;
        send(&mut ws, text).await?;
        assert_eq!(expect_stream_error(&mut ws).await?, condition, "{text}");
    }
    // Before <open/>, the error still comes after an <open/> of ours.
    let mut ws = ws::connect(&server, addr).await?;
    send(
        &mut ws,
        "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'",
    )
    .await?;
    let first = recv_el(&mut ws).await?;
    assert!(first.is("open", FRAMING), "{first}");
    assert_eq!(expect_stream_error(&mut ws).await?, "not-well-formed");
    // A binary frame: RFC 7395 carries XMPP in text frames.
    let mut ws = ws::connect(&server, addr).await?;
    ws.send(Message::binary(b"<open/>".to_vec())).await?;
    assert!(matches!(recv(&mut ws).await?, Received::Closed(Some(1003))));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_host_without_websocket_is_unknown_there() -> anyhow::Result<()> {
    let (server, addr) = server(|c| {
        c.hosts.push(HostConfig {
            name: "example.net".into(),
            tls: None,
            modules: None,
        });
        ws::without_websocket(c, "example.net");
    })
    .await?;
    let mut ws = ws::connect(&server, addr).await?;
    send(
        &mut ws,
        "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.net' version='1.0'/>",
    )
    .await?;
    assert_eq!(expect_stream_error(&mut ws).await?, "host-unknown");
    // The other host still serves WebSocket on the same listener.
    let mut ws = ws::connect(&server, addr).await?;
    let (open_el, _) = open(&mut ws, "localhost").await?;
    assert_eq!(open_el.attr("from"), Some("localhost"));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn handshakes_that_are_not_xmpp_websockets_are_refused() -> anyhow::Result<()> {
    let (server, _) = server(|c| {
        with_plain_http(c);
    })
    .await?;
    let plain = server
        .server
        .http_addr(HttpKind::Plain)
        .ok_or_else(|| anyhow::anyhow!("no HTTP listener"))?;
    let upgrade = |version: &'static str, key: &'static str| {
        vec![
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Version", version),
            ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Protocol", "xmpp"),
        ]
    };
    let good_key = "dGhlIHNhbXBsZSBub25jZQ==";
    let cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
        // A plain GET of the endpoint.
        (Vec::new(), 400),
        // RFC 6455 §4.4: another version gets 426 and the one we speak.
        (upgrade("8", good_key), 426),
        // A key that is not 16 bytes in base64.
        (upgrade("13", "short"), 400),
        // Plain HTTP from a client, while TLS is required.
        (upgrade("13", good_key), 403),
    ];
    for (headers, expected) in cases {
        let io = tokio::net::TcpStream::connect(plain).await?;
        let (status, response_headers, _) =
            ws::http_request(io, "GET", "localhost", "/xmpp-websocket", &headers).await?;
        assert_eq!(status, expected, "{headers:?}");
        if expected == 426 {
            assert_eq!(
                ws::header(&response_headers, "sec-websocket-version"),
                Some("13")
            );
        }
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn behind_a_trusted_tls_proxy_plain_http_carries_the_websocket() -> anyhow::Result<()> {
    let proxy = "127.0.0.1".parse()?;
    let (server, _) = server(|c| {
        with_plain_http(c);
        c.http.trusted_proxies = xmppd_http::proxy::TrustedProxies(vec![proxy]);
    })
    .await?;
    let plain = server
        .server
        .http_addr(HttpKind::Plain)
        .ok_or_else(|| anyhow::anyhow!("no HTTP listener"))?;
    let io = tokio::net::TcpStream::connect(plain).await?;
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "ws://localhost:{}/xmpp-websocket",
            plain.port()
        ))?;
    for (k, v) in [
        ("Sec-WebSocket-Protocol", "xmpp"),
        ("X-Forwarded-For", "203.0.113.9"),
        ("X-Forwarded-Proto", "https"),
    ] {
        request.headers_mut().insert(k, v.parse()?);
    }
    let (mut ws, response) = tokio_tungstenite::client_async(request, io).await?;
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.as_bytes()),
        Some(&b"xmpp"[..])
    );
    ws.send(Message::text(format!(
        "<open xmlns='{FRAMING}' to='localhost' version='1.0'/>"
    )))
    .await?;
    use futures::StreamExt as _;
    let mut texts = Vec::new();
    while texts.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await? {
            Some(Ok(Message::Text(t))) => texts.push(t.to_string()),
            other => anyhow::bail!("unexpected {other:?}"),
        }
    }
    let features = ws::parse_message(&texts[1])?;
    // TLS is the proxy's: PLAIN is offered, channel binding (to our TLS) is not.
    let offered = mechanisms(&features);
    assert!(offered.iter().any(|m| m == "PLAIN"), "{offered:?}");
    assert!(!offered.iter().any(|m| m.ends_with("-PLUS")), "{offered:?}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_websocket_keeps_its_place_in_the_listeners_connection_limit() -> anyhow::Result<()> {
    let (server, addr) = server(|c| c.http.max_connections = 1).await?;
    let mut ws = login(&server, addr, "alice", "only").await?;
    // The upgrade ended the HTTP exchange, not the connection: a second one waits.
    let io = ws::tls(&server, addr, "localhost");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), io)
            .await
            .is_err(),
        "a second connection must wait while the WebSocket runs"
    );
    send(&mut ws, &format!("<close xmlns='{FRAMING}'/>")).await?;
    recv_el(&mut ws).await?;
    drop(ws);
    let io =
        tokio::time::timeout(Duration::from_secs(5), ws::tls(&server, addr, "localhost")).await??;
    let (status, _, _) =
        ws::http_request(io, "GET", "localhost", "/.well-known/host-meta", &[]).await?;
    assert_eq!(status, 200);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_shutdown_is_a_system_shutdown_then_going_away() -> anyhow::Result<()> {
    let (server, addr) = server(|_| {}).await?;
    let mut ws = login(&server, addr, "alice", "down").await?;
    let stopping = tokio::spawn(server.stop());
    let error = expect(&mut ws, "a stream error", |e| e.is("error", STREAM)).await?;
    assert!(error.has_child("system-shutdown", ws::STREAMS), "{error}");
    assert!(recv_el(&mut ws).await?.is("close", FRAMING));
    assert!(matches!(recv(&mut ws).await?, Received::Closed(Some(1001))));
    drop(ws);
    stopping.await?;
    Ok(())
}
