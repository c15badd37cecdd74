//! Client-to-server stream negotiation, responder side (RFC 6120 §4–§7).
//!
//! A [`C2sResponder`] is fed the events of one TCP connection and answers with
//! [`C2sOutput`]s. The order of a client connection is fixed:
//!
//! 1. header → features offering only `<starttls><required/></starttls>` (when TLS is
//!    required, nothing else is accepted: a stanza gets `not-authorized`, anything else
//!    `policy-violation`);
//! 2. `<starttls/>` → `<proceed/>`, [`C2sOutput::StartTls`]: the caller discards every byte
//!    read so far (bytes pipelined behind `<starttls/>` are an attack, RFC 6120 §5.3.3) and
//!    calls [`C2sResponder::tls_established`] after the handshake;
//! 3. header → SASL mechanisms (the `-PLUS` ones only when channel-binding data exists, PLAIN
//!    only under TLS) → SASL exchange, with [`C2sOutput::LookupCredentials`] as the one
//!    asynchronous step; a limited number of failures, then `policy-violation` (§6.4.5);
//! 4. `<success/>` is an implicit stream restart ([`C2sOutput::ResetStream`]), header →
//!    `<bind/>` → [`C2sOutput::Bind`], answered by [`C2sResponder::bound`];
//! 5. from then on every element is a [`C2sOutput::Stanza`] for the session.
//!
//! On a host open to in-band registration, a `jabber:iq:register` iq is the one stanza
//! accepted at step 3 ([`C2sOutput::Register`], see `c2s_register.rs`).
//!
//! Setup errors still get our stream header first (§4.9.1.2): [`C2sResponder::error_bytes`]
//! adds it when it was not yet sent.

use std::collections::HashSet;
use std::sync::Arc;

use jid::{BareJid, FullJid};
use xmppd_proto::pars;
use xmppd_proto::register::NS_FEATURE as NS_REGISTER_FEATURE;
use xmppd_proto::stream_limits::StreamLimits;
use xmppd_proto::{StreamError, StreamErrorCondition as Cond, ns};
use xmppd_xml::{Element, StreamEvent, StreamHeader};

use crate::framing::Framing;
use crate::header::new_stream_id;
use crate::sasl::{
    ChannelBindingData, ChannelBindingType, FailureCondition, Mechanism, ServerSession,
    offered_mechanisms,
};

/// What the server enforces on client streams.
#[derive(Clone, Debug)]
pub struct C2sPolicy {
    /// Domains served; a header addressed elsewhere gets `host-unknown`.
    pub hosts: Arc<HashSet<String>>,
    /// Whether STARTTLS must be negotiated before anything else.
    pub require_tls: bool,
    /// SASL failures allowed on one stream before it is closed with `policy-violation`.
    pub max_auth_failures: u32,
    /// Secret from which fake salts for unknown users are derived.
    pub fake_salt_secret: [u8; 32],
    /// Informative features offered beside `<bind/>` once authenticated (roster versioning,
    /// subscription pre-approval), per host, as the modules enabled there declared them.
    pub bound_features: Arc<std::collections::HashMap<String, Vec<Element>>>,
    /// Hosts where a client may create an account before authenticating (XEP-0077), offered
    /// as the `<register/>` stream feature; see [`C2sOutput::Register`].
    pub registration: Arc<HashSet<String>>,
    /// Of those, the hosts that accept invitation tokens (XEP-0445), offered as the
    /// `<register xmlns='urn:xmpp:ibr-token:0'/>` stream feature; the token arrives as an iq
    /// like registration's ([`C2sOutput::Register`] with a `<preauth/>` payload).
    pub invites: Arc<HashSet<String>>,
    /// Mechanisms the administrator switched off: never offered, and `<auth/>` naming one
    /// fails with `invalid-mechanism` (RFC 6120 §6.5.6) as an unknown one does.
    pub disabled_mechanisms: Arc<[Mechanism]>,
    /// What the stream accepts before authentication, announced in the first features
    /// (XEP-0478).
    pub limits_before_auth: StreamLimits,
    /// What it accepts once authenticated, announced beside `<bind/>` (XEP-0478 §2: limits
    /// may change with each features element).
    pub limits_after_auth: StreamLimits,
}

/// Where the negotiation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the client's stream header.
    AwaitHeader,
    /// Features sent; waiting for `<starttls/>` or `<auth/>`.
    Features,
    /// Inside a SASL exchange.
    Authenticating,
    /// Authenticated; waiting for resource binding.
    AwaitBind,
    /// A resource is bound: stanzas flow.
    Bound,
    /// The stream is over.
    Closed,
}

/// What the caller must do.
#[derive(Debug, PartialEq)]
pub enum C2sOutput {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Flush, discard buffered input, start the TLS handshake; then call
    /// [`C2sResponder::tls_established`].
    StartTls,
    /// The stream restarts: parse the following bytes as a new stream.
    ResetStream,
    /// Look up the account and call [`C2sResponder::credentials`].
    LookupCredentials {
        /// The domain (a hosted one).
        host: String,
        /// The prepared localpart.
        username: String,
    },
    /// A `jabber:iq:register` iq before authentication (XEP-0077 §3.1.1) on a host open to
    /// registration, or a set with a `<preauth xmlns='urn:xmpp:pars:0'/>` presenting an
    /// invitation token (XEP-0445 §4) on a host that accepts them: hand the payload (in
    /// `query`) to the host's registration and call
    /// [`C2sResponder::registered`] with its answer.
    Register {
        /// The addressed host.
        host: String,
        /// The iq's id.
        iq_id: String,
        /// `set` (create the account) rather than `get` (which fields to fill in).
        set: bool,
        /// The `<query/>`.
        query: Element,
    },
    /// The answer to an authentication comes next: `<success/>` (`true`) or `<failure/>`.
    /// The caller may hold it back (failed authentications from the client's address slow
    /// every answer to that address, XEP-0205 §4.3) and counts a failure.
    SaslAnswer {
        /// Whether the authentication succeeded.
        success: bool,
    },
    /// Authentication succeeded for this account.
    Authenticated {
        /// The account.
        jid: BareJid,
        /// The SASL mechanism it used.
        mechanism: Mechanism,
        /// The channel binding of a `-PLUS` mechanism.
        channel_binding: Option<ChannelBindingType>,
    },
    /// A SASL exchange failed (the `<failure/>` is already in a [`C2sOutput::Send`]).
    AuthFailed {
        /// The mechanism of the exchange; `None` when the client named none we offer.
        mechanism: Option<Mechanism>,
        /// The RFC 6120 §6.5 condition sent.
        condition: FailureCondition,
    },
    /// The client asks to bind; register the session and call [`C2sResponder::bound`].
    Bind {
        /// The bind iq's id.
        iq_id: String,
        /// The full JID to bind (client-chosen resource, prepared, or server-generated).
        jid: FullJid,
    },
    /// A stanza from the bound session.
    Stanza(Element),
    /// A stream management element (XEP-0198), once authenticated: `<enable/>`, `<r/>` and
    /// `<a/>` belong to the bound session, `<resume/>` replaces binding.
    StreamManagement(Element),
    /// Write [`C2sResponder::error_bytes`] for this error and close.
    Close(StreamError),
    /// The client closed its stream: write `</stream:stream>` and close.
    PeerClosed,
}

/// The negotiation state of one client connection.
pub struct C2sResponder {
    /// Shared with every stream the listener accepted under the same settings: inline it
    /// took 152 bytes of every connection's task.
    policy: Arc<C2sPolicy>,
    framing: Framing,
    phase: Phase,
    tls: bool,
    /// Boxed, and absent when there is none: only authentication reads it, and inline it
    /// took 48 bytes of every connection's task for the connection's whole life.
    cb: Option<Box<ChannelBindingData>>,
    header_sent: bool,
    host: Option<String>,
    stream_id: String,
    user: Option<BareJid>,
    /// Boxed: only during authentication.
    sasl: Option<Box<ServerSession>>,
    pending_user: Option<String>,
    failures: u32,
}

impl std::fmt::Debug for C2sResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("C2sResponder")
            .field("phase", &self.phase)
            .field("tls", &self.tls)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

fn sasl_el(name: &str) -> Element {
    Element::new(name, ns::SASL)
}

/// No channel-binding data, to lend where a responder has none.
static NO_CHANNEL_BINDING: ChannelBindingData = ChannelBindingData {
    tls_exporter: None,
    tls_server_end_point: None,
};

/// `cb` as the responder keeps it: boxed, or nothing when it holds no value.
fn boxed_binding(cb: ChannelBindingData) -> Option<Box<ChannelBindingData>> {
    (cb.tls_exporter.is_some() || cb.tls_server_end_point.is_some()).then(|| Box::new(cb))
}

/// Serialises an element for the client stream.
fn bytes_of(el: &Element) -> Vec<u8> {
    crate::header::element_bytes(el, ns::CLIENT)
}

impl C2sResponder {
    /// A responder for a new connection; `tls` is true for direct TLS (XEP-0368), in which
    /// case `cb` holds the connection's channel-binding data.
    pub fn new(policy: impl Into<Arc<C2sPolicy>>, tls: bool, cb: ChannelBindingData) -> Self {
        C2sResponder {
            policy: policy.into(),
            framing: Framing::Stream,
            phase: Phase::AwaitHeader,
            tls,
            cb: boxed_binding(cb),
            header_sent: false,
            host: None,
            stream_id: new_stream_id(),
            user: None,
            sasl: None,
            pending_user: None,
            failures: 0,
        }
    }

    /// A responder for a WebSocket connection (RFC 7395); `tls` is true when the WebSocket
    /// runs over TLS (directly, or behind a trusted proxy that terminates it).
    pub fn websocket(policy: impl Into<Arc<C2sPolicy>>, tls: bool, cb: ChannelBindingData) -> Self {
        let mut responder = Self::new(policy, tls, cb);
        responder.framing = Framing::WebSocket;
        responder
    }

    /// A responder for a BOSH session (XEP-0206); `tls` is true when its HTTP requests come
    /// over TLS. No channel binding: the requests of one session may come over different
    /// TLS connections, so none of them is the session's.
    pub fn bosh(policy: impl Into<Arc<C2sPolicy>>, tls: bool) -> Self {
        let mut responder = Self::new(policy, tls, ChannelBindingData::none());
        responder.framing = Framing::Bosh;
        responder
    }

    /// The channel-binding data of the connection (none once authenticated).
    pub(crate) fn channel_binding(&self) -> &ChannelBindingData {
        self.cb.as_deref().unwrap_or(&NO_CHANNEL_BINDING)
    }

    /// The stream id (XEP-0206 `authid`).
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// Where the negotiation stands.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The authenticated account, once SASL succeeded.
    pub fn user(&self) -> Option<&BareJid> {
        self.user.as_ref()
    }

    /// The hosted domain the client addressed.
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// Whether the stream is framed for WebSocket (RFC 7395).
    pub fn is_websocket(&self) -> bool {
        self.framing == Framing::WebSocket
    }

    /// Whether TLS is established.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The bytes that end the stream with `error`, preceded by our header when the client
    /// never got one.
    pub fn error_bytes(&mut self, error: &StreamError) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.header_sent {
            let from = self.host.clone().unwrap_or_else(|| "localhost".to_owned());
            out = self.framing.header(&from, &self.stream_id);
            self.header_sent = true;
        }
        out.extend_from_slice(&self.framing.closing(error));
        self.phase = Phase::Closed;
        out
    }

    /// Called when the TLS handshake that followed `<proceed/>` completed.
    pub fn tls_established(&mut self, cb: ChannelBindingData) {
        self.tls = true;
        self.cb = boxed_binding(cb);
        self.phase = Phase::AwaitHeader;
        self.header_sent = false;
    }

    /// Handles one event of the client's stream.
    pub fn handle(&mut self, event: StreamEvent, out: &mut Vec<C2sOutput>) {
        match event {
            StreamEvent::Open(header) => self.on_header(&header, out),
            StreamEvent::Close => {
                self.phase = Phase::Closed;
                out.push(C2sOutput::PeerClosed);
            }
            StreamEvent::Stanza(el) => self.on_element(el, out),
        }
    }

    fn close(&mut self, cond: Cond, text: &str, out: &mut Vec<C2sOutput>) {
        self.phase = Phase::Closed;
        out.push(C2sOutput::Close(StreamError::with_text(cond, text)));
    }

    fn on_header(&mut self, header: &StreamHeader, out: &mut Vec<C2sOutput>) {
        if self.phase != Phase::AwaitHeader {
            return self.close(Cond::BadFormat, "unexpected stream header", out);
        }
        let to = header.attr("to").and_then(|to| BareJid::new(to).ok());
        let to = to
            .filter(|j| j.node().is_none())
            .map(|j| j.domain().as_str().to_owned());
        if let Some(to) = &to
            && self.policy.hosts.contains(to.as_str())
        {
            self.host.get_or_insert_with(|| to.clone());
        }
        // Our header goes out before any setup error (RFC 6120 §4.9.1.2).
        let from = self.host.clone().unwrap_or_else(|| "localhost".to_owned());
        out.push(C2sOutput::Send(self.framing.header(&from, &self.stream_id)));
        self.header_sent = true;
        if header.default_ns.as_deref() != Some(ns::CLIENT) {
            return self.close(
                Cond::InvalidNamespace,
                "client streams use jabber:client",
                out,
            );
        }
        match &to {
            Some(to) if Some(to.as_str()) == self.host.as_deref() => {}
            Some(to) => {
                let text = format!("this server does not serve {to}");
                return self.close(Cond::HostUnknown, &text, out);
            }
            None => return self.close(Cond::HostUnknown, "the stream header needs a 'to'", out),
        }
        match header.attr("version").and_then(|v| v.split_once('.')) {
            Some((major, _)) if major.trim_start_matches('0') == "1" => {}
            _ => return self.close(Cond::UnsupportedVersion, "version 1.0 is required", out),
        }
        self.phase = if self.user.is_some() {
            Phase::AwaitBind
        } else {
            Phase::Features
        };
        out.push(C2sOutput::Send(bytes_of(&self.features())));
    }

    /// The features for where the negotiation stands, with the limits in force from here on
    /// (XEP-0478); none beside a required STARTTLS, which must be the only feature offered.
    fn features(&self) -> Element {
        let mut features = self.offered_features();
        if self.starttls_only() {
            return features;
        }
        let limits = if self.user.is_some() {
            &self.policy.limits_after_auth
        } else {
            &self.policy.limits_before_auth
        };
        features.push_child(limits.to_element());
        features
    }

    /// Whether STARTTLS is all there is to negotiate now.
    fn starttls_only(&self) -> bool {
        self.user.is_none()
            && !self.tls
            && self.framing == Framing::Stream
            && self.policy.require_tls
    }

    fn offered_features(&self) -> Element {
        let mut features = Element::new("features", ns::STREAM);
        if self.user.is_some() {
            features.push_child(Element::new("bind", ns::BIND));
            features.push_child(
                Element::new("session", ns::SESSION)
                    .with_child(Element::new("optional", ns::SESSION)),
            );
            let host_features = self.host().and_then(|h| self.policy.bound_features.get(h));
            for feature in host_features.into_iter().flatten() {
                features.push_child(feature.clone());
            }
            return features;
        }
        if !self.tls && self.framing == Framing::Stream {
            crate::header::push_starttls(&mut features, self.policy.require_tls);
            if self.policy.require_tls {
                return features;
            }
        }
        let mut mechanisms = Element::new("mechanisms", ns::SASL);
        for mech in self.offered_mechanisms() {
            mechanisms.push_child(Element::new("mechanism", ns::SASL).with_text(mech.name()));
        }
        features.push_child(mechanisms);
        let types = self.channel_binding().supported_channel_bindings();
        if self.tls && !types.is_empty() {
            // XEP-0440: which channel-binding types this connection can do.
            let mut cb = Element::new("sasl-channel-binding", ns::SASL_CB);
            for t in types {
                let binding = Element::new("channel-binding", ns::SASL_CB);
                cb.push_child(binding.with_attr("type", t.name()));
            }
            features.push_child(cb);
        }
        if self.registration_open() {
            if self.invites_accepted() {
                // XEP-0445 §3, and the namespace clients written before it look for.
                features.push_child(Element::new("register", pars::NS_IBR_TOKEN));
                features.push_child(Element::new("register", pars::NS_INVITE_LEGACY));
            }
            features.push_child(Element::new("register", NS_REGISTER_FEATURE));
        }
        features
    }

    /// PLAIN only under TLS; the `-PLUS` mechanisms only with channel-binding data, which
    /// exists only under TLS; none the policy disables.
    fn offered_mechanisms(&self) -> Vec<Mechanism> {
        let mut offered = if self.tls {
            offered_mechanisms(self.channel_binding(), true)
        } else {
            offered_mechanisms(&ChannelBindingData::none(), false)
        };
        offered.retain(|m| !self.policy.disabled_mechanisms.contains(m));
        offered
    }

    fn on_element(&mut self, el: Element, out: &mut Vec<C2sOutput>) {
        let is_stanza = el.ns() == ns::CLIENT && matches!(el.name(), "message" | "presence" | "iq");
        match self.phase {
            Phase::Bound => self.on_bound_element(el, out),
            Phase::Features if !self.tls && self.policy.require_tls => {
                if el.is("starttls", ns::TLS) {
                    out.push(C2sOutput::Send(bytes_of(&Element::new("proceed", ns::TLS))));
                    out.push(C2sOutput::StartTls);
                    self.phase = Phase::AwaitHeader;
                } else if is_stanza {
                    self.close(
                        Cond::NotAuthorized,
                        "STARTTLS and authentication first",
                        out,
                    );
                } else {
                    self.close(Cond::PolicyViolation, "STARTTLS is required", out);
                }
            }
            Phase::Features | Phase::Authenticating if el.ns() == ns::SASL => {
                self.on_sasl(&el, out);
            }
            Phase::Features
                if el.is("starttls", ns::TLS) && !self.tls && self.framing == Framing::Stream =>
            {
                out.push(C2sOutput::Send(bytes_of(&Element::new("proceed", ns::TLS))));
                out.push(C2sOutput::StartTls);
                self.phase = Phase::AwaitHeader;
            }
            Phase::Features if self.is_register_iq(&el) => self.on_register(el, out),
            Phase::AwaitBind if el.is("iq", ns::CLIENT) => self.on_bind(&el, out),
            Phase::AwaitBind if el.ns() == ns::SM => out.push(C2sOutput::StreamManagement(el)),
            Phase::Features | Phase::Authenticating | Phase::AwaitBind if is_stanza => {
                self.close(
                    Cond::NotAuthorized,
                    "authenticate and bind a resource first",
                    out,
                );
            }
            _ => {
                let text = format!("unexpected <{}/> during stream negotiation", el.name());
                self.close(Cond::PolicyViolation, &text, out);
            }
        }
    }
}

#[path = "c2s_bound.rs"]
mod bound;
#[path = "c2s_register.rs"]
mod register;
#[path = "c2s_sasl.rs"]
mod sasl_exchange;

use bound::iq_error;

#[cfg(test)]
#[path = "c2s_tests.rs"]
mod tests;
