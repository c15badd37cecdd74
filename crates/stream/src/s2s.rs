//! Server-to-server stream negotiation, both sides (RFC 6120 §4–§6, XEP-0178, XEP-0220).
//!
//! An s2s stream carries stanzas one way: from the initiating server's domains to the
//! receiving server's. Authentication is per domain pair, and a stanza is accepted only for a
//! pair that was authorised *on that stream*:
//!
//! - **SASL EXTERNAL** (XEP-0178): after TLS, the receiving side offers EXTERNAL only when the
//!   peer's certificate is valid for the domain the peer names in its header; the pair
//!   (authzid, stream `to`) is then authorised and the stream restarts.
//! - **Dialback** (XEP-0220): the initiating side sends `<db:result>` with a key derived from
//!   its secret (XEP-0185); the receiving side asks the authoritative server for the claimed
//!   domain — found through DNS, so not the peer unless DNS says so — to confirm it with
//!   `<db:verify>`. When the peer's certificate is already valid for the claimed domain, the
//!   round trip proves nothing more and the pair is accepted at once (XEP-0344 §2.4).
//!
//! [`S2sResponder`] is the receiving side of an inbound connection, [`S2sInitiator`] the
//! initiating side of an outbound one. Neither does I/O: the caller feeds events, carries out
//! the outputs (TLS handshakes, dialback verification through another connection) and reports
//! back.

use std::collections::HashSet;
use std::sync::Arc;

use jid::Jid;
use xmppd_proto::{DefinedCondition, StreamError, StreamErrorCondition as Cond, ns};
use xmppd_xml::writer::escape_attr;
use xmppd_xml::{Element, StreamEvent, StreamHeader};

use crate::dialback::{
    DIALBACK_FEATURE_NS, DIALBACK_NS, Dialback, Verdict, dialback_key, key_is_valid,
};
use crate::header::{element_bytes, new_stream_id};
use crate::sasl::{decode_b64, encode_b64};

/// Dialback verifications one inbound stream may have under way at once: each makes us
/// contact the claimed domain, so a peer must not be able to make us contact any number.
pub const MAX_PENDING_DIALBACK: usize = 16;

/// Domain pairs one inbound stream may carry (authorised or being verified).
pub const MAX_DOMAIN_PAIRS: usize = 1000;

/// Failed SASL attempts allowed on one inbound stream.
const MAX_SASL_FAILURES: u32 = 3;

/// Whether a peer's certificate is valid for a domain: a chain to a trusted root, in date,
/// naming the domain. Computed by the caller, which holds the TLS connection.
pub trait CertificateCheck: Send + Sync {
    /// Whether the certificate is valid for `domain`.
    fn is_valid_for(&self, domain: &str) -> bool;
}

/// What the server enforces on s2s streams.
#[derive(Clone)]
pub struct S2sPolicy {
    /// The domains served here (hosts and components): a peer may address only these.
    pub local_domains: Arc<HashSet<String>>,
    /// Whether TLS is required before authentication.
    pub require_tls: bool,
    /// Whether dialback may authenticate a peer whose certificate is not valid for its
    /// domain (`false`: certificates only, Prosody's `s2s_secure_auth`).
    pub allow_dialback: bool,
    /// The secret dialback keys are derived from.
    pub dialback_secret: Arc<[u8; 32]>,
}

impl std::fmt::Debug for S2sPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S2sPolicy")
            .field("local_domains", &self.local_domains)
            .field("require_tls", &self.require_tls)
            .field("allow_dialback", &self.allow_dialback)
            .finish_non_exhaustive()
    }
}

/// How a domain pair was authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMethod {
    /// SASL EXTERNAL with the TLS certificate (XEP-0178).
    SaslExternal,
    /// Server dialback (XEP-0220).
    Dialback,
}

/// A stream header of a server stream: both namespaces, `db` bound for dialback.
fn server_header(from: &str, to: Option<&str>, id: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(300);
    out.extend_from_slice(
        b"<?xml version='1.0'?><stream:stream xmlns=\"jabber:server\" \
          xmlns:stream=\"http://etherx.jabber.org/streams\" \
          xmlns:db=\"jabber:server:dialback\"",
    );
    for (name, value) in [("id", id), ("from", Some(from)), ("to", to)] {
        if let Some(value) = value {
            out.push(b' ');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"=\"");
            escape_attr(value, &mut out);
            out.push(b'"');
        }
    }
    out.extend_from_slice(b" version=\"1.0\" xml:lang=\"en\">");
    out
}

fn bytes_of(el: &Element) -> Vec<u8> {
    element_bytes(el, ns::SERVER)
}

fn is_version_1(header: &StreamHeader) -> bool {
    matches!(header.attr("version").and_then(|v| v.split_once('.')),
        Some((major, _)) if major.trim_start_matches('0') == "1")
}

/// A domain name prepared as JID domains are (RFC 7622), so that names compare the same way
/// wherever they come from; `None` for anything with a localpart or resource.
fn domain_name(value: &str) -> Option<String> {
    let jid = Jid::new(value).ok()?;
    (jid.node().is_none() && jid.resource().is_none()).then(|| jid.domain().as_str().to_owned())
}

fn domain_of(header: &StreamHeader, attr: &str) -> Option<String> {
    domain_name(header.attr(attr)?)
}

fn sasl_failure(condition: &str) -> Vec<u8> {
    let el = Element::new("failure", ns::SASL).with_child(Element::new(condition, ns::SASL));
    bytes_of(&el)
}

// ------------------------------------------------------------------------------------------
// Receiving side
// ------------------------------------------------------------------------------------------

/// What the caller of an [`S2sResponder`] must do.
#[derive(Debug, PartialEq)]
pub enum InboundOutput {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Flush, discard buffered input, run the TLS handshake, then call
    /// [`S2sResponder::tls_established`].
    StartTls,
    /// The stream restarts (after SASL): parse what follows as a new stream.
    ResetStream,
    /// This domain pair may now send stanzas on this stream.
    Authorized {
        /// The peer's domain.
        from: String,
        /// Our domain.
        to: String,
        /// How.
        method: AuthMethod,
    },
    /// Ask `originating`'s authoritative server whether `key` is right, then call
    /// [`S2sResponder::dialback_verified`].
    VerifyDialback {
        /// The domain the peer claims.
        originating: String,
        /// Our domain it wants to reach.
        receiving: String,
        /// This stream's id.
        stream_id: String,
        /// The key to check.
        key: String,
    },
    /// A stanza from an authorised pair, `to` and `from` checked.
    Stanza(Element),
    /// Write [`S2sResponder::error_bytes`] for this error and close.
    Close(StreamError),
    /// The peer closed its stream: write `</stream:stream>` and close.
    PeerClosed,
}

/// The receiving side of one inbound s2s connection.
pub struct S2sResponder {
    policy: S2sPolicy,
    tls: bool,
    cert: Option<Arc<dyn CertificateCheck>>,
    header_sent: bool,
    awaiting_header: bool,
    closed: bool,
    stream_id: String,
    /// Our domain, from the peer's header `to`.
    local: Option<String>,
    /// The peer's domain, from its header `from` (optional before RFC 6120).
    peer: Option<String>,
    sasl_done: bool,
    sasl_failures: u32,
    authorized: HashSet<(String, String)>,
    pending: HashSet<(String, String)>,
}

impl std::fmt::Debug for S2sResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S2sResponder")
            .field("tls", &self.tls)
            .field("local", &self.local)
            .field("peer", &self.peer)
            .field("authorized", &self.authorized)
            .finish_non_exhaustive()
    }
}

impl S2sResponder {
    /// A responder for a new connection; `tls` with `cert` for direct TLS (XEP-0368).
    pub fn new(policy: S2sPolicy, tls: bool, cert: Option<Arc<dyn CertificateCheck>>) -> Self {
        S2sResponder {
            policy,
            tls,
            cert,
            header_sent: false,
            awaiting_header: true,
            closed: false,
            stream_id: new_stream_id(),
            local: None,
            peer: None,
            sasl_done: false,
            sasl_failures: 0,
            authorized: HashSet::new(),
            pending: HashSet::new(),
        }
    }

    /// The current stream's id.
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// The peer's domain as its header named it.
    pub fn peer_domain(&self) -> Option<&str> {
        self.peer.as_deref()
    }

    /// Whether any pair is authorised.
    pub fn is_authorized(&self) -> bool {
        !self.authorized.is_empty()
    }

    /// Called once the TLS handshake after `<proceed/>` completed; `cert` checks the
    /// certificate the peer presented, if any.
    pub fn tls_established(&mut self, cert: Option<Arc<dyn CertificateCheck>>) {
        self.tls = true;
        self.cert = cert;
        self.awaiting_header = true;
        self.header_sent = false;
        // RFC 6120 §5.4.3.3: nothing learned before TLS counts after it.
        self.authorized.clear();
        self.pending.clear();
        self.peer = None;
    }

    /// The bytes that end the stream with `error`, preceded by our header if the peer never
    /// got one (RFC 6120 §4.9.1.2).
    pub fn error_bytes(&mut self, error: &StreamError) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.header_sent {
            let from = self.local.clone().unwrap_or_default();
            out = server_header(&from, None, Some(&self.stream_id));
            self.header_sent = true;
        }
        out.extend_from_slice(&error.to_closing_bytes());
        self.closed = true;
        out
    }

    /// Handles one event of the peer's stream.
    pub fn handle(&mut self, event: StreamEvent, out: &mut Vec<InboundOutput>) {
        if self.closed {
            return;
        }
        match event {
            StreamEvent::Open(header) => self.on_header(&header, out),
            StreamEvent::Close => {
                self.closed = true;
                out.push(InboundOutput::PeerClosed);
            }
            StreamEvent::Stanza(_) if self.awaiting_header => {
                self.close(Cond::BadFormat, "the stream header comes first", out)
            }
            StreamEvent::Stanza(el) => self.on_element(el, out),
        }
    }

    fn close(&mut self, cond: Cond, text: &str, out: &mut Vec<InboundOutput>) {
        self.closed = true;
        out.push(InboundOutput::Close(StreamError::with_text(cond, text)));
    }

    fn on_header(&mut self, header: &StreamHeader, out: &mut Vec<InboundOutput>) {
        if !self.awaiting_header {
            return self.close(Cond::BadFormat, "unexpected stream header", out);
        }
        self.awaiting_header = false;
        self.stream_id = new_stream_id();
        let to = domain_of(header, "to");
        if let Some(to) = &to
            && self.policy.local_domains.contains(to)
        {
            self.local = Some(to.clone());
        }
        let peer = domain_of(header, "from");
        if peer.is_some() {
            self.peer = peer;
        }
        let from = self.local.clone().unwrap_or_default();
        out.push(InboundOutput::Send(server_header(
            &from,
            self.peer.as_deref(),
            Some(&self.stream_id),
        )));
        self.header_sent = true;
        if header.default_ns.as_deref() != Some(ns::SERVER) {
            return self.close(
                Cond::InvalidNamespace,
                "server streams use jabber:server",
                out,
            );
        }
        match (&to, &self.local) {
            (Some(_), Some(_)) => {}
            (Some(to), None) => {
                let text = format!("this server does not serve {to}");
                return self.close(Cond::HostUnknown, &text, out);
            }
            (None, _) => {
                return self.close(Cond::HostUnknown, "the stream header needs a 'to'", out);
            }
        }
        if is_version_1(header) {
            out.push(InboundOutput::Send(bytes_of(&self.features())));
        } else if self.policy.require_tls && !self.tls {
            // A pre-RFC 6120 server cannot negotiate TLS (no features to offer it in).
            self.close(
                Cond::UnsupportedVersion,
                "version 1.0 is required (TLS is)",
                out,
            );
        }
    }

    fn cert_valid_for(&self, domain: &str) -> bool {
        self.cert.as_ref().is_some_and(|c| c.is_valid_for(domain))
    }

    fn features(&self) -> Element {
        let mut features = Element::new("features", ns::STREAM);
        if self.sasl_done {
            return features;
        }
        if !self.tls {
            crate::header::push_starttls(&mut features, self.policy.require_tls);
            if self.policy.require_tls {
                return features;
            }
        }
        // RFC 6120 §6.3.4 / XEP-0178 §3: EXTERNAL only when the certificate will do.
        let external = match &self.peer {
            Some(peer) => self.cert_valid_for(peer),
            None => self.cert.is_some(),
        };
        if external {
            let mechanism = Element::new("mechanism", ns::SASL).with_text("EXTERNAL");
            features.push_child(Element::new("mechanisms", ns::SASL).with_child(mechanism));
        }
        if self.policy.allow_dialback || self.cert.is_some() {
            let errors = Element::new("errors", DIALBACK_FEATURE_NS);
            features.push_child(Element::new("dialback", DIALBACK_FEATURE_NS).with_child(errors));
        }
        features
    }

    fn on_element(&mut self, el: Element, out: &mut Vec<InboundOutput>) {
        if el.is("starttls", ns::TLS) {
            if self.tls {
                return self.close(Cond::PolicyViolation, "TLS is already established", out);
            }
            out.push(InboundOutput::Send(
                b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>".to_vec(),
            ));
            out.push(InboundOutput::StartTls);
            return;
        }
        if self.policy.require_tls && !self.tls {
            return self.close(Cond::PolicyViolation, "STARTTLS is required first", out);
        }
        if el.ns() == ns::SASL {
            return self.on_sasl(&el, out);
        }
        match Dialback::parse(&el) {
            Ok(Some(db)) => return self.on_dialback(db, out),
            Ok(None) => {}
            Err(e) => return self.close(Cond::BadFormat, &e.to_string(), out),
        }
        if el.ns() != ns::SERVER || !matches!(el.name(), "message" | "presence" | "iq") {
            let text = format!("<{}/> is not a stanza", el.name());
            return self.close(Cond::UnsupportedStanzaType, &text, out);
        }
        self.on_stanza(el, out);
    }

    fn on_sasl(&mut self, el: &Element, out: &mut Vec<InboundOutput>) {
        if !el.is("auth", ns::SASL) || self.sasl_done {
            return self.close(Cond::PolicyViolation, "unexpected SASL element", out);
        }
        let (domain, local) = match self.external_identity(el) {
            Ok(identity) => identity,
            Err(condition) => {
                // RFC 6120 §6.4.5: a bounded number of attempts, each a fresh certificate
                // check, then the stream ends.
                self.sasl_failures += 1;
                if self.sasl_failures >= MAX_SASL_FAILURES {
                    return self.close(Cond::PolicyViolation, "too many failed attempts", out);
                }
                out.push(InboundOutput::Send(sasl_failure(condition)));
                return;
            }
        };
        self.sasl_done = true;
        self.peer = Some(domain.clone());
        self.authorized.insert((domain.clone(), local.clone()));
        // The stream restarts: our next header goes out afresh, and dialback answers that
        // were pending on the old stream are dropped rather than sent before it.
        self.awaiting_header = true;
        self.header_sent = false;
        self.pending.clear();
        out.push(InboundOutput::Send(
            b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>".to_vec(),
        ));
        out.push(InboundOutput::ResetStream);
        out.push(InboundOutput::Authorized {
            from: domain,
            to: local,
            method: AuthMethod::SaslExternal,
        });
    }

    /// The (peer, our) domains an EXTERNAL `<auth/>` would authorise, or the SASL failure
    /// condition.
    fn external_identity(&self, el: &Element) -> Result<(String, String), &'static str> {
        if el.attr("mechanism") != Some("EXTERNAL") {
            return Err("invalid-mechanism");
        }
        // XEP-0178 §3: the authorization identity is the peer's domain; "=" or nothing
        // means "the one in my stream header".
        let authzid = decode_b64(&el.text()).map_err(|_| "incorrect-encoding")?;
        let authzid = String::from_utf8(authzid).map_err(|_| "incorrect-encoding")?;
        let domain = if authzid.is_empty() {
            self.peer.clone()
        } else {
            Some(domain_name(&authzid).ok_or("invalid-authzid")?)
        };
        let (Some(domain), Some(local)) = (domain, self.local.clone()) else {
            return Err("invalid-authzid");
        };
        if self.peer.as_ref().is_some_and(|p| *p != domain) {
            return Err("invalid-authzid");
        }
        if !self.cert_valid_for(&domain) || self.policy.local_domains.contains(&domain) {
            return Err("not-authorized");
        }
        Ok((domain, local))
    }

    fn on_dialback(&mut self, db: Dialback, out: &mut Vec<InboundOutput>) {
        match db {
            Dialback::ResultRequest { from, to, key } => {
                let (Some(from), Some(to)) = (domain_name(&from), domain_name(&to)) else {
                    let answer = Dialback::ResultAnswer {
                        from: to,
                        to: from,
                        verdict: Verdict::Error(DefinedCondition::ItemNotFound),
                    };
                    out.push(InboundOutput::Send(answer.to_bytes()));
                    return;
                };
                let answer = |verdict| {
                    InboundOutput::Send(
                        Dialback::ResultAnswer {
                            from: to.clone(),
                            to: from.clone(),
                            verdict,
                        }
                        .to_bytes(),
                    )
                };
                // XEP-0220 §2.4.2: an unknown target is an error, not the end of the stream.
                // Nobody else speaks for our own domains.
                if !self.policy.local_domains.contains(&to)
                    || self.policy.local_domains.contains(&from)
                {
                    out.push(answer(Verdict::Error(DefinedCondition::ItemNotFound)));
                    return;
                }
                let pair = (from.clone(), to.clone());
                if self.authorized.contains(&pair) {
                    out.push(answer(Verdict::Valid));
                    return;
                }
                if self.authorized.len() + self.pending.len() >= MAX_DOMAIN_PAIRS {
                    out.push(answer(Verdict::Error(DefinedCondition::ResourceConstraint)));
                    return;
                }
                if self.cert_valid_for(&from) {
                    // XEP-0344 §2.4: the certificate already proves the domain.
                    self.authorized.insert(pair);
                    out.push(answer(Verdict::Valid));
                    out.push(InboundOutput::Authorized {
                        from,
                        to,
                        method: AuthMethod::Dialback,
                    });
                    return;
                }
                if !self.policy.allow_dialback {
                    out.push(answer(Verdict::Error(DefinedCondition::PolicyViolation)));
                    return;
                }
                if self.pending.len() >= MAX_PENDING_DIALBACK {
                    out.push(answer(Verdict::Error(DefinedCondition::ResourceConstraint)));
                    return;
                }
                if self.pending.insert(pair) {
                    out.push(InboundOutput::VerifyDialback {
                        originating: from,
                        receiving: to,
                        stream_id: self.stream_id.clone(),
                        key,
                    });
                }
            }
            Dialback::VerifyRequest { from, to, id, key } => {
                // We are the authoritative server for `to`: recompute the key we would have
                // sent to `from` on its stream `id`.
                let verdict = if !self.policy.local_domains.contains(&to) {
                    Verdict::Error(DefinedCondition::ItemNotFound)
                } else if key_is_valid(&self.policy.dialback_secret[..], &from, &to, &id, &key) {
                    Verdict::Valid
                } else {
                    Verdict::Invalid
                };
                let answer = Dialback::VerifyAnswer {
                    from: to,
                    to: from,
                    id,
                    verdict,
                };
                out.push(InboundOutput::Send(answer.to_bytes()));
            }
            // Answers belong on outbound streams; unsolicited ones are ignored (XEP-0220 §3).
            Dialback::ResultAnswer { .. } | Dialback::VerifyAnswer { .. } => {}
        }
    }

    /// The authoritative server's answer for a [`InboundOutput::VerifyDialback`] request
    /// (`Error(remote-server-not-found)` when it could not be asked).
    pub fn dialback_verified(
        &mut self,
        originating: &str,
        receiving: &str,
        verdict: Verdict,
        out: &mut Vec<InboundOutput>,
    ) {
        let pair = (originating.to_owned(), receiving.to_owned());
        if self.closed || !self.pending.remove(&pair) {
            return;
        }
        // XEP-0220 §2.2.1: a wrong key on a stream with no other valid pair ends it; with
        // other pairs, only this one is refused (`forbidden`).
        let verdict = match verdict {
            Verdict::Invalid if self.is_authorized() => Verdict::Error(DefinedCondition::Forbidden),
            other => other,
        };
        let answer = Dialback::ResultAnswer {
            from: receiving.to_owned(),
            to: originating.to_owned(),
            verdict,
        };
        out.push(InboundOutput::Send(answer.to_bytes()));
        match verdict {
            Verdict::Valid => {
                self.authorized.insert(pair.clone());
                out.push(InboundOutput::Authorized {
                    from: pair.0,
                    to: pair.1,
                    method: AuthMethod::Dialback,
                });
            }
            Verdict::Invalid => {
                let text = format!("the dialback key for {originating} is not valid");
                self.close(Cond::NotAuthorized, &text, out);
            }
            Verdict::Error(_) => {}
        }
    }

    fn on_stanza(&mut self, el: Element, out: &mut Vec<InboundOutput>) {
        // RFC 6120 §8.1.1.1, §8.1.2.1: on server streams both addresses are required.
        let from = match el.attr("from").map(Jid::new) {
            Some(Ok(from)) => from,
            Some(Err(_)) => return self.close(Cond::InvalidFrom, "'from' is not a JID", out),
            None => {
                return self.close(Cond::ImproperAddressing, "a stanza needs 'from'", out);
            }
        };
        let to = match el.attr("to").map(Jid::new) {
            Some(Ok(to)) => to,
            _ => return self.close(Cond::ImproperAddressing, "a stanza needs a valid 'to'", out),
        };
        let pair = (
            from.domain().as_str().to_owned(),
            to.domain().as_str().to_owned(),
        );
        if !self.policy.local_domains.contains(&pair.1) {
            let text = format!("this server does not serve {}", pair.1);
            return self.close(Cond::HostUnknown, &text, out);
        }
        if !self.authorized.contains(&pair) {
            // RFC 6120 §4.9.3.10: the sender domain was not authenticated on this stream.
            let text = format!("{} is not authenticated on this stream", pair.0);
            return self.close(Cond::InvalidFrom, &text, out);
        }
        out.push(InboundOutput::Stanza(el));
    }
}

// ------------------------------------------------------------------------------------------
// Initiating side
// ------------------------------------------------------------------------------------------

/// Why an outbound stream could not be authenticated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutboundFailure {
    /// The peer does not offer TLS and TLS is required.
    #[error("{0} does not offer TLS")]
    NoTls(String),
    /// TLS was refused.
    #[error("{0} refused STARTTLS")]
    TlsRefused(String),
    /// The peer's certificate is not valid for its domain and dialback is not allowed.
    #[error("the certificate of {0} is not valid for it")]
    Certificate(String),
    /// No authentication method both sides support worked.
    #[error("{0} did not accept our authentication: {1}")]
    NotAccepted(String, String),
    /// The peer's authoritative server disowned our dialback key (XEP-0220 §2.1.3: queued
    /// stanzas go back with `internal-server-error`).
    #[error("{0} judged our dialback key invalid")]
    KeyInvalid(String),
    /// Dialback failed for another reason (XEP-0220 §2.4: queued stanzas go back with
    /// `remote-server-timeout`).
    #[error("{0} answered dialback with the error {1}")]
    DialbackError(String, &'static str),
    /// The peer ended the stream with an error.
    #[error("{0} closed the stream: {1}")]
    StreamError(String, String),
    /// The peer broke the protocol.
    #[error("{0} sent something unexpected: {1}")]
    Protocol(String, String),
}

/// What the caller of an [`S2sInitiator`] must do.
#[derive(Debug, PartialEq)]
pub enum OutboundOutput {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Run the TLS handshake, then call [`S2sInitiator::tls_established`] and write what it
    /// returns.
    StartTls,
    /// Parse what follows as a new stream (SASL success).
    ResetStream,
    /// The stream may now carry stanzas from our domain to the peer's.
    Authenticated(AuthMethod),
    /// The answer to a `<db:verify/>` sent on this stream.
    VerifyAnswer {
        /// The stream id the key was for.
        id: String,
        /// The authoritative server's verdict.
        verdict: Verdict,
    },
    /// Negotiation failed: close the stream.
    Failed(OutboundFailure),
    /// The peer closed its stream.
    PeerClosed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutPhase {
    AwaitHeader,
    AwaitFeatures,
    AwaitProceed,
    AwaitSasl,
    AwaitDialback,
    Ready,
    Closed,
}

/// The initiating side of one outbound s2s connection, from `local` to `remote`.
pub struct S2sInitiator {
    local: String,
    remote: String,
    require_tls: bool,
    allow_dialback: bool,
    secret: Arc<[u8; 32]>,
    phase: OutPhase,
    tls: bool,
    cert_valid: bool,
    sasl_done: bool,
    tried_external: bool,
    peer_dialback: bool,
    stream_id: Option<String>,
}

impl std::fmt::Debug for S2sInitiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S2sInitiator")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("phase", &self.phase)
            .finish_non_exhaustive()
    }
}

impl S2sInitiator {
    /// An initiator from `local` to `remote` under `policy`.
    pub fn new(local: &str, remote: &str, policy: &S2sPolicy) -> Self {
        S2sInitiator {
            local: local.to_owned(),
            remote: remote.to_owned(),
            require_tls: policy.require_tls,
            allow_dialback: policy.allow_dialback,
            secret: policy.dialback_secret.clone(),
            phase: OutPhase::AwaitHeader,
            tls: false,
            cert_valid: false,
            sasl_done: false,
            tried_external: false,
            peer_dialback: false,
            stream_id: None,
        }
    }

    /// Our initial stream header.
    pub fn header(&self) -> Vec<u8> {
        server_header(&self.local, Some(&self.remote), None)
    }

    /// Called when TLS is established (after `<proceed/>`, or first for direct TLS), with
    /// whether the peer's certificate is valid for its domain. Returns the new header.
    pub fn tls_established(&mut self, cert_valid: bool) -> Vec<u8> {
        self.tls = true;
        self.cert_valid = cert_valid;
        self.phase = OutPhase::AwaitHeader;
        self.header()
    }

    /// Whether the stream is authenticated.
    pub fn is_ready(&self) -> bool {
        self.phase == OutPhase::Ready
    }

    /// A `<db:verify/>` for a key another server presented to us as `receiving` (one of our
    /// domains), claiming to be the peer's domain. `None` while the stream cannot carry it
    /// yet: before the peer's header, before TLS when TLS is required, or while STARTTLS or
    /// SASL is under way.
    pub fn verify_request(&self, receiving: &str, id: &str, key: &str) -> Option<Vec<u8>> {
        // Not while a STARTTLS or SASL outcome is pending: the stream restarts after either,
        // and the peer would read what we sent meanwhile as part of the new stream.
        let open = self.stream_id.is_some()
            && matches!(
                self.phase,
                OutPhase::AwaitFeatures | OutPhase::AwaitDialback | OutPhase::Ready
            )
            && (self.tls || !self.require_tls);
        open.then(|| {
            Dialback::VerifyRequest {
                from: receiving.to_owned(),
                to: self.remote.clone(),
                id: id.to_owned(),
                key: key.to_owned(),
            }
            .to_bytes()
        })
    }

    fn fail(&mut self, failure: OutboundFailure, out: &mut Vec<OutboundOutput>) {
        self.phase = OutPhase::Closed;
        out.push(OutboundOutput::Failed(failure));
    }

    fn protocol(&mut self, what: impl Into<String>, out: &mut Vec<OutboundOutput>) {
        let failure = OutboundFailure::Protocol(self.remote.clone(), what.into());
        self.fail(failure, out);
    }

    /// Handles one event of the peer's stream.
    pub fn handle(&mut self, event: StreamEvent, out: &mut Vec<OutboundOutput>) {
        if self.phase == OutPhase::Closed {
            return;
        }
        match event {
            StreamEvent::Open(header) => self.on_header(&header, out),
            StreamEvent::Close => {
                self.phase = OutPhase::Closed;
                out.push(OutboundOutput::PeerClosed);
            }
            StreamEvent::Stanza(el) => self.on_element(&el, out),
        }
    }

    fn on_header(&mut self, header: &StreamHeader, out: &mut Vec<OutboundOutput>) {
        if self.phase != OutPhase::AwaitHeader {
            return self.protocol("a second stream header", out);
        }
        if header.default_ns.as_deref() != Some(ns::SERVER) {
            return self.protocol("a stream that is not jabber:server", out);
        }
        let Some(id) = header.attr("id") else {
            return self.protocol("a stream header without an id", out);
        };
        self.stream_id = Some(id.to_owned());
        if header
            .prefixes
            .iter()
            .any(|(_, ns)| ns.as_str() == DIALBACK_NS)
        {
            self.peer_dialback = true;
        }
        if is_version_1(header) {
            self.phase = OutPhase::AwaitFeatures;
        } else if self.require_tls && !self.tls {
            let failure = OutboundFailure::NoTls(self.remote.clone());
            self.fail(failure, out);
        } else {
            // A pre-RFC 6120 server: no features, dialback only.
            self.start_dialback(out);
        }
    }

    fn on_element(&mut self, el: &Element, out: &mut Vec<OutboundOutput>) {
        if el.is("error", ns::STREAM) {
            let error = StreamError::from_element(el);
            let text = match &error.text {
                Some(t) => format!("{} ({t})", error.condition.as_str()),
                None => error.condition.as_str().to_owned(),
            };
            return self.fail(OutboundFailure::StreamError(self.remote.clone(), text), out);
        }
        match self.phase {
            OutPhase::AwaitFeatures if el.is("features", ns::STREAM) => self.on_features(el, out),
            OutPhase::AwaitProceed if el.is("proceed", ns::TLS) => {
                out.push(OutboundOutput::StartTls)
            }
            OutPhase::AwaitProceed if el.is("failure", ns::TLS) => {
                let failure = OutboundFailure::TlsRefused(self.remote.clone());
                self.fail(failure, out);
            }
            OutPhase::AwaitSasl if el.is("success", ns::SASL) => {
                self.sasl_done = true;
                self.phase = OutPhase::AwaitHeader;
                out.push(OutboundOutput::ResetStream);
                out.push(OutboundOutput::Send(self.header()));
            }
            OutPhase::AwaitSasl if el.is("failure", ns::SASL) => {
                // XEP-0178 §4: fall back to dialback when the peer offers it.
                if self.peer_dialback {
                    self.start_dialback(out);
                } else {
                    let condition = el
                        .children()
                        .next()
                        .map_or("failure", |c| c.name())
                        .to_owned();
                    let failure = OutboundFailure::NotAccepted(self.remote.clone(), condition);
                    self.fail(failure, out);
                }
            }
            _ => match Dialback::parse(el) {
                Ok(Some(db)) => self.on_dialback(db, out),
                // Stanzas on our outbound stream (no XEP-0288 here) and unknown elements
                // are ignored.
                Ok(None) => {}
                Err(e) => self.protocol(e.to_string(), out),
            },
        }
    }

    fn on_features(&mut self, features: &Element, out: &mut Vec<OutboundOutput>) {
        if features.has_child("dialback", DIALBACK_FEATURE_NS) {
            self.peer_dialback = true;
        }
        if self.sasl_done {
            self.phase = OutPhase::Ready;
            out.push(OutboundOutput::Authenticated(AuthMethod::SaslExternal));
            return;
        }
        if !self.tls {
            if features.has_child("starttls", ns::TLS) {
                self.phase = OutPhase::AwaitProceed;
                out.push(OutboundOutput::Send(
                    b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>".to_vec(),
                ));
                return;
            }
            if self.require_tls {
                let failure = OutboundFailure::NoTls(self.remote.clone());
                return self.fail(failure, out);
            }
            return self.start_dialback(out);
        }
        if !self.cert_valid && !self.allow_dialback {
            // Without a valid certificate nothing proves we reached the real domain.
            let failure = OutboundFailure::Certificate(self.remote.clone());
            return self.fail(failure, out);
        }
        let external = features.child("mechanisms", ns::SASL).is_some_and(|m| {
            m.children()
                .any(|c| c.name() == "mechanism" && c.text().trim() == "EXTERNAL")
        });
        if external && !self.tried_external {
            self.tried_external = true;
            self.phase = OutPhase::AwaitSasl;
            let auth = Element::new("auth", ns::SASL)
                .with_attr("mechanism", "EXTERNAL")
                .with_text(encode_b64(self.local.as_bytes()));
            out.push(OutboundOutput::Send(bytes_of(&auth)));
            return;
        }
        self.start_dialback(out);
    }

    fn start_dialback(&mut self, out: &mut Vec<OutboundOutput>) {
        let Some(id) = self.stream_id.clone() else {
            return self.protocol("no stream id for dialback", out);
        };
        if !self.peer_dialback {
            let failure = OutboundFailure::NotAccepted(
                self.remote.clone(),
                "neither SASL EXTERNAL nor dialback is possible".into(),
            );
            return self.fail(failure, out);
        }
        let key = dialback_key(&self.secret[..], &self.remote, &self.local, &id);
        let request = Dialback::ResultRequest {
            from: self.local.clone(),
            to: self.remote.clone(),
            key,
        };
        self.phase = OutPhase::AwaitDialback;
        out.push(OutboundOutput::Send(request.to_bytes()));
    }

    fn on_dialback(&mut self, db: Dialback, out: &mut Vec<OutboundOutput>) {
        match db {
            Dialback::ResultAnswer { from, to, verdict }
                if self.phase == OutPhase::AwaitDialback
                    && from == self.remote
                    && to == self.local =>
            {
                let failure = match verdict {
                    Verdict::Valid => {
                        self.phase = OutPhase::Ready;
                        out.push(OutboundOutput::Authenticated(AuthMethod::Dialback));
                        return;
                    }
                    Verdict::Invalid => OutboundFailure::KeyInvalid(self.remote.clone()),
                    Verdict::Error(condition) => {
                        OutboundFailure::DialbackError(self.remote.clone(), condition.as_str())
                    }
                };
                self.fail(failure, out);
            }
            Dialback::VerifyAnswer {
                from, id, verdict, ..
            } if from == self.remote => {
                out.push(OutboundOutput::VerifyAnswer { id, verdict });
            }
            // Unsolicited results and requests on our outbound stream are ignored.
            _ => {}
        }
    }
}

#[cfg(test)]
#[path = "s2s_tests.rs"]
mod tests;
