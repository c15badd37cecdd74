//! Presence between contacts (RFC 6121 §4): probes and broadcast at login, updates,
//! unavailable at logout and when the socket dies, directed presence, probe answers for an
//! offline contact, remote contacts, and nonexistent users (§8.5.1).

use crate::common;

use common::*;
use xmppd_testkit::{TestServer, stanza_error_condition};

async fn friends() -> anyhow::Result<TestServer> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob", "carol"]).await?;
    let mut alice = online_with_roster(&server, "alice", "laptop", 1).await?;
    let mut bob = online_with_roster(&server, "bob", "desk", 1).await?;
    befriend(&mut alice, "alice", &mut bob, "bob").await?;
    alice.close().await?;
    expect_presence(&mut bob, "alice@localhost/laptop", Some("unavailable")).await?;
    bob.close().await?;
    Ok(server)
}

#[tokio::test]
async fn login_probes_and_broadcasts_then_logout_and_crash_are_announced() -> anyhow::Result<()> {
    let server = friends().await?;
    let mut bob = online_with_roster(&server, "bob", "desk", 1).await?;
    // bob's probe of alice: she is offline, her server says so (§4.3.2).
    expect_presence(&mut bob, "alice@localhost", Some("unavailable")).await?;

    // alice logs in: bob (subscribed from) gets her presence, her probe gets his (§4.2).
    let mut alice = online_with_roster(&server, "alice", "laptop", 1).await?;
    expect_presence(&mut bob, "alice@localhost/laptop", None).await?;
    let seen = expect_presence(&mut alice, "bob@localhost/desk", None).await?;
    assert_eq!(seen.attr("to"), Some("alice@localhost"));

    // An update goes to subscribers (§4.4).
    alice.send("<presence><show>away</show></presence>").await?;
    expect_presence(&mut alice, "alice@localhost/laptop", None).await?;
    let away = expect_presence(&mut bob, "alice@localhost/laptop", None).await?;
    assert_eq!(
        away.child("show", CLIENT).map(|s| s.text()).as_deref(),
        Some("away")
    );

    // A clean logout is announced (§4.5).
    alice.close().await?;
    expect_presence(&mut bob, "alice@localhost/laptop", Some("unavailable")).await?;

    // So is a lost socket: no </stream:stream>, no TLS close.
    let mut alice = online_with_roster(&server, "alice", "phone", 0).await?;
    expect_presence(&mut bob, "alice@localhost/phone", None).await?;
    expect_presence(&mut alice, "bob@localhost/desk", None).await?;
    drop(alice);
    expect_presence(&mut bob, "alice@localhost/phone", Some("unavailable")).await?;
    bob.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn directed_presence_is_followed_by_unavailable_when_the_session_ends() -> anyhow::Result<()>
{
    let server = friends().await?;
    let mut carol = online_with_roster(&server, "carol", "pad", 0).await?;
    let mut alice = online_with_roster(&server, "alice", "laptop", 1).await?;
    expect_presence(&mut alice, "bob@localhost", Some("unavailable")).await?;
    // No subscription between alice and carol: only directed presence reaches her (§4.6).
    alice
        .send("<presence to='carol@localhost'><status>hi carol</status></presence>")
        .await?;
    expect_presence(&mut carol, "alice@localhost/laptop", None).await?;
    drop(alice);
    expect_presence(&mut carol, "alice@localhost/laptop", Some("unavailable")).await?;
    carol.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn remote_contacts_go_through_the_remote_path() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    let mut alice = online_with_roster(&server, "alice", "laptop", 1).await?;
    alice
        .send("<presence to='romeo@remote.example' type='subscribe'/>")
        .await?;
    expect_push(&mut alice, "romeo@remote.example", "none", true).await?;
    // Federation is not wired in: the router's remote path answers.
    let bounce = alice
        .expect("presence error", |e| {
            e.name() == "presence" && e.attr("type") == Some("error")
        })
        .await?;
    assert_eq!(bounce.attr("from"), Some("romeo@remote.example"));
    assert_eq!(
        stanza_error_condition(&bounce).as_deref(),
        Some("remote-server-not-found")
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn nonexistent_users_do_not_leak_through_presence() -> anyhow::Result<()> {
    // §8.5.1: presence (subscriptions and probes included) vanishes; message and iq bounce.
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    let mut alice = online_with_roster(&server, "alice", "laptop", 1).await?;
    for kind in ["probe", "unsubscribed", "unsubscribe"] {
        alice
            .send(&format!("<presence to='nobody@localhost' type='{kind}'/>"))
            .await?;
    }
    alice.send("<presence to='nobody@localhost'/>").await?;
    alice.expect_silence(SILENCE).await?;
    alice
        .send("<message to='nobody@localhost' type='chat' id='m1'><body>hello?</body></message>")
        .await?;
    expect_error(
        &mut alice,
        "message",
        "m1",
        "nobody@localhost",
        "service-unavailable",
    )
    .await?;
    alice
        .send("<iq to='nobody@localhost' type='get' id='i1'><query xmlns='jabber:iq:roster'/></iq>")
        .await?;
    expect_error(
        &mut alice,
        "iq",
        "i1",
        "nobody@localhost",
        "service-unavailable",
    )
    .await?;
    server.stop().await;
    Ok(())
}

/// RFC 6121 §4.6: every directed-presence target must later hear the unavailable, so a session
/// may track only a bounded number of them; past the bound the presence is refused, not sent
/// untracked.
#[tokio::test]
async fn directed_presence_targets_are_bounded() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    let mut burst = String::new();
    for i in 0..1000 {
        // Nonexistent accounts: the presence is dropped silently (§8.5.1), but still tracked.
        burst.push_str(&format!("<presence to='ghost{i}@localhost'/>"));
    }
    alice.send(&burst).await?;
    alice
        .send("<presence to='one-too-many@localhost' id='p1001'/>")
        .await?;
    expect_error(
        &mut alice,
        "presence",
        "p1001",
        "one-too-many@localhost",
        "policy-violation",
    )
    .await?;
    // Taking one back makes room again.
    alice
        .send("<presence to='ghost0@localhost' type='unavailable'/>")
        .await?;
    alice
        .send("<presence to='one-too-many@localhost' id='p1002'/>")
        .await?;
    alice.expect_silence(SILENCE).await?;
    Ok(())
}
