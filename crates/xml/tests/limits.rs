//! Limits are enforced while parsing, with bounded buffering.

mod common;

use common::{HEADER, error_of, read_pieces};
use xmppd_xml::{Limits, Reader, StreamEvent, XmlError};

const CHUNK: usize = 4096;

/// A header shorter than the small limits used below (the header counts against the limit).
const SHORT_HEADER: &str = "<s:stream xmlns:s='http://etherx.jabber.org/streams'>";

fn small() -> Limits {
    Limits {
        max_stanza_bytes: 64 * 1024,
        max_depth: 8,
        max_attrs: 16,
    }
}

/// Feeds `header` then `filler` repeatedly in CHUNK-sized reads until an error, asserting the
/// buffer never exceeds the limit plus one read. Returns the error and total bytes fed.
fn flood(limits: Limits, prefix: &str, filler: &[u8]) -> (XmlError, usize) {
    let mut reader = Reader::new(limits);
    reader.feed(HEADER.as_bytes());
    assert!(matches!(
        reader.next_event(),
        Ok(Some(StreamEvent::Open(_)))
    ));
    reader.feed(prefix.as_bytes());
    let chunk: Vec<u8> = filler.iter().copied().cycle().take(CHUNK).collect();
    let mut fed = prefix.len();
    while fed < 10 * 1024 * 1024 {
        reader.feed(&chunk);
        fed += CHUNK;
        assert!(
            reader.buffered() <= limits.max_stanza_bytes + CHUNK,
            "{}",
            reader.buffered()
        );
        match reader.next_event() {
            Ok(Some(ev)) => panic!("unexpected event {ev:?}"),
            Ok(None) => {}
            Err(e) => return (e, fed),
        }
    }
    panic!("10 MB accepted");
}

fn assert_stopped_near_limit(limits: Limits, (err, fed): (XmlError, usize)) {
    assert_eq!(err.condition(), "policy-violation", "{err}");
    // XEP-0478: the size limit is told apart from the other limits.
    assert!(
        matches!(err, XmlError::StanzaTooBig { limit } if limit == limits.max_stanza_bytes),
        "{err:?}"
    );
    assert!(fed <= limits.max_stanza_bytes + 2 * CHUNK, "fed {fed}");
}

#[test]
fn oversize_text_stanza_fails_with_bounded_buffer() {
    let limits = small();
    assert_stopped_near_limit(limits, flood(limits, "<message><body>", b"a"));
}

#[test]
fn endless_attribute_value_fails_with_bounded_buffer() {
    let limits = small();
    assert_stopped_near_limit(limits, flood(limits, "<message id='", b"x"));
}

#[test]
fn endless_tag_fails_with_bounded_buffer() {
    let limits = small();
    assert_stopped_near_limit(limits, flood(limits, "<message", b" "));
    assert_stopped_near_limit(limits, flood(limits, "<message><", b"x"));
}

#[test]
fn endless_cdata_and_children_fail_with_bounded_buffer() {
    let limits = small();
    assert_stopped_near_limit(limits, flood(limits, "<message><![CDATA[", b"x"));
    assert_stopped_near_limit(limits, flood(limits, "<message>", b"<a/>"));
}

#[test]
fn complete_oversize_stanza_fails() {
    let limits = Limits {
        max_stanza_bytes: 100,
        ..Limits::default()
    };
    let big = format!(
        "{SHORT_HEADER}<message><body>{}</body></message>",
        "a".repeat(200)
    );
    let (events, err) = read_pieces(limits, [big.as_bytes()]);
    assert_eq!(events.len(), 1);
    assert_eq!(err.map(|e| e.condition()), Some("policy-violation"));
    // Exactly at the limit is fine.
    let exact = format!("<m>{}</m>", "a".repeat(93));
    assert_eq!(exact.len(), 100);
    let (events, err) = read_pieces(limits, [SHORT_HEADER.as_bytes(), exact.as_bytes()]);
    assert_eq!((events.len(), err), (2, None));
}

#[test]
fn stream_header_is_bounded() {
    let limits = Limits {
        max_stanza_bytes: 1000,
        ..Limits::default()
    };
    let header = format!(
        "<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='{}'>",
        "a".repeat(2000)
    );
    let (_, err) = read_pieces(limits, header.as_bytes().chunks(100));
    assert_eq!(err.map(|e| e.condition()), Some("policy-violation"));
    // Leading whitespace counts towards the header too.
    let ws = vec![b' '; 5000];
    let (_, err) = read_pieces(limits, ws.chunks(100));
    assert_eq!(err.map(|e| e.condition()), Some("policy-violation"));
}

#[test]
fn whitespace_between_stanzas_does_not_accumulate() {
    let mut reader = Reader::new(small());
    reader.feed(HEADER.as_bytes());
    assert!(matches!(
        reader.next_event(),
        Ok(Some(StreamEvent::Open(_)))
    ));
    let ws = vec![b' '; CHUNK];
    for _ in 0..1000 {
        reader.feed(&ws);
        assert_eq!(reader.next_event(), Ok(None));
        assert_eq!(reader.buffered(), 0);
    }
    reader.feed(b"<message/>");
    assert!(matches!(
        reader.next_event(),
        Ok(Some(StreamEvent::Stanza(_)))
    ));
}

#[test]
fn many_small_stanzas_are_not_limited_together() {
    let limits = Limits {
        max_stanza_bytes: 100,
        ..Limits::default()
    };
    let mut input = SHORT_HEADER.to_owned();
    for i in 0..1000 {
        input.push_str(&format!("<message id='{i}'><body>hi</body></message>\n"));
    }
    let (events, err) = read_pieces(limits, input.as_bytes().chunks(CHUNK));
    assert_eq!((events.len(), err), (1001, None));
}

#[test]
fn depth_limit_is_policy_violation() {
    let limits = Limits {
        max_depth: 3,
        ..Limits::default()
    };
    let ok = format!("{HEADER}<a><b><c/></b></a>");
    assert_eq!(read_pieces(limits, [ok.as_bytes()]).1, None);
    let deep = format!("{HEADER}<a><b><c><d/></c></b></a>");
    let (_, err) = read_pieces(limits, [deep.as_bytes()]);
    assert_eq!(err.map(|e| e.condition()), Some("policy-violation"));
    // Unterminated nesting is stopped at the limit too.
    let (_, err) = read_pieces(
        Limits::default(),
        [HEADER.as_bytes(), "<a>".repeat(100).as_bytes()],
    );
    assert_eq!(err.map(|e| e.condition()), Some("policy-violation"));
}

#[test]
fn attribute_count_limit_is_policy_violation() {
    let limits = Limits {
        max_attrs: 4,
        ..Limits::default()
    };
    let ok = format!("{HEADER}<a a='1' b='2' c='3' d='4'/>");
    assert_eq!(read_pieces(limits, [ok.as_bytes()]).1, None);
    let many = format!("{HEADER}<a a='1' b='2' c='3' d='4' e='5'/>");
    let (_, err) = read_pieces(limits, [many.as_bytes()]);
    assert_eq!(err.map(|e| e.condition()), Some("policy-violation"));
    let attrs: String = (0..300).map(|i| format!(" a{i}='x'")).collect();
    let err = error_of(format!("{HEADER}<a{attrs}/>").as_bytes());
    assert_eq!(err.condition(), "policy-violation");
}

#[test]
fn idle_reader_releases_its_buffer() {
    let mut reader = Reader::new(Limits::default());
    reader.feed(HEADER.as_bytes());
    assert!(matches!(
        reader.next_event(),
        Ok(Some(StreamEvent::Open(_)))
    ));
    let stanza = format!("<message><body>{}</body></message>", "x".repeat(200_000));
    reader.feed(stanza.as_bytes());
    assert!(matches!(
        reader.next_event(),
        Ok(Some(StreamEvent::Stanza(_)))
    ));
    assert_eq!(reader.next_event(), Ok(None));
    assert_eq!(reader.buffered(), 0);
    assert!(
        reader.buffer_capacity() <= 16 * 1024,
        "{}",
        reader.buffer_capacity()
    );
}

#[test]
fn raised_limits_apply_to_the_next_stanza() {
    let mut reader = Reader::new(Limits {
        max_stanza_bytes: 60,
        ..Limits::default()
    });
    reader.feed(SHORT_HEADER.as_bytes());
    assert!(matches!(
        reader.next_event(),
        Ok(Some(StreamEvent::Open(_)))
    ));
    reader.set_limits(Limits::default());
    reader.feed(format!("<m>{}</m>", "a".repeat(1000)).as_bytes());
    assert!(matches!(
        reader.next_event(),
        Ok(Some(StreamEvent::Stanza(_)))
    ));
}
