//! Attack catalogue (`tests/SECURITY.md`), the forged-element rows not covered elsewhere: a
//! XEP-0203 `<delay/>` that claims to come from the server (or one of its services) is the
//! server's word that a message waited in offline storage or is room history, with the time
//! it says. A client or a remote server that writes one itself must not pass it off as ours:
//! offline messages, the archive and rooms carry only the server's own stamp.
//!
//! (Forged stanza-ids: `mam.rs`; forged carbons: `carbons.rs`; forged occupant-ids and room
//! stanza-ids: `muc.rs`; forged senders: `stream_errors.rs`, `federation.rs`,
//! `components.rs`.)

use crate::common;

use common::attack::{IRC, Path, Target, reach};
use common::federation::{self, A, B, peer_authenticated};
use common::mam::{Q, forwarded_message, query};
use common::muc::{create_instant, enter, expect_groupchat};
use common::{add_users, expect_message, online};
use xmppd_testkit::{TestClient, TestPki, TestServer};
use xmppd_xml::Element;

const DELAY: &str = "urn:xmpp:delay";
const FORGED_STAMP: &str = "2001-01-01T00:00:00Z";

/// A forged delay from `from`.
fn forged_delay(from: &str) -> String {
    format!("<delay xmlns='{DELAY}' from='{from}' stamp='{FORGED_STAMP}'>Offline Storage</delay>")
}

/// The `(from, stamp)` of each delay of `el`.
fn delays(el: &Element) -> Vec<(Option<String>, Option<String>)> {
    el.children()
        .filter(|c| c.is("delay", DELAY))
        .map(|d| {
            (
                d.attr("from").map(str::to_owned),
                d.attr("stamp").map(str::to_owned),
            )
        })
        .collect()
}

/// Exactly one delay, from `from`, not the forged one.
fn only_our_stamp(el: &Element, from: &str) {
    let delays = delays(el);
    assert_eq!(delays.len(), 1, "{el}");
    assert_eq!(delays[0].0.as_deref(), Some(from), "{el}");
    assert_ne!(delays[0].1.as_deref(), Some(FORGED_STAMP), "{el}");
}

#[tokio::test]
async fn a_client_cannot_stamp_its_message_as_the_servers() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    // Bob is offline: the message goes to storage, where the server stamps it.
    alice
        .send(&format!(
            "<message to='bob@localhost' type='chat' id='f1'><body>old news</body>{}</message>",
            forged_delay("localhost")
        ))
        .await?;
    // The sender's archive shows the message was taken before bob logs in.
    for _ in 0..50 {
        if !query(&mut alice, "a1", Q::default())
            .await?
            .results
            .is_empty()
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut bob = online(&server, "bob", "desk", 0).await?;
    let stored = expect_message(
        &mut bob,
        "alice@localhost/phone",
        "bob@localhost",
        "old news",
    )
    .await?;
    only_our_stamp(&stored, "localhost");

    // Online: no delay from the server at all, whatever the client wrote.
    alice
        .send(&format!(
            "<message to='bob@localhost/desk' type='chat' id='f2'><body>now</body>{}{}</message>",
            forged_delay("localhost"),
            forged_delay("coven@conference.localhost")
        ))
        .await?;
    let live = expect_message(
        &mut bob,
        "alice@localhost/phone",
        "bob@localhost/desk",
        "now",
    )
    .await?;
    assert_eq!(delays(&live), [], "{live}");
    // A delay the client may claim for itself is left alone (XEP-0203 §3: the entity that
    // delayed it), as is one outside the server's domains.
    alice
        .send(&format!(
            "<message to='bob@localhost/desk' type='chat' id='f3'><body>mine</body>{}</message>",
            forged_delay("alice@localhost/phone")
        ))
        .await?;
    let own = expect_message(
        &mut bob,
        "alice@localhost/phone",
        "bob@localhost/desk",
        "mine",
    )
    .await?;
    assert_eq!(delays(&own).len(), 1, "{own}");

    // The archive keeps the message as it was routed: without the forged stamp.
    let answer = query(&mut bob, "q1", Q::default()).await?;
    for result in &answer.results {
        let message = forwarded_message(result).expect("an archived message");
        assert!(
            delays(message)
                .iter()
                .all(|(from, _)| from.as_deref() != Some("localhost")),
            "{message}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn an_occupant_cannot_stamp_its_message_as_room_history() -> anyhow::Result<()> {
    const ROOM: &str = "coven@conference.localhost";
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    create_instant(&mut alice, ROOM, "Alice").await?;
    alice
        .send(&format!(
            "<message to='{ROOM}' type='groupchat' id='g1'><body>history?</body>{}</message>",
            forged_delay(ROOM)
        ))
        .await?;
    let live = expect_groupchat(&mut alice, &format!("{ROOM}/Alice"), "history?").await?;
    assert_eq!(delays(&live), [], "{live}");
    // Bob enters: the history message carries the room's stamp, once.
    let mut bob = online(&server, "bob", "phone", 0).await?;
    let entry = enter(&mut bob, ROOM, "Bob", "").await?;
    let history: Vec<_> = entry
        .iter()
        .filter(|e| common::body(e).as_deref() == Some("history?"))
        .collect();
    assert_eq!(history.len(), 1);
    only_our_stamp(history[0], ROOM);
    Ok(())
}

#[tokio::test]
async fn a_remote_server_cannot_stamp_a_message_as_ours() -> anyhow::Result<()> {
    let pki = TestPki::new(&[A, B])?;
    let b = TestServer::start_federated(
        B,
        &pki,
        federation::free_port([127, 0, 0, 2])?,
        true,
        |_| {},
    )
    .await?;
    b.add_user("bob", &common::password("bob")).await?;
    let mut bob = federation::online(&b, "bob").await?;
    let mut peer: TestClient = peer_authenticated(&b, &pki, A).await?;
    peer.send(&format!(
        "<message from='alice@a.test/x' to='bob@b.test/res' type='chat'><body>from afar</body>{}{}</message>",
        forged_delay(B),
        forged_delay("a.test")
    ))
    .await?;
    let got = federation::next_matching(&mut bob, "the message", |e| {
        common::body(e).as_deref() == Some("from afar")
    })
    .await?;
    // Only the delay a.test may claim for itself is left.
    assert_eq!(
        delays(&got),
        [(Some(A.to_owned()), Some(FORGED_STAMP.to_owned()))],
        "{got}"
    );
    Ok(())
}

#[tokio::test]
async fn a_component_stamps_only_for_its_own_domain() -> anyhow::Result<()> {
    let t = Target::start().await?;
    let mut bob = federation::online(&t.server, "bob").await?;
    let mut gateway = reach(&t, Path::ComponentAuthenticated).await?;
    // An IRC gateway replays a channel's backlog with the channel's stamp: its own word.
    gateway
        .send(&format!(
            "<message from='#chan@{IRC}/nick' to='bob@b.test/res' type='groupchat'>\
             <body>backlog</body>{}{}</message>",
            forged_delay(B),
            forged_delay(&format!("#chan@{IRC}"))
        ))
        .await?;
    let got = federation::next_matching(&mut bob, "the backlog", |e| {
        common::body(e).as_deref() == Some("backlog")
    })
    .await?;
    assert_eq!(
        delays(&got),
        [(Some(format!("#chan@{IRC}")), Some(FORGED_STAMP.to_owned()))],
        "{got}"
    );
    Ok(())
}
