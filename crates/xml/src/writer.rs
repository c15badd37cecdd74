//! Serialisation with correct escaping.
//!
//! We always re-serialise what we forward, never relay input bytes, so the output is exactly as
//! well-formed as this writer makes it: text escapes `&`, `<`, `>`; attribute values also escape
//! both quote characters and the whitespace characters that attribute-value normalisation would
//! otherwise fold (`\t`, `\n`, `\r`).

use crate::element::{Element, Node, XML_NS};

/// Appends `text` escaped for character data.
pub fn escape_text(text: &str, out: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        let rep: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'\r' => b"&#xD;",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(rep);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
}

/// Appends `value` escaped for a single-quoted or double-quoted attribute value.
pub fn escape_attr(value: &str, out: &mut Vec<u8>) {
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, b) in bytes.iter().enumerate() {
        let rep: &[u8] = match b {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'"' => b"&quot;",
            b'\'' => b"&apos;",
            b'\t' => b"&#x9;",
            b'\n' => b"&#xA;",
            b'\r' => b"&#xD;",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(rep);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
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
