//! IQ routing (RFC 6120 §8.2.3, RFC 6121 §8.5): the server answers for itself and for bare
//! JIDs, full JIDs reach the session, and every request gets exactly one answer.

use crate::common;

use common::{CLIENT, SILENCE, add_users, expect_error, expect_result, online};
use xmppd_testkit::{TestClient, TestServer, stanza_error_condition};
use xmppd_xml::Element;

const PING: &str = "urn:xmpp:ping";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

async fn server_with(users: &[&str]) -> anyhow::Result<TestServer> {
    let server = TestServer::start().await?;
    add_users(&server, users).await?;
    Ok(server)
}

/// Expects an empty iq result with `id` from `from` to the client's full JID.
async fn expect_empty_result(
    client: &mut TestClient,
    id: &str,
    from: &str,
) -> anyhow::Result<Element> {
    let result = expect_result(client, id, from).await?;
    assert_eq!(result.children().count(), 0, "a pong is empty: {result}");
    Ok(result)
}

#[tokio::test]
async fn ping_to_the_server_is_answered() -> anyhow::Result<()> {
    let server = server_with(&["alice"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    alice
        .send(&format!(
            "<iq type='get' id='p1' to='localhost'><ping xmlns='{PING}'/></iq>"
        ))
        .await?;
    expect_empty_result(&mut alice, "p1", "localhost").await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn ping_to_own_bare_jid_is_answered_by_the_server() -> anyhow::Result<()> {
    let server = server_with(&["alice"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    alice
        .send(&format!(
            "<iq type='get' id='p2' to='alice@localhost'><ping xmlns='{PING}'/></iq>"
        ))
        .await?;
    expect_empty_result(&mut alice, "p2", "alice@localhost").await?;
    // An iq without 'to' is for the account too (RFC 6120 §10.3.3).
    alice
        .send(&format!(
            "<iq type='get' id='p3'><ping xmlns='{PING}'/></iq>"
        ))
        .await?;
    let result = alice
        .expect("iq result p3", |e| {
            e.attr("type") == Some("result") && e.attr("id") == Some("p3")
        })
        .await?;
    assert_eq!(result.children().count(), 0);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn unknown_payload_to_the_server_is_service_unavailable() -> anyhow::Result<()> {
    let server = server_with(&["alice"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    alice
        .send("<iq type='get' id='u1' to='localhost'><query xmlns='urn:example:nothing'/></iq>")
        .await?;
    let error = expect_error(&mut alice, "iq", "u1", "localhost", "service-unavailable").await?;
    let kind = error.child("error", CLIENT).and_then(|e| e.attr("type"));
    assert_eq!(kind, Some("cancel"));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn iq_to_an_unknown_user_is_service_unavailable() -> anyhow::Result<()> {
    let server = server_with(&["alice"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    alice
        .send(&format!(
            "<iq type='get' id='u2' to='nobody@localhost'><ping xmlns='{PING}'/></iq>"
        ))
        .await?;
    expect_error(
        &mut alice,
        "iq",
        "u2",
        "nobody@localhost",
        "service-unavailable",
    )
    .await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn iq_to_a_full_jid_that_is_not_online_is_service_unavailable() -> anyhow::Result<()> {
    let server = server_with(&["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    // bob is online, but not as bob@localhost/gone: the iq is not redirected (§8.5.3.2.1).
    alice
        .send("<iq type='get' id='v1' to='bob@localhost/gone'><query xmlns='jabber:iq:version'/></iq>")
        .await?;
    expect_error(
        &mut alice,
        "iq",
        "v1",
        "bob@localhost/gone",
        "service-unavailable",
    )
    .await?;
    bob.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn iq_between_two_online_full_jids_goes_there_and_back() -> anyhow::Result<()> {
    let server = server_with(&["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    alice
        .send("<iq type='get' id='v2' to='bob@localhost/desk'><query xmlns='jabber:iq:version'/></iq>")
        .await?;
    let request = bob
        .expect("alice's version request", |e| {
            e.is("iq", CLIENT)
                && e.attr("type") == Some("get")
                && e.attr("id") == Some("v2")
                && e.attr("from") == Some("alice@localhost/phone")
                && e.attr("to") == Some("bob@localhost/desk")
        })
        .await?;
    assert!(request.has_child("query", "jabber:iq:version"));
    bob.send(
        "<iq type='result' id='v2' to='alice@localhost/phone'>\
         <query xmlns='jabber:iq:version'><name>bobclient</name></query></iq>",
    )
    .await?;
    let result = alice
        .expect("bob's version result", |e| {
            e.is("iq", CLIENT)
                && e.attr("type") == Some("result")
                && e.attr("id") == Some("v2")
                && e.attr("from") == Some("bob@localhost/desk")
                && e.attr("to") == Some("alice@localhost/phone")
        })
        .await?;
    let name = result
        .child("query", "jabber:iq:version")
        .and_then(|q| q.child("name", "jabber:iq:version"))
        .map(Element::text);
    assert_eq!(name.as_deref(), Some("bobclient"));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn iq_without_id_or_with_two_payloads_is_bad_request() -> anyhow::Result<()> {
    let server = server_with(&["alice"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    alice
        .send(&format!(
            "<iq type='get' to='localhost'><ping xmlns='{PING}'/></iq>"
        ))
        .await?;
    let error = alice
        .expect("bad-request for the iq without id", |e| {
            e.is("iq", CLIENT) && e.attr("type") == Some("error") && e.attr("id").is_none()
        })
        .await?;
    assert_eq!(
        stanza_error_condition(&error).as_deref(),
        Some("bad-request")
    );

    alice
        .send(&format!(
            "<iq type='get' id='two' to='localhost'><ping xmlns='{PING}'/><ping xmlns='{PING}'/></iq>"
        ))
        .await?;
    let error = alice
        .expect("bad-request for the iq with two payloads", |e| {
            e.is("iq", CLIENT) && e.attr("type") == Some("error") && e.attr("id") == Some("two")
        })
        .await?;
    assert_eq!(
        stanza_error_condition(&error).as_deref(),
        Some("bad-request")
    );
    // The stream goes on.
    alice
        .send(&format!(
            "<iq type='get' id='p' to='localhost'><ping xmlns='{PING}'/></iq>"
        ))
        .await?;
    expect_empty_result(&mut alice, "p", "localhost").await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn disco_info_of_the_server_lists_ping_and_disco() -> anyhow::Result<()> {
    let server = server_with(&["alice"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    alice
        .send(&format!(
            "<iq type='get' id='d1' to='localhost'><query xmlns='{DISCO_INFO}'/></iq>"
        ))
        .await?;
    let result = alice
        .expect("disco#info result", |e| {
            e.attr("type") == Some("result")
                && e.attr("id") == Some("d1")
                && e.attr("from") == Some("localhost")
        })
        .await?;
    let query = result
        .child("query", DISCO_INFO)
        .ok_or_else(|| anyhow::anyhow!("no query in {result}"))?;
    let identity = query.child("identity", DISCO_INFO);
    assert_eq!(identity.and_then(|i| i.attr("category")), Some("server"));
    assert_eq!(identity.and_then(|i| i.attr("type")), Some("im"));
    let features: Vec<_> = query
        .children()
        .filter(|c| c.name() == "feature")
        .filter_map(|c| c.attr("var"))
        .collect();
    for needed in [PING, DISCO_INFO, "http://jabber.org/protocol/disco#items"] {
        assert!(
            features.contains(&needed),
            "{needed} missing from {features:?}"
        );
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn stanzas_to_a_remote_domain_are_remote_server_not_found() -> anyhow::Result<()> {
    // Federation is not there yet: the sender hears so at once.
    let server = server_with(&["alice"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    alice
        .send(&format!(
            "<iq type='get' id='r1' to='x@example.org'><ping xmlns='{PING}'/></iq>"
        ))
        .await?;
    expect_error(
        &mut alice,
        "iq",
        "r1",
        "x@example.org",
        "remote-server-not-found",
    )
    .await?;
    alice
        .send("<message type='chat' id='r2' to='x@example.org'><body>hi</body></message>")
        .await?;
    expect_error(
        &mut alice,
        "message",
        "r2",
        "x@example.org",
        "remote-server-not-found",
    )
    .await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn presence_to_an_unknown_user_is_dropped_silently() -> anyhow::Result<()> {
    // RFC 6121 §8.5.1: no error, so presence cannot probe which accounts exist.
    let server = server_with(&["alice"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    alice.send("<presence to='nobody@localhost'/>").await?;
    alice
        .send("<presence to='nobody@localhost' type='subscribe' id='s1'/>")
        .await?;
    alice.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}
