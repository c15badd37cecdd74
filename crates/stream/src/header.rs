//! Stream headers (RFC 6120 §4.7).

use xmppd_proto::ns;
use xmppd_xml::Element;
use xmppd_xml::writer::escape_attr;

/// A fresh random stream id (128 bits, hex), unpredictable as RFC 6120 §4.7.3 requires.
pub fn new_stream_id() -> String {
    let mut bytes = [0u8; 16];
    // The OS RNG failing is not something a connection can recover from; fall back to a
    // time-derived id rather than panic, since the id is not a secret in our use.
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = nanos.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The response header the receiving entity sends (RFC 6120 §4.7.1), with the XML declaration.
pub fn response_header(content_ns: &str, from: &str, to: Option<&str>, id: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"<?xml version='1.0'?><stream:stream xmlns=\"");
    escape_attr(content_ns, &mut out);
    out.extend_from_slice(b"\" xmlns:stream=\"http://etherx.jabber.org/streams\" id=\"");
    escape_attr(id, &mut out);
    out.extend_from_slice(b"\" from=\"");
    escape_attr(from, &mut out);
    if let Some(to) = to {
        out.extend_from_slice(b"\" to=\"");
        escape_attr(to, &mut out);
    }
    out.extend_from_slice(b"\" version=\"1.0\" xml:lang=\"en\">");
    out
}

/// The initial header an initiating entity sends.
pub fn initial_header(content_ns: &str, to: &str, from: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(200);
    out.extend_from_slice(b"<?xml version='1.0'?><stream:stream xmlns=\"");
    escape_attr(content_ns, &mut out);
    out.extend_from_slice(b"\" xmlns:stream=\"http://etherx.jabber.org/streams\" to=\"");
    escape_attr(to, &mut out);
    if let Some(from) = from {
        out.extend_from_slice(b"\" from=\"");
        escape_attr(from, &mut out);
    }
    out.extend_from_slice(b"\" version=\"1.0\" xml:lang=\"en\">");
    out
}

/// Serialises a top-level element for a stream whose content namespace is `content_ns`.
/// Elements of the streams namespace use the `stream:` prefix bound by the header
/// (`<stream:features>`), as every XMPP server writes them; everything else is written with
/// the stream's default namespace.
pub fn element_bytes(el: &Element, content_ns: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if el.ns() == ns::STREAM && el.attr_count() == 0 {
        let name = el.name();
        out.extend_from_slice(b"<stream:");
        out.extend_from_slice(name.as_bytes());
        out.push(b'>');
        for child in el.children() {
            child.write_to(&mut out, content_ns);
        }
        out.extend_from_slice(b"</stream:");
        out.extend_from_slice(name.as_bytes());
        out.push(b'>');
    } else {
        el.write_to(&mut out, content_ns);
    }
    out
}

/// Adds the STARTTLS feature (RFC 6120 §5.3.1), marked `<required/>` when TLS is mandatory;
/// a caller that requires it then offers nothing else before TLS.
pub(crate) fn push_starttls(features: &mut Element, required: bool) {
    let mut starttls = Element::new("starttls", ns::TLS);
    if required {
        starttls.push_child(Element::new("required", ns::TLS));
    }
    features.push_child(starttls);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_hex() {
        let a = new_stream_id();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, new_stream_id());
    }

    #[test]
    fn response_header_escapes() {
        let h = response_header("jabber:client", "ex\"ample", None, "1");
        let s = String::from_utf8(h).unwrap();
        assert!(s.contains("from=\"ex&quot;ample\""));
        assert!(!s.contains(" to="));
    }
}
