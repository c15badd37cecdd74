//! XEP-0045 moderation and ownership: the configuration form and its notifications,
//! passwords, occupant limits, destruction with an alternate venue, kicks and bans, voice in a
//! moderated room and voice requests, the affiliation lists and the refusals the XEP names.

use crate::common;

use common::muc::*;
use common::*;
use xmppd_testkit::{TestClient, TestServer, stanza_error_condition};

const ROOM: &str = "council@conference.localhost";

fn occupant(nick: &str) -> String {
    format!("{ROOM}/{nick}")
}

async fn server() -> anyhow::Result<TestServer> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob", "carol"]).await?;
    Ok(server)
}

/// Alice creates the room; Bob (and Carol, if asked) enter it.
async fn room_with(server: &TestServer, carol_too: bool) -> anyhow::Result<Vec<TestClient>> {
    let mut alice = online(server, "alice", "pc", 0).await?;
    create_instant(&mut alice, ROOM, "Alice").await?;
    let mut bob = online(server, "bob", "phone", 0).await?;
    enter(&mut bob, ROOM, "Bob", "").await?;
    expect_presence_from(&mut alice, &occupant("Bob")).await?;
    let mut clients = vec![alice, bob];
    if carol_too {
        let mut carol = online(server, "carol", "pc", 0).await?;
        enter(&mut carol, ROOM, "Carol", "").await?;
        for c in clients.iter_mut() {
            expect_presence_from(c, &occupant("Carol")).await?;
        }
        clients.push(carol);
    }
    Ok(clients)
}

fn condition(answer: &xmppd_xml::Element) -> Option<String> {
    stanza_error_condition(answer)
}

async fn admin(client: &mut TestClient, item: &str) -> anyhow::Result<xmppd_xml::Element> {
    iq(
        client,
        ROOM,
        "set",
        &format!("<query xmlns='{MUC_ADMIN}'>{item}</query>"),
    )
    .await
}

#[tokio::test]
async fn the_configuration_form_changes_the_room_and_tells_the_occupants() -> anyhow::Result<()> {
    let server = server().await?;
    let mut clients = room_with(&server, false).await?;
    let [alice, bob] = &mut clients[..] else {
        unreachable!()
    };

    let form = iq(alice, ROOM, "get", &format!("<query xmlns='{MUC_OWNER}'/>")).await?;
    let text = form.to_string();
    for var in [
        "muc#roomconfig_roomname",
        "muc#roomconfig_whois",
        "muc#roomconfig_enablearchiving",
        "muc#roomconfig_allowpm",
    ] {
        assert!(text.contains(var), "{var} missing: {form}");
    }
    let refused = iq(bob, ROOM, "get", &format!("<query xmlns='{MUC_OWNER}'/>")).await?;
    assert_eq!(condition(&refused).as_deref(), Some("forbidden"));
    // A wrong value refuses the form; nothing changes.
    let answer = configure_answer(alice, ROOM, &[("muc#roomconfig_maxusers", &["lots"])]).await?;
    assert_eq!(
        condition(&answer).as_deref(),
        Some("not-acceptable"),
        "{answer}"
    );
    let answer = configure_answer(
        alice,
        ROOM,
        &[("muc#roomconfig_persistentroom", &["perhaps"])],
    )
    .await?;
    assert_eq!(
        condition(&answer).as_deref(),
        Some("not-acceptable"),
        "{answer}"
    );

    // Becoming non-anonymous: 104 and 172 to everyone.
    configure(alice, ROOM, &[("muc#roomconfig_whois", &["anyone"])]).await?;
    let notice = collect_until(bob, "the configuration notice", 20, |e| {
        codes(e).contains(&104)
    })
    .await?;
    let notice = notice.last().unwrap();
    assert_eq!(notice.attr("from"), Some(ROOM));
    assert_eq!(codes(notice), [104, 172]);

    // A password and a limit of two occupants.
    configure(
        alice,
        ROOM,
        &[
            ("muc#roomconfig_passwordprotectedroom", &["1"]),
            ("muc#roomconfig_roomsecret", &["sesame"]),
            ("muc#roomconfig_maxusers", &["2"]),
        ],
    )
    .await?;
    let mut carol = online(&server, "carol", "pc", 0).await?;
    carol
        .send(&format!(
            "<presence to='{ROOM}/Carol' id='p1'><x xmlns='{MUC}'/></presence>"
        ))
        .await?;
    expect_error(
        &mut carol,
        "presence",
        "p1",
        &occupant("Carol"),
        "not-authorized",
    )
    .await?;
    carol
        .send(&format!("<presence to='{ROOM}/Carol' id='p2'><x xmlns='{MUC}'><password>sesame</password></x></presence>"))
        .await?;
    expect_error(
        &mut carol,
        "presence",
        "p2",
        &occupant("Carol"),
        "service-unavailable",
    )
    .await?;
    configure(alice, ROOM, &[("muc#roomconfig_maxusers", &["10"])]).await?;
    let entry = enter(&mut carol, ROOM, "Carol", "<password>sesame</password>").await?;
    // Non-anonymous: status 100, and Carol sees real JIDs.
    assert!(codes(own_presence(&entry)?).contains(&100));
    assert!(
        entry
            .iter()
            .any(|e| item(e).and_then(|i| i.2).as_deref() == Some("alice@localhost/pc"))
    );

    // Destruction with a reason and an alternate venue.
    let answer = iq(
        alice,
        ROOM,
        "set",
        &format!(
            "<query xmlns='{MUC_OWNER}'><destroy jid='heath@conference.localhost'><reason>moved</reason></destroy></query>"
        ),
    )
    .await?;
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    let gone = expect_presence_from(&mut carol, &occupant("Carol")).await?;
    assert_eq!(gone.attr("type"), Some("unavailable"));
    let destroy = gone
        .child("x", MUC_USER)
        .and_then(|x| x.child("destroy", MUC_USER))
        .expect("a destroy notice");
    assert_eq!(destroy.attr("jid"), Some("heath@conference.localhost"));
    assert_eq!(
        destroy
            .child("reason", MUC_USER)
            .map(|r| r.text())
            .as_deref(),
        Some("moved")
    );
    // The room is gone.
    let info = iq(
        &mut carol,
        ROOM,
        "get",
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await?;
    assert_eq!(
        condition(&info).as_deref(),
        Some("item-not-found"),
        "{info}"
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn moderators_kick_and_ban_and_the_banned_stay_out() -> anyhow::Result<()> {
    let server = server().await?;
    let mut clients = room_with(&server, true).await?;
    let [alice, bob, carol] = &mut clients[..] else {
        unreachable!()
    };

    // A participant may not kick; nobody may kick an owner.
    let answer = admin(bob, "<item nick='Carol' role='none'/>").await?;
    assert_eq!(condition(&answer).as_deref(), Some("forbidden"), "{answer}");
    let answer = admin(bob, "<item jid='carol@localhost' affiliation='outcast'/>").await?;
    assert_eq!(condition(&answer).as_deref(), Some("forbidden"), "{answer}");
    let answer = admin(alice, "<item nick='Nobody' role='none'/>").await?;
    assert_eq!(
        condition(&answer).as_deref(),
        Some("item-not-found"),
        "{answer}"
    );

    // Kick: 307 with the reason, to the kicked and to everyone.
    let answer = admin(
        alice,
        "<item nick='Carol' role='none'><reason>quiet</reason></item>",
    )
    .await?;
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    let kicked = expect_presence_from(carol, &occupant("Carol")).await?;
    assert_eq!(kicked.attr("type"), Some("unavailable"));
    assert_eq!(codes(&kicked), [110, 307]);
    let seen = expect_presence_from(bob, &occupant("Carol")).await?;
    assert_eq!(codes(&seen), [307]);
    assert!(seen.to_string().contains("quiet"));

    // Ban: 301; the banned user cannot come back, and is on the outcast list.
    let answer = admin(alice, "<item jid='bob@localhost' affiliation='outcast'/>").await?;
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    let banned = expect_presence_from(bob, &occupant("Bob")).await?;
    assert_eq!(codes(&banned), [110, 301]);
    bob.send(&format!(
        "<presence to='{ROOM}/Bob' id='again'><x xmlns='{MUC}'/></presence>"
    ))
    .await?;
    expect_error(bob, "presence", "again", &occupant("Bob"), "forbidden").await?;
    let list = iq(
        alice,
        ROOM,
        "get",
        &format!("<query xmlns='{MUC_ADMIN}'><item affiliation='outcast'/></query>"),
    )
    .await?;
    assert!(list.to_string().contains("bob@localhost"), "{list}");
    // The last owner cannot go.
    let answer = admin(alice, "<item jid='alice@localhost' affiliation='member'/>").await?;
    assert_eq!(condition(&answer).as_deref(), Some("conflict"), "{answer}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn voice_in_a_moderated_room_is_requested_granted_and_revoked() -> anyhow::Result<()> {
    let server = server().await?;
    let mut clients = room_with(&server, false).await?;
    let [alice, bob] = &mut clients[..] else {
        unreachable!()
    };
    configure(alice, ROOM, &[("muc#roomconfig_moderatedroom", &["1"])]).await?;
    // Bob entered before: revoke his voice explicitly.
    let answer = admin(alice, "<item nick='Bob' role='visitor'/>").await?;
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    let now = expect_presence_from(bob, &occupant("Bob")).await?;
    assert_eq!(item(&now).unwrap().1, "visitor");
    bob.send(&format!(
        "<message to='{ROOM}' type='groupchat' id='v1'><body>may I?</body></message>"
    ))
    .await?;
    expect_error(bob, "message", "v1", ROOM, "forbidden").await?;

    // A voice request reaches the moderator, whose approval grants voice.
    bob.send(&format!(
        "<message to='{ROOM}'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>\
         <field var='muc#role'><value>participant</value></field></x></message>"
    ))
    .await?;
    let request = collect_until(alice, "the voice request", 20, |e| {
        e.to_string().contains("muc#request_allow")
    })
    .await?;
    let request = request.last().unwrap();
    assert!(request.to_string().contains("Bob"), "{request}");
    alice
        .send(&format!(
            "<message to='{ROOM}'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#request</value></field>\
             <field var='muc#role'><value>participant</value></field>\
             <field var='muc#roomnick'><value>Bob</value></field>\
             <field var='muc#request_allow'><value>true</value></field></x></message>"
        ))
        .await?;
    let granted = expect_presence_from(bob, &occupant("Bob")).await?;
    assert_eq!(item(&granted).unwrap().1, "participant", "{granted}");
    say(bob, ROOM, "v2", "thank you").await?;
    expect_groupchat(alice, &occupant("Bob"), "thank you").await?;
    // The moderator list, for moderators only.
    let list = iq(
        alice,
        ROOM,
        "get",
        &format!("<query xmlns='{MUC_ADMIN}'><item role='moderator'/></query>"),
    )
    .await?;
    assert!(list.to_string().contains("Alice"), "{list}");
    let refused = iq(
        bob,
        ROOM,
        "get",
        &format!("<query xmlns='{MUC_ADMIN}'><item role='moderator'/></query>"),
    )
    .await?;
    assert_eq!(condition(&refused).as_deref(), Some("forbidden"));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn losing_membership_of_a_members_only_room_removes_the_occupant() -> anyhow::Result<()> {
    let server = server().await?;
    let mut clients = room_with(&server, false).await?;
    let [alice, bob] = &mut clients[..] else {
        unreachable!()
    };
    let answer = admin(alice, "<item jid='bob@localhost' affiliation='member'/>").await?;
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    let member = expect_presence_from(bob, &occupant("Bob")).await?;
    assert_eq!(item(&member).unwrap().0, "member");
    configure(alice, ROOM, &[("muc#roomconfig_membersonly", &["1"])]).await?;
    let members = iq(
        alice,
        ROOM,
        "get",
        &format!("<query xmlns='{MUC_ADMIN}'><item affiliation='member'/></query>"),
    )
    .await?;
    assert!(members.to_string().contains("bob@localhost"), "{members}");
    let answer = admin(alice, "<item jid='bob@localhost' affiliation='none'/>").await?;
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    let removed = collect_until(bob, "the removal", 20, |e| {
        e.attr("type") == Some("unavailable")
    })
    .await?;
    assert_eq!(codes(removed.last().unwrap()), [110, 321]);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn bad_requests_get_the_errors_the_xep_names() -> anyhow::Result<()> {
    let server = server().await?;
    let mut clients = room_with(&server, false).await?;
    let [alice, bob] = &mut clients[..] else {
        unreachable!()
    };
    let mut carol = online(&server, "carol", "pc", 0).await?;
    // No nickname.
    carol
        .send(&format!(
            "<presence to='{ROOM}' id='n0'><x xmlns='{MUC}'/></presence>"
        ))
        .await?;
    expect_error(&mut carol, "presence", "n0", ROOM, "jid-malformed").await?;
    // A nickname longer than the service allows (a 2 KB one is not even a JID).
    let long = "n".repeat(300);
    carol
        .send(&format!(
            "<presence to='{ROOM}/{long}' id='n1'><x xmlns='{MUC}'/></presence>"
        ))
        .await?;
    expect_error(
        &mut carol,
        "presence",
        "n1",
        &occupant(&long),
        "not-acceptable",
    )
    .await?;
    let huge = "n".repeat(2048);
    carol
        .send(&format!(
            "<presence to='{ROOM}/{huge}' id='n2'><x xmlns='{MUC}'/></presence>"
        ))
        .await?;
    let answer = collect_until(&mut carol, "the refusal of a 2 KB nickname", 5, |e| {
        e.attr("id") == Some("n2")
    })
    .await?;
    assert_eq!(
        condition(answer.last().unwrap()).as_deref(),
        Some("jid-malformed")
    );
    // A nickname in use.
    carol
        .send(&format!(
            "<presence to='{ROOM}/Bob' id='n3'><x xmlns='{MUC}'/></presence>"
        ))
        .await?;
    expect_error(&mut carol, "presence", "n3", &occupant("Bob"), "conflict").await?;
    // Groupchat and private messages from someone not in the room.
    carol
        .send(&format!(
            "<message to='{ROOM}' type='groupchat' id='m1'><body>hi</body></message>"
        ))
        .await?;
    expect_error(&mut carol, "message", "m1", ROOM, "not-acceptable").await?;
    carol
        .send(&format!(
            "<message to='{ROOM}/Bob' type='chat' id='m2'><body>hi</body></message>"
        ))
        .await?;
    expect_error(
        &mut carol,
        "message",
        "m2",
        &occupant("Bob"),
        "not-acceptable",
    )
    .await?;
    // A groupchat message to an occupant, a private message to nobody.
    alice
        .send(&format!(
            "<message to='{ROOM}/Bob' type='groupchat' id='m3'><body>hi</body></message>"
        ))
        .await?;
    expect_error(alice, "message", "m3", &occupant("Bob"), "bad-request").await?;
    alice
        .send(&format!(
            "<message to='{ROOM}/Nobody' type='chat' id='m4'><body>hi</body></message>"
        ))
        .await?;
    expect_error(
        alice,
        "message",
        "m4",
        &occupant("Nobody"),
        "item-not-found",
    )
    .await?;
    // A participant changing the subject, until the room allows it.
    bob.send(&format!(
        "<message to='{ROOM}' type='groupchat' id='s1'><subject>mine</subject></message>"
    ))
    .await?;
    expect_error(bob, "message", "s1", ROOM, "forbidden").await?;
    configure(alice, ROOM, &[("muc#roomconfig_changesubject", &["1"])]).await?;
    bob.send(&format!(
        "<message to='{ROOM}' type='groupchat' id='s2'><subject>ours</subject></message>"
    ))
    .await?;
    let subject = collect_until(alice, "the new subject", 20, |e| {
        e.child("subject", CLIENT).map(|s| s.text()).as_deref() == Some("ours")
    })
    .await?;
    assert_eq!(
        subject.last().unwrap().attr("from"),
        Some(occupant("Bob").as_str())
    );
    // An affiliation change by a participant, a malformed item.
    let answer = admin(bob, "<item jid='alice@localhost' affiliation='none'/>").await?;
    assert_eq!(condition(&answer).as_deref(), Some("forbidden"));
    let answer = admin(alice, "<item jid='@@' affiliation='member'/>").await?;
    assert_eq!(
        condition(&answer).as_deref(),
        Some("jid-malformed"),
        "{answer}"
    );
    let answer = admin(alice, "<item nick='Bob' role='king'/>").await?;
    assert_eq!(
        condition(&answer).as_deref(),
        Some("bad-request"),
        "{answer}"
    );
    // A message to a room that does not exist.
    alice.send("<message to='nowhere@conference.localhost' type='groupchat' id='m5'><body>hi</body></message>").await?;
    expect_error(
        alice,
        "message",
        "m5",
        "nowhere@conference.localhost",
        "item-not-found",
    )
    .await?;
    // A forged `from` never reaches the room: the sender's stream ends with invalid-from
    // (RFC 6120 §4.9.3.9), and the room sees only that Bob left.
    bob.send(&format!(
        "<message from='alice@localhost/pc' to='{ROOM}' type='groupchat' id='f1'><body>as alice?</body></message>"
    ))
    .await?;
    assert_eq!(bob.expect_stream_error_skipping().await?, "invalid-from");
    let seen = collect_until(alice, "Bob leaving", 20, |e| {
        e.attr("type") == Some("unavailable")
    })
    .await?;
    assert!(
        seen.iter().all(|e| body(e).as_deref() != Some("as alice?")),
        "{seen:?}"
    );
    server.stop().await;
    Ok(())
}
