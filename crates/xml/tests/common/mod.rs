//! Helpers shared by the integration tests.

#![allow(dead_code)]

use xmppd_xml::{Limits, Reader, StreamEvent, XmlError};

/// Feeds `input` in the given pieces, draining events after each; stops at the first error.
pub fn read_pieces<'a>(
    limits: Limits,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> (Vec<StreamEvent>, Option<XmlError>) {
    let mut reader = Reader::new(limits);
    let mut events = Vec::new();
    for piece in pieces {
        reader.feed(piece);
        loop {
            match reader.next_event() {
                Ok(Some(ev)) => events.push(ev),
                Ok(None) => break,
                Err(e) => return (events, Some(e)),
            }
        }
    }
    (events, None)
}

/// Reads `input` fed in one piece.
pub fn read_all(input: &[u8]) -> (Vec<StreamEvent>, Option<XmlError>) {
    read_pieces(Limits::default(), [input])
}

/// The error `input` produces (fed whole), panicking if it is accepted.
pub fn error_of(input: &[u8]) -> XmlError {
    match read_all(input) {
        (_, Some(e)) => e,
        (events, None) => panic!("accepted {:?}: {events:?}", String::from_utf8_lossy(input)),
    }
}

/// A stream header for tests.
pub const HEADER: &str = "<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>";
