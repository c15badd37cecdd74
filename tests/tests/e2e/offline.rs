//! Offline messages (RFC 6121 §8.5.2.2.1, XEP-0160) with XEP-0203 delay stamps: what is
//! kept, in which order it comes back, the quota, and a restart in between.

use crate::common;

use common::*;
use xmppd_testkit::TestServer;
use xmppd_xml::Element;

const DELAY: &str = "urn:xmpp:delay";

/// Expects an offline message to `bob@localhost` with `body` and a delay stamp.
async fn expect_offline(
    client: &mut xmppd_testkit::TestClient,
    body_text: &str,
) -> anyhow::Result<Element> {
    expect_offline_to(client, "bob@localhost", body_text).await
}

/// Expects an offline message to `to` with `body` and a delay stamp from the server.
async fn expect_offline_to(
    client: &mut xmppd_testkit::TestClient,
    to: &str,
    body_text: &str,
) -> anyhow::Result<Element> {
    let msg = expect_message(client, "alice@localhost/phone", to, body_text).await?;
    let delay = msg
        .child("delay", DELAY)
        .ok_or_else(|| anyhow::anyhow!("no <delay/> in {msg}"))?;
    assert_eq!(delay.attr("from"), Some("localhost"));
    let stamp = delay.attr("stamp").unwrap_or_default();
    // XEP-0082 DateTime in UTC: 2024-01-02T03:04:05.678Z
    assert_eq!(stamp.len(), 24, "{stamp}");
    assert!(
        stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T',
        "{stamp}"
    );
    Ok(msg)
}

#[tokio::test]
async fn messages_to_an_offline_user_come_in_order_with_delay_at_next_login() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let sends = [
        "<message to='bob@localhost' type='chat' id='o1'><body>first</body></message>",
        // Not kept: chat states alone, headlines, groupchat (bounced) and errors.
        "<message to='bob@localhost' type='chat' id='cs'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
        "<message to='bob@localhost' type='headline' id='h'><body>news</body></message>",
        "<message to='bob@localhost' type='groupchat' id='g'><body>room</body></message>",
        "<message to='bob@localhost' type='error' id='e'><body>err</body></message>",
        "<message to='bob@localhost' id='o2'><body>second</body></message>",
        "<message to='bob@localhost/gone' type='chat' id='o3'><body>third</body><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
    ];
    for s in sends {
        alice.send(s).await?;
    }
    expect_error(
        &mut alice,
        "message",
        "g",
        "bob@localhost",
        "service-unavailable",
    )
    .await?;
    alice.expect_silence(SILENCE).await?;

    // A negative priority does not take offline messages (§8.5.2.1.1)...
    let mut bob = online(&server, "bob", "desk", -1).await?;
    bob.expect_silence(SILENCE).await?;
    // ...a non-negative one does, in order, stamped.
    bob.send("<presence><priority>0</priority></presence>")
        .await?;
    expect_presence(&mut bob, "bob@localhost/desk", None).await?;
    expect_offline(&mut bob, "first").await?;
    expect_offline(&mut bob, "second").await?;
    expect_offline_to(&mut bob, "bob@localhost/gone", "third").await?;
    bob.expect_silence(SILENCE).await?;
    bob.close().await?;

    // Delivered means removed.
    let mut bob = online(&server, "bob", "desk", 0).await?;
    bob.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn offline_quota_bounces_instead_of_dropping() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| c.im.max_offline_messages = 2).await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    for i in 1..=3 {
        alice
            .send(&format!(
                "<message to='bob@localhost' type='chat' id='q{i}'><body>m{i}</body></message>"
            ))
            .await?;
    }
    let bounce = expect_error(
        &mut alice,
        "message",
        "q3",
        "bob@localhost",
        "service-unavailable",
    )
    .await?;
    assert_eq!(body(&bounce).as_deref(), Some("m3"));
    alice.expect_silence(SILENCE).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    expect_offline(&mut bob, "m1").await?;
    expect_offline(&mut bob, "m2").await?;
    bob.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn offline_messages_survive_a_restart() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    alice
        .send("<message to='bob@localhost' type='chat' id='r1'><body>before the restart</body></message>")
        .await?;
    // The session handles stanzas in order: the ping's answer means the message was handled
    // (committed to offline storage), and no bounce came.
    alice
        .send("<iq type='get' id='sync' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    alice
        .expect("ping result", |e| {
            e.attr("id") == Some("sync") && e.attr("type") == Some("result")
        })
        .await?;
    drop(alice);

    let server = server.restart().await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    expect_offline(&mut bob, "before the restart").await?;
    bob.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

/// Issue 18, weakness 2: offline storage is limited in bytes as well as in messages. With the
/// default 4 MiB, 40 messages of 200 KiB to an offline user are not all kept: the first 20
/// are, the others bounce with `service-unavailable`. The stored total survives a restart.
#[tokio::test]
async fn offline_storage_is_limited_in_bytes() -> anyhow::Result<()> {
    const SENT: usize = 40;
    const KEPT: usize = 20;
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let body = "b".repeat(200 * 1024);
    for i in 0..SENT {
        alice
            .send(&format!(
                "<message to='bob@localhost' type='chat' id='big{i}'><body>{body}</body></message>"
            ))
            .await?;
    }
    for i in KEPT..SENT {
        let bounce = expect_error(
            &mut alice,
            "message",
            &format!("big{i}"),
            "bob@localhost",
            "service-unavailable",
        )
        .await?;
        assert_eq!(body_len(&bounce), Some(body.len()));
    }
    alice.expect_silence(SILENCE).await?;
    drop(alice);

    // After a restart the store still knows it is full.
    let server = server.restart().await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    alice
        .send(&format!(
            "<message to='bob@localhost' type='chat' id='after'><body>{body}</body></message>"
        ))
        .await?;
    expect_error(
        &mut alice,
        "message",
        "after",
        "bob@localhost",
        "service-unavailable",
    )
    .await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    for i in 0..KEPT {
        let msg = expect_offline(&mut bob, &body).await?;
        assert_eq!(msg.attr("id"), Some(format!("big{i}").as_str()));
    }
    bob.expect_silence(SILENCE).await?;
    // Delivered means removed, bytes included: a short message is kept again.
    drop(bob);
    alice
        .send("<message to='bob@localhost' type='chat' id='small'><body>hi</body></message>")
        .await?;
    alice.expect_silence(SILENCE).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    expect_offline(&mut bob, "hi").await?;
    server.stop().await;
    Ok(())
}

fn body_len(el: &Element) -> Option<usize> {
    body(el).map(|b| b.len())
}
