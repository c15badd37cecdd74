//! The server's metrics, exposed in the Prometheus text format (or OpenMetrics, when the
//! scraper asks for it) on the `metrics` listener.
//!
//! One [`Metrics`] is owned by the [`crate::Router`] (no process-global registry: two servers
//! in one process, as in tests, count apart). Events are counted where they happen: logins in
//! the client stream, stanzas where transports read them and where the router hands them to
//! a session, the other servers or a component, routing errors where the router bounces, link
//! and connection gauges by guards that live as long as what they count. The hot paths touch
//! only handles resolved at construction (an atomic add each); a label lookup happens only
//! for rare events (a failed login, a bounce). What is cheaper to read than to track — bound
//! sessions, queue depths, stored messages, the process's memory — is set by the scraper just
//! before encoding ([`Scraped`]).

mod labels;
mod storage;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use xmppd_proto::StanzaKind;

use labels::{
    ConditionLabel, FailureLabel, HostLabel, KindLabel, LinkLabel, MechanismLabel, ShapeLabel,
    StanzaLabel, StoreLabel,
};
pub use storage::timed;

/// What is at the other end of a connection or a stanza's path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// A client (TCP, TLS or WebSocket).
    Client,
    /// Another server (s2s).
    Server,
    /// An external component (XEP-0114).
    Component,
}

impl Peer {
    const ALL: [Peer; 3] = [Peer::Client, Peer::Server, Peer::Component];

    fn label(self) -> &'static str {
        match self {
            Peer::Client => "client",
            Peer::Server => "server",
            Peer::Component => "component",
        }
    }
}

/// A kind of connection, for `xmppd_connections`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionKind {
    /// A client over TCP (STARTTLS or direct TLS).
    C2s,
    /// A client over WebSocket.
    WebSocket,
    /// A client's BOSH session (XEP-0206), from its creation to its end.
    Bosh,
    /// Another server's stream to us.
    S2sIn,
    /// Our stream to another server.
    S2sOut,
    /// An external component.
    Component,
}

impl ConnectionKind {
    const ALL: [ConnectionKind; 6] = [
        ConnectionKind::C2s,
        ConnectionKind::WebSocket,
        ConnectionKind::Bosh,
        ConnectionKind::S2sIn,
        ConnectionKind::S2sOut,
        ConnectionKind::Component,
    ];

    fn label(self) -> &'static str {
        match self {
            ConnectionKind::C2s => "c2s",
            ConnectionKind::WebSocket => "websocket",
            ConnectionKind::Bosh => "bosh",
            ConnectionKind::S2sIn => "s2s_in",
            ConnectionKind::S2sOut => "s2s_out",
            ConnectionKind::Component => "component",
        }
    }
}

const KINDS: [StanzaKind; 3] = [StanzaKind::Message, StanzaKind::Presence, StanzaKind::Iq];

fn kind_label(kind: StanzaKind) -> &'static str {
    match kind {
        StanzaKind::Message => "message",
        StanzaKind::Presence => "presence",
        StanzaKind::Iq => "iq",
    }
}

/// The kind of a serialised stanza, from its first bytes.
fn kind_of_bytes(bytes: &[u8]) -> Option<StanzaKind> {
    if bytes.starts_with(b"<message") {
        Some(StanzaKind::Message)
    } else if bytes.starts_with(b"<presence") {
        Some(StanzaKind::Presence)
    } else if bytes.starts_with(b"<iq") {
        Some(StanzaKind::Iq)
    } else {
        None
    }
}

/// Values read at scrape time, not tracked as they change.
#[derive(Clone, Debug, Default)]
pub struct Scraped {
    /// Client sessions bound to a live connection.
    pub bound_sessions: u64,
    /// Client sessions that can be resumed (XEP-0198): attached to a connection, or waiting
    /// for their client.
    pub resumable_sessions: u64,
    /// Stanzas queued for client sessions, not yet written.
    pub client_queue: u64,
    /// Stanzas waiting for an outbound s2s stream to open.
    pub s2s_queue: u64,
    /// Messages in each archive store (`offline`, `mam`, `muc_archive` …).
    pub archives: Vec<(String, u64)>,
    /// The process's resident memory, in bytes.
    pub resident_bytes: u64,
    /// The process's virtual memory, in bytes.
    pub virtual_bytes: u64,
    /// The process's open file descriptors.
    pub open_fds: u64,
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    connections: [Gauge; 6],
    logins: Family<MechanismLabel, Counter>,
    login_failures: Family<FailureLabel, Counter>,
    /// Indexed by [`Peer`] then stanza kind.
    received: [[Counter; 3]; 3],
    sent: [[Counter; 3]; 3],
    routing_errors: Family<ConditionLabel, Counter>,
    s2s_links: Family<LinkLabel, Gauge>,
    storage: Family<ShapeLabel, Histogram, fn() -> Histogram>,
    sessions: Family<KindLabel, Gauge>,
    queued: Family<KindLabel, Gauge>,
    archived: Family<StoreLabel, Gauge>,
    certificate_expiry: Family<HostLabel, Gauge>,
    resident: Gauge,
    virtual_memory: Gauge,
    open_fds: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

fn storage_histogram() -> Histogram {
    // 0.1 ms to about 6 s.
    Histogram::new(exponential_buckets(0.0001, 2.5, 13))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family registered, all at zero.
    pub fn new() -> Self {
        let mut root = Registry::default();
        let (resident, virtual_memory, open_fds) =
            (Gauge::default(), Gauge::default(), Gauge::default());
        // The process metrics keep the names every Prometheus client library gives them.
        root.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            resident.clone(),
        );
        root.register(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            virtual_memory.clone(),
        );
        root.register(
            "process_open_fds",
            "Number of open file descriptors",
            open_fds.clone(),
        );
        let registry = root.sub_registry_with_prefix("xmppd");
        let connection_family = Family::<KindLabel, Gauge>::default();
        let connections = ConnectionKind::ALL
            .map(|k| connection_family.get_or_create_owned(&KindLabel { kind: k.label() }));
        registry.register(
            "connections",
            "Open connections by kind (c2s, websocket, s2s_in, s2s_out, component)",
            connection_family,
        );
        let logins = Family::<MechanismLabel, Counter>::default();
        // Every mechanism from zero, so that a rate is defined before the first login.
        for mechanism in xmppd_stream::sasl::Mechanism::PREFERENCE {
            let _ = logins.get_or_create_owned(&MechanismLabel {
                mechanism: mechanism.name(),
            });
        }
        registry.register(
            "logins",
            "Successful SASL logins by mechanism",
            logins.clone(),
        );
        let login_failures = Family::default();
        registry.register(
            "login_failures",
            "Failed SASL exchanges by mechanism and RFC 6120 condition",
            login_failures.clone(),
        );
        let (received, sent) = (
            Family::<StanzaLabel, Counter>::default(),
            Family::<StanzaLabel, Counter>::default(),
        );
        let handles = |family: &Family<StanzaLabel, Counter>| {
            Peer::ALL.map(|peer| {
                KINDS.map(|kind| {
                    family.get_or_create_owned(&StanzaLabel {
                        peer: peer.label(),
                        kind: kind_label(kind),
                    })
                })
            })
        };
        let (received_handles, sent_handles) = (handles(&received), handles(&sent));
        registry.register(
            "stanzas_received",
            "Stanzas read from clients, servers and components, by kind",
            received,
        );
        registry.register(
            "stanzas_sent",
            "Stanzas handed to clients, servers and components, by kind",
            sent,
        );
        let routing_errors = Family::default();
        registry.register(
            "routing_errors",
            "Error bounces made by the router, by stanza error condition",
            routing_errors.clone(),
        );
        let s2s_links = Family::<LinkLabel, Gauge>::default();
        for direction in ["in", "out"] {
            for state in ["negotiating", "established"] {
                let _ = s2s_links.get_or_create_owned(&LinkLabel { direction, state });
            }
        }
        registry.register(
            "s2s_links",
            "Server-to-server streams by direction (in, out) and state (negotiating, established)",
            s2s_links.clone(),
        );
        let storage = Family::<ShapeLabel, Histogram, fn() -> Histogram>::new_with_constructor(
            storage_histogram,
        );
        registry.register(
            "storage_seconds",
            "Latency of storage calls by shape and operation, in seconds",
            storage.clone(),
        );
        let sessions = Family::default();
        registry.register(
            "sessions",
            "Client sessions: bound to a connection; resumable (XEP-0198, attached or waiting)",
            sessions.clone(),
        );
        let queued = Family::default();
        registry.register(
            "queued_stanzas",
            "Stanzas waiting: in client sessions' queues, and for s2s streams to open",
            queued.clone(),
        );
        let archived = Family::default();
        registry.register(
            "archived_messages",
            "Messages stored per archive store (offline, mam, muc_archive)",
            archived.clone(),
        );
        let certificate_expiry = Family::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When each host's TLS certificate stops being valid (notAfter), as a Unix time",
            certificate_expiry.clone(),
        );
        Metrics {
            registry: root,
            connections,
            logins,
            login_failures,
            received: received_handles,
            sent: sent_handles,
            routing_errors,
            s2s_links,
            storage,
            sessions,
            queued,
            archived,
            certificate_expiry,
            resident,
            virtual_memory,
            open_fds,
        }
    }

    /// Counts a connection of `kind` as long as the guard lives.
    pub fn connection(&self, kind: ConnectionKind) -> GaugeGuard {
        let index = ConnectionKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or_default();
        GaugeGuard::new(self.connections[index].clone())
    }

    /// A successful login.
    pub fn login(&self, mechanism: &'static str) {
        self.logins
            .get_or_create(&MechanismLabel { mechanism })
            .inc();
    }

    /// A failed SASL exchange.
    pub fn login_failed(&self, mechanism: &'static str, condition: &'static str) {
        self.login_failures
            .get_or_create(&FailureLabel {
                mechanism,
                condition,
            })
            .inc();
    }

    /// A stanza read from `peer`.
    pub fn received(&self, peer: Peer, kind: StanzaKind) {
        self.received[peer_index(peer)][kind_index(kind)].inc();
    }

    /// An element read from `peer`, counted when it is a stanza (by its name).
    pub fn received_element(&self, peer: Peer, name: &str) {
        let kind = match name {
            "message" => StanzaKind::Message,
            "presence" => StanzaKind::Presence,
            "iq" => StanzaKind::Iq,
            _ => return,
        };
        self.received(peer, kind);
    }

    /// A stanza handed to `peer`.
    pub fn sent(&self, peer: Peer, kind: StanzaKind) {
        self.sent[peer_index(peer)][kind_index(kind)].inc();
    }

    /// A serialised stanza handed to `peer` (anything else, a nonza, is not counted).
    pub fn sent_bytes(&self, peer: Peer, bytes: &[u8]) {
        if let Some(kind) = kind_of_bytes(bytes) {
            self.sent(peer, kind);
        }
    }

    /// An error bounce made by the router.
    pub fn routing_error(&self, condition: &'static str) {
        self.routing_errors
            .get_or_create(&ConditionLabel { condition })
            .inc();
    }

    /// Counts an s2s stream as negotiating until [`LinkGuard::established`], and as long as
    /// the guard lives.
    pub fn s2s_link(&self, outbound: bool) -> LinkGuard {
        let direction = if outbound { "out" } else { "in" };
        let gauge = |state| {
            self.s2s_links
                .get_or_create_owned(&LinkLabel { direction, state })
        };
        LinkGuard {
            negotiating: Some(GaugeGuard::new(gauge("negotiating"))),
            established: gauge("established"),
            counted: None,
        }
    }

    /// Established federation links now: (inbound, outbound).
    pub fn s2s_links_established(&self) -> (u64, u64) {
        let count = |direction| {
            let gauge = self.s2s_links.get_or_create(&LinkLabel {
                direction,
                state: "established",
            });
            u64::try_from(gauge.get()).unwrap_or(0)
        };
        (count("in"), count("out"))
    }

    /// Records how long a storage call took.
    pub fn storage_call(&self, shape: &'static str, operation: &'static str, seconds: f64) {
        self.storage
            .get_or_create(&ShapeLabel { shape, operation })
            .observe(seconds);
    }

    /// The certificate served for `host` is valid until `not_after` (a Unix time).
    pub fn certificate_expires(&self, host: &str, not_after: i64) {
        self.certificate_expiry
            .get_or_create(&HostLabel {
                host: host.to_owned(),
            })
            .set(not_after);
    }

    /// The exposition: Prometheus text 0.0.4, or OpenMetrics 1.0 when `openmetrics`, with
    /// the scrape-time values of `scraped`.
    pub fn encode(&self, scraped: &Scraped, openmetrics: bool) -> String {
        self.set_scraped(scraped);
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        };
        out
    }

    fn set_scraped(&self, s: &Scraped) {
        let set = |family: &Family<KindLabel, Gauge>, kind, value: u64| {
            family
                .get_or_create(&KindLabel { kind })
                .set(i64::try_from(value).unwrap_or(i64::MAX));
        };
        set(&self.sessions, "bound", s.bound_sessions);
        set(&self.sessions, "resumable", s.resumable_sessions);
        set(&self.queued, "client", s.client_queue);
        set(&self.queued, "s2s", s.s2s_queue);
        for (store, count) in &s.archives {
            self.archived
                .get_or_create(&StoreLabel {
                    store: store.clone(),
                })
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        for (gauge, value) in [
            (&self.resident, s.resident_bytes),
            (&self.virtual_memory, s.virtual_bytes),
            (&self.open_fds, s.open_fds),
        ] {
            gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
        }
    }
}

fn peer_index(peer: Peer) -> usize {
    Peer::ALL
        .iter()
        .position(|p| *p == peer)
        .unwrap_or_default()
}

fn kind_index(kind: StanzaKind) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or_default()
}

/// Adds one to a gauge while it lives.
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    fn new(gauge: Gauge) -> Self {
        gauge.inc();
        GaugeGuard(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// An s2s stream in `xmppd_s2s_links`: negotiating, then established, until dropped.
#[derive(Debug)]
pub struct LinkGuard {
    negotiating: Option<GaugeGuard>,
    established: Gauge,
    counted: Option<GaugeGuard>,
}

impl LinkGuard {
    /// The stream is authenticated: stanzas flow.
    pub fn established(&mut self) {
        if self.counted.is_none() {
            self.negotiating = None;
            self.counted = Some(GaugeGuard::new(self.established.clone()));
        }
    }
}

#[cfg(test)]
mod tests;
