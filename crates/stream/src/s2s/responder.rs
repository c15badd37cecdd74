//! The receiving side of an inbound s2s connection: STARTTLS, SASL EXTERNAL, dialback in the
//! receiving and authoritative roles, and the per-pair check of every stanza.

use std::collections::HashSet;
use std::sync::Arc;

use jid::Jid;
use xmppd_proto::{DefinedCondition, StreamError, StreamErrorCondition as Cond, ns};
use xmppd_xml::{Element, StreamEvent, StreamHeader};

use super::{
    AuthMethod, CertificateCheck, MAX_DOMAIN_PAIRS, MAX_PENDING_DIALBACK, S2sPolicy, bytes_of,
    is_version_1, server_header,
};
use crate::dialback::{DIALBACK_FEATURE_NS, Dialback, Verdict, key_is_valid};
use crate::header::new_stream_id;
use crate::sasl::decode_b64;

/// Failed SASL attempts allowed on one inbound stream.
const MAX_SASL_FAILURES: u32 = 3;

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
            features.push_child(self.policy.limits.to_element());
            return features;
        }
        if !self.tls {
            crate::header::push_starttls(&mut features, self.policy.require_tls);
            if self.policy.require_tls {
                // A required STARTTLS is the only feature offered.
                return features;
            }
        }
        features.push_child(self.policy.limits.to_element());
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

    // `pub(super)`: the tests call it directly to play the authoritative server.
    pub(super) fn on_dialback(&mut self, db: Dialback, out: &mut Vec<InboundOutput>) {
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
