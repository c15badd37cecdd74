//! Property test: random element trees survive serialisation and re-parsing, at random splits.

use proptest::prelude::*;
use proptest::sample::{Index, select};
use xmppd_xml::{Element, Limits, Node, Reader, StreamEvent};

const HEADER: &str = "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' xml:lang='en'>";

/// Characters for text and attribute values: markup-significant ASCII, whitespace the writer
/// must protect, multi-byte UTF-8 and the edges of the allowed ranges.
const CHARS: &[char] = &[
    'a',
    'Z',
    '0',
    ' ',
    '<',
    '>',
    '&',
    '"',
    '\'',
    ']',
    ';',
    '#',
    '\t',
    '\n',
    '\r',
    'é',
    'ß',
    '€',
    '😀',
    '\u{D7FF}',
    '\u{E000}',
    '\u{FFFD}',
    '\u{10FFFF}',
    '\u{FEFF}',
];

fn text() -> impl Strategy<Value = String> {
    prop::collection::vec(select(CHARS), 0..12).prop_map(String::from_iter)
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z_][a-zA-Z0-9_.-]{0,8}",
        select(&["message", "body", "x", "é-ü", "ns2.el", "_a"][..]).prop_map(str::to_owned),
    ]
}

fn namespace() -> impl Strategy<Value = String> {
    select(
        &[
            "jabber:client",
            "urn:a",
            "urn:b",
            "http://jabber.org/protocol/x?y=<&>",
            "",
        ][..],
    )
    .prop_map(str::to_owned)
}

fn attr_name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => "[a-z][a-z0-9-]{0,5}".prop_filter("xmlns is a declaration", |n| n != "xmlns"),
        1 => Just("xml:lang".to_owned()),
        1 => (select(&["urn:a", "urn:b", "urn:c\"'"][..]), "[a-z]{1,3}")
            .prop_map(|(ns, local)| format!("{{{ns}}}{local}")),
    ]
}

fn leaf() -> impl Strategy<Value = Element> {
    (
        name(),
        namespace(),
        prop::collection::vec((attr_name(), text()), 0..4),
    )
        .prop_map(|(name, ns, attrs)| {
            let mut el = Element::new(name, ns);
            for (k, v) in attrs {
                el.set_attr(k, v);
            }
            el
        })
}

fn element() -> impl Strategy<Value = Element> {
    leaf().prop_recursive(4, 40, 6, |inner| {
        let child = prop_oneof![inner.prop_map(Node::Element), text().prop_map(Node::Text)];
        (leaf(), prop::collection::vec(child, 0..6)).prop_map(|(mut el, children)| {
            for child in children {
                // push_text merges adjacent text, as the parser does.
                match child {
                    Node::Element(c) => el.push_child(c),
                    Node::Text(t) => el.push_text(t),
                }
            }
            el
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn serialised_trees_parse_back_equal(
        stanzas in prop::collection::vec(element(), 1..4),
        splits in prop::collection::vec(any::<Index>(), 0..6),
    ) {
        let mut input = HEADER.as_bytes().to_vec();
        for stanza in &stanzas {
            stanza.write_to(&mut input, "jabber:client");
            input.extend_from_slice(b"\n ");
        }
        input.extend_from_slice(b"</stream:stream>");

        let mut points: Vec<usize> = splits.iter().map(|i| i.index(input.len() + 1)).collect();
        points.push(0);
        points.push(input.len());
        points.sort_unstable();

        let mut reader = Reader::new(Limits::default());
        let mut events = Vec::new();
        for w in points.windows(2) {
            reader.feed(&input[w[0]..w[1]]);
            while let Some(ev) = reader.next_event().map_err(|e| {
                TestCaseError::fail(format!("{e} in {}", String::from_utf8_lossy(&input)))
            })? {
                events.push(ev);
            }
        }
        prop_assert!(matches!(events.first(), Some(StreamEvent::Open(_))));
        prop_assert_eq!(events.last(), Some(&StreamEvent::Close));
        let parsed: Vec<&Element> = events
            .iter()
            .filter_map(|e| match e { StreamEvent::Stanza(s) => Some(s), _ => None })
            .collect();
        prop_assert_eq!(parsed, stanzas.iter().collect::<Vec<_>>());
    }
}
