//! Nothing acknowledged is lost: stanzas queued for a session that dies are routed again.

use std::collections::HashSet;
use std::time::Duration;

use crate::common::unbound_within;
use xmppd_core::storage::ArchiveQuery;
use xmppd_testkit::{TestClient, TestServer};
use xmppd_xml::StreamEvent;

/// Reads until the stream ends, collecting the ids of complete `<message/>`s.
async fn drain_ids(client: &mut TestClient, quiet: Duration, ids: &mut Vec<String>) {
    // Bounded: every iteration consumes an event, and the stream either goes quiet or ends.
    for _ in 0..1_000_000 {
        match client.next_event_within(quiet).await {
            Ok(Some(StreamEvent::Stanza(el))) if el.name() == "message" => {
                if el.attr("type") != Some("error") {
                    ids.extend(el.attr("id").map(str::to_owned));
                }
            }
            Ok(Some(StreamEvent::Stanza(_) | StreamEvent::Open(_))) => {}
            Ok(Some(StreamEvent::Close) | None) | Err(_) => return,
        }
    }
}

/// Bob's first resource stops reading. Its queue fills, the server closes it as a slow
/// consumer, and every message Alice sent to it ends up exactly once: written to bob/a before
/// it died, re-routed to bob/b (RFC 6121 §8.5.3.2.1), bounced back to Alice, or — when bob/b
/// was overrun by the re-routed burst too (the queue here is tiny) and bob had no resource
/// left — kept in offline storage and delivered to bob's next session.
#[tokio::test]
async fn messages_queued_for_a_dead_session_are_rerouted_or_bounced() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.limits.session_queue = 8;
        c.limits.write_timeout = Duration::from_secs(1);
    })
    .await?;
    server.add_user("alice", "pw-a").await?;
    server.add_user("bob", "pw-b").await?;
    let mut alice = server.login("alice", "pw-a", "desk").await?;
    let mut bob_a = server.login("bob", "pw-b", "a").await?;
    let mut bob_b = server.login("bob", "pw-b", "b").await?;
    for c in [&mut alice, &mut bob_a, &mut bob_b] {
        c.available(0).await?;
    }
    // bob/b hears its own presence and bob/a's.
    for _ in 0..2 {
        bob_b.expect("presence", |e| e.name() == "presence").await?;
    }

    let body = "x".repeat(8 * 1024);
    let total = 3000;
    let mut bounced = Vec::new();
    for i in 0..total {
        let msg = format!(
            "<message to='bob@localhost/a' type='chat' id='m{i}'><body>{body}</body></message>"
        );
        alice.send(&msg).await?;
        // Keep alice's own queue drained of bounces while she floods.
        while let Some(event) = alice.next_event_within(Duration::from_millis(0)).await? {
            if let StreamEvent::Stanza(el) = event
                && el.attr("type") == Some("error")
            {
                bounced.extend(el.attr("id").map(str::to_owned));
            }
        }
    }

    // Alice's session handles her stanzas in order, each committed to the archives before the
    // next: the answer to a ping sent last means every message has been routed (and every
    // bounce queued to her) however slow the disk is.
    alice
        .send("<iq type='get' id='barrier'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    loop {
        match alice.next_event_within(Duration::from_secs(120)).await? {
            Some(StreamEvent::Stanza(el)) if el.attr("id") == Some("barrier") => break,
            Some(StreamEvent::Stanza(el)) if el.attr("type") == Some("error") => {
                bounced.extend(el.attr("id").map(str::to_owned));
            }
            Some(_) => {}
            None => anyhow::bail!("no answer to the ping after the flood"),
        }
    }

    // The slow session must be gone (kicked, then its writes time out).
    assert!(
        unbound_within(&server, "bob@localhost/a", Duration::from_secs(10)).await?,
        "bob/a was not disconnected"
    );

    let mut at_a = Vec::new();
    drain_ids(&mut bob_a, Duration::from_secs(2), &mut at_a).await;
    let mut at_b = Vec::new();
    drain_ids(&mut bob_b, Duration::from_secs(2), &mut at_b).await;
    loop {
        match alice.next_event_within(Duration::from_secs(1)).await? {
            Some(StreamEvent::Stanza(el)) if el.attr("type") == Some("error") => {
                bounced.extend(el.attr("id").map(str::to_owned));
            }
            Some(_) => {}
            None => break,
        }
    }

    // Whatever went to offline storage is there, committed.
    let storage = xmppd::open_storage(&server.config).await?;
    let records = storage
        .archive
        .query("localhost", "bob", "offline", &ArchiveQuery::default())
        .await?;
    let offline: Vec<String> = records
        .iter()
        .filter_map(|r| {
            let text = String::from_utf8_lossy(&r.payload);
            let start = text.find(" id=\"")? + 5;
            let len = text[start..].find('"')?;
            Some(text[start..start + len].to_owned())
        })
        .collect();

    println!(
        "written to bob/a: {}, re-routed to bob/b: {}, bounced: {}, offline: {}",
        at_a.len(),
        at_b.len(),
        bounced.len(),
        offline.len()
    );
    assert!(
        at_a.len() < total,
        "bob/a was never slow: the test did not exercise anything"
    );
    let all: Vec<&String> = at_a
        .iter()
        .chain(&at_b)
        .chain(&bounced)
        .chain(&offline)
        .collect();
    let unique: HashSet<&String> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "a message arrived twice");
    for i in 0..total {
        assert!(unique.contains(&format!("m{i}")), "message m{i} was lost");
    }
    server.stop().await;
    Ok(())
}

/// What a client read until its stream ended: the ids of the messages (not errors) and of
/// the message errors it received.
#[derive(Debug, Default)]
struct Received {
    messages: Vec<String>,
    errors: Vec<String>,
}

impl Received {
    fn take(&mut self, event: StreamEvent) {
        let StreamEvent::Stanza(el) = event else {
            return;
        };
        if el.name() != "message" {
            return;
        }
        let id = el.attr("id").map(str::to_owned).unwrap_or_default();
        if el.attr("type") == Some("error") {
            self.errors.push(id);
        } else {
            self.messages.push(id);
        }
    }

    /// Takes what is readable now, without waiting.
    async fn take_ready(&mut self, client: &mut TestClient) -> anyhow::Result<()> {
        while let Some(event) = client.next_event_within(Duration::ZERO).await? {
            self.take(event);
        }
        Ok(())
    }

    /// Reads until `quiet` passes without a stanza or the stream ends.
    async fn take_until_quiet(&mut self, client: &mut TestClient, quiet: Duration) {
        // Bounded: every round takes an event, and the stream goes quiet or ends.
        for _ in 0..1_000_000 {
            match client.next_event_within(quiet).await {
                Ok(Some(event)) => self.take(event),
                Ok(None) | Err(_) => return,
            }
        }
    }
}

/// Issue 18, weakness 1. Bob logs in and stops reading (his socket stays open); Alice floods
/// him past his session's queue and past his offline quota while she reads her own socket.
/// Every message must end exactly once: written to Bob's socket before his session was
/// closed as a slow consumer, stored offline (and delivered at his next login), or bounced to
/// Alice with an error. None may vanish — in particular not the bounces of the messages
/// refused by the full offline store, which come when Alice's own queue is busiest.
#[tokio::test]
async fn a_flooded_slow_reader_loses_nothing() -> anyhow::Result<()> {
    const QUEUE: usize = 64;
    const OFFLINE: u64 = 50;
    // First messages with 16 KiB bodies, which the socket buffers of the loopback connection
    // cannot all hold, so Bob's session soon has a full queue; then short ones in bursts of
    // many stanzas per read, whose errors come back to Alice faster than one batch per read.
    const LARGE: usize = 800;
    const TOTAL: usize = 4000;
    const BURST: usize = 200;
    let server = TestServer::start_with(|c| {
        c.limits.session_queue = QUEUE;
        c.limits.write_timeout = Duration::from_secs(2);
        c.im.max_offline_messages = OFFLINE;
    })
    .await?;
    server.add_user("alice", "pw-a").await?;
    server.add_user("bob", "pw-b").await?;
    let mut alice = server.login("alice", "pw-a", "desk").await?;
    let mut bob = server.login("bob", "pw-b", "slow").await?;
    alice.available(0).await?;
    bob.available(0).await?;
    alice
        .expect("alice's presence", |e| e.name() == "presence")
        .await?;
    // From here on Bob reads nothing until the flood is over.
    let large = "y".repeat(16 * 1024);
    let mut at_alice = Received::default();
    for burst in 0..TOTAL / BURST {
        let mut xml = String::new();
        for i in burst * BURST..(burst + 1) * BURST {
            let body = if i < LARGE { large.as_str() } else { "z" };
            xml.push_str(&format!(
                "<message to='bob@localhost/slow' type='chat' id='f{i}'><body>{body}</body></message>"
            ));
        }
        alice.send(&xml).await?;
        at_alice.take_ready(&mut alice).await?;
    }
    // Alice's stanzas are handled in order: the ping's answer comes after every message was
    // routed and its bounce, if any, was queued to her.
    alice
        .send("<iq type='get' id='barrier'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    let mut answered = false;
    for _ in 0..1_000_000 {
        match alice.next_event_within(Duration::from_secs(120)).await? {
            Some(StreamEvent::Stanza(el)) if el.attr("id") == Some("barrier") => {
                answered = true;
                break;
            }
            Some(event) => at_alice.take(event),
            None => break,
        }
    }
    assert!(answered, "no answer to the ping after the flood");

    assert!(
        unbound_within(&server, "bob@localhost/slow", Duration::from_secs(20)).await?,
        "the slow reader was not disconnected"
    );
    // What reached Bob's socket before the close, then the bounces of what his session held
    // when it ended (routed after it was unbound).
    let mut at_bob = Received::default();
    at_bob
        .take_until_quiet(&mut bob, Duration::from_secs(2))
        .await;
    at_alice
        .take_until_quiet(&mut alice, Duration::from_secs(2))
        .await;

    // What was stored comes at Bob's next login.
    let mut bob = server.login("bob", "pw-b", "again").await?;
    bob.available(0).await?;
    let mut stored = Received::default();
    stored
        .take_until_quiet(&mut bob, Duration::from_secs(2))
        .await;

    println!(
        "delivered: {}, stored: {}, bounced: {}, sent: {TOTAL}",
        at_bob.messages.len(),
        stored.messages.len(),
        at_alice.errors.len()
    );
    assert!(
        at_bob.messages.len() < TOTAL - QUEUE,
        "bob was never slow: the test did not exercise anything"
    );
    assert!(
        stored.messages.len() as u64 <= OFFLINE,
        "more stored than the quota"
    );
    assert!(at_bob.errors.is_empty() && stored.errors.is_empty());
    let all: Vec<&String> = at_bob
        .messages
        .iter()
        .chain(&stored.messages)
        .chain(&at_alice.errors)
        .collect();
    let unique: HashSet<&String> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "a message was counted twice");
    let missing: Vec<usize> = (0..TOTAL)
        .filter(|i| !unique.contains(&format!("f{i}")))
        .collect();
    assert!(missing.is_empty(), "lost without a trace: {missing:?}");
    assert_eq!(all.len(), TOTAL);
    server.stop().await;
    Ok(())
}
