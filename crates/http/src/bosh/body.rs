//! The `<body/>` wrapper of BOSH (XEP-0124 §4, XEP-0206 "&lt;body/&gt; Wrapper Element"): a
//! request's body read with the restricted-XML reader and limits of every stream, and the
//! answers written.
//!
//! A request is parsed as one element: the reader is given a stream header of our own
//! (declaring `jabber:client`), then the body, which must be one complete
//! `{http://jabber.org/protocol/httpbind}body` and nothing else. Its children are the
//! payloads; a child that relies on the body's default namespace is taken as `jabber:client`
//! (XEP-0206 §3 notes that many clients leave the namespace of their stanzas off).
//!
//! An answer declares the `stream` prefix on the body (XEP-0206 §3: required when it carries
//! features or a stream error) and holds elements written by our serialiser, each made to
//! declare its own namespace ([`crate::ws::framing::messages`]).

use bytes::Bytes;
use xmppd_proto::ns;
use xmppd_xml::{Element, Limits, Reader, StreamEvent, XmlError};

/// The namespace of the `<body/>` wrapper.
pub const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
/// The namespace of XEP-0206's attributes (`xmpp:version`, `xmpp:restart`, …).
pub const NS_XBOSH: &str = "urn:xmpp:xbosh";

/// The header the reader is started with; never sent anywhere.
const WRAPPER: &[u8] =
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/// Why a request body is refused (`bad-request`, XEP-0124 §17.2).
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// Not well-formed, restricted or over a limit.
    #[error("{0}")]
    Xml(#[from] XmlError),
    /// Well-formed, but not one `<body/>` of the HTTP binding.
    #[error("the request is not one <body xmlns='http://jabber.org/protocol/httpbind'/>")]
    NotBody,
    /// No `rid`, or one that is not a positive integer below 2^53 (XEP-0124 §14.1).
    #[error("the rid is missing or not a number below 2^53")]
    BadRid,
    /// A `pause` or `wait`/`hold` that is not a number.
    #[error("the {0} attribute is not a number")]
    BadNumber(&'static str),
}

/// The largest `rid` a client may use (XEP-0124 §14.1: 2^53 - 1).
const MAX_RID: u64 = (1 << 53) - 1;

/// What a request body says.
#[derive(Debug)]
pub struct Request {
    /// The session (absent on the session creation request).
    pub sid: Option<String>,
    /// The request id.
    pub rid: u64,
    /// `type='terminate'`: the client ends the session (§13).
    pub terminate: bool,
    /// `xmpp:restart='true'`: a stream restart after SASL (XEP-0206 §5).
    pub restart: bool,
    /// `pause`: seconds the client will be away (§10).
    pub pause: Option<u64>,
    /// The wrapper, without its children (the creation request's attributes).
    pub attrs: Element,
    /// The payloads.
    pub children: Vec<Element>,
    /// The body's size in bytes.
    pub size: usize,
}

impl Request {
    /// An attribute of the body as a number (`wait`, `hold`); `None` when absent.
    pub fn number(&self, name: &'static str) -> Result<Option<u64>, BodyError> {
        number(&self.attrs, name)
    }
}

fn number(el: &Element, name: &'static str) -> Result<Option<u64>, BodyError> {
    el.attr(name)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| BodyError::BadNumber(name))
        })
        .transpose()
}

/// Parses a request body under `limits` (the depth counts the body itself).
pub fn parse(bytes: &[u8], limits: Limits) -> Result<Request, BodyError> {
    let mut reader = Reader::new(limits);
    // An XML declaration may open the document; it goes where the reader accepts one.
    let rest = match bytes.strip_prefix(b"<?xml") {
        Some(_) => {
            let end = bytes
                .windows(2)
                .position(|w| w == b"?>")
                .ok_or(BodyError::NotBody)?;
            reader.feed(bytes.get(..end + 2).unwrap_or_default());
            bytes.get(end + 2..).unwrap_or_default()
        }
        None => bytes,
    };
    reader.feed(WRAPPER);
    match reader.next_event()? {
        Some(StreamEvent::Open(_)) => {}
        _ => return Err(BodyError::NotBody),
    }
    reader.feed(rest);
    let mut body = match reader.next_event()? {
        Some(StreamEvent::Stanza(el)) if el.is("body", NS_HTTPBIND) => el,
        _ => return Err(BodyError::NotBody),
    };
    if reader.next_event()?.is_some() || {
        reader.skip_whitespace();
        reader.buffered() > 0
    } {
        return Err(BodyError::NotBody);
    }
    let rid = body
        .attr("rid")
        .and_then(|r| r.trim().parse::<u64>().ok())
        .filter(|r| *r > 0 && *r <= MAX_RID)
        .ok_or(BodyError::BadRid)?;
    let mut children = Vec::new();
    for node in std::mem::take(body.nodes_mut()) {
        if let xmppd_xml::Node::Element(mut child) = node {
            child.rename_ns(NS_HTTPBIND, ns::CLIENT);
            children.push(child);
        }
    }
    let pause = number(&body, "pause")?;
    let restart = body
        .attr(&format!("{{{NS_XBOSH}}}restart"))
        .is_some_and(|v| matches!(v, "true" | "1"));
    Ok(Request {
        sid: body.attr("sid").map(str::to_owned),
        rid,
        terminate: body.attr("type") == Some("terminate"),
        restart,
        pause,
        attrs: body,
        children,
        size: bytes.len(),
    })
}

/// The `sid` of a body too large to read whole, from its start tag alone (to end its session
/// with `policy-violation`); `None` when the start does not parse.
pub fn sid_of_prefix(prefix: &[u8], limits: Limits) -> Option<String> {
    let start = prefix.iter().position(|&b| b == b'<')?;
    let end = start + prefix.get(start..)?.iter().position(|&b| b == b'>')?;
    let tag = prefix.get(start..end)?;
    let tag = tag.strip_suffix(b"/").unwrap_or(tag);
    let mut doc = tag.to_vec();
    doc.extend_from_slice(b"/>");
    parse(&doc, limits).ok()?.sid
}

/// An answer: the body with `attrs` (qualified names `xmpp:…` in XEP-0206's namespace) and
/// `payload` (complete elements of our serialiser, which declare nothing of their own).
pub fn answer(attrs: &[(&str, &str)], payload: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(128 + payload.len());
    out.extend_from_slice(b"<body xmlns=\"");
    out.extend_from_slice(NS_HTTPBIND.as_bytes());
    out.extend_from_slice(b"\" xmlns:stream=\"");
    out.extend_from_slice(ns::STREAM.as_bytes());
    out.push(b'"');
    if attrs.iter().any(|(k, _)| k.starts_with("xmpp:")) {
        out.extend_from_slice(b" xmlns:xmpp=\"");
        out.extend_from_slice(NS_XBOSH.as_bytes());
        out.push(b'"');
    }
    for (k, v) in attrs {
        out.push(b' ');
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b"=\"");
        xmppd_xml::writer::escape_attr(v, &mut out);
        out.push(b'"');
    }
    let elements = crate::ws::framing::messages(payload);
    if elements.is_empty() {
        out.extend_from_slice(b"/>");
    } else {
        out.push(b'>');
        for el in elements {
            out.extend_from_slice(&el);
        }
        out.extend_from_slice(b"</body>");
    }
    Bytes::from(out)
}

/// An empty answer.
pub fn empty() -> Bytes {
    answer(&[], b"")
}

/// A terminal binding condition (XEP-0124 §17.2): the session is over.
pub fn terminate(condition: &str) -> Bytes {
    answer(&[("type", "terminate"), ("condition", condition)], b"")
}

/// A recoverable binding condition (XEP-0124 §17.3): the client sends its request again.
pub fn recoverable() -> Bytes {
    answer(&[("type", "error")], b"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_stanza_bytes: 4096,
            max_depth: 8,
            max_attrs: 32,
        }
    }

    #[test]
    fn a_creation_request_of_strophe_is_read() {
        let body = b"<body rid='1573741820' xmlns='http://jabber.org/protocol/httpbind' \
            to='example.org' xml:lang='en' wait='60' hold='1' content='text/xml; charset=utf-8' \
            ver='1.6' xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'/>";
        let r = parse(body, limits()).unwrap();
        assert_eq!(r.rid, 1_573_741_820);
        assert_eq!(r.sid, None);
        assert_eq!(r.attrs.attr("to"), Some("example.org"));
        assert_eq!(r.attrs.attr("{urn:xmpp:xbosh}version"), Some("1.0"));
        assert_eq!(r.number("wait").unwrap(), Some(60));
        assert!(r.children.is_empty() && !r.restart && !r.terminate);
    }

    #[test]
    fn payloads_without_a_namespace_are_jabber_client() {
        let body = b"<?xml version='1.0'?><body rid='5' sid='s' xmlns='http://jabber.org/protocol/httpbind'>\
            <message to='a@b'><body>hi</body></message>\
            <auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>AA==</auth></body>";
        let r = parse(body, limits()).unwrap();
        assert_eq!(r.sid.as_deref(), Some("s"));
        assert!(r.children[0].is("message", ns::CLIENT));
        assert!(r.children[0].has_child("body", ns::CLIENT));
        assert!(r.children[1].is("auth", ns::SASL));
    }

    #[test]
    fn restart_pause_and_terminate_are_read() {
        let r = parse(
            b"<body rid='7' sid='s' xmpp:restart='true' xmlns:xmpp='urn:xmpp:xbosh' \
              xmlns='http://jabber.org/protocol/httpbind'/>",
            limits(),
        )
        .unwrap();
        assert!(r.restart);
        let r = parse(
            b"<body rid='8' sid='s' pause='60' type='terminate' xmlns='http://jabber.org/protocol/httpbind'/>",
            limits(),
        )
        .unwrap();
        assert_eq!(r.pause, Some(60));
        assert!(r.terminate);
    }

    #[test]
    fn what_is_not_one_body_is_refused() {
        let cases: &[&[u8]] = &[
            b"<body rid='1' xmlns='http://jabber.org/protocol/httpbind'>",
            b"<body rid='1'/>",
            b"<body rid='1' xmlns='http://jabber.org/protocol/httpbind'/><body/>",
            b"<body xmlns='http://jabber.org/protocol/httpbind'/>",
            b"<body rid='0' xmlns='http://jabber.org/protocol/httpbind'/>",
            b"<body rid='9007199254740992' xmlns='http://jabber.org/protocol/httpbind'/>",
            b"<body rid='x' xmlns='http://jabber.org/protocol/httpbind'/>",
            b"<!DOCTYPE body><body rid='1' xmlns='http://jabber.org/protocol/httpbind'/>",
            b"<body rid='1' pause='soon' xmlns='http://jabber.org/protocol/httpbind'/>",
            b"",
            b"not xml",
        ];
        for case in cases {
            assert!(
                parse(case, limits()).is_err(),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
        let big = format!(
            "<body rid='1' xmlns='http://jabber.org/protocol/httpbind'><message>{}</message></body>",
            "x".repeat(5000)
        );
        assert!(matches!(
            parse(big.as_bytes(), limits()),
            Err(BodyError::Xml(_))
        ));
    }

    #[test]
    fn the_sid_of_an_oversized_body_comes_from_its_start_tag() {
        let prefix =
            b"<body rid='3' sid='abc' xmlns='http://jabber.org/protocol/httpbind'><message>xxxx";
        assert_eq!(sid_of_prefix(prefix, limits()).as_deref(), Some("abc"));
        assert_eq!(sid_of_prefix(b"<body rid='3' sid", limits()), None);
    }

    #[test]
    fn answers_declare_what_they_hold() {
        assert_eq!(
            &empty()[..],
            b"<body xmlns=\"http://jabber.org/protocol/httpbind\" \
              xmlns:stream=\"http://etherx.jabber.org/streams\"/>"
        );
        let a = answer(
            &[("xmpp:version", "1.0"), ("from", "a&b")],
            b"<stream:features><bind xmlns=\"urn:ietf:params:xml:ns:xmpp-bind\"/></stream:features><message to=\"x\"/>",
        );
        let text = std::str::from_utf8(&a).unwrap();
        assert!(
            text.contains("xmlns:xmpp=\"urn:xmpp:xbosh\" xmpp:version=\"1.0\" from=\"a&amp;b\">")
        );
        assert!(
            text.contains("<message xmlns=\"jabber:client\" to=\"x\"/>"),
            "{text}"
        );
        assert!(text.ends_with("</body>"));
        // And it reads back as a body.
        let mut with_rid = text.replacen("<body ", "<body rid=\"1\" ", 1);
        with_rid.push(' ');
        let r = parse(with_rid.as_bytes(), limits()).unwrap();
        assert!(r.children[0].is("features", ns::STREAM));
        assert!(r.children[1].is("message", ns::CLIENT));
    }
}
