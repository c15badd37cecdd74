//! The ASCII fast paths (plain text copied as is, printable start tags not re-checked, common
//! names not copied) must accept and reject exactly what the full checks do, however the input
//! is split.

mod common;

use common::{HEADER, read_pieces};
use xmppd_xml::{Element, Limits, StreamEvent, XmlError};

/// Reads `HEADER + stanza` whole and split at every byte of the stanza; all verdicts must agree.
/// Returns the stanza (or the error) of the whole read.
fn read_stanza(stanza: &[u8]) -> Result<Element, XmlError> {
    let mut input = HEADER.as_bytes().to_vec();
    input.extend_from_slice(stanza);
    let verdict = |(events, err): (Vec<StreamEvent>, Option<XmlError>)| match err {
        Some(e) => Err(e),
        None => match events.into_iter().nth(1) {
            Some(StreamEvent::Stanza(el)) => Ok(el),
            other => panic!("no stanza: {other:?}"),
        },
    };
    let whole = verdict(read_pieces(Limits::default(), [input.as_slice()]));
    for at in HEADER.len()..input.len() {
        let (a, b) = input.split_at(at);
        let split = verdict(read_pieces(Limits::default(), [a, b]));
        match (&whole, &split) {
            (Ok(w), Ok(s)) => assert_eq!(w, s, "split at {at}"),
            (Err(w), Err(s)) => assert_eq!(w.condition(), s.condition(), "split at {at}"),
            _ => panic!("split at {at}: {whole:?} vs {split:?}"),
        }
    }
    // One byte per read as well.
    let bytes = read_pieces(Limits::default(), input.chunks(1));
    match (&whole, verdict(bytes)) {
        (Ok(w), Ok(s)) => assert_eq!(w, &s),
        (Err(w), Err(s)) => assert_eq!(w.condition(), s.condition()),
        (w, s) => panic!("byte by byte: {w:?} vs {s:?}"),
    }
    whole
}

fn body(text: &[u8]) -> Vec<u8> {
    let mut out = b"<message to='bob@example.com' type='chat' id='m1'><body>".to_vec();
    out.extend_from_slice(text);
    out.extend_from_slice(b"</body></message>");
    out
}

fn body_text(el: &Element) -> String {
    el.child("body", "jabber:client")
        .map(Element::text)
        .unwrap_or_default()
}

#[test]
fn plain_text_is_copied_unchanged() {
    let text =
        b"0123456789 the quick brown fox jumps over the lazy dog ~!@#$%^*()_+{}|:\"?/.,';[=-`";
    let el = read_stanza(&body(text)).unwrap();
    assert_eq!(body_text(&el).as_bytes(), text);
    let expected = Element::new("message", "jabber:client")
        .with_attr("to", "bob@example.com")
        .with_attr("type", "chat")
        .with_attr("id", "m1")
        .with_child(Element::new("body", "jabber:client").with_text(String::from_utf8_lossy(text)));
    assert_eq!(el, expected);
}

#[test]
fn forbidden_bytes_in_otherwise_plain_text_are_rejected() {
    for b in (0x00u8..0x20).filter(|b| !matches!(b, b'\t' | b'\n' | b'\r')) {
        for at in [0, 7, 8, 15, 39] {
            let mut text = vec![b'x'; 40];
            text[at] = b;
            let err = read_stanza(&body(&text)).unwrap_err();
            assert_eq!(err.condition(), "not-well-formed", "{b:#x} at {at}");
        }
    }
    for bad in [
        &b"\xEF\xBF\xBE"[..],
        b"\xEF\xBF\xBF",
        b"\xFF",
        b"\xC3\x28",
        b"\xC0\xAF",
        b"\xED\xA0\x80",
        b"\xF4\x90\x80\x80",
        b"\xE2\x82",
    ] {
        let mut text = b"plain ascii before ".to_vec();
        text.extend_from_slice(bad);
        text.extend_from_slice(b" and after");
        let err = read_stanza(&body(&text)).unwrap_err();
        assert_eq!(err.condition(), "not-well-formed", "{bad:x?}");
    }
}

#[test]
fn text_that_needs_work_still_gets_it() {
    let cases: &[(&[u8], &str)] = &[
        (b"a&amp;b &lt;c&gt; &#x41;&#66;", "a&b <c> AB"),
        (b"line\r\nline\rline\n", "line\nline\nline\n"),
        (b"tab\there", "tab\there"),
        (b"]] ] ]>", "]] ] ]>"),
        ("été 😀 \u{FFFD}".as_bytes(), "été 😀 \u{FFFD}"),
    ];
    for (raw, text) in cases {
        let el = read_stanza(&body(raw)).unwrap();
        assert_eq!(body_text(&el), *text, "{raw:?}");
    }
    for (raw, condition) in [
        (&b"a ]]> b"[..], "not-well-formed"),
        (b"a &nbsp; b", "restricted-xml"),
        (b"a & b", "not-well-formed"),
        (b"a &#0; b", "not-well-formed"),
    ] {
        let err = read_stanza(&body(raw)).unwrap_err();
        assert_eq!(err.condition(), condition, "{raw:?}");
    }
}

#[test]
fn start_tags_with_controls_or_bad_utf8_are_rejected() {
    for tag in [
        &b"<message to='a\x01b'/>"[..],
        b"<message to='a\x1fb'/>",
        b"<message to='a\xFFb'/>",
        b"<message to='a\xEF\xBF\xBEb'/>",
        b"<mess\xC3\x28age/>",
        b"<message\x0cto='a'/>",
    ] {
        let err = read_stanza(tag).unwrap_err();
        assert_eq!(err.condition(), "not-well-formed", "{tag:?}");
    }
    let el = read_stanza("<méssage xmlns='urn:x' tö='ü'\tid='1'\n/>".as_bytes()).unwrap();
    assert_eq!(el.name(), "méssage");
    assert_eq!(el.attr("tö"), Some("ü"));
    assert_eq!(el.attr("id"), Some("1"));
}

#[test]
fn common_names_and_attributes_behave_like_any_other() {
    let el = read_stanza(
        b"<message xml:lang='en' to='a@b' from='c@d'><body xmlns='urn:other'>x</body>\
          <body>y</body></message>",
    )
    .unwrap();
    assert!(el.is("message", "jabber:client"));
    assert_eq!(el.attr("xml:lang"), Some("en"));
    assert_eq!(el.attr("from"), Some("c@d"));
    assert_eq!(
        el.child("body", "urn:other").map(Element::text),
        Some("x".into())
    );
    assert_eq!(body_text(&el), "y");
    let mut renamed = el.clone();
    renamed.rename_ns("jabber:client", "jabber:server");
    assert!(renamed.is("message", "jabber:server"));
    assert_ne!(renamed, el);
    let err = read_stanza(b"<message to='a' to='b'/>").unwrap_err();
    assert_eq!(err.condition(), "not-well-formed");
    let err = read_stanza(b"<message xmlns:p='urn:p' id='a' p:id='b' p:id='c'/>").unwrap_err();
    assert_eq!(err.condition(), "not-well-formed");
}
