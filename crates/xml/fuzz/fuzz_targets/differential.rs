//! Differential against rxml: whatever we turn into events, rxml must accept too.
//!
//! "Accept" is measured on the prefix we consumed into events: bytes still waiting in our buffer
//! (an unfinished tag) have not been interpreted yet, and rxml may reject them earlier than we
//! do (for example invalid UTF-8 inside a tag we check once the tag is complete).
//!
//! The dangerous direction of a parser differential is us accepting what a strict parser
//! rejects (a peer could make the two disagree about stanza boundaries). The other direction
//! is expected where we apply XMPP policy (root must be the stream, no text between stanzas)
//! and is not asserted. Known exception: rxml rejects a leading UTF-8 byte-order mark, which
//! XML allows and we skip.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rxml::Parse as _;
use rxml::error::EndOrError;
use xmppd_xml::{Limits, Reader};

fn rxml_accepts(input: &[u8]) -> bool {
    let mut parser = rxml::Parser::new();
    let mut buf = input;
    loop {
        match parser.parse(&mut buf, false) {
            Ok(Some(_)) => {}
            Ok(None) | Err(EndOrError::NeedMoreData) => return true,
            Err(EndOrError::Error(_)) => return false,
        }
    }
}

/// How many leading bytes we consumed into events, or `None` when we rejected the input.
fn ours_accepted_prefix(input: &[u8]) -> Option<usize> {
    let mut reader = Reader::new(Limits::default());
    reader.feed(input);
    loop {
        match reader.next_event() {
            Ok(Some(_)) => {}
            Ok(None) => return Some(input.len() - reader.buffered()),
            Err(_) => return None,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // A BOM, and whitespace before the first tag (XML 1.0 §2.1 allows it; rxml does not),
    // are where the two parsers are known to differ on purpose.
    if data.starts_with(b"\xEF\xBB\xBF") || data.first().is_some_and(|b| b" \t\r\n".contains(b)) {
        return;
    }
    if let Some(consumed) = ours_accepted_prefix(data) {
        assert!(
            rxml_accepts(&data[..consumed]),
            "accepted by us, rejected by rxml"
        );
    }
});
