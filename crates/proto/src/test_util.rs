//! Helpers for the payload tests: XML text in, [`Element`] out.

use xmppd_xml::{Element, Limits, Reader, StreamEvent};

/// Parses one element written as it would appear in a client stream (so an element without
/// `xmlns` is in `jabber:client`). Panics on anything else: tests only.
pub(crate) fn element(xml: &str) -> Element {
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
        Ok(Some(StreamEvent::Stanza(el))) => el,
        other => panic!("{xml} is not one element: {other:?}"),
    }
}
