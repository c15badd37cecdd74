//! Nothing acknowledged is lost: stanzas queued for a session that dies are routed again.

use std::collections::HashSet;
use std::time::Duration;

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
    let gone = jid::FullJid::new("bob@localhost/a")?;
    for _ in 0..100 {
        if server.server.router.sessions().get(&gone).is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        server.server.router.sessions().get(&gone).is_none(),
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
