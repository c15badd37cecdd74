//! Differential against rxml: whatever we accept, rxml must accept too.
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

fn ours_accepts(input: &[u8]) -> bool {
    let mut reader = Reader::new(Limits::default());
    reader.feed(input);
    loop {
        match reader.next_event() {
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(_) => return false,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"\xEF\xBB\xBF") {
        return;
    }
    if ours_accepts(data) {
        assert!(rxml_accepts(data), "accepted by us, rejected by rxml");
    }
});
