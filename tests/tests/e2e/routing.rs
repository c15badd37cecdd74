//! Message routing between local users (RFC 6121 §8.5): full JIDs, bare JIDs by priority,
//! the message types, and the errors the sender gets when nobody can take the message.

use crate::common;

use common::{SILENCE, add_users, expect_error, expect_message, expect_presence, online};
use xmppd_testkit::TestServer;

async fn server_with(users: &[&str]) -> anyhow::Result<TestServer> {
    let server = TestServer::start().await?;
    add_users(&server, users).await?;
    Ok(server)
}

#[tokio::test]
async fn message_to_a_full_jid_reaches_only_that_resource() -> anyhow::Result<()> {
    let server = server_with(&["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let mut bob_desk = online(&server, "bob", "desk", 0).await?;
    let mut bob_phone = online(&server, "bob", "phone", 9).await?;
    expect_presence(&mut bob_phone, "bob@localhost/desk", None).await?;
    expect_presence(&mut bob_desk, "bob@localhost/phone", None).await?;

    alice
        .send("<message to='bob@localhost/desk' type='chat' id='m1'><body>to desk</body></message>")
        .await?;
    expect_message(
        &mut bob_desk,
        "alice@localhost/phone",
        "bob@localhost/desk",
        "to desk",
    )
    .await?;
    bob_phone.expect_silence(SILENCE).await?;
    alice.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn bare_jid_message_goes_to_the_highest_priority_resource() -> anyhow::Result<()> {
    let server = server_with(&["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let mut bob5 = online(&server, "bob", "five", 5).await?;
    let mut bob1 = online(&server, "bob", "one", 1).await?;
    expect_presence(&mut bob1, "bob@localhost/five", None).await?;
    expect_presence(&mut bob5, "bob@localhost/one", None).await?;

    alice
        .send("<message to='bob@localhost' type='chat' id='m1'><body>hello</body></message>")
        .await?;
    expect_message(&mut bob5, "alice@localhost/phone", "bob@localhost", "hello").await?;
    bob1.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn bare_jid_message_goes_to_every_resource_tied_at_the_top() -> anyhow::Result<()> {
    let server = server_with(&["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let mut bob_a = online(&server, "bob", "a", 5).await?;
    let mut bob_b = online(&server, "bob", "b", 5).await?;
    let mut bob_low = online(&server, "bob", "low", 2).await?;
    expect_presence(&mut bob_b, "bob@localhost/a", None).await?;
    expect_presence(&mut bob_a, "bob@localhost/b", None).await?;
    for other in ["bob@localhost/a", "bob@localhost/b"] {
        expect_presence(&mut bob_low, other, None).await?;
    }
    expect_presence(&mut bob_a, "bob@localhost/low", None).await?;
    expect_presence(&mut bob_b, "bob@localhost/low", None).await?;

    alice
        .send("<message to='bob@localhost' id='m1'><body>both of you</body></message>")
        .await?;
    expect_message(
        &mut bob_a,
        "alice@localhost/phone",
        "bob@localhost",
        "both of you",
    )
    .await?;
    expect_message(
        &mut bob_b,
        "alice@localhost/phone",
        "bob@localhost",
        "both of you",
    )
    .await?;
    bob_low.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn negative_priority_resource_never_gets_bare_jid_messages() -> anyhow::Result<()> {
    let server = server_with(&["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let mut bob_bot = online(&server, "bob", "bot", -1).await?;

    // Only a negative resource: as if bob were offline (§8.5.2.1.1): the message is kept
    // for later, not given to the negative resource.
    alice
        .send("<message to='bob@localhost' type='chat' id='m1'><body>anyone?</body></message>")
        .await?;
    alice.expect_silence(SILENCE).await?;
    bob_bot.expect_silence(SILENCE).await?;

    // With a zero-priority resource beside it, that one gets the message.
    let mut bob_desk = online(&server, "bob", "desk", 0).await?;
    expect_presence(&mut bob_desk, "bob@localhost/bot", None).await?;
    expect_presence(&mut bob_bot, "bob@localhost/desk", None).await?;
    // The kept message comes to the first non-negative resource.
    expect_message(
        &mut bob_desk,
        "alice@localhost/phone",
        "bob@localhost",
        "anyone?",
    )
    .await?;
    alice
        .send("<message to='bob@localhost' type='chat' id='m2'><body>desk only</body></message>")
        .await?;
    expect_message(
        &mut bob_desk,
        "alice@localhost/phone",
        "bob@localhost",
        "desk only",
    )
    .await?;
    bob_bot.expect_silence(SILENCE).await?;

    // A full-JID message still reaches the negative resource (§8.5.3.1).
    alice
        .send("<message to='bob@localhost/bot' type='chat' id='m3'><body>direct</body></message>")
        .await?;
    expect_message(
        &mut bob_bot,
        "alice@localhost/phone",
        "bob@localhost/bot",
        "direct",
    )
    .await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn bound_resource_without_presence_gets_no_bare_jid_chat() -> anyhow::Result<()> {
    let server = server_with(&["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let mut bob_quiet = server
        .login("bob", &common::password("bob"), "quiet")
        .await?;
    let mut bob_desk = online(&server, "bob", "desk", 0).await?;

    alice
        .send("<message to='bob@localhost' type='chat' id='m1'><body>hi</body></message>")
        .await?;
    expect_message(
        &mut bob_desk,
        "alice@localhost/phone",
        "bob@localhost",
        "hi",
    )
    .await?;
    bob_quiet.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn message_to_an_unknown_user_bounces_service_unavailable() -> anyhow::Result<()> {
    let server = server_with(&["alice"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    alice
        .send("<message to='nobody@localhost' type='chat' id='m1'><body>hello?</body></message>")
        .await?;
    let bounce = expect_error(
        &mut alice,
        "message",
        "m1",
        "nobody@localhost",
        "service-unavailable",
    )
    .await?;
    // The bounce carries the original payload so the sender knows which message failed.
    assert_eq!(common::body(&bounce).as_deref(), Some("hello?"));
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn message_to_an_offline_user_is_kept_not_bounced() -> anyhow::Result<()> {
    // §8.5.2.2.1 with offline storage (XEP-0160): to the bare JID or to a resource that is
    // not bound, the message is stored, and the sender gets no error (`offline.rs` checks
    // the delivery).
    let server = server_with(&["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    alice
        .send("<message to='bob@localhost' type='chat' id='m1'><body>later</body></message>")
        .await?;
    alice
        .send("<message to='bob@localhost/desk' type='chat' id='m2'><body>later</body></message>")
        .await?;
    alice.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn message_to_an_unknown_resource_is_delivered_as_if_to_the_bare_jid() -> anyhow::Result<()> {
    // RFC 6121 §8.5.3.2.1.
    let server = server_with(&["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let mut bob = online(&server, "bob", "desk", 1).await?;
    alice
        .send("<message to='bob@localhost/gone' type='chat' id='m1'><body>still there?</body></message>")
        .await?;
    expect_message(
        &mut bob,
        "alice@localhost/phone",
        "bob@localhost/gone",
        "still there?",
    )
    .await?;
    alice.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn groupchat_to_a_bare_jid_bounces_service_unavailable() -> anyhow::Result<()> {
    let server = server_with(&["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    alice
        .send("<message to='bob@localhost' type='groupchat' id='g1'><body>room?</body></message>")
        .await?;
    expect_error(
        &mut alice,
        "message",
        "g1",
        "bob@localhost",
        "service-unavailable",
    )
    .await?;
    bob.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn headline_to_a_bare_jid_goes_to_every_non_negative_resource() -> anyhow::Result<()> {
    let server = server_with(&["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let mut bob_high = online(&server, "bob", "high", 7).await?;
    let mut bob_zero = online(&server, "bob", "zero", 0).await?;
    let mut bob_neg = online(&server, "bob", "neg", -5).await?;
    expect_presence(&mut bob_zero, "bob@localhost/high", None).await?;
    expect_presence(&mut bob_high, "bob@localhost/zero", None).await?;
    for other in ["bob@localhost/high", "bob@localhost/zero"] {
        expect_presence(&mut bob_neg, other, None).await?;
    }
    expect_presence(&mut bob_high, "bob@localhost/neg", None).await?;
    expect_presence(&mut bob_zero, "bob@localhost/neg", None).await?;

    alice
        .send("<message to='bob@localhost' type='headline' id='h1'><body>news</body></message>")
        .await?;
    expect_message(
        &mut bob_high,
        "alice@localhost/phone",
        "bob@localhost",
        "news",
    )
    .await?;
    expect_message(
        &mut bob_zero,
        "alice@localhost/phone",
        "bob@localhost",
        "news",
    )
    .await?;
    bob_neg.expect_silence(SILENCE).await?;
    alice.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn error_stanzas_are_never_answered() -> anyhow::Result<()> {
    let server = server_with(&["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let error = "<error type='cancel'><item-not-found \
                 xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>";
    for to in [
        "nobody@localhost",
        "bob@localhost",
        "bob@localhost/gone",
        "localhost",
    ] {
        alice
            .send(&format!(
                "<message to='{to}' type='error' id='e1'>{error}</message>"
            ))
            .await?;
        alice
            .send(&format!("<iq to='{to}' type='error' id='e2'>{error}</iq>"))
            .await?;
    }
    alice.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}
