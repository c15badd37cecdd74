//! XMPP framing over WebSocket (RFC 7395 "XMPP Framing"): one complete element per message, both ways.
//!
//! Inbound, every message goes through the same restricted-XML [`Reader`] and limits as a
//! TCP stream: the reader is given a stream header of our own once (declaring `jabber:client`
//! as the default namespace, so a client that leaves it off its stanzas is still understood),
//! and each message is fed to it as the next top-level element. `<open/>` and `<close/>` of
//! the framing namespace become the stream's start and end; a message that leaves an element
//! unfinished is `not-well-formed` ("XMPP Framing": each message is a complete document).
//!
//! Outbound, the client stream produces bytes as it would for TCP: elements of the content
//! namespace without `xmlns` (the stream header declared it there) and stream-level elements
//! with the `stream:` prefix; several elements may come at once (stanzas held back while the
//! client was inactive). [`messages`] cuts them into one message per element and declares on
//! each what the header would have: "XMPP Framing" requires every message to stand alone. The bytes
//! are our own serialiser's, in which every `<` and `>` is markup, so cutting them needs no
//! parser.

use xmppd_proto::ns;
use xmppd_xml::{Element, Limits, Reader, StreamEvent, StreamHeader, XmlError};

/// The header the reader is started with; never sent anywhere.
const WRAPPER: &[u8] =
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>";

/// Turns the messages of one WebSocket into stream events.
#[derive(Debug)]
pub struct MessageReader {
    reader: Reader,
}

impl MessageReader {
    /// A reader enforcing `limits` on every element.
    pub fn new(limits: Limits) -> Self {
        let mut reader = Reader::new(limits);
        reader.feed(WRAPPER);
        // The wrapper is well-formed and far below any limit the configuration allows.
        let _ = reader.next_event();
        MessageReader { reader }
    }

    /// Changes the limits (those of an authenticated stream after SASL).
    pub fn set_limits(&mut self, limits: Limits) {
        self.reader.set_limits(limits);
    }

    /// Reads one message; appends its events.
    pub fn message(&mut self, text: &[u8], out: &mut Vec<StreamEvent>) -> Result<(), XmlError> {
        self.reader.feed(text);
        while let Some(event) = self.reader.next_event()? {
            out.push(match event {
                StreamEvent::Stanza(el) if el.is("open", ns::FRAMING) => open_event(&el),
                StreamEvent::Stanza(el) if el.is("close", ns::FRAMING) => StreamEvent::Close,
                // `</stream:stream>` can only close our wrapper: the client ends its stream.
                other => other,
            });
        }
        if !self.reader.at_element_boundary() {
            return Err(XmlError::NotWellFormed(
                "a WebSocket message must hold complete elements (RFC 7395)".into(),
            ));
        }
        Ok(())
    }
}

/// `<open/>` as the stream header it stands for (RFC 7395 "Stream Initiation"): its attributes, with
/// `jabber:client` as the content namespace.
fn open_event(el: &Element) -> StreamEvent {
    StreamEvent::Open(StreamHeader {
        attrs: el
            .attrs()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        default_ns: Some(ns::CLIENT.to_owned()),
        prefixes: Vec::new(),
    })
}

/// Cuts `bytes` (complete elements written by our serialiser) into one message per top-level
/// element, each declaring its namespace.
pub fn messages(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut start = None;
    let mut depth = 0usize;
    let mut i = 0;
    while let Some(lt) = memchr(b'<', bytes, i) {
        let Some(gt) = memchr(b'>', bytes, lt) else {
            break;
        };
        let tag = bytes.get(lt..=gt).unwrap_or_default();
        if depth == 0 {
            start = Some(lt);
        }
        if tag.starts_with(b"</") {
            depth = depth.saturating_sub(1);
        } else if !tag.ends_with(b"/>") {
            depth += 1;
        }
        if depth == 0
            && let Some(s) = start.take()
        {
            out.push(standalone(bytes.get(s..=gt).unwrap_or_default()));
        }
        i = gt + 1;
    }
    out
}

fn memchr(needle: u8, hay: &[u8], from: usize) -> Option<usize> {
    let rest = hay.get(from..)?;
    rest.iter().position(|&b| b == needle).map(|p| p + from)
}

/// One element made to stand alone: `xmlns="jabber:client"` on an element that relied on
/// the stream's default namespace, `xmlns:stream` on one with the `stream:` prefix.
fn standalone(element: &[u8]) -> Vec<u8> {
    let name_end = element
        .iter()
        .position(|&b| matches!(b, b' ' | b'/' | b'>'))
        .unwrap_or(element.len());
    let name = element.get(1..name_end).unwrap_or_default();
    let (attr, value): (&[u8], &str) = if name.starts_with(b"stream:") {
        (b"xmlns:stream", ns::STREAM)
    } else {
        (b"xmlns", ns::CLIENT)
    };
    if declares(element.get(name_end..).unwrap_or_default(), attr) {
        return element.to_vec();
    }
    let mut out = Vec::with_capacity(element.len() + attr.len() + value.len() + 4);
    out.extend_from_slice(element.get(..name_end).unwrap_or_default());
    out.push(b' ');
    out.extend_from_slice(attr);
    out.extend_from_slice(b"=\"");
    out.extend_from_slice(value.as_bytes());
    out.push(b'"');
    out.extend_from_slice(element.get(name_end..).unwrap_or_default());
    out
}

/// Whether the start tag's attributes (from just after its name) include `attr`. Values are
/// quoted and, as our serialiser writes them, never contain their quote character.
fn declares(mut tag: &[u8], attr: &[u8]) -> bool {
    loop {
        let skip = tag.iter().take_while(|b| b.is_ascii_whitespace()).count();
        tag = tag.get(skip..).unwrap_or_default();
        let Some(eq) = tag.iter().position(|&b| b == b'=') else {
            return false;
        };
        if tag.first().is_some_and(|&b| b == b'/' || b == b'>') {
            return false;
        }
        let name = tag.get(..eq).unwrap_or_default();
        if name == attr {
            return true;
        }
        let Some(&quote) = tag.get(eq + 1) else {
            return false;
        };
        let value = tag.get(eq + 2..).unwrap_or_default();
        let Some(close) = value.iter().position(|&b| b == quote) else {
            return false;
        };
        tag = value.get(close + 1..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(bytes: &[u8]) -> Vec<String> {
        messages(bytes)
            .into_iter()
            .map(|m| String::from_utf8(m).unwrap())
            .collect()
    }

    #[test]
    fn elements_are_cut_and_declare_their_namespace() {
        let bytes = b"<message to=\"a@b\" id=\"x xmlns=\"><body>1 &lt; 2</body></message>\
            <presence/><stream:features><bind xmlns=\"urn:ietf:params:xml:ns:xmpp-bind\"/>\
            </stream:features><enabled xmlns=\"urn:xmpp:sm:3\" id=\"s\"/>";
        assert_eq!(
            strings(bytes),
            [
                "<message xmlns=\"jabber:client\" to=\"a@b\" id=\"x xmlns=\"><body>1 &lt; 2</body></message>",
                "<presence xmlns=\"jabber:client\"/>",
                "<stream:features xmlns:stream=\"http://etherx.jabber.org/streams\"><bind xmlns=\"urn:ietf:params:xml:ns:xmpp-bind\"/></stream:features>",
                "<enabled xmlns=\"urn:xmpp:sm:3\" id=\"s\"/>",
            ]
        );
    }

    #[test]
    fn declared_elements_are_left_alone() {
        let bytes = b"<open xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\" id=\"1\"/>\
            <stream:error xmlns:stream=\"http://etherx.jabber.org/streams\"><x/></stream:error>";
        assert_eq!(
            strings(bytes),
            [
                "<open xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\" id=\"1\"/>",
                "<stream:error xmlns:stream=\"http://etherx.jabber.org/streams\"><x/></stream:error>",
            ]
        );
    }

    fn read(r: &mut MessageReader, text: &str) -> Result<Vec<StreamEvent>, XmlError> {
        let mut out = Vec::new();
        r.message(text.as_bytes(), &mut out)?;
        Ok(out)
    }

    #[test]
    fn open_close_and_stanzas() {
        let mut r = MessageReader::new(Limits::default());
        let events = read(
            &mut r,
            "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.org' version='1.0'/>",
        )
        .unwrap();
        let [StreamEvent::Open(header)] = events.as_slice() else {
            panic!("{events:?}");
        };
        assert_eq!(header.attr("to"), Some("example.org"));
        assert_eq!(header.default_ns.as_deref(), Some(ns::CLIENT));
        // With and without the namespace: both are jabber:client.
        for text in ["<message xmlns='jabber:client'/>", "<message/>"] {
            let events = read(&mut r, text).unwrap();
            let [StreamEvent::Stanza(el)] = events.as_slice() else {
                panic!("{events:?}");
            };
            assert!(el.is("message", ns::CLIENT));
        }
        let events = read(
            &mut r,
            "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
        );
        assert_eq!(events.unwrap(), vec![StreamEvent::Close]);
    }

    #[test]
    fn half_elements_and_restricted_xml_are_refused() {
        let mut r = MessageReader::new(Limits::default());
        let err = read(&mut r, "<message><body>").unwrap_err();
        assert_eq!(err.condition(), "not-well-formed");
        let mut r = MessageReader::new(Limits::default());
        assert_eq!(
            read(&mut r, "<!-- c --><message/>")
                .unwrap_err()
                .condition(),
            "restricted-xml"
        );
        let limits = Limits {
            max_stanza_bytes: 100,
            ..Limits::default()
        };
        let mut r = MessageReader::new(limits);
        let big = format!("<message><body>{}</body></message>", "a".repeat(200));
        assert_eq!(
            read(&mut r, &big).unwrap_err().condition(),
            "policy-violation"
        );
    }
}
