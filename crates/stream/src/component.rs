//! XEP-0114 (Jabber Component Protocol), "accept" side: the server accepts a connection from
//! an external component (a gateway such as biboumi) and authenticates it by handshake.
//!
//! The flow is fixed (§3): the component's header names the component domain in `to`; we
//! answer with our header and a fresh stream id; the component proves the shared secret with
//! `<handshake>` = lowercase hex SHA-1(stream id ‖ secret); we answer with an empty
//! `<handshake/>`. There are no stream features. The comparison is constant-time so the
//! handshake does not leak how much of a guess was right.
//!
//! After the handshake, every stanza must carry `to` and `from`, and the `from` domain must be
//! the component's (§3): anything else ends the stream (`improper-addressing`,
//! `invalid-from`).

use std::collections::HashMap;
use std::sync::Arc;

use jid::Jid;
use sha1::{Digest as _, Sha1};
use subtle::ConstantTimeEq as _;
use xmppd_proto::{StreamError, StreamErrorCondition as Cond};
use xmppd_xml::writer::escape_attr;
use xmppd_xml::{Element, StreamEvent, StreamHeader};

use crate::header::new_stream_id;

/// The content namespace of component streams.
pub const COMPONENT_NS: &str = xmppd_proto::ns::COMPONENT_ACCEPT;

/// What the caller must do.
#[derive(Debug, PartialEq)]
pub enum ComponentOutput {
    /// Write these bytes.
    Send(Vec<u8>),
    /// The answer to a handshake comes next: [`ComponentOutput::Authenticated`] (`true`) or a
    /// `not-authorized` close. The caller may hold it back (failed handshakes from the
    /// component's address slow every answer to that address) and counts a failure.
    HandshakeAnswer {
        /// Whether the handshake proved the secret.
        success: bool,
    },
    /// The component proved the secret for this domain; register it (or refuse with
    /// `conflict` if another connection serves the domain) and then write
    /// [`ComponentResponder::handshake_ok`].
    Authenticated(String),
    /// A stanza from the component, already checked for `to` and `from`.
    Stanza(Element),
    /// Write [`ComponentResponder::error_bytes`] for this error and close.
    Close(StreamError),
    /// The component closed its stream: write `</stream:stream>` and close.
    PeerClosed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    AwaitHeader,
    AwaitHandshake,
    Authenticated,
    Closed,
}

/// The negotiation state of one component connection.
pub struct ComponentResponder {
    secrets: Arc<HashMap<String, String>>,
    state: State,
    stream_id: String,
    domain: Option<String>,
    header_sent: bool,
}

impl std::fmt::Debug for ComponentResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ComponentResponder")
            .field("state", &self.state)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// The handshake value for a stream id and secret (§3): lowercase hex SHA-1(id ‖ secret).
pub fn handshake_digest(stream_id: &str, secret: &str) -> String {
    let mut hasher = Sha1::new();
    hasher.update(stream_id.as_bytes());
    hasher.update(secret.as_bytes());
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl ComponentResponder {
    /// A responder for a listener serving these component domains (domain → secret).
    pub fn new(secrets: Arc<HashMap<String, String>>) -> Self {
        ComponentResponder {
            secrets,
            state: State::AwaitHeader,
            stream_id: new_stream_id(),
            domain: None,
            header_sent: false,
        }
    }

    /// The authenticated component domain.
    pub fn domain(&self) -> Option<&str> {
        (self.state == State::Authenticated)
            .then_some(())
            .and(self.domain.as_deref())
    }

    fn header_bytes(&self) -> Vec<u8> {
        let mut out = b"<?xml version='1.0'?><stream:stream xmlns=\"".to_vec();
        out.extend_from_slice(COMPONENT_NS.as_bytes());
        out.extend_from_slice(b"\" xmlns:stream=\"http://etherx.jabber.org/streams\" id=\"");
        escape_attr(&self.stream_id, &mut out);
        out.push(b'"');
        if let Some(domain) = &self.domain {
            out.extend_from_slice(b" from=\"");
            escape_attr(domain, &mut out);
            out.push(b'"');
        }
        out.push(b'>');
        out
    }

    /// The bytes that end the stream with `error`, preceded by our header if not yet sent
    /// (RFC 6120 §4.9.1.2, which §3 refers to).
    pub fn error_bytes(&mut self, error: &StreamError) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.header_sent {
            out = self.header_bytes();
            self.header_sent = true;
        }
        out.extend_from_slice(&error.to_closing_bytes());
        self.state = State::Closed;
        out
    }

    /// The empty `<handshake/>` that completes authentication.
    pub fn handshake_ok(&mut self) -> Vec<u8> {
        b"<handshake/>".to_vec()
    }

    /// Handles one event of the component's stream.
    pub fn handle(&mut self, event: StreamEvent, out: &mut Vec<ComponentOutput>) {
        match (event, self.state) {
            (StreamEvent::Open(header), State::AwaitHeader) => self.on_header(&header, out),
            (StreamEvent::Stanza(el), State::AwaitHandshake) => self.on_handshake(&el, out),
            (StreamEvent::Stanza(el), State::Authenticated) => self.on_stanza(el, out),
            (StreamEvent::Close, _) => {
                self.state = State::Closed;
                out.push(ComponentOutput::PeerClosed);
            }
            (StreamEvent::Open(_), _) => {
                self.close(Cond::BadFormat, "unexpected stream header", out)
            }
            (StreamEvent::Stanza(_), _) => {
                self.close(Cond::NotAuthorized, "send <handshake/> first", out)
            }
        }
    }

    fn close(&mut self, cond: Cond, text: &str, out: &mut Vec<ComponentOutput>) {
        self.state = State::Closed;
        out.push(ComponentOutput::Close(StreamError::with_text(cond, text)));
    }

    fn on_header(&mut self, header: &StreamHeader, out: &mut Vec<ComponentOutput>) {
        let to = header.attr("to").unwrap_or_default().to_ascii_lowercase();
        if self.secrets.contains_key(&to) {
            self.domain = Some(to.clone());
        }
        out.push(ComponentOutput::Send(self.header_bytes()));
        self.header_sent = true;
        if header.default_ns.as_deref() != Some(COMPONENT_NS) {
            let text = format!("component streams use {COMPONENT_NS}");
            return self.close(Cond::InvalidNamespace, &text, out);
        }
        if self.domain.is_none() {
            let text = format!("no component named '{to}' is configured here");
            return self.close(Cond::HostUnknown, &text, out);
        }
        self.state = State::AwaitHandshake;
    }

    fn on_handshake(&mut self, el: &Element, out: &mut Vec<ComponentOutput>) {
        if el.name() != "handshake" || el.ns() != COMPONENT_NS {
            return self.close(Cond::NotAuthorized, "send <handshake/> first", out);
        }
        let Some(domain) = self.domain.clone() else {
            return self.close(Cond::NotAuthorized, "no component domain", out);
        };
        let secret = self
            .secrets
            .get(&domain)
            .map(String::as_str)
            .unwrap_or_default();
        let expected = handshake_digest(&self.stream_id, secret);
        let given = el.text().trim().to_ascii_lowercase();
        let success = bool::from(expected.as_bytes().ct_eq(given.as_bytes()));
        out.push(ComponentOutput::HandshakeAnswer { success });
        if success {
            self.state = State::Authenticated;
            out.push(ComponentOutput::Authenticated(domain));
        } else {
            self.close(
                Cond::NotAuthorized,
                "the handshake does not match the secret",
                out,
            );
        }
    }

    fn on_stanza(&mut self, el: Element, out: &mut Vec<ComponentOutput>) {
        let from = el.attr("from").map(Jid::new);
        let to = el.attr("to");
        match (from, to) {
            (Some(Ok(from)), Some(_)) => {
                if Some(from.domain().as_str()) == self.domain.as_deref() {
                    out.push(ComponentOutput::Stanza(el));
                } else {
                    let text = format!("a component may only send from its own domain, not {from}");
                    self.close(Cond::InvalidFrom, &text, out);
                }
            }
            (Some(Err(_)), _) => self.close(Cond::InvalidFrom, "'from' is not a valid JID", out),
            _ => self.close(
                Cond::ImproperAddressing,
                "stanzas from a component need both 'to' and 'from'",
                out,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmppd_proto::StreamErrorCondition;

    fn responder() -> ComponentResponder {
        let secrets = HashMap::from([("irc.example.org".to_owned(), "s3cret".to_owned())]);
        ComponentResponder::new(Arc::new(secrets))
    }

    fn header(to: &str, ns: &str) -> StreamEvent {
        StreamEvent::Open(StreamHeader {
            attrs: vec![("to".into(), to.into())],
            default_ns: Some(ns.into()),
            prefixes: vec![],
        })
    }

    fn closed(out: &[ComponentOutput]) -> Option<StreamErrorCondition> {
        out.iter().find_map(|o| match o {
            ComponentOutput::Close(e) => Some(e.condition),
            _ => None,
        })
    }

    fn handshake(value: &str) -> StreamEvent {
        StreamEvent::Stanza(Element::new("handshake", COMPONENT_NS).with_text(value))
    }

    #[test]
    fn xep_0114_example_digest() {
        // §3: the example stream id 3BF96D32 with secret "test" gives the handshake shown there.
        assert_eq!(
            handshake_digest("3BF96D32", "test"),
            "aaee83c26aeeafcbabeabfcbcd50df997e0a2a1e"
        );
    }

    #[test]
    fn handshake_with_the_secret_authenticates() {
        let mut r = responder();
        let mut out = Vec::new();
        r.handle(header("irc.example.org", COMPONENT_NS), &mut out);
        assert_eq!(closed(&out), None);
        let digest = handshake_digest(&r.stream_id, "s3cret").to_uppercase();
        let mut out = Vec::new();
        r.handle(handshake(&digest), &mut out);
        assert_eq!(
            out,
            vec![
                ComponentOutput::HandshakeAnswer { success: true },
                ComponentOutput::Authenticated("irc.example.org".into())
            ]
        );
        assert_eq!(r.domain(), Some("irc.example.org"));
    }

    #[test]
    fn wrong_secret_unknown_domain_and_namespace_are_refused() {
        let mut r = responder();
        r.handle(header("irc.example.org", COMPONENT_NS), &mut Vec::new());
        let mut out = Vec::new();
        r.handle(
            handshake(&handshake_digest(&r.stream_id.clone(), "guess")),
            &mut out,
        );
        assert_eq!(out[0], ComponentOutput::HandshakeAnswer { success: false });
        assert_eq!(closed(&out), Some(StreamErrorCondition::NotAuthorized));

        let mut out = Vec::new();
        responder().handle(header("other.example.org", COMPONENT_NS), &mut out);
        assert!(
            matches!(out[0], ComponentOutput::Send(_)),
            "header before the error"
        );
        assert_eq!(closed(&out), Some(StreamErrorCondition::HostUnknown));

        let mut out = Vec::new();
        responder().handle(header("irc.example.org", "jabber:client"), &mut out);
        assert_eq!(closed(&out), Some(StreamErrorCondition::InvalidNamespace));
    }

    #[test]
    fn stanzas_must_be_addressed_from_the_component_domain() {
        let mut r = responder();
        r.handle(header("irc.example.org", COMPONENT_NS), &mut Vec::new());
        r.handle(
            handshake(&handshake_digest(&r.stream_id.clone(), "s3cret")),
            &mut Vec::new(),
        );
        let msg = |from: &str| {
            StreamEvent::Stanza(
                Element::new("message", COMPONENT_NS)
                    .with_attr("from", from)
                    .with_attr("to", "a@example.org"),
            )
        };
        let mut out = Vec::new();
        r.handle(msg("#chan%irc@irc.example.org/nick"), &mut out);
        assert!(matches!(out[0], ComponentOutput::Stanza(_)));
        let mut out = Vec::new();
        r.handle(msg("admin@example.org"), &mut out);
        assert_eq!(closed(&out), Some(StreamErrorCondition::InvalidFrom));

        let mut r = responder();
        r.handle(header("irc.example.org", COMPONENT_NS), &mut Vec::new());
        r.handle(
            handshake(&handshake_digest(&r.stream_id.clone(), "s3cret")),
            &mut Vec::new(),
        );
        let mut out = Vec::new();
        r.handle(
            StreamEvent::Stanza(
                Element::new("message", COMPONENT_NS).with_attr("from", "x@irc.example.org"),
            ),
            &mut out,
        );
        assert_eq!(closed(&out), Some(StreamErrorCondition::ImproperAddressing));
    }
}
