//! Presence subscriptions between local users (RFC 6121 §3): the handshake with its roster
//! pushes and presence, denial, pre-approval (§3.4), requests kept across a restart.
//! Every row of Appendix A is checked by the unit tests in `crates/im/src/state_tests.rs`;
//! these transcripts follow the rows a real handshake walks through.

use crate::common;

use common::*;
use xmppd_testkit::TestServer;

#[tokio::test]
async fn subscription_handshake_both_ways() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online_with_roster(&server, "alice", "laptop", 1).await?;
    let mut bob = online_with_roster(&server, "bob", "desk", 1).await?;

    // A.2.1 None -> None + Pending Out; A.3.1 None -> None + Pending In (delivered, no push).
    alice
        .send(
            "<presence to='bob@localhost' type='subscribe'><status>it's alice</status></presence>",
        )
        .await?;
    expect_push(&mut alice, "bob@localhost", "none", true).await?;
    let request = expect_subscription(&mut bob, "alice@localhost", "subscribe").await?;
    assert_eq!(request.attr("to"), Some("bob@localhost"));
    bob.expect_silence(SILENCE).await?;
    let roster = roster_get(&mut bob, None).await?;
    assert_eq!(
        items(&roster),
        vec![],
        "a request does not add to the roster (§3.1.3)"
    );

    // A.2.3 None + Pending In -> From; A.3.3 None + Pending Out -> To; then bob's presence.
    bob.send("<presence to='alice@localhost' type='subscribed'/>")
        .await?;
    expect_push(&mut bob, "alice@localhost", "from", false).await?;
    // §3.1.6: the approval comes before the roster push.
    expect_subscription(&mut alice, "bob@localhost", "subscribed").await?;
    expect_push(&mut alice, "bob@localhost", "to", false).await?;
    expect_presence(&mut alice, "bob@localhost/desk", None).await?;

    // And back: A.2.1 From -> From + Pending Out; A.3.1 To -> To + Pending In.
    bob.send("<presence to='alice@localhost' type='subscribe'/>")
        .await?;
    expect_push(&mut bob, "alice@localhost", "from", true).await?;
    expect_subscription(&mut alice, "bob@localhost", "subscribe").await?;
    // A.2.3 To + Pending In -> Both; A.3.3 From + Pending Out -> Both.
    alice
        .send("<presence to='bob@localhost' type='subscribed'/>")
        .await?;
    expect_push(&mut alice, "bob@localhost", "both", false).await?;
    expect_subscription(&mut bob, "alice@localhost", "subscribed").await?;
    expect_push(&mut bob, "alice@localhost", "both", false).await?;
    expect_presence(&mut bob, "alice@localhost/laptop", None).await?;

    // A.3.1 Both: a repeated request is answered by alice's server, alice is not asked; the
    // `subscribed` answer changes nothing for bob (A.3.3 Both: not delivered), but he gets
    // alice's presence again.
    bob.send("<presence to='alice@localhost' type='subscribe'/>")
        .await?;
    expect_presence(&mut bob, "alice@localhost/laptop", None).await?;
    alice.expect_silence(SILENCE).await?;
    bob.expect_silence(SILENCE).await?;

    // A.2.2 Both -> From at alice; A.3.2 Both -> To at bob, who stops being seen by alice.
    alice
        .send("<presence to='bob@localhost' type='unsubscribe'/>")
        .await?;
    expect_push(&mut alice, "bob@localhost", "from", false).await?;
    // §3.2.3: the cancellation comes before the roster push.
    expect_subscription(&mut bob, "alice@localhost", "unsubscribe").await?;
    expect_push(&mut bob, "alice@localhost", "to", false).await?;
    expect_presence(&mut alice, "bob@localhost/desk", Some("unavailable")).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_denied_request_leaves_no_subscription() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online_with_roster(&server, "alice", "laptop", 1).await?;
    let mut bob = online_with_roster(&server, "bob", "desk", 1).await?;
    alice
        .send("<presence to='bob@localhost' type='subscribe'/>")
        .await?;
    expect_push(&mut alice, "bob@localhost", "none", true).await?;
    expect_subscription(&mut bob, "alice@localhost", "subscribe").await?;

    // A.2.4 None + Pending In -> None (routed); A.3.4 None + Pending Out -> None.
    bob.send("<presence to='alice@localhost' type='unsubscribed'/>")
        .await?;
    // §3.3.3: the denial comes before the roster push.
    expect_subscription(&mut alice, "bob@localhost", "unsubscribed").await?;
    expect_push(&mut alice, "bob@localhost", "none", false).await?;
    bob.expect_silence(SILENCE).await?;
    // A.2.4 None: nothing left to deny, nothing is routed.
    bob.send("<presence to='alice@localhost' type='unsubscribed'/>")
        .await?;
    alice.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn pre_approved_contact_is_subscribed_without_asking() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online_with_roster(&server, "alice", "laptop", 1).await?;
    let mut bob = online_with_roster(&server, "bob", "desk", 1).await?;

    // §3.4: subscribed before any request records a pre-approval and is not routed.
    alice
        .send("<presence to='bob@localhost' type='subscribed'/>")
        .await?;
    let push = expect_push(&mut alice, "bob@localhost", "none", false).await?;
    let item = push
        .child("query", ROSTER)
        .and_then(|q| q.child("item", ROSTER));
    assert_eq!(
        item.and_then(|i| i.attr("approved")),
        Some("true"),
        "{push}"
    );
    bob.expect_silence(SILENCE).await?;

    // bob's request is approved at once by alice's server; alice is not asked.
    bob.send("<presence to='alice@localhost' type='subscribe'/>")
        .await?;
    expect_push(&mut bob, "alice@localhost", "none", true).await?;
    expect_push(&mut alice, "bob@localhost", "from", false).await?;
    expect_subscription(&mut bob, "alice@localhost", "subscribed").await?;
    expect_push(&mut bob, "alice@localhost", "to", false).await?;
    expect_presence(&mut bob, "alice@localhost/laptop", None).await?;
    alice.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn pending_request_survives_a_restart_and_is_delivered_at_login() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online_with_roster(&server, "alice", "laptop", 1).await?;
    alice
        .send(
            "<presence to='bob@localhost' type='subscribe'><status>remember me</status></presence>",
        )
        .await?;
    expect_push(&mut alice, "bob@localhost", "none", true).await?;
    drop(alice);

    let server = server.restart().await?;
    let mut bob = server.login("bob", &password("bob"), "desk").await?;
    bob.available(0).await?;
    expect_presence(&mut bob, "bob@localhost/desk", None).await?;
    let request = expect_subscription(&mut bob, "alice@localhost", "subscribe").await?;
    let status = request.child("status", CLIENT).map(|s| s.text());
    assert_eq!(status.as_deref(), Some("remember me"));
    bob.expect_silence(SILENCE).await?;

    // Approving it after the restart completes the handshake; alice sees it at her login.
    bob.send("<presence to='alice@localhost' type='subscribed'/>")
        .await?;
    let roster = roster_get(&mut bob, None).await?;
    assert_eq!(
        items(&roster),
        vec![("alice@localhost".into(), "from".into(), false)]
    );
    let mut alice = online_with_roster(&server, "alice", "laptop", 1).await?;
    expect_presence(&mut alice, "bob@localhost/desk", None).await?;
    let roster = roster_get(&mut alice, None).await?;
    assert_eq!(
        items(&roster),
        vec![("bob@localhost".into(), "to".into(), false)]
    );
    server.stop().await;
    Ok(())
}

/// Initial presence reads the roster and the waiting requests together; a roster item that
/// cannot be decoded must not hold back the requests.
#[tokio::test]
async fn pending_request_is_delivered_even_when_the_roster_is_unreadable() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online_with_roster(&server, "alice", "laptop", 1).await?;
    alice
        .send("<presence to='bob@localhost' type='subscribe'/>")
        .await?;
    expect_push(&mut alice, "bob@localhost", "none", true).await?;

    // A second connection to the same database, as the admin CLI would open.
    let storage = xmppd::open_storage(&server.config).await?;
    storage
        .map
        .put(
            "localhost",
            "bob",
            "roster",
            "carol@localhost",
            b"not a roster item",
        )
        .await?;

    let mut bob = server.login("bob", &password("bob"), "desk").await?;
    bob.available(0).await?;
    expect_presence(&mut bob, "bob@localhost/desk", None).await?;
    expect_subscription(&mut bob, "alice@localhost", "subscribe").await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn pending_requests_are_capped_per_user() -> anyhow::Result<()> {
    // Requests awaiting alice's answer are stored; beyond the limit the sender is told
    // `resource-constraint` instead of growing the store without bound.
    let server = TestServer::start_with(|c| c.im.max_pending_subscriptions = 2).await?;
    add_users(&server, &["alice", "bob", "carol", "dave"]).await?;
    for (i, user) in ["bob", "carol", "dave"].into_iter().enumerate() {
        let mut contact = online(&server, user, "r", 0).await?;
        contact
            .send(&format!(
                "<presence to='alice@localhost' type='subscribe' id='s{i}'/>"
            ))
            .await?;
        if user == "dave" {
            let bounce = contact
                .expect("the refusal", |e| e.attr("id") == Some("s2"))
                .await?;
            assert_eq!(bounce.attr("type"), Some("error"), "{bounce}");
            assert_eq!(
                xmppd_testkit::stanza_error_condition(&bounce).as_deref(),
                Some("resource-constraint")
            );
        } else {
            contact.expect_silence(SILENCE).await?;
        }
    }
    // The two stored requests reach alice at login; the refused one does not.
    let mut alice = online(&server, "alice", "laptop", 1).await?;
    expect_subscription(&mut alice, "bob@localhost", "subscribe").await?;
    expect_subscription(&mut alice, "carol@localhost", "subscribe").await?;
    alice.expect_silence(SILENCE).await?;
    Ok(())
}
