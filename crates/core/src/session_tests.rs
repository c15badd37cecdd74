use super::*;
use crate::queue::{QueueReceiver, session_queue};
use bytes::Bytes;
use xmppd_proto::{StanzaKind, ns};
use xmppd_xml::Element;

fn full(s: &str) -> FullJid {
    FullJid::new(s).unwrap()
}

#[tokio::test]
async fn rebinding_a_resource_kicks_the_old_session_with_conflict() {
    let reg = SessionRegistry::new();
    let (tx1, _rx1) = session_queue(4);
    let (tx2, _rx2) = session_queue(4);
    let c1 = Arc::new(SessionControl::default());
    let c2 = Arc::new(SessionControl::default());
    assert!(reg.bind(&full("a@x/r"), 1, tx1, c1.clone()).is_none());
    let replaced = reg.bind(&full("a@x/r"), 2, tx2, c2.clone());
    assert_eq!(replaced.map(|r| r.jid), Some(full("a@x/r")));
    c1.kicked().await;
    assert_eq!(c1.reason().condition, StreamErrorCondition::Conflict);
    assert_eq!(reg.len(), 1);
    // The replaced session's unbind must not remove its replacement.
    assert!(!reg.unbind(&full("a@x/r"), 1));
    assert_eq!(reg.len(), 1);
    assert!(reg.unbind(&full("a@x/r"), 2));
    assert!(reg.is_empty());
}

#[test]
fn a_presence_is_replaced_only_while_it_is_the_one_expected() {
    let reg = SessionRegistry::new();
    let (tx, _rx) = session_queue(4);
    let jid = full("a@x/r");
    reg.bind(&jid, 1, tx, Arc::new(SessionControl::default()));
    let presence = || {
        let el = Element::new("presence", ns::CLIENT);
        Arc::new(Stanza::new_unchecked(StanzaKind::Presence, None, None, el))
    };
    let recorded = || reg.get(&jid).and_then(|r| r.last_presence);
    let (first, rewritten, newer) = (presence(), presence(), presence());
    reg.set_presence(&jid, 1, Some((0, first.clone())));
    assert!(reg.replace_presence(&jid, &first, rewritten.clone()));
    assert!(recorded().is_some_and(|p| Arc::ptr_eq(&p, &rewritten)));
    // The client's newer presence is not overwritten by a rewrite of an older one.
    reg.set_presence(&jid, 1, Some((0, newer.clone())));
    assert!(!reg.replace_presence(&jid, &rewritten, presence()));
    assert!(recorded().is_some_and(|p| Arc::ptr_eq(&p, &newer)));
    assert!(!reg.replace_presence(&full("a@x/other"), &newer, presence()));
}

#[tokio::test]
async fn full_queue_kicks_the_slow_session() {
    let reg = SessionRegistry::new();
    let (tx, _rx) = session_queue(1);
    let c = Arc::new(SessionControl::default());
    reg.bind(&full("a@x/r"), 1, tx, c.clone());
    let r = reg.get(&full("a@x/r")).unwrap();
    let out = Outbound {
        bytes: Bytes::from_static(b"<message/>"),
        reroute: None,
    };
    assert_eq!(r.deliver(out.clone()), Ok(()));
    assert_eq!(r.deliver(out), Err(DeliveryError::QueueFull));
    c.kicked().await;
    assert_eq!(c.reason().condition, StreamErrorCondition::PolicyViolation);
}

#[tokio::test]
async fn deliver_to_queues_for_the_exact_resource_and_kicks_a_slow_one() {
    let reg = SessionRegistry::new();
    let (tx, mut rx) = session_queue(1);
    let c = Arc::new(SessionControl::default());
    reg.bind(&full("a@x/r"), 1, tx, c.clone());
    let out = || Outbound {
        bytes: Bytes::from_static(b"<message/>"),
        reroute: None,
    };
    assert!(reg.deliver_to(&full("a@x/other"), out).is_none());
    assert!(reg.deliver_to(&full("b@x/r"), out).is_none());
    assert_eq!(reg.deliver_to(&full("a@x/r"), out), Some(Ok(())));
    assert_eq!(
        rx.try_recv().map(|o| o.bytes),
        Some(Bytes::from_static(b"<message/>"))
    );
    assert_eq!(reg.deliver_to(&full("a@x/r"), out), Some(Ok(())));
    assert_eq!(
        reg.deliver_to(&full("a@x/r"), out),
        Some(Err(DeliveryError::QueueFull))
    );
    c.kicked().await;
    assert_eq!(c.reason().condition, StreamErrorCondition::PolicyViolation);
    drop(rx);
    assert_eq!(
        reg.deliver_to(&full("a@x/r"), out),
        Some(Err(DeliveryError::NoSession))
    );
}

/// Binds `u0@x/r` … to a fresh registry; the receivers keep the queues open.
fn bind_many(n: usize) -> (SessionRegistry, Vec<FullJid>, Vec<QueueReceiver>) {
    let reg = SessionRegistry::new();
    let jids: Vec<FullJid> = (0..n).map(|i| full(&format!("u{i}@x/r"))).collect();
    let mut rxs = Vec::new();
    for (i, jid) in jids.iter().enumerate() {
        let (tx, rx) = session_queue(1);
        rxs.push(rx);
        reg.bind(jid, i as u64, tx, Arc::default());
    }
    (reg, jids, rxs)
}

#[test]
fn the_registry_gives_back_its_table_after_a_peak() {
    let (reg, jids, _rxs) = bind_many(4096);
    let peak = reg.by_bare.capacity();
    assert!(peak >= 4096);
    for (i, jid) in jids.iter().enumerate() {
        assert!(reg.unbind(jid, i as u64));
    }
    assert!(reg.is_empty());
    assert_eq!(
        reg.by_bare.capacity(),
        0,
        "the whole table goes with the last session (peak {peak})"
    );
}

#[test]
fn the_registry_shrinks_while_sessions_remain() {
    // The last check sees 1,024 sessions left: a table for them is well under a quarter
    // of one for 8,192, whatever the shards' hash distribution.
    let (reg, jids, _rxs) = bind_many(8192);
    let peak = reg.by_bare.capacity();
    // Leave 100 sessions bound.
    for (i, jid) in jids.iter().enumerate().skip(100) {
        assert!(reg.unbind(jid, i as u64));
    }
    assert!(
        reg.by_bare.capacity() < peak / 4,
        "capacity {} after the peak of {peak}",
        reg.by_bare.capacity()
    );
    for (i, jid) in jids.iter().enumerate().take(100) {
        let out = || Outbound {
            bytes: Bytes::from_static(b"<message/>"),
            reroute: None,
        };
        assert_eq!(
            reg.deliver_to(jid, out),
            Some(Ok(())),
            "session {i} still bound"
        );
    }
}

#[test]
fn a_full_jids_bare_key_is_its_bare_jids_text() {
    for text in [
        "a@x/r",
        "x/r",
        "a@x/r/with/slashes@and@ats",
        "Ärger@EXAMPLE.org/Ressource",
        "juliet@例子.测试/balcony",
    ] {
        let jid = full(text);
        assert_eq!(bare_of(&jid), jid.to_bare().as_str(), "{text}");
    }
}

#[test]
fn priorities_are_tracked_per_connection() {
    let reg = SessionRegistry::new();
    let (tx, _rx) = session_queue(1);
    reg.bind(&full("a@x/r"), 7, tx, Arc::default());
    let el = xmppd_xml::Element::new("presence", xmppd_proto::ns::CLIENT);
    let p = Arc::new(Stanza::new_unchecked(
        xmppd_proto::StanzaKind::Presence,
        None,
        None,
        el,
    ));
    reg.set_presence(&full("a@x/r"), 8, Some((5, p.clone())));
    assert_eq!(reg.get(&full("a@x/r")).unwrap().priority, None);
    reg.set_presence(&full("a@x/r"), 7, Some((5, p)));
    assert_eq!(reg.get(&full("a@x/r")).unwrap().priority, Some(5));
}

#[tokio::test]
async fn a_kick_wakes_the_session_through_its_queue() {
    let (tx, mut rx) = session_queue(4);
    let control = Arc::new(SessionControl::waking(rx.signal()));
    let reg = SessionRegistry::new();
    reg.bind(&full("a@x/r"), 1, tx, control.clone());
    assert!(!control.is_kicked());
    let waiting = tokio::spawn(rx.signal().notified());
    tokio::task::yield_now().await;
    reg.kick_all(&StreamError::new(StreamErrorCondition::SystemShutdown));
    tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
        .await
        .expect("the kick woke the queue's waiter")
        .unwrap();
    assert!(control.is_kicked());
    assert_eq!(
        control.reason().condition,
        StreamErrorCondition::SystemShutdown
    );
    assert!(matches!(rx.next_now(), crate::queue::Next::Empty));
}

#[tokio::test]
async fn a_task_waiting_for_the_kick_wakes_whether_it_came_before_or_after() {
    let control = Arc::new(SessionControl::default());
    let waiting = tokio::spawn({
        let control = control.clone();
        async move { control.kicked().await }
    });
    tokio::task::yield_now().await;
    control.kick(StreamError::new(StreamErrorCondition::Conflict));
    tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
        .await
        .expect("woken by the kick")
        .expect("task");
    // Kicked already: resolves at once.
    control.kicked().await;
    assert_eq!(control.reason().condition, StreamErrorCondition::Conflict);
}

/// Every session's control is one allocation: 176 bytes and the reference counts fill
/// mimalloc's 192-byte size class, and a field more would move it to the next (224).
#[cfg(target_pointer_width = "64")]
#[test]
fn a_control_stays_within_its_allocator_size_class() {
    assert!(std::mem::size_of::<SessionControl>() <= 176);
}
