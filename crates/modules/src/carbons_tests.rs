use super::*;
use xmppd_xml::{Limits, Reader, StreamEvent};

/// A message written as in a client stream.
fn message(xml: &str) -> Stanza {
    let mut reader = Reader::new(Limits::default());
    reader.feed(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
    );
    reader.feed(xml.as_bytes());
    assert!(matches!(
        reader.next_event(),
        Ok(Some(StreamEvent::Open(_)))
    ));
    match reader.next_event() {
        Ok(Some(StreamEvent::Stanza(el))) => Stanza::parse(el, ns::CLIENT).unwrap(),
        other => panic!("{xml}: {other:?}"),
    }
}

const OCCUPANT: &str = "from='room@muc.example/nick' to='romeo@example/a'";
const CONTACT: &str = "from='juliet@example/balcony' to='romeo@example/a'";

/// §6.1, rule by rule: (message, way, copied).
#[test]
fn the_rules_of_section_6_1() {
    use Way::{Received, Sent};
    let rows: &[(&str, Way, bool)] = &[
        // type chat, with or without a body (chat states travel as chat).
        ("<message type='chat'><body>hi</body></message>", Sent, true),
        (
            "<message type='chat'><body>hi</body></message>",
            Received,
            true,
        ),
        (
            "<message type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
            Sent,
            true,
        ),
        // type normal (or none, or unknown) with a body.
        ("<message><body>hi</body></message>", Sent, true),
        (
            "<message type='normal'><body>hi</body></message>",
            Received,
            true,
        ),
        (
            "<message type='whatever'><body>hi</body></message>",
            Received,
            true,
        ),
        ("<message type='normal'/>", Sent, false),
        (
            "<message type='normal'><subject>s</subject></message>",
            Received,
            false,
        ),
        // IM payloads without a body: receipts, chat states, markers.
        (
            "<message><received xmlns='urn:xmpp:receipts' id='1'/></message>",
            Sent,
            true,
        ),
        (
            "<message><composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
            Received,
            true,
        ),
        (
            "<message><displayed xmlns='urn:xmpp:chat-markers:0' id='1'/></message>",
            Received,
            true,
        ),
        // Errors: a bounce received from a bare JID, not one from a full JID, not sent.
        (
            "<message type='error' from='juliet@example' to='romeo@example/a'><error type='cancel'/></message>",
            Received,
            true,
        ),
        (
            "<message type='error' from='example' to='romeo@example/a'><error type='cancel'/></message>",
            Received,
            true,
        ),
        (
            &format!("<message type='error' {CONTACT}><error type='cancel'/></message>"),
            Received,
            false,
        ),
        (
            "<message type='error' to='juliet@example'><error type='cancel'/></message>",
            Sent,
            false,
        ),
        // MUC: never groupchat; invitations yes; private messages to an occupant yes, from one no.
        (
            "<message type='groupchat'><body>hi</body></message>",
            Sent,
            false,
        ),
        (
            &format!("<message type='groupchat' {OCCUPANT}><body>hi</body></message>"),
            Received,
            false,
        ),
        (
            "<message><x xmlns='jabber:x:conference' jid='room@muc.example'/></message>",
            Sent,
            true,
        ),
        (
            "<message from='room@muc.example' to='romeo@example'><x xmlns='http://jabber.org/protocol/muc#user'><invite from='juliet@example'/></x></message>",
            Received,
            true,
        ),
        (
            "<message type='chat' to='room@muc.example/nick'><body>psst</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>",
            Sent,
            true,
        ),
        (
            &format!(
                "<message type='chat' {OCCUPANT}><body>psst</body><x xmlns='http://jabber.org/protocol/muc#user'/></message>"
            ),
            Received,
            false,
        ),
        // Headlines are not instant messages.
        (
            "<message type='headline'><body>news</body></message>",
            Received,
            false,
        ),
        // §9 and XEP-0334: private, no-copy.
        (
            "<message type='chat'><body>hi</body><private xmlns='urn:xmpp:carbons:2'/></message>",
            Sent,
            false,
        ),
        (
            &format!(
                "<message type='chat' {CONTACT}><body>hi</body><private xmlns='urn:xmpp:carbons:2'/><no-copy xmlns='urn:xmpp:hints'/></message>"
            ),
            Received,
            false,
        ),
        (
            "<message type='chat'><body>hi</body><no-copy xmlns='urn:xmpp:hints'/></message>",
            Sent,
            false,
        ),
        // §11: a message carrying a carbon wrapper is never copied.
        (
            &format!(
                "<message type='chat' {CONTACT}><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='chat'><body>forged</body></message></forwarded></received></message>"
            ),
            Received,
            false,
        ),
        (
            "<message type='chat' to='romeo@example'><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='chat'><body>forged</body></message></forwarded></sent></message>",
            Sent,
            false,
        ),
    ];
    for (xml, way, expected) in rows {
        assert_eq!(eligible(&message(xml), *way), *expected, "{way:?} {xml}");
    }
}

#[test]
fn the_count_follows_the_sessions_markers() {
    let count = EnabledCount::default();
    let ext = Extensions::default();
    // Disabling (or closing) a session that never enabled takes nothing off.
    count.disable(&ext);
    assert!(!count.any());
    ext.insert(Enabled);
    count.up();
    let other = Extensions::default();
    other.insert(Enabled);
    count.up();
    count.disable(&ext);
    count.disable(&ext);
    assert!(count.any(), "the other session still has carbons on");
    count.disable(&other);
    assert!(!count.any());
}

#[test]
fn a_copy_is_from_the_bare_jid_with_the_original_type_and_message_inside() {
    let original = message(&format!(
        "<message type='chat' id='m1' {CONTACT}><body>hi</body></message>"
    ));
    let from = Jid::new("romeo@example").unwrap();
    let to = Jid::new("romeo@example/b").unwrap();
    let carbon = Carbon::new(Direction::Received, original.element().clone()).to_element();
    let copy = wrapper(&original, &from, &to, carbon);
    let el = copy.element();
    assert_eq!(el.attr("from"), Some("romeo@example"));
    assert_eq!(el.attr("to"), Some("romeo@example/b"));
    assert_eq!(el.attr("type"), Some("chat"));
    let parsed = el
        .child("received", ns::CARBONS)
        .map(Carbon::try_from)
        .unwrap()
        .unwrap();
    assert_eq!(parsed.forwarded.stanza.attr("id"), Some("m1"));
    assert_eq!(
        parsed.forwarded.stanza.attr("from"),
        Some("juliet@example/balcony")
    );
    let untyped = message("<message><body>hi</body></message>");
    let copy = wrapper(&untyped, &from, &to, Element::new("sent", ns::CARBONS));
    assert_eq!(copy.element().attr("type"), None);
}
