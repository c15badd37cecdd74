//! How a client stream is written on the wire for each transport: the TCP stream of RFC 6120,
//! the framing of XMPP over WebSocket (RFC 7395), where every message is a complete
//! element, the header is `<open/>` and the end `<close/>`, and BOSH (XEP-0206), where the
//! `<body/>` wrappers of the HTTP binding stand for the stream header and its end.

use xmppd_proto::{StreamError, ns};
use xmppd_xml::Element;

/// How a client stream is carried, which decides how its header, its errors and its end are
/// written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// One XML document over TCP (RFC 6120): `<stream:stream>` … `</stream:stream>`.
    Stream,
    /// XMPP over WebSocket (RFC 7395): every message is a complete element; the stream
    /// header is `<open/>` and its end `<close/>` ("XMPP Framing"), stream errors declare their
    /// prefix ("Stream Errors"), and there is no STARTTLS (TLS is the WebSocket's own, `wss:`).
    WebSocket,
    /// XMPP over BOSH (XEP-0206): no stream header is sent (the session creation response
    /// stands for it, "Session Creation Response"), a stream error is written with the
    /// `stream:` prefix declared on it and the transport wraps it in a terminating `<body/>`
    /// with the `remote-stream-error` condition (XEP-0206 "remote-stream-error"); no STARTTLS
    /// (channel encryption is the HTTP connection's, XEP-0206 "Session Creation Response").
    Bosh,
}

impl Framing {
    /// Our stream header: `<stream:stream>` (RFC 6120 §4.7), or `<open/>`.
    pub(crate) fn header(self, from: &str, stream_id: &str) -> Vec<u8> {
        match self {
            Framing::Stream => crate::header::response_header(ns::CLIENT, from, None, stream_id),
            Framing::WebSocket => open_bytes(from, stream_id),
            Framing::Bosh => Vec::new(),
        }
    }

    /// What ends the stream with `error`: the error and `</stream:stream>`, or the error and
    /// `<close/>`.
    pub(crate) fn closing(self, error: &StreamError) -> Vec<u8> {
        match self {
            Framing::Stream => error.to_closing_bytes(),
            Framing::WebSocket => {
                let mut out = error_element(error);
                out.extend_from_slice(&close_bytes());
                out
            }
            Framing::Bosh => error_element(error),
        }
    }
}

/// RFC 7395 "Stream Initiation": our `<open/>`, which stands for the stream header.
fn open_bytes(from: &str, stream_id: &str) -> Vec<u8> {
    let open = Element::new("open", ns::FRAMING)
        .with_attr("from", from)
        .with_attr("id", stream_id)
        .with_attr("version", "1.0")
        .with_attr("xml:lang", "en");
    crate::header::element_bytes(&open, "")
}

/// RFC 7395 "Stream Errors" (and XEP-0206 "remote-stream-error"): the error, written with
/// the `stream:` prefix (which clients match by name) declared on it.
fn error_element(error: &StreamError) -> Vec<u8> {
    let mut out = b"<stream:error xmlns:stream=\"".to_vec();
    out.extend_from_slice(ns::STREAM.as_bytes());
    out.extend_from_slice(b"\">");
    for child in error.to_element().children() {
        child.write_to(&mut out, ns::STREAM);
    }
    out.extend_from_slice(b"</stream:error>");
    out
}

/// RFC 7395 "Closing the Connection": the end of a stream over WebSocket.
pub fn close_bytes() -> Vec<u8> {
    crate::header::element_bytes(&Element::new("close", ns::FRAMING), "")
}
