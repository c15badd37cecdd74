//! XEP-0478 Stream Limits Advertisement: the limits are announced in the stream features of
//! client and server streams, a stanza over them ends the stream with `policy-violation` and
//! `<stanza-too-big xmlns='urn:xmpp:errors'/>`, and a remote server's announced limit is
//! respected when sending to it.

use crate::common;

use common::federation::{A, Auth, B, chat_both_ways, next_matching, online, two_servers_adjusted};
use common::{CLIENT, add_users, password};
use xmppd_proto::stream_limits::StreamLimits;
use xmppd_testkit::{TestClient, TestServer, stanza_error_condition};
use xmppd_xml::{Element, StreamEvent};

const STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";

fn announced(client: &TestClient) -> StreamLimits {
    client
        .features
        .as_ref()
        .map(StreamLimits::from_features)
        .unwrap_or_default()
}

/// Reads until the stream error and returns it.
async fn stream_error(client: &mut TestClient) -> anyhow::Result<Element> {
    for _ in 0..100 {
        match client.next_event().await? {
            StreamEvent::Stanza(el) if el.is("error", xmppd_xml::STREAM_NS) => return Ok(el),
            _ => continue,
        }
    }
    anyhow::bail!("no stream error")
}

#[tokio::test]
async fn client_streams_announce_their_limits_and_enforce_them() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    // Before authentication: the pre-authentication limit, and no idle time (the whole
    // negotiation has a deadline instead). Not beside a required STARTTLS, which must be
    // offered alone.
    let mut client = TestClient::connect(server.starttls_addr()).await?;
    client.open_stream(server.domain()).await?;
    assert_eq!(announced(&client), StreamLimits::default());
    client
        .starttls(server.tls_client_config(), server.domain())
        .await?;
    assert_eq!(
        announced(&client),
        StreamLimits {
            max_bytes: Some(16 * 1024),
            idle_seconds: None,
        }
    );
    drop(client);
    // Once authenticated: the stanza limit and the keepalive's idle time.
    let mut alice = server.authenticated("alice", &password("alice")).await?;
    assert_eq!(
        announced(&alice),
        StreamLimits {
            max_bytes: Some(256 * 1024),
            idle_seconds: Some(120),
        }
    );
    alice.bind(Some("desk")).await?;
    // One byte over the limit ends the stream, saying why.
    let head = "<message to='alice@localhost'><body>";
    let tail = "</body></message>";
    let body = "x".repeat(256 * 1024 + 1 - head.len() - tail.len());
    alice.send(&format!("{head}{body}{tail}")).await?;
    let error = stream_error(&mut alice).await?;
    assert!(error.has_child("policy-violation", STREAMS), "{error}");
    assert!(
        error.has_child("stanza-too-big", "urn:xmpp:errors"),
        "{error}"
    );
    alice.expect_closed().await?;
    server.stop().await;
    Ok(())
}

/// b.test accepts stanzas of at most 20,000 bytes from other servers and says so; a.test
/// keeps a larger stanza for it off the link and bounces it to its sender with
/// `policy-violation` (no `by`), while smaller ones still pass.
#[tokio::test]
async fn a_remote_servers_limit_is_respected() -> anyhow::Result<()> {
    let (_pki, a, b) = two_servers_adjusted(Auth::Certificates, None, &[], &[], |c| {
        c.s2s.settings.max_stanza_bytes = 20_000;
    })
    .await?;
    let mut alice = online(&a, "alice").await?;
    let mut bob = online(&b, "bob").await?;
    chat_both_ways(&mut alice, &mut bob).await?;
    let big = "b".repeat(25_000);
    alice
        .send(&format!(
            "<message to='bob@{B}' type='chat' id='big'><body>{big}</body></message>"
        ))
        .await?;
    let bounce = next_matching(&mut alice, "the bounce of the large message", |e| {
        e.is("message", CLIENT) && e.attr("id") == Some("big")
    })
    .await?;
    assert_eq!(bounce.attr("type"), Some("error"));
    assert_eq!(bounce.attr("from"), Some(format!("bob@{B}").as_str()));
    assert_eq!(
        stanza_error_condition(&bounce).as_deref(),
        Some("policy-violation")
    );
    let error = bounce.child("error", CLIENT).map(|e| e.attr("by"));
    assert_eq!(error, Some(None), "no 'by': {bounce}");
    // The link is still up, and a stanza within the limit goes through.
    alice
        .send(&format!(
            "<message to='bob@{B}' type='chat' id='small'><body>small</body></message>"
        ))
        .await?;
    common::federation::expect_body(&mut bob, &format!("alice@{A}/res"), "small").await?;
    a.stop().await;
    b.stop().await;
    Ok(())
}
