//! Directed presence across federation as a multi-user chat room on another server sees it
//! (RFC 6121 §4.6, XEP-0045): joining a room is directed presence to an occupant JID there,
//! and the room keeps the occupant until that presence ends. So the remote entity must hear
//! the end however the session ends — its connection dies, or a new login with the same
//! resource replaces it, and then before the replacement's own presence — and what a room
//! sends to the occupant's full JID (groupchat messages, presence errors) must reach the
//! session, while a groupchat message to a resource that is gone comes back as an error, which
//! is how a room learns of a ghost occupant (XEP-0045 §11.1). bob@b.test stands for the room:
//! the routing under test is a.test's.

use crate::common;

use common::CLIENT;
use common::federation::{Auth, expect_body, next_matching, online, two_servers};
use xmppd_testkit::{TestClient, stanza_error_condition};
use xmppd_xml::Element;

/// alice's presence joining the "room" bob@b.test/res.
const JOIN: &str =
    "<presence to='bob@b.test/res'><x xmlns='http://jabber.org/protocol/muc'/></presence>";

/// The next presence bob gets from alice@a.test/res, which must be of type `kind`.
async fn alice_presence_at(bob: &mut TestClient, kind: Option<&str>) -> anyhow::Result<Element> {
    let presence = next_matching(bob, "presence from alice@a.test/res", |e| {
        e.is("presence", CLIENT) && e.attr("from") == Some("alice@a.test/res")
    })
    .await?;
    anyhow::ensure!(
        presence.attr("type") == kind,
        "expected presence of type {kind:?}, got {presence}"
    );
    Ok(presence)
}

/// Drops alice's `session` (its socket closes, with no unavailable presence from the client)
/// and expects bob to hear that she left.
async fn cut(session: TestClient, bob: &mut TestClient) -> anyhow::Result<()> {
    drop(session);
    alice_presence_at(bob, Some("unavailable")).await?;
    Ok(())
}

#[tokio::test]
async fn a_remote_entity_hears_the_end_of_directed_presence_when_the_connection_dies()
-> anyhow::Result<()> {
    let (_pki, a, b) = two_servers(Auth::Dialback).await?;
    let mut bob = online(&b, "bob").await?;
    let mut alice = online(&a, "alice").await?;
    alice.send(JOIN).await?;
    alice_presence_at(&mut bob, None).await?;
    cut(alice, &mut bob).await?;
    b.stop().await;
    a.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_replaced_session_ends_its_directed_presence_before_the_replacement_speaks()
-> anyhow::Result<()> {
    let (_pki, a, b) = two_servers(Auth::Dialback).await?;
    let mut bob = online(&b, "bob").await?;
    let mut old = online(&a, "alice").await?;
    old.send(JOIN).await?;
    alice_presence_at(&mut bob, None).await?;

    // The same resource logs in again (a client reconnecting after its network dropped):
    // the old session is replaced (RFC 6120 §7.7.2.2) and the new one joins again.
    let mut new = a.login("alice", &common::password("alice"), "res").await?;
    assert_eq!(old.expect_stream_error().await?, "conflict");
    new.available(0).await?;
    new.send(
        "<presence to='bob@b.test/res'><x xmlns='http://jabber.org/protocol/muc'/>\
         <status>joined again</status></presence>",
    )
    .await?;
    // The room hears the old occupant leave first, then the new one join: otherwise it would
    // take the new join for the old occupant's presence update and keep its state.
    alice_presence_at(&mut bob, Some("unavailable")).await?;
    let joined = alice_presence_at(&mut bob, None).await?;
    assert_eq!(
        joined.child("status", CLIENT).map(Element::text).as_deref(),
        Some("joined again")
    );
    // The new session's own directed presence is tracked: it ends with the new session.
    cut(new, &mut bob).await?;
    b.stop().await;
    a.stop().await;
    Ok(())
}

#[tokio::test]
async fn room_traffic_reaches_the_occupant_and_a_gone_resource_bounces() -> anyhow::Result<()> {
    let (_pki, a, b) = two_servers(Auth::Dialback).await?;
    let mut alice = online(&a, "alice").await?;
    let mut bob = online(&b, "bob").await?;

    bob.send(
        "<message to='alice@a.test/res' type='groupchat' id='g1'>\
         <body>to the occupant</body></message>",
    )
    .await?;
    expect_body(&mut alice, "bob@b.test/res", "to the occupant").await?;

    // A refused join (XEP-0045 §7.2.8, nickname conflict) reaches the full JID.
    bob.send(
        "<presence to='alice@a.test/res' type='error'>\
         <x xmlns='http://jabber.org/protocol/muc'/><error type='cancel'>\
         <conflict xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>",
    )
    .await?;
    let refused = next_matching(&mut alice, "the presence error", |e| {
        e.is("presence", CLIENT) && e.attr("type") == Some("error")
    })
    .await?;
    assert_eq!(refused.attr("from"), Some("bob@b.test/res"));
    assert_eq!(
        stanza_error_condition(&refused).as_deref(),
        Some("conflict")
    );

    // RFC 6121 §8.5.3.2.1: a groupchat message to a resource that is not bound is an error
    // for the sender, never delivered to another resource or stored offline.
    bob.send(
        "<message to='alice@a.test/gone' type='groupchat' id='g2'>\
         <body>to a ghost</body></message>",
    )
    .await?;
    let bounce = next_matching(&mut bob, "the bounce of the ghost's message", |e| {
        e.is("message", CLIENT) && e.attr("id") == Some("g2")
    })
    .await?;
    assert_eq!(bounce.attr("type"), Some("error"), "{bounce}");
    assert_eq!(bounce.attr("from"), Some("alice@a.test/gone"));
    assert_eq!(
        stanza_error_condition(&bounce).as_deref(),
        Some("service-unavailable")
    );
    alice.expect_silence(common::SILENCE).await?;
    b.stop().await;
    a.stop().await;
    Ok(())
}
