//! SASL over real TLS (RFC 6120 §6): every mechanism we offer logs in, -PLUS with both
//! channel-binding types, wrong credentials fail the same way for known and unknown users,
//! too many failures end the stream, and the `y` flag is refused where channel binding is
//! offered and accepted on a listener configured without it; mechanisms the administrator
//! disabled are neither offered nor accepted.

use crate::common;

use sha2::Digest as _;
use xmppd_c2s::ChannelBinding;
use xmppd_stream::sasl::ClientChannelBinding;
use xmppd_testkit::{TestClient, TestServer};
use xmppd_xml::Element;

const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const SASL_CB: &str = "urn:xmpp:sasl-cb:0";

/// A client that has completed STARTTLS and holds the post-TLS features.
async fn after_starttls(server: &TestServer) -> anyhow::Result<TestClient> {
    let mut client = TestClient::connect(server.starttls_addr()).await?;
    client.open_stream("localhost").await?;
    client
        .starttls(server.tls_client_config(), "localhost")
        .await?;
    Ok(client)
}

async fn server_with_alice() -> anyhow::Result<TestServer> {
    let server = TestServer::start().await?;
    server.add_user("alice", "correct horse").await?;
    Ok(server)
}

/// Authenticates with `mechanism`, binds, and checks the bound JID.
async fn log_in_with(mechanism: &str) -> anyhow::Result<()> {
    let server = server_with_alice().await?;
    let mut client = after_starttls(&server).await?;
    assert!(
        client.mechanisms().iter().any(|m| m == mechanism),
        "{mechanism} not offered: {:?}",
        client.mechanisms()
    );
    client
        .authenticate(mechanism, "alice", "correct horse")
        .await?;
    let jid = client.bind(Some("desk")).await?;
    assert_eq!(jid.as_str(), "alice@localhost/desk");
    client.close().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn features_after_tls_offer_plus_mechanisms_and_both_binding_types() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = after_starttls(&server).await?;
    assert_eq!(
        client.mechanisms(),
        [
            "SCRAM-SHA-256-PLUS",
            "SCRAM-SHA-1-PLUS",
            "SCRAM-SHA-256",
            "SCRAM-SHA-1",
            "PLAIN"
        ]
    );
    let features = client
        .features
        .clone()
        .unwrap_or_else(|| Element::new("", ""));
    let cb = features
        .child("sasl-channel-binding", SASL_CB)
        .ok_or_else(|| anyhow::anyhow!("no XEP-0440 element in {features}"))?;
    let types: Vec<_> = cb.children().filter_map(|c| c.attr("type")).collect();
    assert_eq!(types, ["tls-exporter", "tls-server-end-point"]);
    assert!(!features.has_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls"));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn scram_sha_1_logs_in() -> anyhow::Result<()> {
    log_in_with("SCRAM-SHA-1").await
}

#[tokio::test]
async fn scram_sha_256_logs_in() -> anyhow::Result<()> {
    log_in_with("SCRAM-SHA-256").await
}

#[tokio::test]
async fn plain_logs_in_over_tls() -> anyhow::Result<()> {
    log_in_with("PLAIN").await
}

#[tokio::test]
async fn scram_sha_1_plus_logs_in_with_tls_exporter() -> anyhow::Result<()> {
    // The testkit binds -PLUS to the RFC 9266 exporter of its TLS 1.3 session.
    log_in_with("SCRAM-SHA-1-PLUS").await
}

#[tokio::test]
async fn scram_sha_256_plus_logs_in_with_tls_exporter() -> anyhow::Result<()> {
    log_in_with("SCRAM-SHA-256-PLUS").await
}

/// RFC 5929 §4.1: the hash of the server's certificate; the test CA signs with ECDSA-SHA256.
fn server_end_point(client: &TestClient) -> anyhow::Result<Vec<u8>> {
    let cert = client
        .server_certificate()
        .ok_or_else(|| anyhow::anyhow!("no server certificate"))?;
    Ok(sha2::Sha256::digest(&cert).to_vec())
}

#[tokio::test]
async fn scram_plus_logs_in_with_tls_server_end_point() -> anyhow::Result<()> {
    let server = server_with_alice().await?;
    for mechanism in ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"] {
        let mut client = after_starttls(&server).await?;
        let cb = ClientChannelBinding::TlsServerEndPoint(server_end_point(&client)?);
        client
            .authenticate_with(mechanism, "alice", "correct horse", cb)
            .await?;
        let jid = client.bind(Some("desk")).await?;
        assert_eq!(jid.as_str(), "alice@localhost/desk");
        client.close().await?;
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn direct_tls_offers_plus_and_logs_in() -> anyhow::Result<()> {
    // XEP-0368: TLS from the first byte on the second listener, no STARTTLS.
    let server = server_with_alice().await?;
    let mut client = TestClient::connect_tls(
        server.direct_tls_addr(),
        server.tls_client_config(),
        "localhost",
    )
    .await?;
    let features = client.open_stream("localhost").await?;
    assert!(!features.has_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls"));
    assert!(features.has_child("sasl-channel-binding", SASL_CB));
    assert_eq!(
        client.mechanisms().first().map(String::as_str),
        Some("SCRAM-SHA-256-PLUS")
    );
    client
        .authenticate("SCRAM-SHA-256-PLUS", "alice", "correct horse")
        .await?;
    let jid = client.bind(Some("direct")).await?;
    assert_eq!(jid.as_str(), "alice@localhost/direct");
    client.close().await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn plus_with_wrong_binding_data_is_not_authorized() -> anyhow::Result<()> {
    let server = server_with_alice().await?;
    let wrong = [
        ClientChannelBinding::TlsExporter(vec![0u8; 32]),
        ClientChannelBinding::TlsServerEndPoint(vec![0u8; 32]),
    ];
    for cb in wrong {
        let mut client = after_starttls(&server).await?;
        let result = client
            .authenticate_with("SCRAM-SHA-256-PLUS", "alice", "correct horse", cb)
            .await;
        let error = result.err().map(|e| e.to_string());
        assert_eq!(error.as_deref(), Some("sasl failure: not-authorized"));
    }
    server.stop().await;
    Ok(())
}

/// SCRAM-SHA-256 by hand: returns the server's answer to the client-first message and its
/// answer to the client-final message.
async fn scram_by_hand(
    client: &mut TestClient,
    user: &str,
    password: &str,
) -> anyhow::Result<(Element, Element)> {
    let scram = common::scram::start(client, user, password).await?;
    let outcome = common::scram::finish(client, &scram.client_final).await?;
    Ok((scram.challenge, outcome))
}

fn is_not_authorized(el: &Element) -> bool {
    el.is("failure", SASL) && el.has_child("not-authorized", SASL)
}

#[tokio::test]
async fn wrong_password_fails_with_not_authorized_after_the_proof() -> anyhow::Result<()> {
    let server = server_with_alice().await?;
    let mut client = after_starttls(&server).await?;
    let (_, outcome) = scram_by_hand(&mut client, "alice", "wrong horse").await?;
    assert!(is_not_authorized(&outcome), "got {outcome}");
    // PLAIN says the same.
    let result = client.authenticate("PLAIN", "alice", "wrong horse").await;
    let error = result.err().map(|e| e.to_string());
    assert_eq!(error.as_deref(), Some("sasl failure: not-authorized"));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn unknown_user_fails_exactly_like_a_wrong_password() -> anyhow::Result<()> {
    // No enumeration: an unknown user gets a challenge (with a fake salt) and fails only at
    // the proof, with the same condition as a known user with a wrong password.
    let server = server_with_alice().await?;
    let mut client = after_starttls(&server).await?;
    let (challenge, outcome) = scram_by_hand(&mut client, "mallory", "anything").await?;
    assert!(challenge.is("challenge", SASL));
    assert!(is_not_authorized(&outcome), "got {outcome}");
    let result = client.authenticate("PLAIN", "mallory", "anything").await;
    let error = result.err().map(|e| e.to_string());
    assert_eq!(error.as_deref(), Some("sasl failure: not-authorized"));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn too_many_failures_end_the_stream_with_policy_violation() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| c.max_auth_failures = 3).await?;
    server.add_user("alice", "correct horse").await?;
    let mut client = after_starttls(&server).await?;
    for _ in 0..2 {
        let result = client.authenticate("PLAIN", "alice", "guess").await;
        let error = result.err().map(|e| e.to_string());
        assert_eq!(error.as_deref(), Some("sasl failure: not-authorized"));
    }
    // The third failure is still reported, then the stream ends.
    let result = client.authenticate("PLAIN", "alice", "guess").await;
    let error = result.err().map(|e| e.to_string());
    assert_eq!(error.as_deref(), Some("sasl failure: not-authorized"));
    assert_eq!(client.expect_stream_error().await?, "policy-violation");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn disabled_mechanisms_are_not_offered_and_are_refused() -> anyhow::Result<()> {
    use xmppd_stream::sasl::Mechanism;
    let server = TestServer::start_with(|c| {
        c.disabled_mechanisms = vec![Mechanism::Plain, Mechanism::ScramSha1Plus];
    })
    .await?;
    server.add_user("alice", "correct horse").await?;
    let mut client = after_starttls(&server).await?;
    assert_eq!(
        client.mechanisms(),
        ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256", "SCRAM-SHA-1"]
    );
    // The right password over a disabled mechanism is refused before it is looked at.
    let result = client.authenticate("PLAIN", "alice", "correct horse").await;
    let error = result.err().map(|e| e.to_string());
    assert_eq!(error.as_deref(), Some("sasl failure: invalid-mechanism"));
    client
        .authenticate("SCRAM-SHA-1", "alice", "correct horse")
        .await?;
    let jid = client.bind(Some("desk")).await?;
    assert_eq!(jid.as_str(), "alice@localhost/desk");
    server.stop().await;
    Ok(())
}

/// SCRAM-SHA-256 with the `y` flag: "I support channel binding, but you do not".
async fn log_in_saying_y(client: &mut TestClient) -> anyhow::Result<()> {
    client
        .authenticate_with(
            "SCRAM-SHA-256",
            "alice",
            "correct horse",
            ClientChannelBinding::UnsupportedByServer,
        )
        .await
}

#[tokio::test]
async fn the_y_flag_is_a_downgrade_where_channel_binding_is_offered_and_honest_where_it_is_off()
-> anyhow::Result<()> {
    // The STARTTLS listener offers channel binding, the direct-TLS one is configured not to.
    let server =
        TestServer::start_with(|c| c.listen[1].channel_binding = ChannelBinding::Off).await?;
    server.add_user("alice", "correct horse").await?;
    let mut offered = after_starttls(&server).await?;
    let result = log_in_saying_y(&mut offered).await;
    let error = result.err().map(|e| e.to_string());
    assert_eq!(error.as_deref(), Some("sasl failure: not-authorized"));

    let mut off = TestClient::connect_tls(
        server.direct_tls_addr(),
        server.tls_client_config(),
        "localhost",
    )
    .await?;
    let features = off.open_stream("localhost").await?;
    assert!(
        !features.has_child("sasl-channel-binding", SASL_CB),
        "no XEP-0440 list: {features}"
    );
    assert_eq!(
        off.mechanisms(),
        ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"],
        "no -PLUS mechanism"
    );
    log_in_saying_y(&mut off).await?;
    let jid = off.bind(Some("desk")).await?;
    assert_eq!(jid.as_str(), "alice@localhost/desk");
    server.stop().await;
    Ok(())
}
