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
//!
//! The code is split by side: `responder.rs` holds the receiving side, `initiator.rs` the
//! initiating one; what both share (the policy, the stream header, the limits) stays here.

use std::collections::HashSet;
use std::sync::Arc;

use xmppd_proto::ns;
use xmppd_proto::stream_limits::StreamLimits;
use xmppd_xml::writer::escape_attr;
use xmppd_xml::{Element, StreamHeader};

use crate::header::element_bytes;

mod initiator;
mod responder;

pub use initiator::{OutboundFailure, OutboundOutput, S2sInitiator};
pub use responder::{InboundOutput, S2sResponder};

/// Dialback verifications one inbound stream may have under way at once: each makes us
/// contact the claimed domain, so a peer must not be able to make us contact any number.
pub const MAX_PENDING_DIALBACK: usize = 16;

/// Domain pairs one inbound stream may carry (authorised or being verified).
pub const MAX_DOMAIN_PAIRS: usize = 1000;

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
    /// What an inbound stream accepts once a domain pair is authorised, announced in every
    /// features element (XEP-0478): the peer sends stanzas only then, and with dialback it
    /// gets no features afterwards.
    pub limits: StreamLimits,
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

#[cfg(test)]
#[path = "../s2s_tests.rs"]
mod tests;
