//! The initiating side of an outbound s2s connection: STARTTLS, SASL EXTERNAL with dialback
//! as the fallback, and `<db:verify/>` requests carried for the receiving side.

use std::sync::Arc;

use xmppd_proto::stream_limits::StreamLimits;
use xmppd_proto::{StreamError, ns};
use xmppd_xml::{Element, StreamEvent, StreamHeader};

use super::{AuthMethod, S2sPolicy, bytes_of, is_version_1, server_header};
use crate::dialback::{DIALBACK_FEATURE_NS, DIALBACK_NS, Dialback, Verdict, dialback_key};
use crate::sasl::encode_b64;

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
    /// What the peer announced it accepts in its last features (XEP-0478).
    peer_limits: StreamLimits,
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
            peer_limits: StreamLimits::default(),
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

    /// The largest stanza the peer said it accepts on this stream (XEP-0478), if it said.
    pub fn peer_max_bytes(&self) -> Option<u64> {
        self.peer_limits.max_bytes
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
        // The latest features count: limits may change with each (XEP-0478 §3).
        self.peer_limits = StreamLimits::from_features(features);
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
