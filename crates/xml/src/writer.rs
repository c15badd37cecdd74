//! Serialisation with correct escaping.
//!
//! We always re-serialise what we forward, never relay input bytes, so the output is exactly as
//! well-formed as this writer makes it: text escapes `&`, `<`, `>`; attribute values also escape
//! both quote characters and the whitespace characters that attribute-value normalisation would
//! otherwise fold (`\t`, `\n`, `\r`).

use crate::element::{Element, Node, XML_NS};
use crate::scan::{needs_attr_escape, needs_text_escape, word_at};

/// Appends `text` escaped for character data.
pub fn escape_text(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    if memchr::memchr(b'\r', bytes).is_none() {
        // The common case (no carriage return): the other three are found with the vector
        // search, which chat text, mostly free of them, crosses in a few steps.
        let mut start = 0;
        for i in memchr::memchr3_iter(b'&', b'<', b'>', bytes) {
            let rep: &[u8] = match bytes.get(i) {
                Some(b'&') => b"&amp;",
                Some(b'<') => b"&lt;",
                _ => b"&gt;",
            };
            out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
            out.extend_from_slice(rep);
            start = i + 1;
        }
        out.extend_from_slice(bytes.get(start..).unwrap_or_default());
        return;
    }
    escape(bytes, out, needs_text_escape, |b| match b {
        b'&' => Some(b"&amp;"),
        b'<' => Some(b"&lt;"),
        b'>' => Some(b"&gt;"),
        b'\r' => Some(b"&#xD;"),
        _ => None,
    });
}

/// Appends `value` escaped for a single-quoted or double-quoted attribute value.
pub fn escape_attr(value: &str, out: &mut Vec<u8>) {
    escape(value.as_bytes(), out, needs_attr_escape, |b| match b {
        b'&' => Some(b"&amp;"),
        b'<' => Some(b"&lt;"),
        b'>' => Some(b"&gt;"),
        b'"' => Some(b"&quot;"),
        b'\'' => Some(b"&apos;"),
        b'\t' => Some(b"&#x9;"),
        b'\n' => Some(b"&#xA;"),
        b'\r' => Some(b"&#xD;"),
        _ => None,
    });
}

/// Copies `bytes` to `out`, replacing each byte `replacement` names. Runs of eight bytes in
/// which `word_hit` finds nothing to replace are skipped as a whole.
fn escape(
    bytes: &[u8],
    out: &mut Vec<u8>,
    word_hit: impl Fn(u64) -> bool,
    replacement: impl Fn(u8) -> Option<&'static [u8]>,
) {
    let mut start = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if let Some(word) = word_at(bytes, i)
            && !word_hit(word)
        {
            i += 8;
            continue;
        }
        if let Some(rep) = replacement(b) {
            out.extend_from_slice(bytes.get(start..i).unwrap_or_default());
            out.extend_from_slice(rep);
            start = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(bytes.get(start..).unwrap_or_default());
}

pub(crate) fn write_element(el: &Element, out: &mut Vec<u8>, parent_ns: &str) {
    out.push(b'<');
    out.extend_from_slice(el.name().as_bytes());
    if el.ns() != parent_ns {
        out.extend_from_slice(b" xmlns=\"");
        escape_attr(el.ns(), out);
        out.push(b'"');
    }
    let mut prefix_no = 0usize;
    for (name, value) in el.attrs() {
        out.push(b' ');
        if let Some(rest) = name.strip_prefix('{') {
            // `{ns}local`: declare a fresh prefix for this attribute alone.
            let (ns, local) = rest.split_once('}').unwrap_or(("", rest));
            if ns == XML_NS {
                out.extend_from_slice(b"xml:");
                out.extend_from_slice(local.as_bytes());
            } else {
                prefix_no += 1;
                let prefix = format!("a{prefix_no}");
                out.extend_from_slice(b"xmlns:");
                out.extend_from_slice(prefix.as_bytes());
                out.extend_from_slice(b"=\"");
                escape_attr(ns, out);
                out.extend_from_slice(b"\" ");
                out.extend_from_slice(prefix.as_bytes());
                out.push(b':');
                out.extend_from_slice(local.as_bytes());
            }
        } else {
            out.extend_from_slice(name.as_bytes());
        }
        out.extend_from_slice(b"=\"");
        escape_attr(value, out);
        out.push(b'"');
    }
    if el.nodes().is_empty() {
        out.extend_from_slice(b"/>");
        return;
    }
    out.push(b'>');
    for node in el.nodes() {
        match node {
            Node::Element(child) => write_element(child, out, el.ns()),
            Node::Text(t) => escape_text(t, out),
        }
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(el.name().as_bytes());
    out.push(b'>');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_text_and_attributes() {
        let el = Element::new("body", "jabber:client")
            .with_attr("id", "a\"b'c<&>\n")
            .with_text("1 < 2 & 3 > 2");
        let s = String::from_utf8(el.to_bytes()).unwrap();
        assert_eq!(
            s,
            "<body xmlns=\"jabber:client\" id=\"a&quot;b&apos;c&lt;&amp;&gt;&#xA;\">\
             1 &lt; 2 &amp; 3 &gt; 2</body>"
        );
    }

    #[test]
    fn escapes_at_every_position() {
        let specials = "&<>\"'\t\n\r";
        for len in 1..20 {
            for at in 0..len {
                for c in specials.chars().chain(['a', 'é', '\u{1}']) {
                    let mut s: String = "x".repeat(len);
                    s.replace_range(at..at + 1, &c.to_string());
                    let by_char = |attr: bool| -> String {
                        s.chars()
                            .map(|c| match c {
                                '&' => "&amp;".to_owned(),
                                '<' => "&lt;".to_owned(),
                                '>' => "&gt;".to_owned(),
                                '\r' => "&#xD;".to_owned(),
                                '"' if attr => "&quot;".to_owned(),
                                '\'' if attr => "&apos;".to_owned(),
                                '\t' if attr => "&#x9;".to_owned(),
                                '\n' if attr => "&#xA;".to_owned(),
                                c => c.to_string(),
                            })
                            .collect()
                    };
                    let mut out = Vec::new();
                    escape_text(&s, &mut out);
                    assert_eq!(String::from_utf8(out).unwrap(), by_char(false), "{s:?}");
                    let mut out = Vec::new();
                    escape_attr(&s, &mut out);
                    assert_eq!(String::from_utf8(out).unwrap(), by_char(true), "{s:?}");
                }
            }
        }
    }

    /// Long texts with several specials, with and without a carriage return (the two paths
    /// of `escape_text`), against a character-by-character escape.
    #[test]
    fn escapes_long_texts_with_many_specials() {
        let alphabet = ['a', 'b', ' ', '&', '<', '>', '\r', 'é', '"', '\n'];
        let mut seed: u32 = 12345;
        for len in [0usize, 1, 15, 16, 31, 32, 33, 63, 64, 65, 100, 257] {
            for _ in 0..50 {
                let text: String = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                        alphabet[(seed >> 16) as usize % alphabet.len()]
                    })
                    .collect();
                let expected: String = text
                    .chars()
                    .map(|c| match c {
                        '&' => "&amp;".to_owned(),
                        '<' => "&lt;".to_owned(),
                        '>' => "&gt;".to_owned(),
                        '\r' => "&#xD;".to_owned(),
                        c => c.to_string(),
                    })
                    .collect();
                for text in [text.clone(), text.replace('\r', "")] {
                    let expected = if text.contains('\r') {
                        expected.clone()
                    } else {
                        expected.replace("&#xD;", "")
                    };
                    let mut out = Vec::new();
                    escape_text(&text, &mut out);
                    assert_eq!(String::from_utf8(out).unwrap(), expected, "{text:?}");
                }
            }
        }
    }

    #[test]
    fn omits_namespace_equal_to_parent() {
        let el = Element::new("message", "jabber:client")
            .with_child(Element::new("body", "jabber:client").with_text("hi"))
            .with_child(Element::new(
                "active",
                "http://jabber.org/protocol/chatstates",
            ));
        let mut out = Vec::new();
        el.write_to(&mut out, "jabber:client");
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<message><body>hi</body>\
             <active xmlns=\"http://jabber.org/protocol/chatstates\"/></message>"
        );
    }

    #[test]
    fn xml_lang_attribute_is_written_with_its_prefix() {
        let el = Element::new("body", "jabber:client").with_attr("xml:lang", "en");
        assert_eq!(
            el.to_string(),
            "<body xmlns=\"jabber:client\" xml:lang=\"en\"/>"
        );
    }
}
