//! HTTP listeners: XMPP over WebSocket (RFC 7395) and connection discovery (XEP-0156
//! host-meta), on axum (hyper) with the client listeners' TLS.
//!
//! One accept loop per `[[listen]]` of kind `http` or `https`, under a connection semaphore
//! and the per-address budget of [`per_ip`]; `https` uses the c2s [`TlsSetup`] (a certificate
//! per host chosen by SNI), whose channel-binding data is kept so that SCRAM-*-PLUS works
//! over `wss:` as over TCP. hyper serves HTTP/1.1 on each connection with the header limits
//! and timeout of [`HttpSettings`]; everything else is the axum router of [`routes`], which
//! every request reaches with its [`ConnInfo`] and the client address read through the
//! trusted proxies ([`proxy`]).
//!
//! BOSH (XEP-0206, [`bosh`]) is served beside the WebSocket route, with its own link in
//! host-meta; its sessions outlive the HTTP connections their requests come on. HTTP upload (XEP-0363) is under `/upload/`
//! ([`upload`]), sharing the listeners, the limits and the client address resolution; its
//! bodies are bounded by their slot, not by `max_body_bytes`.

pub mod admin_api;
pub mod bosh;
pub mod invite;
pub mod metrics;
pub mod per_ip;
pub mod proxy;
mod routes;
pub mod settings;
mod upload;
pub mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, debug, info_span};
use xmppd_c2s::{C2sContext, TlsSetup};
use xmppd_core::listener::accept_permitted;
use xmppd_core::read_shaper::ReadRate;
use xmppd_stream::sasl::ChannelBindingData;

pub use settings::{HostWeb, HttpSettings};

use per_ip::{ConnectionGuard, PerIp};

/// Whether a listener speaks plain HTTP or HTTPS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpKind {
    /// Plain HTTP: behind a TLS-terminating proxy, or for development.
    Plain,
    /// HTTPS with the hosts' certificates.
    Tls,
}

/// Everything the HTTP listeners share.
#[derive(Debug)]
pub struct HttpContext {
    /// The client listeners' context: router, TLS, negotiation policy, limits and the
    /// connection ids, which WebSocket sessions share with TCP ones.
    pub c2s: Arc<C2sContext>,
    /// The `[http]` settings.
    pub settings: HttpSettings,
    /// Per-address budgets of every HTTP listener.
    pub per_ip: Arc<PerIp>,
    /// The BOSH sessions.
    pub bosh: bosh::Sessions,
    /// The upload service's files (XEP-0363), when the `upload` module runs.
    upload: Option<Arc<xmppd_upload::Uploads>>,
    /// The admin API, when `[admin] api_tokens` has tokens.
    admin_api: Option<admin_api::AdminApi>,
    /// Invitations, for their landing pages (XEP-0401).
    invites: xmppd_core::Invites,
    /// Connections served since the start (for log spans).
    served: AtomicU64,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl HttpContext {
    /// The shared context; WebSocket sessions run under `tracker` until `shutdown`; uploads
    /// are served when `upload` is given; invitations' landing pages from `invites`.
    pub fn new(
        c2s: Arc<C2sContext>,
        settings: HttpSettings,
        upload: Option<Arc<xmppd_upload::Uploads>>,
        admin_api: Option<admin_api::AdminApi>,
        invites: xmppd_core::Invites,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Arc<Self> {
        let per_ip = PerIp::new(
            settings.max_connections_per_ip,
            settings.requests_per_second,
            settings.request_burst,
        );
        let bosh = bosh::Sessions::new(settings.bosh_max_sessions_per_ip);
        Arc::new(HttpContext {
            bosh,
            c2s,
            settings,
            per_ip,
            upload,
            admin_api,
            invites,
            served: AtomicU64::new(1),
            shutdown,
            tracker,
        })
    }

    fn tls(&self) -> &TlsSetup {
        &self.c2s.tls
    }

    /// The client negotiation policy of a WebSocket stream starting now: the c2s one, serving
    /// only the hosts that have WebSocket enabled (a stream to another gets `host-unknown`).
    pub(crate) fn ws_policy(&self) -> xmppd_stream::C2sPolicy {
        policy_where(&self.c2s, &self.settings, |web| web.websocket)
    }

    /// The same for a BOSH session, serving the hosts that have BOSH enabled.
    pub(crate) fn bosh_policy(&self) -> xmppd_stream::C2sPolicy {
        policy_where(&self.c2s, &self.settings, |web| web.bosh)
    }
}

/// The client negotiation policy, serving only the hosts whose HTTP offer `serves` accepts
/// (a stream to another gets `host-unknown`).
fn policy_where(
    c2s: &C2sContext,
    settings: &HttpSettings,
    serves: impl Fn(&HostWeb) -> bool,
) -> xmppd_stream::C2sPolicy {
    let mut policy = xmppd_stream::C2sPolicy::clone(&c2s.settings().policy);
    policy.hosts = Arc::new(
        policy
            .hosts
            .iter()
            .filter(|h| serves(&settings.host(h)))
            .cloned()
            .collect(),
    );
    policy
}

/// What a request knows of the connection it came on.
#[derive(Debug)]
pub struct ConnInfo {
    /// The TCP peer (a proxy, or the client itself).
    pub peer: SocketAddr,
    /// Whether the connection is HTTPS.
    pub tls: bool,
    /// The TLS connection's channel-binding data (none for plain HTTP).
    pub channel_binding: ChannelBindingData,
    /// How fast a WebSocket upgraded on it is read (the listener's, XEP-0205 §4.8; `None`:
    /// as fast as it comes).
    pub read_rate: Option<ReadRate>,
    /// The connection's places in the listener's and its address's budgets, held by whatever
    /// outlives the HTTP connection (an upgraded WebSocket) as long as it runs.
    _slots: (OwnedSemaphorePermit, Option<ConnectionGuard>),
}

/// Accepts connections until `shutdown` is cancelled. A WebSocket on one of them is read at
/// most at `read_rate` (XEP-0205 §4.8), as a TCP client connection is.
pub async fn serve(
    listener: TcpListener,
    kind: HttpKind,
    read_rate: Option<ReadRate>,
    ctx: Arc<HttpContext>,
) {
    let permits = Arc::new(Semaphore::new(ctx.settings.max_connections));
    let router = routes::router(ctx.clone());
    while let Some((permit, socket, peer)) =
        accept_permitted(&listener, &permits, &ctx.shutdown).await
    {
        // A proxy's connections carry many clients; theirs are counted per request.
        let guard = if ctx.settings.trusted_proxies.trusts(peer.ip()) {
            None
        } else {
            match ctx.per_ip.connect(peer.ip()) {
                Some(guard) => Some(guard),
                None => {
                    debug!(%peer, "too many connections from this address");
                    continue;
                }
            }
        };
        let _ = socket.set_nodelay(true);
        let n = ctx.served.fetch_add(1, Ordering::Relaxed);
        let span = info_span!("http", conn = n, %peer);
        let ctx2 = ctx.clone();
        let router = router.clone();
        let slots = (permit, guard);
        let listener = Listener { kind, read_rate };
        ctx.tracker
            .spawn(connection(socket, peer, listener, slots, ctx2, router).instrument(span));
    }
}

/// What a connection takes from the listener that accepted it.
#[derive(Clone, Copy)]
struct Listener {
    kind: HttpKind,
    read_rate: Option<ReadRate>,
}

/// Serves one connection: the TLS handshake (within the header timeout) and then HTTP/1.1
/// until the client is done, the connection upgrades, or the server shuts down.
async fn connection(
    socket: TcpStream,
    peer: SocketAddr,
    listener: Listener,
    slots: (OwnedSemaphorePermit, Option<ConnectionGuard>),
    ctx: Arc<HttpContext>,
    router: axum::Router,
) {
    let limit = ctx.settings.header_timeout;
    let read_rate = listener.read_rate;
    match listener.kind {
        HttpKind::Plain => {
            let info = ConnInfo {
                peer,
                tls: false,
                channel_binding: ChannelBindingData::none(),
                read_rate,
                _slots: slots,
            };
            serve_http(TokioIo::new(socket), info, &ctx, router).await;
        }
        HttpKind::Tls => {
            let mut tls = match tokio::time::timeout(limit, ctx.tls().accept(socket)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return debug!(error = %e, "TLS handshake failed"),
                Err(_) => return debug!("TLS handshake timed out"),
            };
            let channel_binding = ctx.tls().channel_binding(&mut tls);
            let info = ConnInfo {
                peer,
                tls: true,
                channel_binding,
                read_rate,
                _slots: slots,
            };
            serve_http(TokioIo::new(tls), info, &ctx, router).await;
        }
    }
}

async fn serve_http<I>(io: TokioIo<I>, info: ConnInfo, ctx: &HttpContext, router: axum::Router)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let info = Arc::new(info);
    let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
        req.extensions_mut().insert(info.clone());
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        hyper::service::Service::call(&service, req)
    });
    let settings = &ctx.settings;
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_timeout)
        .max_buf_size(settings.max_header_bytes.max(8192))
        .max_headers(settings.max_headers);
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                debug!(error = %e, "HTTP connection ended with an error");
            }
        }
        _ = ctx.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
        }
    }
}
