//! XEP-0198 stream management: acknowledgements both ways, resumption with messages in
//! flight, the errors of §6, the window's end (messages to offline storage) and sessions that
//! survive a restart of the server.

use crate::common;

use std::time::Duration;

use common::*;
use xmppd_testkit::{TestClient, TestServer};
use xmppd_xml::Element;

const SM: &str = "urn:xmpp:sm:3";
const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

fn is_sm(el: &Element, name: &str) -> bool {
    el.is(name, SM)
}

/// Enables resumable stream management; returns the SM-ID.
async fn enable_resume(client: &mut TestClient, max: Option<u32>) -> anyhow::Result<String> {
    let max = max.map(|m| format!(" max='{m}'")).unwrap_or_default();
    client
        .send(&format!("<enable xmlns='{SM}' resume='true'{max}/>"))
        .await?;
    let enabled = client.expect("enabled", |e| is_sm(e, "enabled")).await?;
    assert_eq!(enabled.attr("resume"), Some("true"));
    let id = enabled.attr("id").unwrap_or_default().to_owned();
    assert!(id.len() >= 22, "an id of at least 128 bits: {id}");
    Ok(id)
}

/// The condition inside a `<failed/>`.
fn failed_condition(el: &Element) -> Option<&str> {
    el.children().find(|c| c.ns() == STANZAS).map(Element::name)
}

async fn send_chat(client: &mut TestClient, to: &str, id: &str) -> anyhow::Result<()> {
    client
        .send(&format!(
            "<message to='{to}' type='chat' id='{id}'><body>{id}</body></message>"
        ))
        .await
}

/// Receives messages (skipping `<r/>` and presence) until `n` arrived; returns their ids.
async fn receive_messages(client: &mut TestClient, n: usize) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::new();
    // Bounded: each round consumes one element.
    for _ in 0..(n + 100) {
        if ids.len() == n {
            break;
        }
        let el = client.recv().await?;
        if el.name() == "message" {
            ids.push(el.attr("id").unwrap_or_default().to_owned());
        }
    }
    Ok(ids)
}

#[tokio::test]
async fn stream_management_is_offered_and_acks_count_stanzas_both_ways() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = server.authenticated("alice", &password("alice")).await?;
    let features = alice
        .features
        .clone()
        .unwrap_or_else(|| Element::new("x", ""));
    assert!(features.has_child("sm", SM), "features: {features}");
    alice.bind(Some("phone")).await?;
    alice.send(&format!("<enable xmlns='{SM}'/>")).await?;
    let enabled = alice.expect("enabled", |e| is_sm(e, "enabled")).await?;
    assert_eq!(enabled.attr("resume"), None);
    // Three stanzas handled: two pings and a presence.
    for id in ["p1", "p2"] {
        alice
            .send(&format!(
                "<iq type='get' id='{id}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
            ))
            .await?;
        expect_result(&mut alice, id, "localhost").await?;
    }
    alice.available(0).await?;
    expect_presence(&mut alice, "alice@localhost/phone", None).await?;
    alice.send(&format!("<r xmlns='{SM}'/>")).await?;
    let a = alice.expect("ack", |e| is_sm(e, "a")).await?;
    assert_eq!(a.attr("h"), Some("3"));

    // The server asks for an ack after five stanzas.
    let mut bob = online(&server, "bob", "desk", 0).await?;
    for i in 0..3 {
        send_chat(&mut bob, "alice@localhost/phone", &format!("m{i}")).await?;
    }
    // Two results and a presence, then three messages: the fifth stanza brings an <r/>.
    let mut messages = 0;
    let mut requested = false;
    for _ in 0..20 {
        if messages == 3 && requested {
            break;
        }
        let el = alice.recv().await?;
        if is_sm(&el, "r") {
            requested = true;
        } else if el.name() == "message" {
            messages += 1;
        }
    }
    assert!(requested && messages == 3, "an <r/> and three messages");
    // Acknowledging everything sent so far (2 results, presence, 3 messages) is fine …
    alice.send(&format!("<a xmlns='{SM}' h='6'/>")).await?;
    alice.expect_silence(SILENCE).await?;
    // … acknowledging more than that ends the stream (§6).
    alice.send(&format!("<a xmlns='{SM}' h='7'/>")).await?;
    let el = alice.recv().await?;
    assert!(el.has_child("undefined-condition", "urn:ietf:params:xml:ns:xmpp-streams"));
    let app = el
        .child("handled-count-too-high", SM)
        .ok_or_else(|| anyhow::anyhow!("no <handled-count-too-high/> in {el}"))?;
    assert_eq!(app.attr("h"), Some("7"));
    assert_eq!(app.attr("send-count"), Some("6"));
    drop(bob);
    Ok(())
}

#[tokio::test]
async fn misuse_gets_the_errors_the_xep_names() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    // Before bind: failed, unexpected-request; binding still works.
    let mut alice = server.authenticated("alice", &password("alice")).await?;
    alice.send(&format!("<enable xmlns='{SM}'/>")).await?;
    let failed = alice.expect("failed", |e| is_sm(e, "failed")).await?;
    assert_eq!(failed_condition(&failed), Some("unexpected-request"));
    // <r/> and <a/> before enabling.
    alice.bind(Some("a")).await?;
    alice.send(&format!("<r xmlns='{SM}'/>")).await?;
    let failed = alice.expect("failed", |e| is_sm(e, "failed")).await?;
    assert_eq!(failed_condition(&failed), Some("unexpected-request"));
    // A malformed <enable/> is a bad request.
    alice
        .send(&format!("<enable xmlns='{SM}' resume='maybe'/>"))
        .await?;
    let failed = alice.expect("failed", |e| is_sm(e, "failed")).await?;
    assert_eq!(failed_condition(&failed), Some("bad-request"));
    // <resume/> on a bound stream.
    alice
        .send(&format!("<resume xmlns='{SM}' previd='x' h='0'/>"))
        .await?;
    let failed = alice.expect("failed", |e| is_sm(e, "failed")).await?;
    assert_eq!(failed_condition(&failed), Some("unexpected-request"));
    // Enabling twice ends the stream.
    alice.send(&format!("<enable xmlns='{SM}'/>")).await?;
    alice.expect("enabled", |e| is_sm(e, "enabled")).await?;
    alice.send(&format!("<enable xmlns='{SM}'/>")).await?;
    let failed = alice.expect("failed", |e| is_sm(e, "failed")).await?;
    assert_eq!(failed_condition(&failed), Some("unexpected-request"));
    assert_eq!(alice.expect_stream_error().await?, "policy-violation");

    // An h out of range is not an integer the schema allows.
    let mut alice = server.login("alice", &password("alice"), "b").await?;
    alice.send(&format!("<enable xmlns='{SM}'/>")).await?;
    alice.expect("enabled", |e| is_sm(e, "enabled")).await?;
    alice
        .send(&format!("<a xmlns='{SM}' h='4294967296'/>"))
        .await?;
    assert_eq!(alice.expect_stream_error().await?, "invalid-xml");

    // An element the namespace does not define.
    let mut alice = server.login("alice", &password("alice"), "c").await?;
    alice.send(&format!("<enabled xmlns='{SM}'/>")).await?;
    assert_eq!(
        alice.expect_stream_error().await?,
        "unsupported-stanza-type"
    );
    Ok(())
}

#[tokio::test]
async fn a_resumed_session_gets_what_was_in_flight_exactly_once_and_in_order() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    let mut alice = server.login("alice", &password("alice"), "phone").await?;
    let id = enable_resume(&mut alice, None).await?;
    alice.available(1).await?;
    expect_presence(&mut alice, "alice@localhost/phone", None).await?;
    // Alice sends one message (handled: presence + this = 2) …
    send_chat(&mut alice, "bob@localhost", "from-alice").await?;
    let got = receive_messages(&mut bob, 1).await?;
    assert_eq!(got, ["from-alice"]);
    // … and receives four; she acknowledges her presence echo and the first message only.
    for i in 1..=4 {
        send_chat(&mut bob, "alice@localhost/phone", &format!("b{i}")).await?;
    }
    let got = receive_messages(&mut alice, 4).await?;
    assert_eq!(got, ["b1", "b2", "b3", "b4"]);
    alice.send(&format!("<a xmlns='{SM}' h='2'/>")).await?;
    // The link dies with three messages unacknowledged; two more arrive meanwhile.
    drop(alice);
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 5..=6 {
        send_chat(&mut bob, "alice@localhost/phone", &format!("b{i}")).await?;
    }
    // Bob sees no unavailable presence: the session waits.
    bob.expect_silence(SILENCE).await?;

    let mut alice = server.authenticated("alice", &password("alice")).await?;
    alice
        .send(&format!("<resume xmlns='{SM}' previd='{id}' h='2'/>"))
        .await?;
    let resumed = alice.expect("resumed", |e| is_sm(e, "resumed")).await?;
    assert_eq!(resumed.attr("previd"), Some(id.as_str()));
    assert_eq!(
        resumed.attr("h"),
        Some("2"),
        "presence and one message handled"
    );
    let got = receive_messages(&mut alice, 5).await?;
    assert_eq!(got, ["b2", "b3", "b4", "b5", "b6"]);
    alice.expect_silence(SILENCE).await?;
    // The session kept its resource and presence: a message to the full JID arrives.
    send_chat(&mut bob, "alice@localhost/phone", "after").await?;
    assert_eq!(receive_messages(&mut alice, 1).await?, ["after"]);
    // Counting goes on from where it was: 7 sent, 1 acked … all acknowledged now.
    alice.send(&format!("<a xmlns='{SM}' h='8'/>")).await?;
    alice.send(&format!("<r xmlns='{SM}'/>")).await?;
    let a = alice.expect("ack", |e| is_sm(e, "a")).await?;
    assert_eq!(a.attr("h"), Some("2"));
    Ok(())
}

#[tokio::test]
async fn resuming_takes_the_session_from_a_connection_still_open() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut old = server.login("alice", &password("alice"), "phone").await?;
    let id = enable_resume(&mut old, None).await?;
    let mut new = server.authenticated("alice", &password("alice")).await?;
    new.send(&format!("<resume xmlns='{SM}' previd='{id}' h='0'/>"))
        .await?;
    new.expect("resumed", |e| is_sm(e, "resumed")).await?;
    assert_eq!(old.expect_stream_error().await?, "conflict");
    // Another account cannot resume it, and learns nothing about it.
    let mut bob = server.authenticated("bob", &password("bob")).await?;
    bob.send(&format!("<resume xmlns='{SM}' previd='{id}' h='0'/>"))
        .await?;
    let failed = bob.expect("failed", |e| is_sm(e, "failed")).await?;
    assert_eq!(failed_condition(&failed), Some("item-not-found"));
    assert_eq!(failed.attr("h"), None);
    // The stream can still bind after a failed resumption (§5).
    bob.bind(Some("desk")).await?;
    Ok(())
}

#[tokio::test]
async fn when_the_window_ends_unacknowledged_messages_go_to_offline_storage() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    let mut alice = server.login("alice", &password("alice"), "phone").await?;
    let id = enable_resume(&mut alice, Some(1)).await?;
    alice.available(0).await?;
    expect_presence(&mut alice, "alice@localhost/phone", None).await?;
    send_chat(&mut bob, "alice@localhost/phone", "unacked").await?;
    assert_eq!(receive_messages(&mut alice, 1).await?, ["unacked"]);
    drop(alice);
    tokio::time::sleep(Duration::from_millis(100)).await;
    send_chat(&mut bob, "alice@localhost", "queued").await?;
    // The one-second window passes.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Resuming now fails, and says how many of alice's stanzas were handled.
    let mut alice = server.authenticated("alice", &password("alice")).await?;
    alice
        .send(&format!("<resume xmlns='{SM}' previd='{id}' h='0'/>"))
        .await?;
    let failed = alice.expect("failed", |e| is_sm(e, "failed")).await?;
    assert_eq!(failed_condition(&failed), Some("item-not-found"));
    assert_eq!(failed.attr("h"), Some("1"));
    // Both messages were kept for her, in order.
    alice.bind(Some("laptop")).await?;
    alice.available(0).await?;
    let mut bodies = Vec::new();
    for _ in 0..10 {
        let el = alice.recv().await?;
        if el.name() == "message" {
            bodies.extend(body(&el));
            if bodies.len() == 2 {
                break;
            }
        }
    }
    assert_eq!(bodies, ["unacked", "queued"]);
    Ok(())
}

#[tokio::test]
async fn too_many_unacknowledged_stanzas_end_the_session_without_losing_messages()
-> anyhow::Result<()> {
    let server = TestServer::start_with(|c| c.sm.max_unacked = 3).await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    let mut alice = server.login("alice", &password("alice"), "phone").await?;
    enable_resume(&mut alice, None).await?;
    alice.available(0).await?;
    for i in 0..5 {
        send_chat(&mut bob, "alice@localhost/phone", &format!("m{i}")).await?;
    }
    assert_eq!(
        alice.expect_stream_error_skipping().await?,
        "policy-violation"
    );
    // The session's end stores the messages; a login racing it could miss those stored
    // after its offline delivery (they would come at the next one).
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Alice never acknowledged anything: every message waits in offline storage.
    let mut alice = server.login("alice", &password("alice"), "phone").await?;
    alice.available(0).await?;
    let mut ids = Vec::new();
    for _ in 0..20 {
        let el = alice.recv().await?;
        if el.name() == "message" {
            ids.extend(el.attr("id").map(str::to_owned));
            if ids.len() == 5 {
                break;
            }
        }
    }
    // Messages still on their way while the session ended may overtake those it gave back.
    ids.sort();
    assert_eq!(ids, ["m0", "m1", "m2", "m3", "m4"]);
    Ok(())
}

#[tokio::test]
async fn resumable_sessions_survive_a_restart_of_the_server() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    let mut alice = server.login("alice", &password("alice"), "phone").await?;
    let id = enable_resume(&mut alice, None).await?;
    alice.available(3).await?;
    expect_presence(&mut alice, "alice@localhost/phone", None).await?;
    send_chat(&mut bob, "alice@localhost/phone", "before").await?;
    assert_eq!(receive_messages(&mut alice, 1).await?, ["before"]);
    // Alice acknowledged her presence echo only.
    alice.send(&format!("<a xmlns='{SM}' h='1'/>")).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let server = server.restart().await?;
    // The session is there before alice reconnects: a message to her full JID waits in it.
    let mut bob = online(&server, "bob", "desk", 0).await?;
    send_chat(&mut bob, "alice@localhost/phone", "during").await?;
    let mut alice = server.authenticated("alice", &password("alice")).await?;
    alice
        .send(&format!("<resume xmlns='{SM}' previd='{id}' h='1'/>"))
        .await?;
    let resumed = alice.expect("resumed", |e| is_sm(e, "resumed")).await?;
    assert_eq!(resumed.attr("h"), Some("1"));
    assert_eq!(receive_messages(&mut alice, 2).await?, ["before", "during"]);
    alice.expect_silence(SILENCE).await?;
    Ok(())
}

#[tokio::test]
async fn a_session_restored_after_a_restart_keeps_carbons_and_roster_pushes() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = server.login("alice", &password("alice"), "phone").await?;
    let id = enable_resume(&mut alice, None).await?;
    alice
        .send("<iq type='set' id='c'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
        .await?;
    alice
        .expect("carbons enabled", |e| {
            e.attr("id") == Some("c") && e.attr("type") == Some("result")
        })
        .await?;
    roster_get(&mut alice, None).await?;
    alice.send(&format!("<a xmlns='{SM}' h='2'/>")).await?;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let server = server.restart().await?;
    let mut alice = server.authenticated("alice", &password("alice")).await?;
    alice
        .send(&format!("<resume xmlns='{SM}' previd='{id}' h='2'/>"))
        .await?;
    alice.expect("resumed", |e| is_sm(e, "resumed")).await?;
    // Carbons are still on: a message to another resource is copied to the phone.
    let mut laptop = server.login("alice", &password("alice"), "laptop").await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    send_chat(&mut bob, "alice@localhost/laptop", "to-laptop").await?;
    assert_eq!(receive_messages(&mut laptop, 1).await?, ["to-laptop"]);
    let copy = alice.expect("a carbon", |e| e.name() == "message").await?;
    assert!(copy.has_child("received", "urn:xmpp:carbons:2"), "{copy}");
    // The phone still gets roster pushes.
    laptop
        .send(
            "<iq type='set' id='r'><query xmlns='jabber:iq:roster'>\
             <item jid='carol@localhost'/></query></iq>",
        )
        .await?;
    let push = alice.expect("a roster push", |e| e.name() == "iq").await?;
    assert!(push.has_child("query", "jabber:iq:roster"), "{push}");
    Ok(())
}
