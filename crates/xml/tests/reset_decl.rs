//! A stream restart (`Reader::reset`) starts a new document, XML declaration included.

use xmppd_xml::{Limits, Reader, StreamEvent};

#[test]
fn xml_declaration_is_allowed_after_reset() {
    let mut r = Reader::new(Limits::default());
    r.feed(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
    );
    assert!(matches!(r.next_event(), Ok(Some(StreamEvent::Open(_)))));
    r.reset();
    r.feed(b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
    let e = r.next_event();
    assert!(matches!(e, Ok(Some(StreamEvent::Open(_)))), "{e:?}");
}
