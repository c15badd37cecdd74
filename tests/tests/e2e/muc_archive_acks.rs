//! Archived room messages and the sender's stream: the sender reads on while its messages
//! wait for the room archive's commit, and stream management (XEP-0198) counts each one as
//! handled only once it is committed and sent, in order, with whatever the client sent after
//! it counted no earlier.

use crate::common;

use std::sync::Arc;

use anyhow::Context;

use common::muc::*;
use common::*;
use xmppd_testkit::{TestClient, TestServer};
use xmppd_xml::Element;

const ROOM: &str = "lounge@conference.localhost";
const SM: &str = "urn:xmpp:sm:3";

async fn archiving_server() -> anyhow::Result<TestServer> {
    let text: Arc<str> = Arc::from(
        "[modules.muc]\narchive_by_default = true\nmessages_per_second = 10000.0\n\
         message_burst = 10000\n",
    );
    let server = TestServer::start_with(move |c| c.text = Some(text)).await?;
    add_users(&server, &["alice", "bob"]).await?;
    Ok(server)
}

/// An archiving server, and alice in the room she created with bob, who has entered it.
async fn alice_and_bob_in_the_room() -> anyhow::Result<(TestServer, TestClient, TestClient)> {
    let server = archiving_server().await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    create_instant(&mut alice, ROOM, "Alice").await?;
    let mut bob = online(&server, "bob", "phone", 0).await?;
    enter(&mut bob, ROOM, "Bob", "<history maxstanzas='0'/>").await?;
    collect_until(&mut alice, "Bob's entry", 10, |e| {
        e.attr("from") == Some(&format!("{ROOM}/Bob")[..])
    })
    .await?;
    Ok((server, alice, bob))
}

/// `n` groupchat messages to the room, ids and bodies m0, m1, …, in one string.
fn burst(n: u32) -> String {
    (0..n)
        .map(|n| {
            format!("<message to='{ROOM}' type='groupchat' id='m{n}'><body>m{n}</body></message>")
        })
        .collect()
}

/// The next groupchat message.
async fn next_groupchat(client: &mut TestClient) -> anyhow::Result<Element> {
    collect_until(client, "a room message", 100, |e| {
        e.attr("type") == Some("groupchat")
    })
    .await?
    .pop()
    .context("no message")
}

fn h_of(el: &Element) -> Option<u32> {
    el.is("a", SM).then(|| el.attr("h")?.parse().ok())?
}

/// The stanza-id the room gave a reflected message.
fn room_stanza_id(el: &Element) -> Option<String> {
    el.children()
        .find(|c| c.is("stanza-id", "urn:xmpp:sid:0") && c.attr("by") == Some(ROOM))
        .and_then(|c| c.attr("id"))
        .map(str::to_owned)
}

/// Asks for an ack until `h` reaches `want` (bounded); returns every `h` seen and the
/// groupchat messages that arrived meanwhile.
async fn acks_until(
    client: &mut TestClient,
    want: u32,
    mut reflected: Vec<Element>,
) -> anyhow::Result<(Vec<u32>, Vec<Element>)> {
    let mut seen = Vec::new();
    for _ in 0..50 {
        client.send(&format!("<r xmlns='{SM}'/>")).await?;
        // Bounded: the answer comes after at most the messages still on their way.
        let h = loop {
            let el = client.recv().await?;
            if let Some(h) = h_of(&el) {
                break h;
            }
            if el.attr("type") == Some("groupchat") {
                reflected.push(el);
            }
        };
        seen.push(h);
        if h >= want {
            return Ok((seen, reflected));
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    anyhow::bail!("h stayed below {want}: {seen:?}")
}

#[tokio::test]
async fn a_burst_of_archived_messages_is_acknowledged_in_full_and_in_order() -> anyhow::Result<()> {
    let (server, mut alice, mut bob) = alice_and_bob_in_the_room().await?;

    alice.send(&format!("<enable xmlns='{SM}'/>")).await?;
    alice.expect("enabled", |e| e.is("enabled", SM)).await?;
    // One write: every message is read while the first ones wait for their commit; then an
    // iq to the server and a request for an ack, behind them.
    const N: u32 = 60;
    let mut burst = burst(N);
    burst.push_str("<iq type='get' id='ping' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>");
    burst.push_str(&format!("<r xmlns='{SM}'/>"));
    alice.send(&burst).await?;

    // Everything sent: N messages and the ping.
    let (hs, reflected) = acks_until(&mut alice, N + 1, Vec::new()).await?;
    assert!(hs.windows(2).all(|w| w[0] <= w[1]), "h went back: {hs:?}");
    assert_eq!(hs.last().copied(), Some(N + 1), "acks: {hs:?}");

    // The sender's copies, then the other occupant's: all, in the order sent, each with the
    // room's stanza-id, the same for both.
    let mut alice_ids = Vec::new();
    let mut reflected = reflected.into_iter();
    for n in 0..N {
        let el = match reflected.next() {
            Some(el) => el,
            None => collect_until(&mut alice, "a reflected message", 100, |e| {
                e.attr("type") == Some("groupchat")
            })
            .await?
            .pop()
            .context("no message")?,
        };
        assert_eq!(body(&el).as_deref(), Some(&format!("m{n}")[..]), "{el}");
        alice_ids.push(room_stanza_id(&el).context("no stanza-id from the room")?);
    }
    let mut bob_ids = Vec::new();
    for n in 0..N {
        let el = next_groupchat(&mut bob).await?;
        assert_eq!(body(&el).as_deref(), Some(&format!("m{n}")[..]), "{el}");
        bob_ids.push(room_stanza_id(&el).context("no stanza-id from the room")?);
    }
    assert_eq!(alice_ids, bob_ids);

    // The archive holds every message under the id the occupants saw.
    bob.send(&format!(
        "<iq to='{ROOM}' type='set' id='mam'><query xmlns='urn:xmpp:mam:2' queryid='q'>\
         <set xmlns='http://jabber.org/protocol/rsm'><max>100</max></set></query></iq>"
    ))
    .await?;
    let mut answer = collect_until(&mut bob, "the archive", 200, |e| {
        e.attr("id") == Some("mam")
    })
    .await?;
    let fin = answer.pop().context("no answer")?;
    assert_eq!(fin.attr("type"), Some("result"), "{fin}");
    let archived: Vec<String> = answer
        .iter()
        .filter_map(|m| Some(m.child("result", "urn:xmpp:mam:2")?.attr("id")?.to_owned()))
        .collect();
    assert_eq!(archived, alice_ids);
    server.stop().await;
    Ok(())
}

/// A session that ends with archived messages still on their way waits for them: a new
/// session of the same account finds every message sent before the link went down in the
/// archive and in the room, none twice.
#[tokio::test]
async fn messages_in_flight_when_the_sender_leaves_are_all_sent() -> anyhow::Result<()> {
    let server = archiving_server().await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    create_instant(&mut alice, ROOM, "Alice").await?;
    let mut bob = online(&server, "bob", "phone", 0).await?;
    enter(&mut bob, ROOM, "Bob", "<history maxstanzas='0'/>").await?;
    const N: u32 = 40;
    let mut burst = burst(N);
    burst.push_str("</stream:stream>");
    alice.send(&burst).await?;
    // Read to the end of alice's stream (the socket must not be reset under unread bytes).
    for _ in 0..(2 * N + 20) {
        if alice.recv().await.is_err() {
            break;
        }
    }
    drop(alice);
    let mut bodies = Vec::new();
    for _ in 0..N {
        let el = next_groupchat(&mut bob)
            .await
            .with_context(|| format!("after {bodies:?}"))?;
        bodies.push(body(&el).unwrap_or_default());
    }
    let expected: Vec<String> = (0..N).map(|n| format!("m{n}")).collect();
    assert_eq!(bodies, expected);
    // Alice's exit comes after her messages.
    let exit = collect_until(&mut bob, "Alice's exit", 20, |e| {
        e.is("presence", CLIENT) && e.attr("from") == Some(&format!("{ROOM}/Alice")[..])
    })
    .await?
    .pop()
    .context("no exit")?;
    assert_eq!(exit.attr("type"), Some("unavailable"), "{exit}");
    server.stop().await;
    Ok(())
}

/// Messages go out while their commit runs, yet a query of the archive right behind them
/// (in the same write as the messages, or the moment the last one arrives) finds every one of
/// them, under the ids the occupants saw.
#[tokio::test]
async fn a_query_right_behind_the_messages_finds_them_all() -> anyhow::Result<()> {
    let (server, mut alice, mut bob) = alice_and_bob_in_the_room().await?;
    const N: u32 = 60;
    let query = |id: &str| {
        format!(
            "<iq to='{ROOM}' type='set' id='{id}'><query xmlns='urn:xmpp:mam:2'>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>{N}</max><before/></set>\
             </query></iq>"
        )
    };
    let archived = |answer: &[Element]| -> Vec<String> {
        answer
            .iter()
            .filter_map(|m| Some(m.child("result", "urn:xmpp:mam:2")?.attr("id")?.to_owned()))
            .collect()
    };
    for round in 0..3 {
        // The sender's own query, in the same write as its messages.
        let mut write = burst(N);
        write.push_str(&query(&format!("own{round}")));
        alice.send(&write).await?;
        let mut own = collect_until(&mut alice, "the archive", 300, |e| {
            e.attr("id") == Some(&format!("own{round}")[..])
        })
        .await?;
        let fin = own.pop().context("no answer")?;
        assert_eq!(fin.attr("type"), Some("result"), "{fin}");
        let reflected: Vec<String> = own
            .iter()
            .filter(|e| e.attr("type") == Some("groupchat"))
            .filter_map(room_stanza_id)
            .collect();
        assert_eq!(reflected.len(), N as usize, "round {round}");
        assert_eq!(archived(&own), reflected, "round {round}");

        // Another occupant's, the moment the last message arrives.
        let mut seen = Vec::new();
        for _ in 0..N {
            let el = next_groupchat(&mut bob).await?;
            seen.push(room_stanza_id(&el).context("no stanza-id from the room")?);
        }
        assert_eq!(seen, reflected, "round {round}");
        bob.send(&query(&format!("mam{round}"))).await?;
        let mut answer = collect_until(&mut bob, "the archive", 200, |e| {
            e.attr("id") == Some(&format!("mam{round}")[..])
        })
        .await?;
        let fin = answer.pop().context("no answer")?;
        assert_eq!(fin.attr("type"), Some("result"), "{fin}");
        assert_eq!(archived(&answer), seen, "round {round}");
    }
    server.stop().await;
    Ok(())
}
