//! Client-to-server listeners: 5222 with STARTTLS and 5223 with direct TLS (XEP-0368).
//!
//! One task per connection, started under a connection semaphore and tracked for graceful
//! shutdown. The task is a loop over `select!` of socket reads, the session's bounded outbound
//! queue, its kick handle and the shutdown token (see [`connection`]).

pub mod connection;
mod thread_buffer;
pub mod tls;
pub mod tls_stream;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, info_span};
use xmppd_core::Router;
use xmppd_core::listener::accept_permitted;
use xmppd_core::per_address::{ConnectionLimiter, ConnectionLimits, Refusal};
use xmppd_core::read_shaper::ReadRate;
use xmppd_proto::{StreamError, StreamErrorCondition};
use xmppd_stream::sasl::ChannelBindingData;
use xmppd_stream::{C2sPolicy, C2sResponder};

pub use tls::{HostCertificate, TlsSetup, TlsSetupError};

/// Limits of client connections (documented defaults in the README).
#[derive(Clone, Copy, Debug)]
pub struct C2sLimits {
    /// Largest stanza after authentication.
    pub max_stanza_bytes: usize,
    /// Largest stanza before authentication.
    pub max_stanza_bytes_unauthenticated: usize,
    /// Element nesting depth.
    pub max_depth: usize,
    /// Attributes per element.
    pub max_attrs: usize,
    /// Time allowed for TLS, SASL and bind together.
    pub auth_timeout: Duration,
    /// Stanzas queued for one session before it counts as a slow consumer.
    pub session_queue: usize,
    /// Time allowed to write one batch to a client before it counts as dead.
    pub write_timeout: Duration,
    /// Concurrent connections on one listener.
    pub max_connections: usize,
    /// Silence from a bound client after which the server asks it to answer (XEP-0199 ping,
    /// or `<r/>` under stream management).
    pub ping_after: Duration,
    /// Time for the client to answer that, or anything sent with `<r/>`, before its link
    /// counts as dead.
    pub dead_after: Duration,
    /// Connections and connection attempts per client address, over every client listener
    /// (XEP-0205 §4.1, §4.2).
    pub per_address: ConnectionLimits,
}

impl Default for C2sLimits {
    fn default() -> Self {
        C2sLimits {
            max_stanza_bytes: 256 * 1024,
            max_stanza_bytes_unauthenticated: 16 * 1024,
            max_depth: 64,
            max_attrs: 256,
            auth_timeout: Duration::from_secs(60),
            session_queue: 1024,
            write_timeout: Duration::from_secs(60),
            max_connections: 100_000,
            ping_after: Duration::from_secs(120),
            dead_after: Duration::from_secs(60),
            per_address: ConnectionLimits::default(),
        }
    }
}

/// What a client connection negotiates with and is limited by: taken once when it is
/// accepted and kept to its end, so a reload changes new connections only.
#[derive(Debug)]
pub struct C2sSettings {
    /// Negotiation policy (shared by the connections accepted under these settings).
    pub policy: Arc<C2sPolicy>,
    /// Limits.
    pub limits: C2sLimits,
}

/// Everything a client connection needs, shared by all connections of a server.
#[derive(Debug)]
pub struct C2sContext {
    /// Where stanzas go.
    pub router: Arc<Router>,
    /// Certificates and acceptor.
    pub tls: TlsSetup,
    settings: xmppd_core::Live<C2sSettings>,
    /// The connections of every client address, shared by the client listeners.
    pub connections: Arc<ConnectionLimiter>,
    next_conn_id: AtomicU64,
}

impl C2sContext {
    /// Shared context for the listeners.
    pub fn new(router: Arc<Router>, tls: TlsSetup, policy: C2sPolicy, limits: C2sLimits) -> Self {
        C2sContext {
            router,
            tls,
            connections: ConnectionLimiter::new(limits.per_address, "client"),
            settings: xmppd_core::Live::new(C2sSettings {
                policy: Arc::new(policy),
                limits,
            }),
            next_conn_id: AtomicU64::new(1),
        }
    }

    /// The policy and limits for a connection accepted now.
    pub fn settings(&self) -> Arc<C2sSettings> {
        self.settings.get()
    }

    /// Applies `policy` and `limits` to the connections accepted from now on (a reload);
    /// those already open keep what they started with. The number of connections per
    /// listener (`max_connections`) is the one thing fixed when the listener starts.
    pub fn update_settings(&self, policy: C2sPolicy, limits: C2sLimits) {
        self.connections.set_limits(limits.per_address);
        self.settings.set(C2sSettings {
            policy: Arc::new(policy),
            limits,
        });
    }

    /// A connection id no other client connection of this server has, whatever carries it
    /// (TCP here, WebSocket and BOSH in the HTTP crate): the session registry tells a
    /// replaced session from its replacement by it.
    pub fn conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// Whether a listener starts with STARTTLS or with TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenerKind {
    /// Port 5222: plain TCP, STARTTLS.
    StartTls,
    /// Port 5223: TLS from the first byte (XEP-0368).
    DirectTls,
}

/// Whether a listener offers SASL channel binding: the SCRAM `-PLUS` mechanisms with the
/// types its TLS sessions allow, announced per XEP-0440.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ChannelBinding {
    /// Offered. A client that then says it supports channel binding but believes we do not
    /// (the `y` flag) has seen a stripped feature list and is refused (RFC 5802 §6).
    #[default]
    Offered,
    /// Not offered, so the `y` flag is an honest answer and accepted. For clients that can
    /// bind only to `tls-unique`, which TLS 1.3 does not define (RFC 9266), and then retry
    /// with `y` — slixmpp 1.8.3 as Debian 12 ships it under poezio — at the price of the
    /// protection against a man in the middle that channel binding gives every client.
    Off,
}

/// Accepts connections until `shutdown` is cancelled. Each is read at most at `read_rate`
/// (XEP-0205 §4.8) when the listener has one.
pub async fn serve(
    listener: TcpListener,
    kind: ListenerKind,
    channel_binding: ChannelBinding,
    read_rate: Option<ReadRate>,
    ctx: Arc<C2sContext>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(ctx.settings().limits.max_connections));
    while let Some((permit, socket, peer)) = accept_permitted(&listener, &permits, &shutdown).await
    {
        let address_permit = match ctx.connections.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                refuse(&socket, kind, refusal, &ctx);
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let conn_id = ctx.conn_id();
        let span = info_span!("c2s", conn = conn_id, %peer, jid = tracing::field::Empty);
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        let connection = span.in_scope(|| {
            connection::run(
                socket,
                kind,
                channel_binding,
                read_rate,
                ctx,
                conn_id,
                shutdown,
                (address_permit, permit),
            )
        });
        // Boxed: tokio aligns a task to 128 bytes, and mimalloc serves an aligned block over
        // 1 KiB from the size class of its size plus 127; the box has no such rounding.
        tracker.spawn(Box::pin(connection.instrument(span)));
    }
}

/// Closes a connection its address may not open (XEP-0205 §4.1, §4.2: it must not proceed).
/// On a STARTTLS listener the client first reads why, in a `policy-violation` stream error
/// written without waiting (a new socket's send buffer takes it whole, and a client that does
/// not read cannot hold the listener up); on a direct-TLS listener anything but TLS would be
/// noise, so the connection is just closed.
fn refuse(socket: &TcpStream, kind: ListenerKind, refusal: Refusal, ctx: &C2sContext) {
    if kind == ListenerKind::StartTls {
        let mut responder = C2sResponder::new(
            ctx.settings().policy.clone(),
            false,
            ChannelBindingData::none(),
        );
        let error =
            StreamError::with_text(StreamErrorCondition::PolicyViolation, refusal.to_string());
        let _ = socket.try_write(&responder.error_bytes(&error));
    }
}
