//! Stream-level errors (RFC 6120 §4.9) and the stream's lifecycle: limits, restricted XML
//! (§11.1), bad headers, forged addresses, the client's own close, keepalives and the
//! authentication deadline.

use crate::common;

use std::time::{Duration, Instant};

use common::{SILENCE, add_users, expect_message, online};
use xmppd_testkit::{TestClient, TestServer};
use xmppd_xml::StreamEvent;

const HEADER: &str = "<stream:stream xmlns='jabber:client' \
                      xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/// A client logged in as alice/phone with presence sent.
async fn alice(server: &TestServer) -> anyhow::Result<TestClient> {
    add_users(server, &["alice", "bob"]).await?;
    online(server, "alice", "phone", 0).await
}

/// Sends `xml` after login and expects the stream to end with `condition`.
async fn after_login_expect(xml: &str, condition: &str) -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = alice(&server).await?;
    client.send(xml).await?;
    assert_eq!(
        client.expect_stream_error().await?,
        condition,
        "after {xml}"
    );
    client.expect_closed().await?;
    server.stop().await;
    Ok(())
}

/// Sends raw bytes as the very first thing on a plain connection and expects `condition`.
async fn fresh_stream_expect(bytes: &str, condition: &str) -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = TestClient::connect(server.starttls_addr()).await?;
    client.send(bytes).await?;
    assert_eq!(
        client.expect_stream_error().await?,
        condition,
        "after {bytes}"
    );
    client.expect_closed().await?;
    server.stop().await;
    Ok(())
}

/// Writes a message of `total` bytes in `chunk`-sized writes, polling for the server's answer
/// between writes; returns how many bytes were written when the stream error arrived and
/// the condition. Write errors after the server cut the connection are expected.
async fn send_oversized(
    client: &mut TestClient,
    total: usize,
    chunk: usize,
) -> anyhow::Result<(usize, String)> {
    let open = "<message to='bob@localhost' type='chat'><body>";
    client.send(open).await?;
    let mut sent = open.len();
    let filler = vec![b'a'; chunk];
    while sent < total {
        if client.send_raw(&filler).await.is_err() {
            break;
        }
        sent += chunk;
        match client.next_event_within(Duration::from_millis(20)).await {
            Ok(None) => continue,
            Ok(Some(StreamEvent::Stanza(el))) if el.name() == "error" => {
                let condition = el
                    .children()
                    .find(|c| c.name() != "text")
                    .map(|c| c.name().to_owned())
                    .unwrap_or_default();
                return Ok((sent, condition));
            }
            Ok(Some(other)) => anyhow::bail!("unexpected {other:?}"),
            // The connection may already be gone; look for the error below.
            Err(_) => break,
        }
    }
    let condition = client.expect_stream_error().await?;
    Ok((sent, condition))
}

#[tokio::test]
async fn oversized_stanza_is_cut_off_with_policy_violation() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let limit = server.config.limits.max_stanza_bytes;
    assert_eq!(limit, 256 * 1024);
    let mut client = alice(&server).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;

    let total = 1024 * 1024;
    let (sent, condition) = send_oversized(&mut client, total, 16 * 1024).await?;
    assert_eq!(condition, "policy-violation");
    // The server stopped reading soon after the limit, long before the megabyte was sent:
    // it never buffers a stanza beyond the limit.
    assert!(
        sent < 2 * limit,
        "the server answered only after {sent} bytes (limit {limit})"
    );
    client.expect_closed().await?;
    bob.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn stanza_below_the_limit_is_delivered() -> anyhow::Result<()> {
    // The control for the test above: 200 KiB is fine after authentication.
    let server = TestServer::start().await?;
    let mut client = alice(&server).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    let text = "b".repeat(200 * 1024);
    client
        .send(&format!(
            "<message to='bob@localhost/desk' type='chat'><body>{text}</body></message>"
        ))
        .await?;
    expect_message(
        &mut bob,
        "alice@localhost/phone",
        "bob@localhost/desk",
        &text,
    )
    .await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_smaller_limit_applies_before_authentication() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    assert_eq!(
        server.config.limits.max_stanza_bytes_unauthenticated,
        16 * 1024
    );
    let mut client = TestClient::connect(server.starttls_addr()).await?;
    client.open_stream("localhost").await?;
    client
        .starttls(server.tls_client_config(), "localhost")
        .await?;
    // 20 KiB of SASL data: fine after login, too much before.
    let junk = "A".repeat(20 * 1024);
    client
        .send(&format!(
            "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{junk}</auth>"
        ))
        .await?;
    assert_eq!(client.expect_stream_error().await?, "policy-violation");
    client.expect_closed().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn doctype_is_restricted_xml() -> anyhow::Result<()> {
    fresh_stream_expect(
        &format!("<?xml version='1.0'?><!DOCTYPE stream [<!ENTITY x 'boom'>]>{HEADER}"),
        "restricted-xml",
    )
    .await
}

#[tokio::test]
async fn comment_is_restricted_xml() -> anyhow::Result<()> {
    after_login_expect("<!-- a comment -->", "restricted-xml").await
}

#[tokio::test]
async fn processing_instruction_is_restricted_xml() -> anyhow::Result<()> {
    after_login_expect("<?evil instruction?>", "restricted-xml").await
}

#[tokio::test]
async fn broken_xml_is_not_well_formed() -> anyhow::Result<()> {
    after_login_expect("<message><body>x</message>", "not-well-formed").await
}

#[tokio::test]
async fn wrong_stream_namespace_is_invalid_namespace() -> anyhow::Result<()> {
    fresh_stream_expect(
        "<stream:stream xmlns='jabber:client' xmlns:stream='urn:example:not-streams' \
         to='localhost' version='1.0'>",
        "invalid-namespace",
    )
    .await
}

#[tokio::test]
async fn server_namespace_on_the_client_port_is_invalid_namespace() -> anyhow::Result<()> {
    fresh_stream_expect(
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
         to='localhost' version='1.0'>",
        "invalid-namespace",
    )
    .await
}

#[tokio::test]
async fn unknown_host_is_host_unknown() -> anyhow::Result<()> {
    fresh_stream_expect(
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
         to='example.org' version='1.0'>",
        "host-unknown",
    )
    .await
}

#[tokio::test]
async fn forged_from_is_invalid_from_and_not_delivered() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = alice(&server).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    client
        .send("<message from='bob@localhost/desk' to='bob@localhost/desk'><body>it is me</body></message>")
        .await?;
    assert_eq!(client.expect_stream_error().await?, "invalid-from");
    bob.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn own_from_is_accepted() -> anyhow::Result<()> {
    // The control for the test above: naming oneself, bare or full, is allowed.
    let server = TestServer::start().await?;
    let mut client = alice(&server).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    client
        .send("<message from='alice@localhost' to='bob@localhost/desk'><body>bare</body></message>")
        .await?;
    expect_message(
        &mut bob,
        "alice@localhost/phone",
        "bob@localhost/desk",
        "bare",
    )
    .await?;
    client
        .send("<message from='alice@localhost/phone' to='bob@localhost/desk'><body>full</body></message>")
        .await?;
    expect_message(
        &mut bob,
        "alice@localhost/phone",
        "bob@localhost/desk",
        "full",
    )
    .await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn unknown_top_level_element_is_unsupported_stanza_type() -> anyhow::Result<()> {
    after_login_expect(
        "<gadget xmlns='urn:example:gadgets'/>",
        "unsupported-stanza-type",
    )
    .await
}

#[tokio::test]
async fn client_close_is_answered_with_close_and_the_socket_ends() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = alice(&server).await?;
    client.send("</stream:stream>").await?;
    match client.next_event().await? {
        StreamEvent::Close => {}
        other => anyhow::bail!("expected </stream:stream>, got {other:?}"),
    }
    client.expect_closed().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn whitespace_keepalives_are_accepted() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = alice(&server).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    for n in 0..3 {
        client.send(" ").await?;
        client.send("\n\t ").await?;
        client
            .send(&format!(
                "<message to='bob@localhost/desk' type='chat'><body>{n}</body></message>"
            ))
            .await?;
        expect_message(
            &mut bob,
            "alice@localhost/phone",
            "bob@localhost/desk",
            &n.to_string(),
        )
        .await?;
    }
    client.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn idle_unauthenticated_connection_gets_connection_timeout() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| c.limits.auth_timeout = Duration::from_secs(1)).await?;
    let started = Instant::now();
    let mut client = TestClient::connect(server.starttls_addr()).await?;
    client.open_stream("localhost").await?;
    assert_eq!(client.expect_stream_error().await?, "connection-timeout");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "timed out after {waited:?}"
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn authenticated_connection_is_not_timed_out() -> anyhow::Result<()> {
    // The control for the test above: the deadline is for TLS, SASL and bind only.
    let server = TestServer::start_with(|c| c.limits.auth_timeout = Duration::from_secs(1)).await?;
    let mut client = alice(&server).await?;
    client.expect_silence(Duration::from_millis(1500)).await?;
    client
        .send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    client
        .expect("pong", |e| {
            e.attr("id") == Some("p") && e.attr("type") == Some("result")
        })
        .await?;
    server.stop().await;
    Ok(())
}

/// An unknown element with a 12 KB name before authentication: the stream error quotes at
/// most a short prefix of it, so a peer cannot make the server echo (or log) its bytes at
/// full size.
#[tokio::test]
async fn an_error_never_echoes_more_than_a_short_prefix() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = TestClient::connect(server.starttls_addr()).await?;
    client.open_stream("localhost").await?;
    let name = format!("x{}", "y".repeat(12_000));
    client
        .send(&format!("<{name} xmlns='jabber:client'/>"))
        .await?;
    let mut text = None;
    for _ in 0..10 {
        match client.next_event().await? {
            xmppd_xml::StreamEvent::Stanza(el) if el.is("error", xmppd_xml::STREAM_NS) => {
                text = Some(
                    el.child("text", "urn:ietf:params:xml:ns:xmpp-streams")
                        .map(|t| t.text())
                        .unwrap_or_default(),
                );
                break;
            }
            _ => continue,
        }
    }
    let text = text.expect("a stream error");
    assert!(text.len() <= 256, "the error text is {} bytes", text.len());
    server.stop().await;
    Ok(())
}
