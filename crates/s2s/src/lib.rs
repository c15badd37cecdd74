//! Federation: how xmppd finds, authenticates and talks to other XMPP servers.
//!
//! - [`resolve`] turns a domain into the ordered list of places to connect to (RFC 6120
//!   §3.2, XEP-0368), unless a static route names the place.
//! - [`outbound`] keeps one connection per (local domain, remote domain) pair, negotiated
//!   with [`xmppd_stream::s2s::S2sInitiator`] (STARTTLS or direct TLS, SASL EXTERNAL or
//!   dialback); stanzas wait in a bounded queue meanwhile and are bounced if it fails.
//! - [`inbound`] accepts other servers' connections on 5269 (and direct TLS), authenticates
//!   each domain pair with [`xmppd_stream::s2s::S2sResponder`], answers dialback
//!   verifications for our domains and routes what authorised peers send.
//! - [`tls`] holds our certificates and judges the peers'.

pub mod inbound;
mod io;
pub mod outbound;
pub mod resolve;
pub mod tls;

use std::collections::HashMap;
use std::time::Duration;

pub use inbound::{InboundContext, S2sListenerKind};
pub use outbound::S2sPool;
pub use resolve::{Resolution, S2sResolver, SrvTarget, Transport};
pub use tls::S2sTls;
use xmppd_core::per_address::ConnectionLimits;
pub use xmppd_core::read_shaper::ReadRate;

/// A configured place to reach a remote domain, instead of DNS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticRoute {
    /// Host name or IP address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// STARTTLS or direct TLS.
    pub transport: Transport,
}

/// The federation settings and policy in force: taken by each link and each inbound
/// connection when it starts and kept to its end, so a reload changes the next ones.
#[derive(Clone, Debug)]
pub struct S2sTerms {
    /// Timeouts, queue, limits and static routes.
    pub settings: S2sSettings,
    /// Negotiation policy.
    pub policy: xmppd_stream::s2s::S2sPolicy,
}

/// Federation settings.
#[derive(Clone, Debug)]
pub struct S2sSettings {
    /// Domains reached through configured addresses instead of DNS.
    pub routes: HashMap<String, Vec<StaticRoute>>,
    /// Time to open one TCP connection.
    pub connect_timeout: Duration,
    /// Time from the first connection attempt to an authenticated stream (and, inbound,
    /// from accept to the first authorised domain).
    pub negotiation_timeout: Duration,
    /// An outbound stream with nothing to send for this long is closed; so is an inbound
    /// stream with nothing received.
    pub idle_timeout: Duration,
    /// Stanzas queued per outbound stream while it is negotiated or busy.
    pub queue: usize,
    /// Largest stanza accepted from an authenticated peer.
    pub max_stanza_bytes: usize,
    /// Largest element accepted before authentication.
    pub max_stanza_bytes_unauthenticated: usize,
    /// Time allowed to write one batch to a peer.
    pub write_timeout: Duration,
    /// Inbound connections at once, per listener.
    pub max_connections: usize,
    /// Outbound streams at once (a peer's dialback requests make us open some, so this too
    /// must have a bound).
    pub max_outbound_links: usize,
    /// How fast an inbound stream is read (XEP-0205 §4.8; `None`: as fast as it comes).
    pub read_rate: Option<ReadRate>,
    /// Inbound connections and connection attempts per address (XEP-0205 §4.1, §4.2),
    /// over every federation listener.
    pub per_address: ConnectionLimits,
}

/// [`S2sSettings::per_address`] unless configured: generous, as one address may serve many
/// domains (a hosting provider's server opens a stream per domain pair, and dialback adds
/// streams of its own).
pub const DEFAULT_S2S_PER_ADDRESS: ConnectionLimits = ConnectionLimits {
    per_address: 1000,
    per_ipv6_64: 2000,
    attempts: 1000,
    attempt_period: Duration::from_secs(60),
};

impl Default for S2sSettings {
    fn default() -> Self {
        S2sSettings {
            routes: HashMap::new(),
            connect_timeout: Duration::from_secs(10),
            negotiation_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            queue: 1000,
            max_stanza_bytes: 512 * 1024,
            max_stanza_bytes_unauthenticated: 16 * 1024,
            write_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_outbound_links: 10_000,
            read_rate: Some(ReadRate {
                bytes_per_second: 100_000,
                burst_bytes: 512 * 1024,
            }),
            per_address: DEFAULT_S2S_PER_ADDRESS,
        }
    }
}
