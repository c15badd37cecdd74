//! Character data with more than one error: the first in document order is reported, however
//! the input is cut (whole, split at every byte, byte by byte).

use xmppd_xml::{Limits, Reader, XmlError};

const HEADER: &str = "<stream:stream xmlns='jabber:client' \
                      xmlns:stream='http://etherx.jabber.org/streams'><message><body>";

/// The error condition when `input` is fed in the given pieces.
fn condition(pieces: &[&[u8]]) -> Option<&'static str> {
    let mut reader = Reader::new(Limits::default());
    for piece in pieces {
        reader.feed(piece);
        loop {
            match reader.next_event() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Some(XmlError::condition(&e)),
            }
        }
    }
    None
}

/// Every way of feeding `input` gives `expected`.
fn assert_every_cut(input: &[u8], expected: &str) {
    assert_eq!(condition(&[input]), Some(expected), "whole");
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(condition(&[a, b]), Some(expected), "split at {at}");
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(condition(&bytes), Some(expected), "byte by byte");
}

#[test]
fn an_undefined_entity_before_a_forbidden_character() {
    let input = [HEADER.as_bytes(), b"&foo;\x01</body>"].concat();
    assert_every_cut(&input, "restricted-xml");
}

#[test]
fn an_undefined_entity_before_invalid_utf8() {
    let input = [HEADER.as_bytes(), b"&foo;\x80\x00</body>"].concat();
    assert_every_cut(&input, "restricted-xml");
}

#[test]
fn a_forbidden_character_before_an_undefined_entity() {
    let input = [HEADER.as_bytes(), b"ab\x01&foo;</body>"].concat();
    assert_every_cut(&input, "not-well-formed");
}

#[test]
fn invalid_utf8_before_an_undefined_entity() {
    let input = [HEADER.as_bytes(), b"ab\xff&foo;</body>"].concat();
    assert_every_cut(&input, "not-well-formed");
}

#[test]
fn cdata_end_before_an_undefined_entity() {
    let input = [HEADER.as_bytes(), b"x]]>&foo;</body>"].concat();
    assert_every_cut(&input, "not-well-formed");
}
