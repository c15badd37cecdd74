//! XEP-0313 Message Archive Management for one-to-one messages: both ends archive, the
//! recipient's copy carries the archive's XEP-0359 stanza-id (forged ones are removed), what
//! is not archived, preferences (XEP-0441), metadata, the form, bad input, and an archive that
//! outlives the server process; a `sent` carbon carries the sender's archive's id. Paging is in `mam_paging.rs`.

use crate::common;

use common::mam::*;
use common::*;
use xmppd_testkit::{TestClient, TestServer};

/// Alice and Bob online (Bob as `bob@localhost/phone`).
async fn alice_and_bob(server: &TestServer) -> anyhow::Result<(TestClient, TestClient)> {
    add_users(server, &["alice", "bob", "carol"]).await?;
    let alice = online(server, "alice", "laptop", 1).await?;
    let bob = online(server, "bob", "phone", 1).await?;
    Ok((alice, bob))
}

#[tokio::test]
async fn both_archives_keep_the_message_and_the_recipient_gets_the_archive_id() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    let (mut alice, mut bob) = alice_and_bob(&server).await?;
    // Two forged stanza-ids claiming to be Bob's archive (one with another spelling of the
    // same JID), an id of some room, and Alice's origin-id.
    alice
        .send(
            "<message to='bob@localhost/phone' id='m1' type='chat'><body>hello</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='bob@localhost' id='forged-1'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='BOB@localhost' id='forged-2'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='room@muc.example' id='room-id'/>\
             <origin-id xmlns='urn:xmpp:sid:0' id='origin-1'/></message>",
        )
        .await?;
    let got = expect_message(
        &mut bob,
        "alice@localhost/laptop",
        "bob@localhost/phone",
        "hello",
    )
    .await?;
    let ids = stanza_ids_by(&got, "bob@localhost");
    assert_eq!(ids.len(), 1, "exactly the archive's stanza-id: {got}");
    assert!(!ids[0].starts_with("forged"), "{got}");
    assert!(
        got.children()
            .all(|c| !(c.is("stanza-id", SID) && c.attr("by") == Some("BOB@localhost"))),
        "{got}"
    );
    assert_eq!(stanza_ids_by(&got, "room@muc.example"), ["room-id"]);
    assert!(
        got.children()
            .any(|c| c.is("origin-id", SID) && c.attr("id") == Some("origin-1"))
    );

    // Bob's archive: the id is the stanza-id, the message is Alice's as received.
    let answer = query(&mut bob, "b1", Q::default()).await?;
    assert_eq!(answer.ids(), ids);
    assert_eq!(answer.bodies(), ["hello"]);
    let result = &answer.results[0];
    let forwarded = result.child("forwarded", FORWARD).expect("forwarded");
    assert!(
        forwarded
            .child("delay", "urn:xmpp:delay")
            .is_some_and(|d| d.attr("stamp").is_some())
    );
    let archived = forwarded_message(result).expect("message");
    assert_eq!(archived.attr("from"), Some("alice@localhost/laptop"));
    assert!(
        stanza_ids_by(archived, "bob@localhost").is_empty(),
        "{archived}"
    );
    assert!(answer.complete());
    assert_eq!(answer.count(), Some(1));

    // Alice's archive has her outgoing copy; what Bob got carried no id of Alice's archive.
    assert!(stanza_ids_by(&got, "alice@localhost").is_empty());
    let answer = query(
        &mut alice,
        "a1",
        Q::default().field("with", "bob@localhost"),
    )
    .await?;
    assert_eq!(answer.bodies(), ["hello"]);
    let sent = forwarded_message(&answer.results[0]).expect("message");
    assert_eq!(sent.attr("to"), Some("bob@localhost/phone"));
    assert_eq!(sent.attr("id"), Some("m1"));
    Ok(())
}

#[tokio::test]
async fn an_offline_recipient_gets_the_stanza_id_with_the_stored_message() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "laptop", 1).await?;
    alice
        .send("<message to='bob@localhost' id='m1' type='chat'><body>later</body></message>")
        .await?;
    // The sender's archive proves the message was taken before Bob logs in.
    let mut sent = Vec::new();
    for _ in 0..50 {
        sent = query(&mut alice, "a1", Q::default()).await?.bodies();
        if !sent.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(sent, ["later"]);
    let mut bob = online(&server, "bob", "phone", 1).await?;
    let got = expect_message(&mut bob, "alice@localhost/laptop", "bob@localhost", "later").await?;
    let ids = stanza_ids_by(&got, "bob@localhost");
    assert_eq!(query(&mut bob, "b1", Q::default()).await?.ids(), ids);
    Ok(())
}

#[tokio::test]
async fn what_is_not_a_conversation_is_not_archived() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (mut alice, mut bob) = alice_and_bob(&server).await?;
    let to = "to='bob@localhost/phone'";
    for xml in [
        format!(
            "<message {to} type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
        ),
        format!(
            "<message {to} type='chat'><body>secret</body><no-store xmlns='urn:xmpp:hints'/></message>"
        ),
        format!(
            "<message {to} type='chat'><body>ephemeral</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>"
        ),
        format!("<message {to} type='headline'><body>news</body></message>"),
        format!("<message {to} type='chat'><body>kept</body></message>"),
    ] {
        alice.send(&xml).await?;
        bob.recv().await?;
    }
    let stored = query(&mut bob, "b1", Q::default()).await?;
    assert_eq!(stored.bodies(), ["kept"]);
    assert_eq!(
        query(&mut alice, "a1", Q::default()).await?.bodies(),
        ["kept"]
    );
    Ok(())
}

#[tokio::test]
async fn preferences_are_stored_and_decide_what_is_archived() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (mut alice, mut bob) = alice_and_bob(&server).await?;
    let mut carol = online(&server, "carol", "desk", 1).await?;
    let got = iq(&mut alice, "get", "p0", &format!("<prefs xmlns='{MAM}'/>")).await?;
    let prefs = got.child("prefs", MAM).expect("prefs");
    assert_eq!(prefs.attr("default"), Some("always"));

    let set = format!(
        "<prefs xmlns='{MAM}' default='never'><always><jid>carol@localhost</jid></always>\
         <never/></prefs>"
    );
    let got = iq(&mut alice, "set", "p1", &set).await?;
    assert_eq!(got.attr("type"), Some("result"));
    let got = iq(&mut alice, "get", "p2", &format!("<prefs xmlns='{MAM}'/>")).await?;
    let prefs = got.child("prefs", MAM).expect("prefs");
    assert_eq!(prefs.attr("default"), Some("never"));
    let always = prefs.child("always", MAM).expect("always");
    assert_eq!(
        always.children().map(|j| j.text()).collect::<Vec<_>>(),
        ["carol@localhost"]
    );

    alice
        .send("<message to='bob@localhost/phone' type='chat'><body>to bob</body></message>")
        .await?;
    bob.recv().await?;
    alice
        .send("<message to='carol@localhost/desk' type='chat'><body>to carol</body></message>")
        .await?;
    carol.recv().await?;
    bob.send("<message to='alice@localhost/laptop' type='chat'><body>from bob</body></message>")
        .await?;
    let got = expect_message(
        &mut alice,
        "bob@localhost/phone",
        "alice@localhost/laptop",
        "from bob",
    )
    .await?;
    // Not archived for Alice: no stanza-id of her archive.
    assert!(stanza_ids_by(&got, "alice@localhost").is_empty());
    assert_eq!(
        query(&mut alice, "a1", Q::default()).await?.bodies(),
        ["to carol"]
    );
    // Bob's preferences are his own (the server's default, always).
    assert_eq!(
        query(&mut bob, "b1", Q::default()).await?.bodies(),
        ["to bob", "from bob"]
    );

    // `roster`: only contacts in the roster; Carol joins Alice's roster, Bob does not.
    let set = format!("<prefs xmlns='{MAM}' default='roster'/>");
    iq(&mut alice, "set", "p3", &set).await?;
    let item = "<query xmlns='jabber:iq:roster'><item jid='carol@localhost'/></query>";
    assert_eq!(
        iq(&mut alice, "set", "r1", item).await?.attr("type"),
        Some("result")
    );
    alice
        .send("<message to='carol@localhost/desk' type='chat'><body>friend</body></message>")
        .await?;
    carol.recv().await?;
    alice
        .send("<message to='bob@localhost/phone' type='chat'><body>stranger</body></message>")
        .await?;
    bob.recv().await?;
    let bodies = query(&mut alice, "a2", Q::default()).await?.bodies();
    assert_eq!(bodies, ["to carol", "friend"]);

    let bad = format!("<prefs xmlns='{MAM}' default='sometimes'/>");
    let got = iq(&mut alice, "set", "p4", &bad).await?;
    assert_eq!(
        xmppd_testkit::stanza_error_condition(&got).as_deref(),
        Some("bad-request")
    );
    Ok(())
}

#[tokio::test]
async fn bad_queries_get_the_errors_of_the_spec() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (mut alice, mut bob) = alice_and_bob(&server).await?;
    alice
        .send("<message to='bob@localhost/phone' type='chat'><body>x</body></message>")
        .await?;
    bob.recv().await?;
    let cases: Vec<(Q<'_>, &str)> = vec![
        (
            Q::default().field("{urn:example}search", "x"),
            "feature-not-implemented",
        ),
        (
            Q::default().field("include-groupchat", "maybe"),
            "bad-request",
        ),
        (Q::default().field("start", "yesterday"), "bad-request"),
        (
            Q::default().field("end", "2024-02-30T00:00:00Z"),
            "bad-request",
        ),
        (
            Q::default().field("after-id", "999999999"),
            "item-not-found",
        ),
        (Q::default().field("before-id", "nope"), "item-not-found"),
        (
            Q {
                fields: vec![("ids", vec!["1".into(), "999999999".into()])],
                ..Q::default()
            },
            "item-not-found",
        ),
        (
            Q::default().rsm("<after>999999999</after>"),
            "item-not-found",
        ),
        (
            Q::default().rsm("<before>999999999</before>"),
            "item-not-found",
        ),
        (Q::default().rsm("<max>many</max>"), "bad-request"),
        (
            Q {
                to: Some("bob@localhost"),
                ..Q::default()
            },
            "forbidden",
        ),
    ];
    for (i, (q, condition)) in cases.into_iter().enumerate() {
        let got = query_raw(&mut alice, &format!("e{i}"), q).await?;
        assert_eq!(got.err().as_deref(), Some(condition), "case {i}");
    }
    // Her own bare JID as `to` is the same as none (§3.1).
    let own = Q {
        to: Some("alice@localhost"),
        ..Q::default()
    };
    assert_eq!(query(&mut alice, "own", own).await?.bodies(), ["x"]);
    // Another user's metadata and preferences are not for Alice either.
    for payload in [
        "<metadata xmlns='urn:xmpp:mam:2'/>",
        "<prefs xmlns='urn:xmpp:mam:2'/>",
    ] {
        alice
            .send(&format!(
                "<iq type='get' id='x' to='bob@localhost'>{payload}</iq>"
            ))
            .await?;
        expect_error(&mut alice, "iq", "x", "bob@localhost", "forbidden").await?;
    }
    Ok(())
}

#[tokio::test]
async fn the_form_and_the_metadata_describe_the_archive() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (mut alice, mut bob) = alice_and_bob(&server).await?;
    let got = iq(&mut alice, "get", "f1", &format!("<query xmlns='{MAM}'/>")).await?;
    let x = got
        .child("query", MAM)
        .and_then(|q| q.child("x", "jabber:x:data"))
        .expect("form");
    let vars: Vec<_> = x.children().filter_map(|f| f.attr("var")).collect();
    assert_eq!(
        vars,
        [
            "FORM_TYPE",
            "with",
            "start",
            "end",
            "before-id",
            "after-id",
            "include-groupchat",
            "ids"
        ]
    );

    let empty = iq(
        &mut alice,
        "get",
        "md0",
        &format!("<metadata xmlns='{MAM}'/>"),
    )
    .await?;
    assert_eq!(
        empty.child("metadata", MAM).map(|m| m.children().count()),
        Some(0)
    );
    for text in ["one", "two", "three"] {
        alice
            .send(&format!(
                "<message to='bob@localhost/phone' type='chat'><body>{text}</body></message>"
            ))
            .await?;
        bob.recv().await?;
    }
    let ids = query(&mut alice, "a1", Q::default()).await?.ids();
    // §4.1.2: the archive holds no groupchat, so either answer is the same.
    for (id, include) in [("g0", "false"), ("g1", "true")] {
        let q = Q::default().field("include-groupchat", include);
        assert_eq!(query(&mut alice, id, q).await?.ids(), ids);
    }
    let got = iq(
        &mut alice,
        "get",
        "md1",
        &format!("<metadata xmlns='{MAM}'/>"),
    )
    .await?;
    let md = got.child("metadata", MAM).expect("metadata");
    let start = md.child("start", MAM).expect("start");
    let end = md.child("end", MAM).expect("end");
    assert_eq!(start.attr("id"), ids.first().map(String::as_str));
    assert_eq!(end.attr("id"), ids.last().map(String::as_str));
    assert!(start.attr("timestamp").is_some_and(|t| t.ends_with('Z')));
    Ok(())
}

#[tokio::test]
async fn the_archive_outlives_the_server() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (mut alice, mut bob) = alice_and_bob(&server).await?;
    alice
        .send("<message to='bob@localhost/phone' type='chat'><body>durable</body></message>")
        .await?;
    let got = bob.recv().await?;
    let ids = stanza_ids_by(&got, "bob@localhost");
    drop((alice, bob));
    let server = server.restart().await?;
    let mut bob = online(&server, "bob", "phone", 1).await?;
    let answer = query(&mut bob, "b1", Q::default()).await?;
    assert_eq!(answer.ids(), ids);
    assert_eq!(answer.bodies(), ["durable"]);
    Ok(())
}

/// §7: the account advertises the archive and its extensions in its disco#info.
#[tokio::test]
async fn the_account_advertises_its_archive() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    alice
        .send(
            "<iq type='get' id='info' to='alice@localhost'>\
             <query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
        )
        .await?;
    let result = expect_result(&mut alice, "info", "alice@localhost").await?;
    let features: Vec<&str> = result
        .children()
        .flat_map(|q| q.children())
        .filter(|f| f.name() == "feature")
        .filter_map(|f| f.attr("var"))
        .collect();
    for wanted in [
        "urn:xmpp:mam:2",
        "urn:xmpp:mam:2#extended",
        "urn:xmpp:mam:2#groupchat-field",
    ] {
        assert!(features.contains(&wanted), "{wanted} in {features:?}");
    }
    Ok(())
}

#[tokio::test]
async fn a_sent_carbon_carries_the_senders_archive_id_which_never_leaves() -> anyhow::Result<()> {
    const CARBONS: &str = "urn:xmpp:carbons:2";
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut laptop = online(&server, "alice", "laptop", 1).await?;
    let mut phone = online(&server, "alice", "phone", 1).await?;
    phone
        .expect("the laptop's presence", |e| e.is("presence", CLIENT))
        .await?;
    expect_presence(&mut laptop, "alice@localhost/phone", None).await?;
    phone
        .send(&format!(
            "<iq type='set' id='c1'><enable xmlns='{CARBONS}'/></iq>"
        ))
        .await?;
    phone
        .expect("carbons enabled", |e| {
            e.is("iq", CLIENT) && e.attr("id") == Some("c1")
        })
        .await?;
    let mut bob = online(&server, "bob", "desk", 1).await?;

    // A forged id of Alice's own archive: neither archived, copied nor sent on.
    laptop
        .send(
            "<message to='bob@localhost/desk' id='m1' type='chat'><body>hi</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='forged'/></message>",
        )
        .await?;
    let got = expect_message(
        &mut bob,
        "alice@localhost/laptop",
        "bob@localhost/desk",
        "hi",
    )
    .await?;
    assert!(stanza_ids_by(&got, "alice@localhost").is_empty(), "{got}");
    let carbon = phone
        .expect("the sent carbon", |e| {
            e.is("message", CLIENT) && e.child("sent", CARBONS).is_some()
        })
        .await?;
    let copied = carbon
        .child("sent", CARBONS)
        .and_then(|s| s.child("forwarded", FORWARD))
        .and_then(|f| f.child("message", CLIENT))
        .ok_or_else(|| anyhow::anyhow!("no forwarded message in {carbon}"))?;
    let ids = stanza_ids_by(copied, "alice@localhost");
    assert_eq!(ids.len(), 1, "{carbon}");
    assert_ne!(ids[0], "forged");
    // The id is the one Alice's archive answers with, for the message as sent.
    let answer = query(
        &mut phone,
        "q1",
        Q::default().field("with", "bob@localhost"),
    )
    .await?;
    assert_eq!(answer.ids(), ids);
    let archived = forwarded_message(&answer.results[0]).expect("message");
    assert!(
        stanza_ids_by(archived, "alice@localhost").is_empty(),
        "{archived}"
    );
    Ok(())
}

/// A message goes on while its archive commit runs (only the sender's acknowledgement waits
/// for it), yet a query right behind a burst finds every message of it: the sender's query,
/// sent the moment the burst is written, and the recipient's, sent the moment the last
/// message arrives, under the ids the recipient saw.
#[tokio::test]
async fn a_query_right_behind_the_messages_finds_them_all() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (mut alice, mut bob) = alice_and_bob(&server).await?;
    const N: usize = 60;
    for round in 0..3 {
        let bodies: Vec<String> = (0..N).map(|i| format!("{round}/{i}")).collect();
        let burst: String = bodies
            .iter()
            .enumerate()
            .map(|(i, body)| {
                format!(
                    "<message to='bob@localhost/phone' id='r{round}m{i}' type='chat'>\
                     <body>{body}</body></message>"
                )
            })
            .collect();
        alice.send(&burst).await?;
        let last_page = || Q::default().rsm(format!("<max>{N}</max><before/>"));
        let own = query(&mut alice, &format!("a{round}"), last_page()).await?;
        assert_eq!(own.bodies(), bodies, "round {round}");

        let mut seen = Vec::new();
        for body in &bodies {
            let got = expect_message(
                &mut bob,
                "alice@localhost/laptop",
                "bob@localhost/phone",
                body,
            )
            .await?;
            let ids = stanza_ids_by(&got, "bob@localhost");
            anyhow::ensure!(ids.len() == 1, "no archive id on {got}");
            seen.extend(ids);
        }
        let theirs = query(&mut bob, &format!("b{round}"), last_page()).await?;
        assert_eq!(theirs.bodies(), bodies, "round {round}");
        assert_eq!(theirs.ids(), seen, "round {round}");
    }
    Ok(())
}
