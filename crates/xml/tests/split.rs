//! The reader must produce the same events however the input is split.

mod common;

use common::{read_all, read_pieces};
use xmppd_xml::{Element, Limits, STREAM_NS, StreamEvent};

/// A realistic client stream: XML declaration, header with `stream:` prefix, stanzas with
/// namespaced payloads, multi-byte text, references, CDATA, both quote styles, `xml:lang`,
/// whitespace keepalives and the closing tag.
const STREAM: &str = concat!(
    "<?xml version='1.0' encoding=\"UTF-8\"?>\n",
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' ",
    "to=\"example.com\" version='1.0' xml:lang='en'>\n",
    "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>",
    "</stream:features>",
    "<message to='juliet@example.com/balcony' type=\"chat\" xml:lang='fr' id='m&amp;1'>",
    "<body>Ça va ? 😀 &lt;3 &amp; &#x263A; &#9731; &quot;quoted&quot; &apos;</body>",
    "<html xmlns='http://jabber.org/protocol/xhtml-im'>",
    "<body xmlns='http://www.w3.org/1999/xhtml'><p style='font-weight:bold'>Ça</p></body></html>",
    "<x:data xmlns:x='jabber:x:data' x:type='form'><![CDATA[<raw> & ]] stuff]]></x:data>",
    "</message>\n \t\r\n",
    "<iq type='get' id='r1'><query xmlns='jabber:iq:roster' ver=''/></iq>",
    "  ",
    "<presence><show>away</show><status>multi\r\nline\rtext</status></presence>",
    "\n",
    "</stream:stream>",
);

fn expected() -> Vec<StreamEvent> {
    let (events, err) = read_all(STREAM.as_bytes());
    assert_eq!(err, None);
    events
}

#[test]
fn whole_stream_events() {
    let events = expected();
    assert_eq!(events.len(), 6, "{events:#?}");
    let StreamEvent::Open(header) = &events[0] else {
        panic!("{:?}", events[0])
    };
    assert_eq!(header.default_ns.as_deref(), Some("jabber:client"));
    assert_eq!(
        header.prefixes,
        vec![("stream".to_owned(), STREAM_NS.to_owned())]
    );
    assert_eq!(header.attr("to"), Some("example.com"));
    assert_eq!(header.attr("xml:lang"), Some("en"));
    assert_eq!(header.attr("xmlns"), None);

    let StreamEvent::Stanza(features) = &events[1] else {
        panic!()
    };
    assert!(features.is("features", STREAM_NS));
    let starttls = features
        .child("starttls", "urn:ietf:params:xml:ns:xmpp-tls")
        .unwrap();
    assert!(starttls.has_child("required", "urn:ietf:params:xml:ns:xmpp-tls"));

    let StreamEvent::Stanza(message) = &events[2] else {
        panic!()
    };
    assert!(message.is("message", "jabber:client"));
    assert_eq!(message.attr("xml:lang"), Some("fr"));
    assert_eq!(message.attr("id"), Some("m&1"));
    assert_eq!(message.attr("type"), Some("chat"));
    let body = message.child("body", "jabber:client").unwrap();
    assert_eq!(body.text(), "Ça va ? 😀 <3 & ☺ ☃ \"quoted\" '");
    let html = message
        .child("html", "http://jabber.org/protocol/xhtml-im")
        .unwrap();
    let p = html.child("body", "http://www.w3.org/1999/xhtml").unwrap();
    assert!(p.has_child("p", "http://www.w3.org/1999/xhtml"));
    let data = message.child("data", "jabber:x:data").unwrap();
    assert_eq!(data.attr("{jabber:x:data}type"), Some("form"));
    assert_eq!(data.text(), "<raw> & ]] stuff");

    let StreamEvent::Stanza(iq) = &events[3] else {
        panic!()
    };
    assert_eq!(
        iq,
        &Element::new("iq", "jabber:client")
            .with_attr("type", "get")
            .with_attr("id", "r1")
            .with_child(Element::new("query", "jabber:iq:roster").with_attr("ver", ""))
    );
    let StreamEvent::Stanza(presence) = &events[4] else {
        panic!()
    };
    assert_eq!(
        presence.child("status", "jabber:client").unwrap().text(),
        "multi\nline\ntext"
    );
    assert_eq!(events[5], StreamEvent::Close);
}

#[test]
fn every_split_point_gives_the_same_events() {
    let expected = expected();
    let bytes = STREAM.as_bytes();
    for at in 0..=bytes.len() {
        let (a, b) = bytes.split_at(at);
        let (events, err) = read_pieces(Limits::default(), [a, b]);
        assert_eq!(err, None, "split at {at}");
        assert_eq!(events, expected, "split at {at}");
    }
}

#[test]
fn every_pair_of_split_points_gives_the_same_events() {
    let expected = expected();
    let bytes = STREAM.as_bytes();
    for i in (0..=bytes.len()).step_by(7) {
        for j in i..=bytes.len() {
            let pieces = [&bytes[..i], &bytes[i..j], &bytes[j..]];
            let (events, err) = read_pieces(Limits::default(), pieces);
            assert_eq!(err, None, "split at {i}, {j}");
            assert_eq!(events, expected, "split at {i}, {j}");
        }
    }
}

#[test]
fn one_byte_at_a_time_gives_the_same_events() {
    let bytes = STREAM.as_bytes();
    let (events, err) = read_pieces(Limits::default(), bytes.chunks(1));
    assert_eq!(err, None);
    assert_eq!(events, expected());
}

#[test]
fn errors_are_independent_of_splits() {
    let inputs: [&[u8]; 4] = [
        b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a>\xC3\x28</a>",
        b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a>x]]>y</a>",
        b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a>&#0;</a>",
        b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'><a>&bogus;</a>",
    ];
    for input in inputs {
        let whole = read_all(input).1.expect("rejected");
        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            let (_, err) = read_pieces(Limits::default(), [a, b]);
            assert_eq!(
                err.map(|e| e.condition()),
                Some(whole.condition()),
                "split at {at}"
            );
        }
        let (_, err) = read_pieces(Limits::default(), input.chunks(1));
        assert_eq!(err.map(|e| e.condition()), Some(whole.condition()));
    }
}
