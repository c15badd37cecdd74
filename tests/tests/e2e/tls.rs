//! Before TLS (RFC 6120 §5): what is offered, what is refused, and STARTTLS command
//! injection (bytes pipelined behind `<starttls/>` must never be read as if they had come
//! through TLS).

use crate::common;

use common::{SILENCE, add_users, online};
use xmppd_testkit::{TestClient, TestServer};
use xmppd_xml::{Element, StreamEvent};

const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

fn names(features: &Element) -> Vec<String> {
    features
        .children()
        .map(|c| format!("{{{}}}{}", c.ns(), c.name()))
        .collect()
}

#[tokio::test]
async fn with_required_tls_the_only_pre_tls_feature_is_required_starttls() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = TestClient::connect(server.starttls_addr()).await?;
    let features = client.open_stream("localhost").await?;
    assert_eq!(names(&features), [format!("{{{TLS}}}starttls")]);
    let starttls = features.child("starttls", TLS).map(names);
    assert_eq!(starttls, Some(vec![format!("{{{TLS}}}required")]));
    assert!(client.mechanisms().is_empty());
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn auth_before_required_starttls_ends_the_stream_with_policy_violation() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    let mut client = TestClient::connect(server.starttls_addr()).await?;
    client.open_stream("localhost").await?;
    client
        .send(&format!(
            "<auth xmlns='{SASL}' mechanism='PLAIN'>AGFsaWNlAHB3</auth>"
        ))
        .await?;
    assert_eq!(client.expect_stream_error().await?, "policy-violation");
    client.expect_closed().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn message_before_required_starttls_is_not_authorized_and_not_delivered() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    add_users(&server, &["bob"]).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    let mut intruder = TestClient::connect(server.starttls_addr()).await?;
    intruder.open_stream("localhost").await?;
    intruder
        .send("<message to='bob@localhost/desk'><body>plaintext</body></message>")
        .await?;
    assert_eq!(intruder.expect_stream_error().await?, "not-authorized");
    bob.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn without_required_tls_plain_and_plus_are_not_offered_in_the_clear() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| c.require_tls = false).await?;
    server.add_user("alice", "correct horse").await?;
    let mut client = TestClient::connect(server.starttls_addr()).await?;
    let features = client.open_stream("localhost").await?;
    // STARTTLS is offered but not required; SCRAM is offered; PLAIN and -PLUS are not.
    let starttls = features.child("starttls", TLS);
    assert_eq!(starttls.map(|s| s.children().count()), Some(0));
    assert_eq!(client.mechanisms(), ["SCRAM-SHA-256", "SCRAM-SHA-1"]);
    assert!(!features.has_child("sasl-channel-binding", "urn:xmpp:sasl-cb:0"));

    // PLAIN in the clear is refused with a SASL failure, and the stream goes on.
    client
        .send(&format!(
            "<auth xmlns='{SASL}' mechanism='PLAIN'>AGFsaWNlAGNvcnJlY3QgaG9yc2U=</auth>"
        ))
        .await?;
    let failure = client
        .expect("a SASL failure", |e| e.is("failure", SASL))
        .await?;
    assert!(
        failure.has_child("invalid-mechanism", SASL)
            || failure.has_child("encryption-required", SASL),
        "got {failure}"
    );

    // SCRAM still works on the same stream.
    client
        .authenticate("SCRAM-SHA-256", "alice", "correct horse")
        .await?;
    let jid = client.bind(Some("clear")).await?;
    assert_eq!(jid.as_str(), "alice@localhost/clear");
    client.close().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn starttls_upgrades_and_the_new_stream_offers_sasl() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let mut client = TestClient::connect(server.starttls_addr()).await?;
    client.open_stream("localhost").await?;
    client.send(&format!("<starttls xmlns='{TLS}'/>")).await?;
    client
        .expect("<proceed/>", |e| e.is("proceed", TLS))
        .await?;
    // The handshake and the restarted stream (testkit's starttls minus the request above).
    client
        .upgrade(server.tls_client_config(), "localhost")
        .await?;
    let features = client.open_stream("localhost").await?;
    assert!(!features.has_child("starttls", TLS));
    assert!(client.mechanisms().iter().any(|m| m == "PLAIN"));
    server.stop().await;
    Ok(())
}

/// Sends `<starttls/>` with `trailer` in the same write and checks the server refuses to
/// upgrade: `<failure/>` and the end of the stream, no `<proceed/>`.
async fn starttls_with_pipelined(server: &TestServer, trailer: &str) -> anyhow::Result<()> {
    let mut client = TestClient::connect(server.starttls_addr()).await?;
    client.open_stream("localhost").await?;
    client
        .send(&format!("<starttls xmlns='{TLS}'/>{trailer}"))
        .await?;
    client
        .expect("a TLS <failure/>", |e| e.is("failure", TLS))
        .await?;
    match client.next_event().await {
        Ok(StreamEvent::Close) | Err(_) => {}
        Ok(other) => anyhow::bail!("expected the stream to end, got {other:?}"),
    }
    client.expect_closed().await
}

#[tokio::test]
async fn stanza_pipelined_behind_starttls_is_not_processed() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["bob"]).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    starttls_with_pipelined(
        &server,
        "<message to='bob@localhost/desk' type='chat'><body>injected</body></message>",
    )
    .await?;
    bob.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn stream_header_pipelined_behind_starttls_is_refused() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    starttls_with_pipelined(
        &server,
        "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' \
         to='localhost' version='1.0'>",
    )
    .await?;
    server.stop().await;
    Ok(())
}
