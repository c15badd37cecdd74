use super::*;
use xmppd_proto::disco::Identity;

const NODE: &str = "https://example.org/client";

fn info(features: &[&str]) -> DiscoInfoResult {
    let mut info = DiscoInfoResult::default();
    info.identities.push(Identity::new("client", "pc"));
    info.features = features.iter().map(|f| (*f).to_owned()).collect();
    info
}

fn presence(from: &str, caps: Option<&Caps>, kind: Option<&str>) -> Stanza {
    let mut el = Element::new("presence", ns::CLIENT).with_attr("from", from);
    if let Some(k) = kind {
        el.set_attr("type", k);
    }
    if let Some(c) = caps {
        el.push_child(c.to_element());
    }
    Stanza::new_unchecked(StanzaKind::Presence, Jid::new(from).ok(), None, el)
}

fn answer(query: &Stanza, info: &DiscoInfoResult, from: &str) -> Stanza {
    let mut result = info.clone();
    result.node = query
        .iq_payload()
        .and_then(|q| q.attr("node"))
        .map(str::to_owned);
    let el = Element::new("iq", ns::CLIENT)
        .with_attr("type", "result")
        .with_attr("id", query.id().unwrap_or_default())
        .with_attr("from", from)
        .with_child(result.to_element());
    Stanza::new_unchecked(StanzaKind::Iq, Jid::new(from).ok(), None, el)
}

fn jids() -> (BareJid, FullJid, FullJid) {
    (
        BareJid::new("owner@x").unwrap(),
        FullJid::new("bob@y/phone").unwrap(),
        FullJid::new("carol@y/pc").unwrap(),
    )
}

/// One query per unknown hash; every resource that showed it meanwhile is served by the one
/// answer, and later ones are known at once.
#[test]
fn a_hash_is_verified_once_and_serves_everyone_waiting() {
    let tracker = CapsTracker::new(10, 10);
    let (owner, bob, carol) = jids();
    let features = info(&["urn:xmpp:omemo:2:devices+notify", ns::CAPS]);
    let caps = Caps::sha1(NODE, &features);
    let Seen::Query(query) = tracker.observe(
        &owner,
        &bob,
        &presence(bob.as_str(), Some(&caps), None),
        "x",
    ) else {
        panic!("no query");
    };
    let node_ver = caps.node_ver();
    assert_eq!(
        query.iq_payload().and_then(|q| q.attr("node")),
        Some(node_ver.as_str())
    );
    assert_eq!(
        tracker.observe(
            &owner,
            &carol,
            &presence(carol.as_str(), Some(&caps), None),
            "x"
        ),
        Seen::Waiting
    );
    // Someone else answering is ignored.
    assert!(
        tracker
            .answer(&answer(&query, &features, "mallory@y/x"))
            .is_empty()
    );
    let reply = answer(&query, &features, bob.as_str());
    assert!(tracker.claims(&reply));
    let served = tracker.answer(&reply);
    assert_eq!(served.len(), 2);
    assert!(served[0].2.contains("urn:xmpp:omemo:2:devices"));
    assert!(!tracker.claims(&reply));
    // A repeated presence is not initial presence (XEP-0163 §4.3.3 note).
    assert_eq!(
        tracker.observe(
            &owner,
            &bob,
            &presence(bob.as_str(), Some(&caps), None),
            "x"
        ),
        Seen::Nothing
    );
    tracker.forget(&owner, &bob);
    assert!(matches!(
        tracker.observe(
            &owner,
            &bob,
            &presence(bob.as_str(), Some(&caps), None),
            "x"
        ),
        Seen::Available(_)
    ));
    assert_eq!(tracker.interested(&owner).len(), 2);
}

/// A hash that does not match the answer is interested in nothing, and is not asked again.
#[test]
fn a_wrong_hash_is_remembered_as_interested_in_nothing() {
    let tracker = CapsTracker::new(10, 10);
    let (owner, bob, carol) = jids();
    let mut caps = Caps::sha1(NODE, &info(&["a+notify"]));
    caps.ver = "bm90IHRoZSBoYXNo".into();
    let Seen::Query(query) = tracker.observe(
        &owner,
        &bob,
        &presence(bob.as_str(), Some(&caps), None),
        "x",
    ) else {
        panic!("no query");
    };
    let served = tracker.answer(&answer(&query, &info(&["a+notify"]), bob.as_str()));
    assert!(served.iter().all(|(_, _, i)| i.is_empty()));
    assert!(matches!(
        tracker.observe(&owner, &carol, &presence(carol.as_str(), Some(&caps), None), "x"),
        Seen::Available(i) if i.is_empty()
    ));
}

#[test]
fn unavailable_presence_forgets_and_limits_hold() {
    let tracker = CapsTracker::new(1, 1);
    let (owner, bob, carol) = jids();
    let caps = Caps::sha1(NODE, &info(&["a+notify"]));
    tracker.observe(
        &owner,
        &bob,
        &presence(bob.as_str(), Some(&caps), None),
        "x",
    );
    // Over the per-account limit: not kept, until room is made.
    let carol_caps = presence(carol.as_str(), Some(&caps), None);
    assert_eq!(
        tracker.observe(&owner, &carol, &carol_caps, "x"),
        Seen::Full
    );
    tracker.retain(&owner, |b| b.as_str() == "carol@y");
    assert!(tracker.presences.get(&owner).is_some_and(|e| e.is_empty()));
    // (Its hash is still being verified: it waits.)
    assert_eq!(
        tracker.observe(&owner, &carol, &carol_caps, "x"),
        Seen::Waiting
    );
    let carol_gone = presence(carol.as_str(), None, Some("unavailable"));
    tracker.observe(&owner, &carol, &carol_gone, "x");
    tracker.observe(
        &owner,
        &bob,
        &presence(bob.as_str(), Some(&caps), None),
        "x",
    );
    tracker.observe(
        &owner,
        &bob,
        &presence(bob.as_str(), None, Some("unavailable")),
        "x",
    );
    assert!(tracker.presences.get(&owner).is_none());
    // The verified cache keeps the newest hash only.
    tracker.remember(Arc::from("one"), Interests::default());
    tracker.remember(Arc::from("two"), Interests::default());
    assert!(tracker.interests("one").is_none());
    assert!(tracker.interests("two").is_some());
}
