//! Each error class maps to the right RFC 6120 stream error condition.

mod common;

use common::{HEADER, error_of, read_all, read_pieces};
use xmppd_xml::{Limits, Reader, StreamEvent, XmlError};

fn in_stream(body: &str) -> Vec<u8> {
    format!("{HEADER}{body}").into_bytes()
}

fn condition(input: &[u8]) -> &'static str {
    error_of(input).condition()
}

#[test]
fn doctype_is_restricted() {
    assert_eq!(condition(b"<!DOCTYPE stream>"), "restricted-xml");
    assert_eq!(
        condition(b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]><x/>"),
        "restricted-xml"
    );
}

#[test]
fn comment_is_restricted() {
    assert_eq!(
        condition(&in_stream("<message><!-- hi --></message>")),
        "restricted-xml"
    );
    assert_eq!(condition(b"<!-- before the header -->"), "restricted-xml");
    // Rejected at the third byte, without waiting for the end of the comment.
    assert_eq!(condition(&in_stream("<!-")), "restricted-xml");
}

#[test]
fn processing_instruction_is_restricted() {
    assert_eq!(
        condition(&in_stream("<message><?php echo 1; ?></message>")),
        "restricted-xml"
    );
    assert_eq!(condition(b"<?xml-stylesheet href='a'?>"), "restricted-xml");
    // An XML declaration anywhere but at the very start is a processing instruction.
    assert_eq!(condition(b" <?xml version='1.0'?>"), "restricted-xml");
    assert_eq!(
        condition(&in_stream("<?xml version='1.0'?>")),
        "restricted-xml"
    );
}

#[test]
fn undeclared_entity_is_restricted() {
    assert_eq!(
        condition(&in_stream("<message><body>&foo;</body></message>")),
        "restricted-xml"
    );
    assert_eq!(
        condition(&in_stream("<message to='&nbsp;'/>")),
        "restricted-xml"
    );
}

#[test]
fn entity_declaration_is_restricted() {
    assert_eq!(condition(b"<!ENTITY x 'y'>"), "restricted-xml");
    assert_eq!(condition(&in_stream("<!ENTITY x 'y'>")), "restricted-xml");
    assert_eq!(
        condition(&in_stream("<!ATTLIST a b CDATA #IMPLIED>")),
        "restricted-xml"
    );
}

#[test]
fn bad_utf8_is_not_well_formed() {
    for bad in [
        &b"\xC3\x28"[..],
        b"\xFF",
        b"\xED\xA0\x80",
        b"\xC0\xAF",
        b"\xF4\x90\x80\x80",
    ] {
        let mut input = in_stream("<message><body>");
        input.extend_from_slice(bad);
        input.extend_from_slice(b"</body></message>");
        assert_eq!(condition(&input), "not-well-formed", "{bad:?}");
        // The same, arriving byte by byte (an invalid sequence split across reads).
        let (_, err) = read_pieces(Limits::default(), input.chunks(1));
        assert_eq!(err.map(|e| e.condition()), Some("not-well-formed"));
    }
    let mut input = in_stream("<message to='");
    input.extend_from_slice(b"\xFE'/>");
    assert_eq!(condition(&input), "not-well-formed");
}

#[test]
fn forbidden_characters_are_not_well_formed() {
    for body in [
        "&#0;",
        "&#x0;",
        "&#xFFFE;",
        "&#xFFFF;",
        "&#xD800;",
        "&#x110000;",
        "&#x1B;",
    ] {
        let input = in_stream(&format!("<message><body>{body}</body></message>"));
        assert_eq!(condition(&input), "not-well-formed", "{body}");
        let input = in_stream(&format!("<message id='{body}'/>"));
        assert_eq!(condition(&input), "not-well-formed", "{body}");
    }
    assert_eq!(
        condition(&in_stream("<message><body>\u{1}</body></message>")),
        "not-well-formed"
    );
    assert_eq!(
        condition(&in_stream("<message><body>\u{FFFF}</body></message>")),
        "not-well-formed"
    );
    assert_eq!(
        condition(&in_stream("<message id='\u{0}'/>")),
        "not-well-formed"
    );
}

#[test]
fn mismatched_end_tag_is_not_well_formed() {
    assert_eq!(
        condition(&in_stream("<message><body></message></body>")),
        "not-well-formed"
    );
    assert_eq!(
        condition(&in_stream("<a:x xmlns:a='u'></b:x>")),
        "not-well-formed"
    );
    assert_eq!(condition(&in_stream("</message>")), "not-well-formed");
    assert_eq!(condition(b"</stream:stream>"), "not-well-formed");
}

#[test]
fn duplicate_attributes_are_not_well_formed() {
    assert_eq!(
        condition(&in_stream("<message id='1' id='2'/>")),
        "not-well-formed"
    );
    assert_eq!(
        condition(&in_stream(
            "<message xmlns:a='urn:x' xmlns:b='urn:x' a:x='1' b:x='2'/>"
        )),
        "not-well-formed"
    );
    assert_eq!(
        condition(&in_stream("<message xml:lang='en' xml:lang='fr'/>")),
        "not-well-formed"
    );
    assert_eq!(
        condition(&in_stream("<message xmlns='a' xmlns='b'/>")),
        "not-well-formed"
    );
    // Same local name in different namespaces is fine.
    let (events, err) = read_all(&in_stream("<m xmlns:a='urn:a' a:x='1' x='2'/>"));
    assert_eq!(err, None);
    let StreamEvent::Stanza(m) = &events[1] else {
        panic!()
    };
    assert_eq!(m.attr("{urn:a}x"), Some("1"));
    assert_eq!(m.attr("x"), Some("2"));
}

#[test]
fn broken_syntax_is_not_well_formed() {
    for body in [
        "<message id='1'id='2'/>",
        "<message id=1/>",
        "<message id/>",
        "<message 1d='x'/>",
        "<1message/>",
        "<message><body>a & b</body></message>",
        "<message><body>a ]]> b</body></message>",
        "<message id='a<b'/>",
        "<message><![CDATX[x]]></message>",
        "<a:b:c xmlns:a='u'/>",
        "<message xmlns:p=''/>",
        "<message xmlns:xml='urn:not-xml'/>",
        "<message xmlns:xmlns='urn:x'/>",
        "<xmlns:message/>",
        "<message/ >",
        "< message/>",
        "hello",
        "<![CDATA[top-level]]>",
    ] {
        assert_eq!(condition(&in_stream(body)), "not-well-formed", "{body}");
    }
}

#[test]
fn undeclared_prefix_is_bad_namespace_prefix() {
    assert_eq!(
        condition(&in_stream("<foo:message/>")),
        "bad-namespace-prefix"
    );
    assert_eq!(
        condition(&in_stream("<message foo:id='1'/>")),
        "bad-namespace-prefix"
    );
    assert_eq!(
        condition(b"<stream:stream xmlns='jabber:client'>"),
        "bad-namespace-prefix"
    );
    // A prefix declared on a sibling is out of scope.
    assert_eq!(
        condition(&in_stream("<a xmlns:p='u'><p:b/></a><p:c/>")),
        "bad-namespace-prefix"
    );
}

#[test]
fn wrong_root_is_invalid_namespace() {
    assert_eq!(
        condition(b"<stream:stream xmlns:stream='urn:wrong'>"),
        "invalid-namespace"
    );
    assert_eq!(
        condition(b"<stream xmlns='jabber:client'>"),
        "invalid-namespace"
    );
    assert_eq!(
        condition(b"<stream:features xmlns:stream='http://etherx.jabber.org/streams'>"),
        "invalid-namespace"
    );
}

#[test]
fn non_utf8_declaration_is_unsupported_encoding() {
    assert_eq!(
        condition(b"<?xml version='1.0' encoding='ISO-8859-1'?><stream:stream/>"),
        "unsupported-encoding"
    );
    assert_eq!(
        condition(b"<?xml version='1.0' encoding='UTF-16'?>"),
        "unsupported-encoding"
    );
    let (events, err) = read_all(b"<?xml version='1.0' encoding='utf-8' standalone='yes'?>");
    assert_eq!((events.len(), err), (0, None));
    assert_eq!(condition(b"<?xml version='1.1'?>"), "not-well-formed");
    assert_eq!(condition(b"<?xml encoding='UTF-8'?>"), "not-well-formed");
    assert_eq!(
        condition(b"<?xml version='1.0' foo='bar'?>"),
        "not-well-formed"
    );
}

#[test]
fn structure_outside_the_root() {
    assert_eq!(condition(b"text<stream:stream/>"), "not-well-formed");
    let closed = in_stream("</stream:stream>");
    let mut more = closed.clone();
    more.extend_from_slice(b"<message/>");
    assert_eq!(condition(&more), "not-well-formed");
    let mut second_root = closed.clone();
    second_root.extend_from_slice(HEADER.as_bytes());
    assert_eq!(condition(&second_root), "not-well-formed");
    let mut trailing_ws = closed;
    trailing_ws.extend_from_slice(b" \n");
    assert_eq!(read_all(&trailing_ws).1, None);
    // Whitespace before the header, and an empty-element header, are fine.
    let (events, err) = read_all(
        b"\xEF\xBB\xBF\n <stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>",
    );
    assert_eq!(err, None);
    assert!(matches!(
        events.as_slice(),
        [StreamEvent::Open(_), StreamEvent::Close]
    ));
}

#[test]
fn errors_poison_the_reader() {
    let mut reader = Reader::new(Limits::default());
    reader.feed(&in_stream("<message><!-- x --></message>"));
    assert!(matches!(
        reader.next_event(),
        Ok(Some(StreamEvent::Open(_)))
    ));
    let err = reader.next_event().unwrap_err();
    assert!(matches!(err, XmlError::RestrictedXml(_)));
    reader.feed(b"<message/>");
    assert_eq!(reader.next_event(), Err(err.clone()));
    assert_eq!(reader.next_event(), Err(err));
    assert_eq!(reader.buffered(), 0);
}

#[test]
fn reset_starts_a_new_document() {
    let mut reader = Reader::new(Limits::default());
    reader.feed(&in_stream(
        "<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>",
    ));
    assert!(matches!(
        reader.next_event(),
        Ok(Some(StreamEvent::Open(_)))
    ));
    assert!(matches!(
        reader.next_event(),
        Ok(Some(StreamEvent::Stanza(_)))
    ));
    assert_eq!(reader.next_event(), Ok(None));
    reader.reset();
    reader.feed(format!("<?xml version='1.0'?>{HEADER}<iq/>").as_bytes());
    assert!(matches!(
        reader.next_event(),
        Ok(Some(StreamEvent::Open(_)))
    ));
    let Ok(Some(StreamEvent::Stanza(iq))) = reader.next_event() else {
        panic!()
    };
    assert!(iq.is("iq", "jabber:client"));
}
