//! XEP-0163 notifications: to the owner's other resources and to contacts whose verified
//! XEP-0115 caps ask for `NODE+notify` (each client answers the server's disco#info for its
//! hash), never to those that do not or that the access model excludes; the last item when
//! a contact comes online and when a subscription is approved, also when the contact's caps
//! presence came before the subscription; retract, purge and delete notifications.

use crate::common;

use common::pep::*;
use common::*;
use xmppd_testkit::{TestClient, TestServer};

const ALICE: &str = "alice@localhost";
const TUNE: &str = "http://jabber.org/protocol/tune";
const MOOD: &str = "http://jabber.org/protocol/mood";

fn tune(title: &str) -> String {
    format!("<tune xmlns='{TUNE}'><title>{title}</title></tune>")
}

async fn server() -> anyhow::Result<TestServer> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob", "carol", "dave"]).await?;
    Ok(server)
}

/// Logs `user` in with the roster and caps presence for `notify`, answering the caps query.
async fn caps_online(
    server: &TestServer,
    user: &str,
    resource: &str,
    notify: &[&str],
) -> anyhow::Result<TestClient> {
    let mut client = server.login(user, &password(user), resource).await?;
    roster_get(&mut client, None).await?;
    show_caps(&mut client, notify, None).await?;
    let me = format!("{user}@localhost/{resource}");
    expect_presence(&mut client, &me, None).await?;
    Ok(client)
}

/// A publish reaches the owner's other resource and a contact with `+notify`, and nobody
/// without it; the event carries the item.
#[tokio::test]
async fn notifications_follow_caps_and_subscriptions() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = online_with_roster(&server, "alice", "phone", 0).await?;
    let mut bob = online_with_roster(&server, "bob", "desk", 0).await?;
    let mut dave = online_with_roster(&server, "dave", "pc", 0).await?;
    befriend(&mut alice, "alice", &mut bob, "bob").await?;
    befriend(&mut alice, "alice", &mut dave, "dave").await?;
    // Carol shares no presence with alice but shows interest in a directed presence.
    let mut carol = caps_online(&server, "carol", "pad", &[TUNE]).await?;
    show_caps(&mut carol, &[TUNE], Some(ALICE)).await?;
    // Caps presence: bob and alice's laptop want tunes, dave only moods.
    show_caps(&mut bob, &[TUNE, MOOD], None).await?;
    show_caps(&mut dave, &[MOOD], None).await?;
    let mut laptop = caps_online(&server, "alice", "laptop", &[TUNE]).await?;
    for (client, notify) in [
        (&mut alice, &[][..]),
        (&mut bob, &[TUNE, MOOD][..]),
        (&mut dave, &[MOOD][..]),
        (&mut carol, &[TUNE][..]),
        (&mut laptop, &[TUNE][..]),
    ] {
        quiet(client, notify).await?;
    }

    publish(&mut alice, &[], TUNE, Some("t1"), &tune("Finzi"), &[]).await?;
    let event = expect_event(&mut bob, &[TUNE, MOOD], ALICE, TUNE).await?;
    assert_eq!(event.attr("to"), Some("bob@localhost/desk"), "{event}");
    assert_eq!(item_ids(&event), ["t1"], "{event}");
    assert!(
        event.to_string().contains("Finzi"),
        "the payload is delivered: {event}"
    );
    let event = expect_event(&mut laptop, &[TUNE], ALICE, TUNE).await?;
    assert_eq!(event.attr("to"), Some("alice@localhost/laptop"), "{event}");
    quiet(&mut dave, &[MOOD]).await?;
    quiet(&mut carol, &[TUNE]).await?;
    quiet(&mut alice, &[]).await?;

    // A mood reaches dave and bob, not the laptop.
    publish(
        &mut alice,
        &[],
        MOOD,
        None,
        &format!("<mood xmlns='{MOOD}'><happy/></mood>"),
        &[],
    )
    .await?;
    expect_event(&mut dave, &[MOOD], ALICE, MOOD).await?;
    expect_event(&mut bob, &[TUNE, MOOD], ALICE, MOOD).await?;
    quiet(&mut laptop, &[TUNE]).await?;
    Ok(())
}

/// XEP-0163 §4.3.4: a contact's resource that becomes available with interest gets the last item.
#[tokio::test]
async fn a_contact_coming_online_gets_the_last_item() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = online_with_roster(&server, "alice", "phone", 0).await?;
    let mut bob = online_with_roster(&server, "bob", "desk", 0).await?;
    befriend(&mut alice, "alice", &mut bob, "bob").await?;
    let five = [("pubsub#max_items", "5")];
    publish(&mut alice, &[], TUNE, Some("old"), &tune("old"), &five).await?;
    publish(
        &mut alice,
        &[],
        TUNE,
        Some("new"),
        &tune("new"),
        &[("pubsub#max_items", "5")],
    )
    .await?;
    drop(bob);
    let mut bob = caps_online(&server, "bob", "phone", &[TUNE]).await?;
    let event = expect_event(&mut bob, &[TUNE], ALICE, TUNE).await?;
    assert_eq!(item_ids(&event), ["new"], "only the last item: {event}");
    // Stamped with when it was published (the §4.3.4 example).
    let delay = event.child("delay", "urn:xmpp:delay");
    assert!(delay.and_then(|d| d.attr("stamp")).is_some(), "{event}");
    quiet(&mut bob, &[TUNE]).await?;
    Ok(())
}

/// XEP-0163 §4.3.4 "on_sub": bob's caps presence reaches alice before any subscription (directed
/// presence); nothing is sent then, and the last item goes once alice approves him.
#[tokio::test]
async fn caps_seen_before_the_subscription_serve_it_when_approved() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = online_with_roster(&server, "alice", "phone", 0).await?;
    publish(&mut alice, &[], TUNE, Some("t1"), &tune("before"), &[]).await?;
    let mut bob = caps_online(&server, "bob", "desk", &[TUNE]).await?;
    show_caps(&mut bob, &[TUNE], Some(ALICE)).await?;
    quiet(&mut bob, &[TUNE]).await?;
    quiet(&mut alice, &[]).await?;

    bob.send(&format!("<presence to='{ALICE}' type='subscribe'/>"))
        .await?;
    next(&mut bob, &[TUNE], "the roster push", |e| e.name() == "iq").await?;
    // (A subscription request is presence, which `next` skips.)
    expect_subscription(&mut alice, "bob@localhost", "subscribe").await?;
    alice
        .send("<presence to='bob@localhost' type='subscribed'/>")
        .await?;
    // The approval (presence, skipped) and the push of `subscription='to'` come first.
    next(&mut bob, &[TUNE], "the roster push", |e| {
        items(e) == [(ALICE.to_owned(), "to".to_owned(), false)]
    })
    .await?;
    let event = expect_event(&mut bob, &[TUNE], ALICE, TUNE).await?;
    assert_eq!(item_ids(&event), ["t1"], "{event}");
    Ok(())
}

/// Retract (with `notify`), purge and delete are announced to the interested contacts;
/// a whitelist node's changes are not.
#[tokio::test]
async fn retract_purge_and_delete_are_announced() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = online_with_roster(&server, "alice", "phone", 0).await?;
    let mut bob = online_with_roster(&server, "bob", "desk", 0).await?;
    befriend(&mut alice, "alice", &mut bob, "bob").await?;
    show_caps(&mut bob, &[TUNE, "secret"], None).await?;
    quiet(&mut bob, &[TUNE, "secret"]).await?;
    let b = &[TUNE, "secret"][..];
    let five = [("pubsub#max_items", "5")];
    publish(&mut alice, &[], TUNE, Some("1"), &tune("1"), &five).await?;
    expect_event(&mut bob, b, ALICE, TUNE).await?;
    publish(&mut alice, &[], TUNE, Some("2"), &tune("2"), &five).await?;
    expect_event(&mut bob, b, ALICE, TUNE).await?;
    let whitelist = [("pubsub#access_model", "whitelist")];
    publish(
        &mut alice,
        &[],
        "secret",
        Some("1"),
        "<s xmlns='urn:s'/>",
        &whitelist,
    )
    .await?;
    quiet(&mut bob, b).await?;

    let iq = format!(
        "<iq type='set' id='retract'><pubsub xmlns='{PUBSUB}'><retract node='{TUNE}' notify='true'><item id='1'/></retract></pubsub></iq>"
    );
    request(&mut alice, &[], "retract", &iq).await?;
    let event = expect_event(&mut bob, b, ALICE, TUNE).await?;
    let retracted = event.to_string();
    assert!(retracted.contains("<retract id=\"1\"/>"), "{event}");
    let answer = fetch(&mut alice, &[], ALICE, TUNE, None, &[]).await?;
    assert_eq!(item_ids(&answer), ["2"], "{answer}");

    let iq = format!(
        "<iq type='set' id='purge'><pubsub xmlns='{OWNER}'><purge node='{TUNE}'/></pubsub></iq>"
    );
    request(&mut alice, &[], "purge", &iq).await?;
    let event = next(&mut bob, b, "the purge", |e| {
        e.child("event", EVENT)
            .and_then(|ev| ev.child("purge", EVENT))
            .is_some()
    })
    .await?;
    assert_eq!(event.attr("from"), Some(ALICE));
    let answer = fetch(&mut alice, &[], ALICE, TUNE, None, &[]).await?;
    assert!(item_ids(&answer).is_empty(), "{answer}");

    let iq = format!(
        "<iq type='set' id='delete'><pubsub xmlns='{OWNER}'><delete node='{TUNE}'/></pubsub></iq>"
    );
    request(&mut alice, &[], "delete", &iq).await?;
    next(&mut bob, b, "the deletion", |e| {
        e.child("event", EVENT)
            .and_then(|ev| ev.child("delete", EVENT))
            .is_some()
    })
    .await?;
    let answer = fetch(&mut alice, &[], ALICE, TUNE, None, &[]).await?;
    assert_eq!(
        conditions(&answer).0.as_deref(),
        Some("item-not-found"),
        "{answer}"
    );

    let iq = format!(
        "<iq type='set' id='del2'><pubsub xmlns='{OWNER}'><delete node='secret'/></pubsub></iq>"
    );
    request(&mut alice, &[], "del2", &iq).await?;
    quiet(&mut bob, b).await?;
    Ok(())
}

/// Skips whatever arrives until nothing has come for a while.
async fn drain(client: &mut TestClient) -> anyhow::Result<()> {
    while client.next_event_within(SILENCE).await?.is_some() {}
    Ok(())
}

/// `x` asks `y` for its presence and `y` approves (across federation: other stanzas skipped).
async fn subscribe(
    x: &mut TestClient,
    x_bare: &str,
    y: &mut TestClient,
    y_bare: &str,
) -> anyhow::Result<()> {
    use common::federation::next_matching;
    x.send(&format!("<presence to='{y_bare}' type='subscribe'/>"))
        .await?;
    next_matching(y, "the request", |e| {
        e.attr("type") == Some("subscribe") && e.attr("from") == Some(x_bare)
    })
    .await?;
    y.send(&format!("<presence to='{x_bare}' type='subscribed'/>"))
        .await?;
    next_matching(x, "the approval", |e| {
        e.attr("type") == Some("subscribed") && e.attr("from") == Some(y_bare)
    })
    .await?;
    Ok(())
}

/// Over federation: a remote contact subscribed both ways shows caps; alice's server asks its
/// client for them across the s2s link, sends it the last item, then notifies it of the next
/// publish — all through the ordinary router.
#[tokio::test]
async fn a_remote_contact_is_notified_over_federation() -> anyhow::Result<()> {
    use common::federation::{Auth, online, two_servers};
    let (_pki, a, b) = two_servers(Auth::Certificates).await?;
    let mut alice = online(&a, "alice").await?;
    let mut bob = online(&b, "bob").await?;
    subscribe(&mut bob, "bob@b.test", &mut alice, "alice@a.test").await?;
    subscribe(&mut alice, "alice@a.test", &mut bob, "bob@b.test").await?;
    drain(&mut alice).await?;
    drain(&mut bob).await?;
    publish(&mut alice, &[], TUNE, Some("t1"), &tune("first"), &[]).await?;
    show_caps(&mut bob, &[TUNE], None).await?;
    let event = expect_event(&mut bob, &[TUNE], "alice@a.test", TUNE).await?;
    assert_eq!(item_ids(&event), ["t1"], "the last item: {event}");
    publish(&mut alice, &[], TUNE, Some("t2"), &tune("second"), &[]).await?;
    let event = expect_event(&mut bob, &[TUNE], "alice@a.test", TUNE).await?;
    assert_eq!(event.attr("to"), Some("bob@b.test/res"), "{event}");
    assert_eq!(item_ids(&event), ["t2"], "{event}");
    Ok(())
}

/// With every caps slot of alice's taken by a stranger's directed presence, a subscriber's
/// resource still gets in (the stranger's entries make room) and receives the last item.
#[tokio::test]
async fn strangers_cannot_crowd_out_a_subscribers_caps() -> anyhow::Result<()> {
    let text: std::sync::Arc<str> =
        std::sync::Arc::from("[modules.pep]\nmax_caps_per_account = 1\n");
    let server = TestServer::start_with(move |c| c.text = Some(text)).await?;
    add_users(&server, &["alice", "bob", "carol"]).await?;
    let mut alice = online_with_roster(&server, "alice", "phone", 0).await?;
    let mut bob = online_with_roster(&server, "bob", "desk", 0).await?;
    befriend(&mut alice, "alice", &mut bob, "bob").await?;
    publish(&mut alice, &[], TUNE, Some("t1"), &tune("kept"), &[]).await?;
    let mut carol = caps_online(&server, "carol", "pad", &[TUNE]).await?;
    show_caps(&mut carol, &[TUNE], Some(ALICE)).await?;
    quiet(&mut carol, &[TUNE]).await?;
    show_caps(&mut bob, &[TUNE], None).await?;
    let event = expect_event(&mut bob, &[TUNE], ALICE, TUNE).await?;
    assert_eq!(item_ids(&event), ["t1"], "{event}");
    Ok(())
}
