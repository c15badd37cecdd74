//! XEP-0045 beyond talking: discussion history limits, the room archive (XEP-0313 on the
//! room JID), mediated and direct invitations, nickname registration, discovery of rooms
//! with RSM, self-ping (XEP-0410) and the order of archived messages (the service's limits are in
//! `muc_limits.rs`).

use crate::common;

use anyhow::Context;

use common::muc::*;
use common::*;
use xmppd_testkit::{TestClient, stanza_error_condition};
use xmppd_xml::Element;

fn bodies(entry: &[Element]) -> Vec<String> {
    entry
        .iter()
        .filter(|e| e.attr("type") == Some("groupchat"))
        .filter_map(body)
        .collect()
}

#[tokio::test]
async fn history_on_entry_follows_the_request() -> anyhow::Result<()> {
    let server = server_with("").await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    create_instant(&mut alice, ROOM, "Alice").await?;
    for n in 1..=5 {
        say(&mut alice, ROOM, &format!("h{n}"), &format!("message {n}")).await?;
        expect_groupchat(&mut alice, &occupant("Alice"), &format!("message {n}")).await?;
    }
    let mut bob = online(&server, "bob", "phone", 0).await?;
    let cases: [(&str, &[&str]); 5] = [
        ("<history maxstanzas='2'/>", &["message 4", "message 5"]),
        ("<history maxchars='0'/>", &[]),
        ("<history maxstanzas='0'/>", &[]),
        (
            "<history since='2000-01-01T00:00:00Z' seconds='3600'/>",
            &[
                "message 1",
                "message 2",
                "message 3",
                "message 4",
                "message 5",
            ],
        ),
        ("<history since='2100-01-01T00:00:00Z'/>", &[]),
    ];
    for (request, expected) in cases {
        let entry = enter(&mut bob, ROOM, "Bob", request).await?;
        assert_eq!(bodies(&entry), expected, "{request}");
        for m in entry.iter().filter(|e| body(e).is_some()) {
            let delay = m.child("delay", "urn:xmpp:delay").expect("a delay");
            assert_eq!(delay.attr("from"), Some(ROOM));
        }
        bob.send(&format!("<presence to='{ROOM}/Bob' type='unavailable'/>"))
            .await?;
        expect_presence_from(&mut bob, &occupant("Bob")).await?;
    }
    server.stop().await;
    Ok(())
}

/// Sends a MAM query to the room and returns (results, fin iq).
async fn room_archive(
    client: &mut TestClient,
    form: &str,
    rsm: &str,
) -> anyhow::Result<(Vec<Element>, Element)> {
    let answer = collect_until_answer(
        client,
        &format!("<query xmlns='urn:xmpp:mam:2' queryid='q'>{form}{rsm}</query>"),
    )
    .await?;
    Ok(answer)
}

async fn collect_until_answer(
    client: &mut TestClient,
    query: &str,
) -> anyhow::Result<(Vec<Element>, Element)> {
    client
        .send(&format!("<iq to='{ROOM}' type='set' id='mam'>{query}</iq>"))
        .await?;
    let mut seen = collect_until(client, "the archive answer", 200, |e| {
        e.attr("id") == Some("mam")
    })
    .await?;
    let fin = seen.pop().context("no answer")?;
    let results = seen
        .into_iter()
        .filter(|e| e.child("result", "urn:xmpp:mam:2").is_some())
        .collect();
    Ok((results, fin))
}

#[tokio::test]
async fn the_room_archive_is_queried_and_paged() -> anyhow::Result<()> {
    let server = server_with("").await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    create_instant(&mut alice, ROOM, "Alice").await?;
    let mut bob = online(&server, "bob", "phone", 0).await?;
    enter(&mut bob, ROOM, "Bob", "").await?;
    let mut ids = Vec::new();
    for n in 1..=4 {
        let (client, nick) = if n % 2 == 0 {
            (&mut bob, "Bob")
        } else {
            (&mut alice, "Alice")
        };
        say(client, ROOM, &format!("a{n}"), &format!("archived {n}")).await?;
        let m = expect_groupchat(client, &occupant(nick), &format!("archived {n}")).await?;
        ids.push(
            m.child("stanza-id", "urn:xmpp:sid:0")
                .unwrap()
                .attr("id")
                .unwrap()
                .to_owned(),
        );
    }
    let info = iq(
        &mut bob,
        ROOM,
        "get",
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await?;
    assert!(info.to_string().contains("urn:xmpp:mam:2"), "{info}");

    let (results, fin) = room_archive(&mut bob, "", "").await?;
    assert_eq!(results.len(), 4);
    let first = &results[0];
    assert_eq!(first.attr("from"), Some(ROOM));
    let result = first.child("result", "urn:xmpp:mam:2").unwrap();
    assert_eq!(
        result.attr("id"),
        Some(ids[0].as_str()),
        "the archive id is the stanza-id"
    );
    assert!(first.to_string().contains("archived 1"));
    assert_eq!(fin.attr("type"), Some("result"));
    // Filtered by occupant, paged with RSM.
    let with = "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>urn:xmpp:mam:2</value></field>\
                <field var='with'><value>lounge@conference.localhost/Bob</value></field></x>";
    let (results, _) = room_archive(&mut bob, with, "").await?;
    assert_eq!(results.len(), 2);
    let (page, fin) = room_archive(
        &mut bob,
        "",
        "<set xmlns='http://jabber.org/protocol/rsm'><max>3</max></set>",
    )
    .await?;
    assert_eq!(page.len(), 3);
    assert!(
        fin.to_string().contains("<count>4</count>") || fin.to_string().contains(">4<"),
        "{fin}"
    );
    let after = format!(
        "<set xmlns='http://jabber.org/protocol/rsm'><max>3</max><after>{}</after></set>",
        ids[2]
    );
    let (page, _) = room_archive(&mut bob, "", &after).await?;
    assert_eq!(page.len(), 1);
    assert!(page[0].to_string().contains("archived 4"));
    // An unknown id is item-not-found; a banned user may not read.
    let bad = "<set xmlns='http://jabber.org/protocol/rsm'><after>0000000000000000</after></set>";
    let (_, fin) = room_archive(&mut bob, "", bad).await?;
    assert_eq!(
        stanza_error_condition(&fin).as_deref(),
        Some("item-not-found")
    );
    let answer = iq(
        &mut alice,
        ROOM,
        "set",
        &format!(
            "<query xmlns='{MUC_ADMIN}'><item jid='carol@localhost' affiliation='outcast'/></query>"
        ),
    )
    .await?;
    assert_eq!(answer.attr("type"), Some("result"));
    let mut carol = online(&server, "carol", "pc", 0).await?;
    let (_, fin) = room_archive(&mut carol, "", "").await?;
    assert_eq!(stanza_error_condition(&fin).as_deref(), Some("forbidden"));
    // Archiving off: messages are no longer archived.
    configure(
        &mut alice,
        ROOM,
        &[("muc#roomconfig_enablearchiving", &["0"])],
    )
    .await?;
    say(&mut alice, ROOM, "a5", "not archived").await?;
    expect_groupchat(&mut alice, &occupant("Alice"), "not archived").await?;
    let (results, _) = room_archive(&mut bob, "", "").await?;
    assert_eq!(results.len(), 4);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn invitations_are_mediated_declined_and_passed_directly() -> anyhow::Result<()> {
    let server = server_with("").await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    create_instant(&mut alice, ROOM, "Alice").await?;
    configure(
        &mut alice,
        ROOM,
        &[
            ("muc#roomconfig_membersonly", &["1"]),
            ("muc#roomconfig_passwordprotectedroom", &["1"]),
            ("muc#roomconfig_roomsecret", &["pw"]),
        ],
    )
    .await?;
    let mut bob = online(&server, "bob", "phone", 0).await?;
    alice
        .send(&format!(
            "<message to='{ROOM}'><x xmlns='{MUC_USER}'><invite to='bob@localhost'><reason>join us</reason></invite></x></message>"
        ))
        .await?;
    let invitation = collect_until(&mut bob, "the invitation", 20, |e| {
        e.to_string().contains("invite")
    })
    .await?;
    let invitation = invitation.last().unwrap();
    assert_eq!(invitation.attr("from"), Some(ROOM));
    let x = invitation.child("x", MUC_USER).unwrap();
    assert_eq!(
        x.child("invite", MUC_USER).unwrap().attr("from"),
        Some("alice@localhost/pc")
    );
    assert_eq!(
        x.child("password", MUC_USER).map(|p| p.text()).as_deref(),
        Some("pw")
    );
    // The owner's invitation made Bob a member of the members-only room.
    let entry = enter(&mut bob, ROOM, "Bob", "<password>pw</password>").await?;
    assert_eq!(item(own_presence(&entry)?).unwrap().0, "member");
    // Carol declines.
    let mut carol = online(&server, "carol", "pc", 0).await?;
    carol
        .send(&format!(
            "<message to='{ROOM}'><x xmlns='{MUC_USER}'><decline to='alice@localhost/pc'><reason>busy</reason></decline></x></message>"
        ))
        .await?;
    let decline = collect_until(&mut alice, "the decline", 20, |e| {
        e.to_string().contains("decline")
    })
    .await?;
    let decline = decline.last().unwrap();
    let d = decline
        .child("x", MUC_USER)
        .unwrap()
        .child("decline", MUC_USER)
        .unwrap();
    assert_eq!(d.attr("from"), Some("carol@localhost"));
    // A participant may not invite unless the room allows it.
    bob.send(&format!("<message to='{ROOM}' id='i2'><x xmlns='{MUC_USER}'><invite to='carol@localhost'/></x></message>"))
        .await?;
    expect_error(&mut bob, "message", "i2", ROOM, "forbidden").await?;
    // XEP-0249: a direct invitation goes from client to client untouched.
    alice
        .send(&format!("<message to='carol@localhost'><x xmlns='jabber:x:conference' jid='{ROOM}' password='pw'/></message>"))
        .await?;
    let direct = collect_until(&mut carol, "the direct invitation", 20, |e| {
        e.child("x", "jabber:x:conference").is_some()
    })
    .await?;
    assert_eq!(
        direct
            .last()
            .unwrap()
            .child("x", "jabber:x:conference")
            .unwrap()
            .attr("jid"),
        Some(ROOM)
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_registered_nickname_is_reserved() -> anyhow::Result<()> {
    let server = server_with("").await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    create_instant(&mut alice, ROOM, "Alice").await?;
    let mut bob = online(&server, "bob", "phone", 0).await?;
    let form = iq(&mut bob, ROOM, "get", "<query xmlns='jabber:iq:register'/>").await?;
    assert!(form.to_string().contains("muc#register_roomnick"), "{form}");
    let register = |nick: &str| {
        format!(
            "<query xmlns='jabber:iq:register'><x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#register</value></field>\
             <field var='muc#register_roomnick'><value>{nick}</value></field></x></query>"
        )
    };
    let answer = iq(&mut bob, ROOM, "set", &register("Bobby")).await?;
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    let reserved = iq(
        &mut bob,
        ROOM,
        "get",
        "<query xmlns='http://jabber.org/protocol/disco#info' node='x-roomuser-item'/>",
    )
    .await?;
    assert!(
        reserved.to_string().contains("name=\"Bobby\""),
        "{reserved}"
    );
    let mut carol = online(&server, "carol", "pc", 0).await?;
    let answer = iq(&mut carol, ROOM, "set", &register("Bobby")).await?;
    assert_eq!(stanza_error_condition(&answer).as_deref(), Some("conflict"));
    carol
        .send(&format!(
            "<presence to='{ROOM}/Bobby' id='r1'><x xmlns='{MUC}'/></presence>"
        ))
        .await?;
    expect_error(&mut carol, "presence", "r1", &occupant("Bobby"), "conflict").await?;
    let entry = enter(&mut bob, ROOM, "Bobby", "").await?;
    assert_eq!(item(own_presence(&entry)?).unwrap().0, "member");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn rooms_are_discovered_and_paged() -> anyhow::Result<()> {
    let server = server_with("").await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    let info = iq(
        &mut alice,
        SERVICE,
        "get",
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await?;
    let text = info.to_string();
    assert!(
        text.contains("conference") && text.contains("http://jabber.org/protocol/muc"),
        "{info}"
    );
    let server_items = iq(
        &mut alice,
        "localhost",
        "get",
        "<query xmlns='http://jabber.org/protocol/disco#items'/>",
    )
    .await?;
    assert!(server_items.to_string().contains(SERVICE), "{server_items}");
    for n in 0..12 {
        let room = format!("room{n:02}@{SERVICE}");
        create_instant(&mut alice, &room, "Alice").await?;
    }
    let hidden = format!("hidden@{SERVICE}");
    create_instant(&mut alice, &hidden, "Alice").await?;
    configure(
        &mut alice,
        &hidden,
        &[("muc#roomconfig_publicroom", &["0"])],
    )
    .await?;
    let page = |rsm: &str| {
        format!(
            "<query xmlns='http://jabber.org/protocol/disco#items'><set xmlns='http://jabber.org/protocol/rsm'>{rsm}</set></query>"
        )
    };
    let first = iq(&mut alice, SERVICE, "get", &page("<max>5</max>")).await?;
    let items: Vec<_> = first
        .child("query", "http://jabber.org/protocol/disco#items")
        .unwrap()
        .children()
        .filter(|c| c.name() == "item")
        .map(|c| c.attr("jid").unwrap_or("").to_owned())
        .collect();
    assert_eq!(items.len(), 5);
    assert_eq!(items[0], format!("room00@{SERVICE}"));
    assert!(
        first.to_string().contains("<count>12</count>"),
        "hidden rooms are not counted: {first}"
    );
    let next = iq(
        &mut alice,
        SERVICE,
        "get",
        &page(&format!("<max>5</max><after>{}</after>", items[4])),
    )
    .await?;
    assert!(next.to_string().contains(&format!("room05@{SERVICE}")));
    let last = iq(&mut alice, SERVICE, "get", &page("<max>5</max><before/>")).await?;
    assert!(
        last.to_string().contains(&format!("room11@{SERVICE}"))
            && !last.to_string().contains("hidden@")
    );
    // The room's own information: occupants and features.
    let info = iq(
        &mut alice,
        &format!("room00@{SERVICE}"),
        "get",
        "<query xmlns='http://jabber.org/protocol/disco#info'/>",
    )
    .await?;
    let text = info.to_string();
    for f in [
        "muc_temporary",
        "muc_public",
        "muc_open",
        "urn:xmpp:occupant-id:0",
        "muc#roominfo_occupants",
    ] {
        assert!(text.contains(f), "{f} missing: {info}");
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_self_ping_tells_a_client_whether_it_is_still_in() -> anyhow::Result<()> {
    let server = server_with("").await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    create_instant(&mut alice, ROOM, "Alice").await?;
    let pong = iq(
        &mut alice,
        &occupant("Alice"),
        "get",
        "<ping xmlns='urn:xmpp:ping'/>",
    )
    .await?;
    assert_eq!(pong.attr("type"), Some("result"), "{pong}");
    let mut bob = online(&server, "bob", "phone", 0).await?;
    let out = iq(
        &mut bob,
        &occupant("Bob"),
        "get",
        "<ping xmlns='urn:xmpp:ping'/>",
    )
    .await?;
    assert_eq!(
        stanza_error_condition(&out).as_deref(),
        Some("not-acceptable"),
        "{out}"
    );
    server.stop().await;
    Ok(())
}

/// Archived messages leave the room in the order they are archived, whoever sends them and
/// however fast: every occupant receives the same sequence, and it is the archive's.
#[tokio::test]
async fn archived_messages_arrive_in_archive_order() -> anyhow::Result<()> {
    let server = server_with("messages_per_second = 1000.0\nmessage_burst = 1000").await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    create_instant(&mut alice, ROOM, "Alice").await?;
    let mut bob = online(&server, "bob", "phone", 0).await?;
    enter(&mut bob, ROOM, "Bob", "").await?;
    const N: usize = 40;
    let mut batch_a = String::new();
    let mut batch_b = String::new();
    for n in 0..N {
        batch_a.push_str(&format!(
            "<message to='{ROOM}' type='groupchat' id='a{n}'><body>a{n}</body></message>"
        ));
        batch_b.push_str(&format!(
            "<message to='{ROOM}' type='groupchat' id='b{n}'><body>b{n}</body></message>"
        ));
    }
    alice.send(&batch_a).await?;
    bob.send(&batch_b).await?;
    let mut sequences = Vec::new();
    for client in [&mut alice, &mut bob] {
        let mut seen = Vec::new();
        while seen.len() < 2 * N {
            let el = client.recv().await?;
            if el.attr("type") == Some("groupchat")
                && let Some(sid) = el.child("stanza-id", "urn:xmpp:sid:0")
            {
                seen.push((
                    body(&el).unwrap_or_default(),
                    sid.attr("id").unwrap_or("").to_owned(),
                ));
            }
        }
        sequences.push(seen);
    }
    assert_eq!(
        sequences[0], sequences[1],
        "the occupants saw different orders"
    );
    let (results, _) = room_archive(
        &mut bob,
        "",
        "<set xmlns='http://jabber.org/protocol/rsm'><max>100</max></set>",
    )
    .await?;
    let archived: Vec<String> = results
        .iter()
        .filter_map(|m| {
            m.child("result", "urn:xmpp:mam:2")?
                .attr("id")
                .map(str::to_owned)
        })
        .collect();
    let live: Vec<String> = sequences[0].iter().map(|(_, id)| id.clone()).collect();
    assert_eq!(live, archived, "live order differs from the archive's");
    server.stop().await;
    Ok(())
}
