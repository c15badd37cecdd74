//! Arbitrary bytes, split at a fuzzer-chosen point: the reader must never panic, never buffer
//! beyond its limit plus the last read, and reach the same verdict and events as when the
//! input arrives in one piece.

#![no_main]

use libfuzzer_sys::fuzz_target;
use xmppd_xml::{Limits, Reader, StreamEvent, XmlError};

const LIMITS: Limits = Limits {
    max_stanza_bytes: 4096,
    max_depth: 16,
    max_attrs: 16,
};

fn run(pieces: &[&[u8]]) -> (Vec<StreamEvent>, Option<XmlError>) {
    let mut reader = Reader::new(LIMITS);
    let mut events = Vec::new();
    for piece in pieces {
        reader.feed(piece);
        loop {
            match reader.next_event() {
                Ok(Some(event)) => events.push(event),
                Ok(None) => break,
                Err(e) => return (events, Some(e)),
            }
        }
        assert!(reader.buffered() <= LIMITS.max_stanza_bytes + piece.len());
    }
    (events, None)
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let at = (usize::from(split) * input.len() / 255).min(input.len());
    let (a, b) = input.split_at(at);
    let whole = run(&[input]);
    let split = run(&[a, b]);
    assert_eq!(whole.0, split.0);
    assert_eq!(
        whole.1.as_ref().map(XmlError::condition),
        split.1.as_ref().map(XmlError::condition)
    );
});
