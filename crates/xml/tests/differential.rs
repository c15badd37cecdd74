//! Differential test against `rxml`, a restricted-XML parser written independently.
//!
//! Parser differentials are how stanzas get smuggled (one parser sees one stanza where the
//! next sees two), so for each input in a small corpus both parsers must agree on whether the
//! bytes so far are acceptable. The stream is never finished, so both are driven as streaming
//! parsers: accepted means "no error, waiting for more". Known, deliberate differences:
//!
//! * `POLICY`: our XMPP-level rules, which rxml (a generic XML parser) does not have: the root
//!   must be `<stream:stream>` in the streams namespace, and the first level of the stream may
//!   contain only whitespace between elements. rxml accepts these inputs; we reject them.
//! * `BOM`: XML 1.0 §4.3.3 allows a UTF-8 byte-order mark before the document; we skip it,
//!   rxml rejects it.
//!
//! Both parsers bound the length of a character reference (leading zeros are legal but
//! unbounded); ours rejects references over 32 bytes whether or not they are split.

use rxml::Parse as _;
use rxml::error::EndOrError;
use xmppd_xml::{Limits, Reader};

const H: &str =
    "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/// Whether rxml accepts `input` as the beginning of a document.
fn rxml_accepts(input: &[u8]) -> bool {
    let mut parser = rxml::Parser::new();
    let mut buf = input;
    loop {
        match parser.parse(&mut buf, false) {
            Ok(Some(_)) => {}
            Ok(None) => return true,
            Err(EndOrError::NeedMoreData) => return true,
            Err(EndOrError::Error(_)) => return false,
        }
    }
}

/// Whether our reader accepts `input` as the beginning of a stream, fed in `chunk`-byte reads.
fn ours_accepts_in(input: &[u8], chunk: usize) -> bool {
    let mut reader = Reader::new(Limits::default());
    for piece in input.chunks(chunk) {
        reader.feed(piece);
        loop {
            match reader.next_event() {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return false,
            }
        }
    }
    true
}

/// Whether our reader accepts `input`; the verdict must not depend on how it is split.
fn ours_accepts(input: &[u8]) -> bool {
    let whole = ours_accepts_in(input, input.len().max(1));
    for chunk in [1, 2, 3, 7] {
        assert_eq!(
            ours_accepts_in(input, chunk),
            whole,
            "{:?} in {chunk}-byte reads",
            input
        );
    }
    whole
}

/// Stanza-level snippets placed after the stream header.
const IN_STREAM: &[&str] = &[
    // Accepted by both.
    "<message to='a@b' type=\"chat\"><body>hi &amp; &lt;bye&gt; &#x1F600; &#65;</body></message>",
    "<iq type='get' id='1'><query xmlns='jabber:iq:roster'/></iq>",
    "<x:y xmlns:x='urn:x' x:a='1' a='2'/>",
    "<a xml:lang='en'><![CDATA[<not markup> & ]]></a>",
    "<a b='&quot;&apos;'>é ü 😀 ]] ]> </a>",
    "<a>\r\n</a>\n\t ",
    "<a xmlns=''><b/></a>",
    "<a\n\tb = 'c'\n/>",
    "</stream:stream>",
    "</stream:stream>\n",
    "<message",
    "<message id='unterminated",
    "<a>text continues",
    // Rejected by both.
    "<!-- comment -->",
    "<a><?pi x?></a>",
    "<!DOCTYPE a>",
    "<a>&foo;</a>",
    "<a>&#0;</a>",
    "<a>&#xFFFE;</a>",
    "<a>&#xD800;</a>",
    "<a>\u{1}</a>",
    "<a b='1' b='2'/>",
    "<a xmlns:p='u' xmlns:q='u' p:b='1' q:b='2'/>",
    "<p:a/>",
    "<a p:b='1'/>",
    "<a></b>",
    "<a b='1'c='2'/>",
    "<a b=c/>",
    "<a b/>",
    "<1a/>",
    "<a:b:c xmlns:a='u'/>",
    "<a b='<'/>",
    "<a>]]></a>",
    "<a>& b</a>",
    "<a xmlns:p=''/>",
    "<a xmlns:xml='urn:other'/>",
    "</stream:stream><a/>",
    "</wrong>",
    "<a/ >",
    "<a>&#x00000000000000000000000000000041;</a>",
];

/// Whole inputs (prolog and header variations).
const DOCUMENTS: &[&str] = &[
    "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>",
    " <?xml version='1.0'?>",
    "<?xml version='1.0' encoding='ISO-8859-1'?>",
    "<?xml version='1.0' standalone='maybe'?>",
    "<?xml-stylesheet href='x'?>",
    "hello<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>",
    "<stream:stream>",
];

/// Inputs both parsers see but where we are deliberately stricter.
const POLICY: &[&str] = &[
    "<stream xmlns='jabber:client'>",
    "<stream:stream xmlns:stream='urn:not-streams'>",
];
const POLICY_IN_STREAM: &[&str] = &["text between stanzas<a/>", "<a/>x<b/>", "<![CDATA[x]]>"];
const BOM: &str = "\u{FEFF}<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>";

#[test]
fn agrees_with_rxml_on_stanzas() {
    let mut disagreements = Vec::new();
    for snippet in IN_STREAM {
        let input = format!("{H}{snippet}");
        let (ours, theirs) = (
            ours_accepts(input.as_bytes()),
            rxml_accepts(input.as_bytes()),
        );
        if ours != theirs {
            disagreements.push(format!("{snippet:?}: ours={ours} rxml={theirs}"));
        }
    }
    for doc in DOCUMENTS {
        let (ours, theirs) = (ours_accepts(doc.as_bytes()), rxml_accepts(doc.as_bytes()));
        if ours != theirs {
            disagreements.push(format!("{doc:?}: ours={ours} rxml={theirs}"));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}

#[test]
fn agrees_with_rxml_on_invalid_utf8() {
    for bad in [
        &b"\xC3\x28"[..],
        b"\xFF",
        b"\xED\xA0\x80",
        b"\xC0\xAF",
        b"\xEF\xBF\xBE",
    ] {
        let mut input = format!("{H}<a>").into_bytes();
        input.extend_from_slice(bad);
        input.extend_from_slice(b"</a>");
        assert!(!ours_accepts(&input), "{bad:?}");
        assert!(!rxml_accepts(&input), "{bad:?}");
    }
}

#[test]
fn documented_exceptions_are_still_exceptions() {
    for doc in POLICY {
        assert!(
            !ours_accepts(doc.as_bytes()) && rxml_accepts(doc.as_bytes()),
            "{doc}"
        );
    }
    for snippet in POLICY_IN_STREAM {
        let input = format!("{H}{snippet}");
        assert!(
            !ours_accepts(input.as_bytes()) && rxml_accepts(input.as_bytes()),
            "{snippet}"
        );
    }
    assert_eq!(
        (ours_accepts(BOM.as_bytes()), rxml_accepts(BOM.as_bytes())),
        (true, false)
    );
}
