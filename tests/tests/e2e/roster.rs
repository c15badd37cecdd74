//! Rosters (RFC 6121 §2) and roster versioning (XEP-0237): get, set, pushes to every
//! interested resource, removal with its subscription side effects, validation errors, the
//! size limit.

use crate::common;

use common::*;
use xmppd_testkit::{TestServer, stanza_error_condition};

#[tokio::test]
async fn roster_set_is_pushed_to_every_interested_resource() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut laptop = online_with_roster(&server, "alice", "laptop", 1).await?;
    let mut phone = online_with_roster(&server, "alice", "phone", 0).await?;
    expect_presence(&mut laptop, "alice@localhost/phone", None).await?;
    expect_presence(&mut phone, "alice@localhost/laptop", None).await?;
    // Bound and available, but never asked for the roster: not interested (§2.1.6).
    let mut quiet = online(&server, "alice", "quiet", 0).await?;
    expect_presence(&mut quiet, "alice@localhost/laptop", None).await?;
    expect_presence(&mut quiet, "alice@localhost/phone", None).await?;
    for c in [&mut laptop, &mut phone] {
        expect_presence(c, "alice@localhost/quiet", None).await?;
    }

    laptop
        .send(
            "<iq type='set' id='s1'><query xmlns='jabber:iq:roster'>\
             <item jid='bob@localhost' name='Bob'><group>Friends</group></item></query></iq>",
        )
        .await?;
    // The requester gets the push and the result; the other interested resource the push.
    let push = expect_push(&mut laptop, "bob@localhost", "none", false).await?;
    let item = push
        .child("query", ROSTER)
        .and_then(|q| q.child("item", ROSTER));
    assert_eq!(item.and_then(|i| i.attr("name")), Some("Bob"));
    laptop
        .expect("set result", |e| {
            e.attr("id") == Some("s1") && e.attr("type") == Some("result")
        })
        .await?;
    expect_push(&mut phone, "bob@localhost", "none", false).await?;
    quiet.expect_silence(SILENCE).await?;

    let roster = roster_get(&mut phone, None).await?;
    assert_eq!(
        items(&roster),
        vec![("bob@localhost".into(), "none".into(), false)]
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn invalid_roster_sets_get_the_rfc_errors() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| c.im.max_roster_items = 2).await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online_with_roster(&server, "alice", "laptop", 1).await?;
    let long = "x".repeat(2000);
    let cases = [
        (
            "<item jid='a@localhost'/><item jid='b@localhost'/>",
            "bad-request",
        ),
        ("<item name='no jid'/>", "bad-request"),
        (
            "<item jid='bob@localhost' subscription='both'/>",
            "not-allowed",
        ),
        (
            &*format!("<item jid='bob@localhost' name='{long}'/>"),
            "not-acceptable",
        ),
        (
            "<item jid='bob@localhost'><group>g</group><group>g</group></item>",
            "bad-request",
        ),
        (
            "<item jid='nobody@localhost' subscription='remove'/>",
            "item-not-found",
        ),
    ];
    for (i, (payload, condition)) in cases.iter().enumerate() {
        let id = format!("bad{i}");
        alice
            .send(&format!(
                "<iq type='set' id='{id}'><query xmlns='jabber:iq:roster'>{payload}</query></iq>"
            ))
            .await?;
        let err = alice
            .expect(&format!("{condition} for {id}"), |e| {
                e.attr("id") == Some(&*id)
            })
            .await?;
        assert_eq!(
            stanza_error_condition(&err).as_deref(),
            Some(*condition),
            "{err}"
        );
    }
    // Somebody else's roster is not yours.
    alice
        .send("<iq type='get' id='other' to='bob@localhost'><query xmlns='jabber:iq:roster'/></iq>")
        .await?;
    expect_error(&mut alice, "iq", "other", "bob@localhost", "forbidden").await?;

    // The size limit (2 here): the third contact is refused, updating one is fine.
    for (i, who) in ["c1", "c2", "c3"].iter().enumerate() {
        alice
            .send(&format!("<iq type='set' id='add{i}'><query xmlns='jabber:iq:roster'><item jid='{who}@localhost'/></query></iq>"))
            .await?;
        if i < 2 {
            expect_push(&mut alice, &format!("{who}@localhost"), "none", false).await?;
            alice
                .expect("result", |e| e.attr("id") == Some(&*format!("add{i}")))
                .await?;
        } else {
            let err = alice
                .expect("error", |e| e.attr("id") == Some("add2"))
                .await?;
            assert_eq!(stanza_error_condition(&err).as_deref(), Some("not-allowed"));
        }
    }
    alice.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn versioned_roster_fetches() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    let mut alice = server.login("alice", &password("alice"), "laptop").await?;
    // The stream features announce versioning and pre-approval.
    let features = alice
        .features
        .clone()
        .unwrap_or_else(|| xmppd_xml::Element::new("x", "y"));
    assert!(
        features.has_child("ver", "urn:xmpp:features:rosterver"),
        "{features}"
    );
    assert!(
        features.has_child("sub", "urn:xmpp:features:pre-approval"),
        "{features}"
    );

    // Bootstrapping with ver='': the whole (empty) roster and its version.
    let first = roster_get(&mut alice, Some("")).await?;
    let v0 = first
        .child("query", ROSTER)
        .and_then(|q| q.attr("ver"))
        .map(str::to_owned);
    let v0 = v0.ok_or_else(|| anyhow::anyhow!("no ver in {first}"))?;
    // Unchanged: an empty result, no <query/>.
    let same = roster_get(&mut alice, Some(&v0)).await?;
    assert!(same.child("query", ROSTER).is_none(), "{same}");

    alice
        .send("<iq type='set' id='s1'><query xmlns='jabber:iq:roster'><item jid='bob@localhost'/></query></iq>")
        .await?;
    let push = expect_push(&mut alice, "bob@localhost", "none", false).await?;
    let v1 = push
        .child("query", ROSTER)
        .and_then(|q| q.attr("ver"))
        .map(str::to_owned);
    let v1 = v1.ok_or_else(|| anyhow::anyhow!("the push has no ver: {push}"))?;
    assert_ne!(v1, v0);
    alice
        .expect("result", |e| e.attr("id") == Some("s1"))
        .await?;

    // An old version gets the whole roster with the new version.
    let full = roster_get(&mut alice, Some(&v0)).await?;
    assert_eq!(
        full.child("query", ROSTER).and_then(|q| q.attr("ver")),
        Some(&*v1)
    );
    assert_eq!(
        items(&full),
        vec![("bob@localhost".into(), "none".into(), false)]
    );
    drop(alice);

    // The version is stored: after a restart the cached roster is still current.
    let server = server.restart().await?;
    let mut alice = server.login("alice", &password("alice"), "laptop").await?;
    let same = roster_get(&mut alice, Some(&v1)).await?;
    assert!(same.child("query", ROSTER).is_none(), "{same}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn removing_a_contact_cancels_both_subscriptions() -> anyhow::Result<()> {
    // §2.5.2: alice removes bob (subscription both): bob's server gets unsubscribe and
    // unsubscribed, bob's roster shows none, and bob sees alice go unavailable.
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online_with_roster(&server, "alice", "laptop", 1).await?;
    let mut bob = online_with_roster(&server, "bob", "desk", 1).await?;
    befriend(&mut alice, "alice", &mut bob, "bob").await?;

    alice
        .send("<iq type='set' id='rm'><query xmlns='jabber:iq:roster'><item jid='bob@localhost' subscription='remove'/></query></iq>")
        .await?;
    expect_push(&mut alice, "bob@localhost", "remove", false).await?;
    // bob's server: alice no longer sees bob (§3.3.3).
    expect_presence(&mut alice, "bob@localhost/desk", Some("unavailable")).await?;
    alice
        .expect("result", |e| e.attr("id") == Some("rm"))
        .await?;

    // unsubscribe: bob loses 'from'; unsubscribed: bob loses 'to'.
    // RFC 6121 §3.2.3, §3.3.3: each stanza comes before the roster push it causes.
    expect_subscription(&mut bob, "alice@localhost", "unsubscribe").await?;
    expect_push(&mut bob, "alice@localhost", "to", false).await?;
    expect_subscription(&mut bob, "alice@localhost", "unsubscribed").await?;
    expect_push(&mut bob, "alice@localhost", "none", false).await?;
    expect_presence(&mut bob, "alice@localhost/laptop", Some("unavailable")).await?;
    let roster = roster_get(&mut bob, None).await?;
    assert_eq!(
        items(&roster),
        vec![("alice@localhost".into(), "none".into(), false)]
    );
    let roster = roster_get(&mut alice, None).await?;
    assert_eq!(items(&roster), vec![]);
    server.stop().await;
    Ok(())
}
