//! Group chat across servers: a user of another server enters a room here, talks, changes
//! nickname and leaves; a user of this server enters a room on the other server and, when
//! their session ends without leaving, the room sees them go (RFC 6121 §4.6.3: the server
//! sends unavailable to where the session sent directed presence). Both servers are xmppd;
//! `interop/` does the same with Prosody and ejabberd.

use crate::common;

use common::CLIENT;
use common::federation::{Auth, next_matching, online, two_servers_routing};
use common::muc::{MUC, codes, collect_until, is_subject, item};
use xmppd_testkit::TestClient;
use xmppd_xml::Element;

const ROOM_A: &str = "hall@conference.a.test";
const ROOM_B: &str = "yard@conference.b.test";

async fn enter(client: &mut TestClient, room: &str, nick: &str) -> anyhow::Result<Vec<Element>> {
    client
        .send(&format!(
            "<presence to='{room}/{nick}'><x xmlns='{MUC}'/></presence>"
        ))
        .await?;
    collect_until(client, &format!("the entry into {room}"), 100, is_subject).await
}

async fn instant(client: &mut TestClient, room: &str, nick: &str) -> anyhow::Result<()> {
    let entry = enter(client, room, nick).await?;
    assert!(entry.iter().any(|e| codes(e).contains(&201)), "{entry:?}");
    client
        .send(&format!(
            "<iq to='{room}' type='set' id='cfg'><query xmlns='http://jabber.org/protocol/muc#owner'>\
             <x xmlns='jabber:x:data' type='submit'/></query></iq>"
        ))
        .await?;
    let answer = next_matching(client, "the configuration result", |e| {
        e.attr("id") == Some("cfg")
    })
    .await?;
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    Ok(())
}

async fn groupchat(client: &mut TestClient, from: &str, text: &str) -> anyhow::Result<Element> {
    next_matching(client, &format!("{text:?} from {from}"), |e| {
        e.is("message", CLIENT)
            && e.attr("type") == Some("groupchat")
            && e.attr("from") == Some(from)
            && e.child("body", CLIENT).map(Element::text).as_deref() == Some(text)
    })
    .await
}

#[tokio::test]
async fn users_of_both_servers_share_rooms_on_either() -> anyhow::Result<()> {
    let (_pki, a, b) = two_servers_routing(
        Auth::Dialback,
        None,
        &["conference.a.test"],
        &["conference.b.test"],
    )
    .await?;
    let mut alice = online(&a, "alice").await?;
    let mut bob = online(&b, "bob").await?;

    // A room here, a visitor from b.test.
    instant(&mut alice, ROOM_A, "Alice").await?;
    let entry = enter(&mut bob, ROOM_A, "Bob").await?;
    let own = entry
        .iter()
        .find(|e| codes(e).contains(&110))
        .expect("self-presence");
    assert_eq!(own.attr("to"), Some("bob@b.test/res"));
    let arrival = next_matching(&mut alice, "Bob's arrival", |e| {
        e.attr("from") == Some("hall@conference.a.test/Bob")
    })
    .await?;
    assert_eq!(item(&arrival).unwrap().2.as_deref(), Some("bob@b.test/res"));
    bob.send(&format!(
        "<message to='{ROOM_A}' type='groupchat' id='b1'><body>from b</body></message>"
    ))
    .await?;
    let echo = groupchat(&mut bob, "hall@conference.a.test/Bob", "from b").await?;
    assert_eq!(echo.attr("id"), Some("b1"));
    groupchat(&mut alice, "hall@conference.a.test/Bob", "from b").await?;
    alice
        .send(&format!(
            "<message to='{ROOM_A}' type='groupchat'><body>from a</body></message>"
        ))
        .await?;
    groupchat(&mut bob, "hall@conference.a.test/Alice", "from a").await?;
    bob.send(&format!("<presence to='{ROOM_A}/Robert'/>"))
        .await?;
    let renamed = next_matching(&mut alice, "the nickname change", |e| {
        e.attr("from") == Some("hall@conference.a.test/Bob")
    })
    .await?;
    assert!(codes(&renamed).contains(&303), "{renamed}");
    bob.send(&format!(
        "<presence to='{ROOM_A}/Robert' type='unavailable'/>"
    ))
    .await?;
    let left = next_matching(&mut alice, "Robert leaving", |e| {
        e.attr("from") == Some("hall@conference.a.test/Robert")
            && e.attr("type") == Some("unavailable")
    })
    .await?;
    assert!(codes(&left).is_empty(), "{left}");

    // A room on b.test, a visitor from here who disconnects without leaving.
    instant(&mut bob, ROOM_B, "Bob").await?;
    enter(&mut alice, ROOM_B, "Alice").await?;
    next_matching(&mut bob, "Alice's arrival", |e| {
        e.attr("from") == Some("yard@conference.b.test/Alice")
    })
    .await?;
    alice
        .send(&format!(
            "<message to='{ROOM_B}' type='groupchat'><body>visiting</body></message>"
        ))
        .await?;
    groupchat(&mut bob, "yard@conference.b.test/Alice", "visiting").await?;
    bob.send(&format!(
        "<message to='{ROOM_B}/Alice' type='chat'><body>private</body></message>"
    ))
    .await?;
    let pm = next_matching(&mut alice, "the private message", |e| {
        e.child("body", CLIENT).map(Element::text).as_deref() == Some("private")
    })
    .await?;
    assert_eq!(pm.attr("from"), Some("yard@conference.b.test/Bob"));
    alice.close().await?;
    next_matching(&mut bob, "Alice gone with her session", |e| {
        e.attr("from") == Some("yard@conference.b.test/Alice")
            && e.attr("type") == Some("unavailable")
    })
    .await?;
    b.stop().await;
    a.stop().await;
    Ok(())
}
