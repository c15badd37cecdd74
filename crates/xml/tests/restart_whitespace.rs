//! Whitespace a client writes after the last element of a stream (go-xmpp ends every element
//! with a newline) must not break the restarted stream nor count as pipelined data.

use xmppd_xml::{Limits, Reader, StreamEvent, XmlError};

const HEADER: &[u8] =
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

fn opened(r: &mut Reader) {
    let e = r.next_event();
    assert!(matches!(e, Ok(Some(StreamEvent::Open(_)))), "{e:?}");
}

fn stanza(r: &mut Reader) {
    let e = r.next_event();
    assert!(matches!(e, Ok(Some(StreamEvent::Stanza(_)))), "{e:?}");
}

#[test]
fn xml_declaration_after_trailing_newline_of_the_previous_stream() {
    let mut r = Reader::new(Limits::default());
    r.feed(HEADER);
    r.feed(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAcHc=</auth>\n");
    opened(&mut r);
    stanza(&mut r);
    r.reset();
    r.feed(b"<?xml version='1.0'?>");
    r.feed(HEADER);
    opened(&mut r);
}

#[test]
fn newline_arriving_after_the_reset_is_accepted_too() {
    let mut r = Reader::new(Limits::default());
    r.feed(HEADER);
    r.feed(b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AGEAcHc=</auth>");
    opened(&mut r);
    stanza(&mut r);
    r.reset();
    r.feed(b"\r\n \t");
    assert!(matches!(r.next_event(), Ok(None)));
    r.feed(b"<?xml version='1.0'?>");
    r.feed(HEADER);
    opened(&mut r);
}

#[test]
fn first_document_still_needs_the_declaration_first() {
    let mut r = Reader::new(Limits::default());
    r.feed(b"\n<?xml version='1.0'?>");
    r.feed(HEADER);
    let e = r.next_event();
    assert!(matches!(e, Err(XmlError::RestrictedXml(_))), "{e:?}");
}

#[test]
fn a_processing_instruction_after_a_reset_is_still_restricted() {
    let mut r = Reader::new(Limits::default());
    r.feed(HEADER);
    opened(&mut r);
    r.reset();
    r.feed(b"\n<?evil stuff?>");
    let e = r.next_event();
    assert!(matches!(e, Err(XmlError::RestrictedXml(_))), "{e:?}");
}

#[test]
fn skip_whitespace_leaves_only_real_pipelined_data() {
    let mut r = Reader::new(Limits::default());
    r.feed(HEADER);
    r.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n");
    opened(&mut r);
    stanza(&mut r);
    assert_eq!(r.buffered(), 1);
    assert_eq!(r.skip_whitespace(), 0);

    let mut r = Reader::new(Limits::default());
    r.feed(HEADER);
    r.feed(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>\n<iq type='get' id='x'/>");
    opened(&mut r);
    stanza(&mut r);
    assert_eq!(r.skip_whitespace(), b"<iq type='get' id='x'/>".len());
}
