//! XEP-0045 rooms on `conference.localhost`: creating (locked until configured, instant
//! rooms), entering with the occupant list first, then history, then the subject; groupchat
//! reflected to everyone with the sender's id, the room's stanza-id and the occupant id;
//! nickname changes, presence updates, private messages, leaving; temporary rooms vanishing
//! and persistent ones surviving a restart.

use crate::common;

use common::muc::*;
use common::*;
use xmppd_testkit::TestServer;

const ROOM: &str = "coven@conference.localhost";

async fn server() -> anyhow::Result<TestServer> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob", "carol"]).await?;
    Ok(server)
}

#[tokio::test]
async fn a_room_is_created_entered_and_talked_in() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    let mut bob = online(&server, "bob", "phone", 0).await?;

    let entry = create_instant(&mut alice, ROOM, "Alice").await?;
    let own = own_presence(&entry)?;
    assert!(codes(own).contains(&201), "{own}");
    assert_eq!(own.attr("from"), Some("coven@conference.localhost/Alice"));
    let (affiliation, role, jid, _) = item(own).unwrap();
    assert_eq!(
        (affiliation.as_str(), role.as_str()),
        ("owner", "moderator")
    );
    assert_eq!(jid.as_deref(), Some("alice@localhost/pc"));
    assert!(is_subject(entry.last().unwrap()));

    // Bob: the occupant list first (Alice, whose real JID he does not see), then himself.
    let entry = enter(&mut bob, ROOM, "Bob", "").await?;
    let first = &entry[0];
    assert_eq!(
        first.attr("from"),
        Some("coven@conference.localhost/Alice"),
        "{first}"
    );
    assert_eq!(
        item(first).unwrap().2,
        None,
        "a participant saw a real JID: {first}"
    );
    let own = own_presence(&entry)?;
    assert_eq!(own.attr("from"), Some("coven@conference.localhost/Bob"));
    assert_eq!(item(own).unwrap().1, "participant");
    // Alice, a moderator, sees Bob arrive with his real JID.
    let arrival = expect_presence_from(&mut alice, "coven@conference.localhost/Bob").await?;
    assert_eq!(
        item(&arrival).unwrap().2.as_deref(),
        Some("bob@localhost/phone")
    );
    let bob_id = occupant_id(&arrival).expect("an occupant id");

    // A groupchat message reaches everyone, the sender too, with its id kept, the room's
    // stanza-id and the real occupant id (a forged one is dropped).
    bob.send(&format!(
        "<message to='{ROOM}' type='groupchat' id='b1'><body>hello</body>\
         <occupant-id xmlns='urn:xmpp:occupant-id:0' id='forged'/>\
         <stanza-id xmlns='urn:xmpp:sid:0' by='{ROOM}' id='forged'/></message>"
    ))
    .await?;
    for client in [&mut alice, &mut bob] {
        let m = expect_groupchat(client, "coven@conference.localhost/Bob", "hello").await?;
        assert_eq!(m.attr("id"), Some("b1"));
        assert_eq!(occupant_id(&m).as_deref(), Some(bob_id.as_str()), "{m}");
        let ids: Vec<_> = m
            .children()
            .filter(|c| c.name() == "occupant-id" || c.name() == "stanza-id")
            .collect();
        assert_eq!(ids.len(), 2, "forged ids passed: {m}");
        let sid = m.child("stanza-id", "urn:xmpp:sid:0").unwrap();
        assert_eq!(sid.attr("by"), Some(ROOM));
        assert_ne!(sid.attr("id"), Some("forged"));
    }

    // A nickname change: unavailable with 303 and the new nick, then the new occupant JID.
    bob.send(&format!("<presence to='{ROOM}/Robert'/>")).await?;
    let gone = expect_presence_from(&mut alice, "coven@conference.localhost/Bob").await?;
    assert_eq!(gone.attr("type"), Some("unavailable"));
    assert!(codes(&gone).contains(&303), "{gone}");
    assert_eq!(item(&gone).unwrap().3.as_deref(), Some("Robert"));
    let back = expect_presence_from(&mut alice, "coven@conference.localhost/Robert").await?;
    assert_eq!(back.attr("type"), None);
    assert_eq!(
        occupant_id(&back).as_deref(),
        Some(bob_id.as_str()),
        "the occupant id is stable"
    );
    let own_gone = expect_presence_from(&mut bob, "coven@conference.localhost/Bob").await?;
    assert_eq!(codes(&own_gone), [110, 303]);
    expect_presence_from(&mut bob, "coven@conference.localhost/Robert").await?;

    // A presence update is broadcast.
    bob.send(&format!(
        "<presence to='{ROOM}/Robert'><show>away</show></presence>"
    ))
    .await?;
    let away = expect_presence_from(&mut alice, "coven@conference.localhost/Robert").await?;
    assert_eq!(
        away.child("show", CLIENT).map(|s| s.text()).as_deref(),
        Some("away")
    );
    expect_presence_from(&mut bob, "coven@conference.localhost/Robert").await?;

    // A private message between occupants, from the sender's occupant JID.
    alice
        .send(&format!(
            "<message to='{ROOM}/Robert' type='chat' id='pm1'><body>psst</body></message>"
        ))
        .await?;
    let pm = collect_until(&mut bob, "the private message", 20, |e| {
        body(e).as_deref() == Some("psst")
    })
    .await?
    .pop()
    .unwrap();
    assert_eq!(pm.attr("from"), Some("coven@conference.localhost/Alice"));
    assert_eq!(pm.attr("to"), Some("bob@localhost/phone"));
    assert!(pm.child("x", MUC_USER).is_some(), "{pm}");

    // Leaving: everyone sees the occupant go; the room is temporary and ends with Alice.
    bob.send(&format!(
        "<presence to='{ROOM}/Robert' type='unavailable'/>"
    ))
    .await?;
    let left = expect_presence_from(&mut alice, "coven@conference.localhost/Robert").await?;
    assert_eq!(left.attr("type"), Some("unavailable"));
    let own_left = expect_presence_from(&mut bob, "coven@conference.localhost/Robert").await?;
    assert_eq!(codes(&own_left), [110]);
    alice
        .send(&format!("<presence to='{ROOM}/Alice' type='unavailable'/>"))
        .await?;
    expect_presence_from(&mut alice, "coven@conference.localhost/Alice").await?;
    let entry = enter(&mut bob, ROOM, "Bob", "").await?;
    assert!(
        codes(own_presence(&entry)?).contains(&201),
        "the temporary room outlived its occupants"
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_room_is_locked_until_its_owner_configures_it() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    let mut bob = online(&server, "bob", "phone", 0).await?;
    let entry = enter(&mut alice, ROOM, "Alice", "").await?;
    assert_eq!(codes(own_presence(&entry)?), [110, 170, 201]);
    bob.send(&format!(
        "<presence to='{ROOM}/Bob' id='j1'><x xmlns='{MUC}'/></presence>"
    ))
    .await?;
    expect_error(
        &mut bob,
        "presence",
        "j1",
        "coven@conference.localhost/Bob",
        "item-not-found",
    )
    .await?;
    // Not listed either while locked.
    let items = iq(
        &mut bob,
        SERVICE,
        "get",
        "<query xmlns='http://jabber.org/protocol/disco#items'/>",
    )
    .await?;
    assert!(items.to_string().find(ROOM).is_none(), "{items}");
    configure(&mut alice, ROOM, &[]).await?;
    let entry = enter(&mut bob, ROOM, "Bob", "").await?;
    assert_eq!(codes(own_presence(&entry)?), [110, 170]);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_persistent_room_survives_a_restart() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    enter(&mut alice, ROOM, "Alice", "").await?;
    configure(
        &mut alice,
        ROOM,
        &[
            ("muc#roomconfig_persistentroom", &["1"]),
            ("muc#roomconfig_roomname", &["The Coven"]),
            ("muc#roomconfig_membersonly", &["1"]),
        ],
    )
    .await?;
    let answer = iq(
        &mut alice,
        ROOM,
        "set",
        &format!("<query xmlns='{MUC_ADMIN}'><item affiliation='member' jid='bob@localhost' nick='Bob'/></query>"),
    )
    .await?;
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    alice
        .send(&format!(
            "<message to='{ROOM}' type='groupchat'><subject>Spells</subject></message>"
        ))
        .await?;
    say(&mut alice, ROOM, "a1", "before the restart").await?;
    expect_groupchat(
        &mut alice,
        "coven@conference.localhost/Alice",
        "before the restart",
    )
    .await?;
    drop(alice);

    let server = server.restart().await?;
    let mut bob = online(&server, "bob", "phone", 0).await?;
    let mut carol = online(&server, "carol", "pc", 0).await?;
    // Listed from storage before anyone brings the room back.
    let items = iq(
        &mut carol,
        SERVICE,
        "get",
        "<query xmlns='http://jabber.org/protocol/disco#items'/>",
    )
    .await?;
    let text = items.to_string();
    assert!(text.contains(ROOM) && text.contains("The Coven"), "{items}");
    let entry = enter(&mut bob, ROOM, "Bob", "").await?;
    let own = own_presence(&entry)?;
    assert_eq!(item(own).unwrap().0, "member", "{own}");
    // Bob, absent when he became a member, was told (status 101, offline).
    assert!(
        entry
            .iter()
            .any(|e| e.attr("type").is_none() && codes(e).contains(&101)),
        "{entry:?}"
    );
    let history: Vec<_> = entry
        .iter()
        .filter(|e| e.attr("type") == Some("groupchat") && body(e).is_some())
        .collect();
    assert_eq!(history.len(), 1, "{entry:?}");
    assert!(history[0].child("delay", "urn:xmpp:delay").is_some());
    assert!(
        history[0].child("stanza-id", "urn:xmpp:sid:0").is_some(),
        "{}",
        history[0]
    );
    let subject = entry.last().unwrap();
    assert_eq!(subject.child("subject", CLIENT).unwrap().text(), "Spells");
    // Still members-only.
    carol
        .send(&format!(
            "<presence to='{ROOM}/Carol' id='c1'><x xmlns='{MUC}'/></presence>"
        ))
        .await?;
    expect_error(
        &mut carol,
        "presence",
        "c1",
        "coven@conference.localhost/Carol",
        "registration-required",
    )
    .await?;
    let info = iq(
        &mut carol,
        ROOM,
        "get",
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await?;
    let text = info.to_string();
    assert!(
        text.contains("The Coven")
            && text.contains("muc_persistent")
            && text.contains("muc_membersonly"),
        "{info}"
    );
    server.stop().await;
    Ok(())
}

/// Two resources of one account under one nickname: both get the room's traffic and the
/// private messages to that nickname; a private message one of them sends is carbon-copied to
/// the account's other resources (XEP-0280 §6.1), one it receives is not (the room reached
/// them all itself). When one resource leaves, the occupant stays.
#[tokio::test]
async fn several_resources_share_one_nickname() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    create_instant(&mut alice, ROOM, "Alice").await?;
    let mut phone = online(&server, "bob", "phone", 0).await?;
    let mut laptop = online(&server, "bob", "laptop", 0).await?;
    expect_presence(&mut phone, "bob@localhost/laptop", None).await?;
    let carbons = "<enable xmlns='urn:xmpp:carbons:2'/>";
    for client in [&mut phone, &mut laptop] {
        let answer = iq(client, "bob@localhost", "set", carbons).await?;
        assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    }
    enter(&mut phone, ROOM, "Bob", "").await?;
    expect_presence_from(&mut alice, "coven@conference.localhost/Bob").await?;
    let entry = enter(&mut laptop, ROOM, "Bob", "").await?;
    assert_eq!(item(own_presence(&entry)?).unwrap().1, "participant");
    // Alice saw no second arrival.
    say(&mut alice, ROOM, "a1", "to all").await?;
    let next = collect_until(&mut alice, "her own message", 10, |e| body(e).is_some()).await?;
    assert_eq!(next.len(), 1, "a second resource was announced: {next:?}");
    for client in [&mut phone, &mut laptop] {
        expect_groupchat(client, "coven@conference.localhost/Alice", "to all").await?;
    }
    alice
        .send(&format!(
            "<message to='{ROOM}/Bob' type='chat'><body>to bob</body></message>"
        ))
        .await?;
    for client in [&mut phone, &mut laptop] {
        let pm = collect_until(client, "the private message", 10, |e| {
            body(e).as_deref() == Some("to bob")
        })
        .await?;
        let pm = pm.last().unwrap();
        assert_eq!(
            pm.attr("from"),
            Some("coven@conference.localhost/Alice"),
            "not a carbon: {pm}"
        );
    }
    phone
        .send(&format!(
            "<message to='{ROOM}/Alice' type='chat'><body>to alice</body><x xmlns='{MUC_USER}'/></message>"
        ))
        .await?;
    let copy = collect_until(&mut laptop, "the sent carbon", 10, |e| {
        e.child("sent", "urn:xmpp:carbons:2").is_some()
    })
    .await?;
    assert!(copy.last().unwrap().to_string().contains("to alice"));
    let pm = collect_until(&mut alice, "Bob's private message", 10, |e| {
        body(e).as_deref() == Some("to alice")
    })
    .await?;
    assert_eq!(
        pm.last().unwrap().attr("from"),
        Some("coven@conference.localhost/Bob")
    );
    // One resource leaves; Bob is still in.
    laptop
        .send(&format!("<presence to='{ROOM}/Bob' type='unavailable'/>"))
        .await?;
    let left = expect_presence_from(&mut laptop, "coven@conference.localhost/Bob").await?;
    assert_eq!(codes(&left), [110]);
    alice.expect_silence(SILENCE).await?;
    say(&mut alice, ROOM, "a2", "still there?").await?;
    expect_groupchat(
        &mut phone,
        "coven@conference.localhost/Alice",
        "still there?",
    )
    .await?;
    server.stop().await;
    Ok(())
}

/// A delivery error from an occupant's real JID means its session is gone: the room removes
/// it with status 333 and tells the others.
#[tokio::test]
async fn an_error_from_an_occupant_removes_it_with_333() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    create_instant(&mut alice, ROOM, "Alice").await?;
    let mut bob = online(&server, "bob", "phone", 0).await?;
    enter(&mut bob, ROOM, "Bob", "").await?;
    expect_presence_from(&mut alice, "coven@conference.localhost/Bob").await?;
    bob.send(&format!(
        "<message to='{ROOM}/Alice' type='error'><error type='cancel'>\
         <recipient-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    ))
    .await?;
    let gone = expect_presence_from(&mut alice, "coven@conference.localhost/Bob").await?;
    assert_eq!(gone.attr("type"), Some("unavailable"));
    assert_eq!(codes(&gone), [333]);
    server.stop().await;
    Ok(())
}
