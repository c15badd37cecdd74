//! Inbound federation: other servers connect to us (5269 with STARTTLS, or direct TLS).
//!
//! Each connection is negotiated by an [`S2sResponder`]. Dialback requests are verified
//! concurrently with the stream (through the outbound link to the claimed domain, see
//! [`S2sPool::verify`]), so a peer can keep sending — including `<db:verify/>` requests we
//! must answer for it to authenticate its own links — while we wait. Stanzas from authorised
//! domain pairs are routed like anyone's; their envelopes were checked by the responder.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use tokio::io::AsyncReadExt as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, debug, info, info_span};
use xmppd_core::Router;
use xmppd_core::listener::accept_next;
use xmppd_core::metrics::{ConnectionKind, Peer};
use xmppd_core::per_address::{ConnectionLimiter, Refusal};
use xmppd_core::read_shaper::ReadShaper;
use xmppd_proto::{
    Rejected, Stanza, StanzaParseError, StreamError, StreamErrorCondition as Cond, bounce_unparsed,
    ns,
};
use xmppd_stream::dialback::Verdict;
use xmppd_stream::s2s::{CertificateCheck, InboundOutput, S2sPolicy, S2sResponder};
use xmppd_xml::{Limits, Reader};

use crate::io::Io;
use crate::outbound::S2sPool;
use crate::tls::{PeerCertificate, S2sTls};
use crate::{S2sSettings, S2sTerms};

/// How TLS starts on a federation listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum S2sListenerKind {
    /// Plain TCP, then STARTTLS (port 5269).
    StartTls,
    /// TLS from the first byte (XEP-0368, `_xmpps-server`).
    DirectTls,
}

/// Shared state of the federation listeners.
pub struct InboundContext {
    router: Arc<Router>,
    pool: Arc<S2sPool>,
    tls: Arc<S2sTls>,
    terms: xmppd_core::Live<S2sTerms>,
    /// The connections of every peer address, shared by the federation listeners.
    connections: Arc<ConnectionLimiter>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for InboundContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundContext")
            .field("terms", &self.terms)
            .finish_non_exhaustive()
    }
}

impl InboundContext {
    /// The context of the listeners.
    pub fn new(
        router: Arc<Router>,
        pool: Arc<S2sPool>,
        tls: Arc<S2sTls>,
        policy: S2sPolicy,
        settings: S2sSettings,
    ) -> Self {
        InboundContext {
            router,
            pool,
            tls,
            connections: ConnectionLimiter::new(settings.per_address, "server"),
            terms: xmppd_core::Live::new(S2sTerms { settings, policy }),
            next_id: AtomicU64::new(1),
        }
    }

    /// Applies `terms` to the connections accepted from now on (a reload); open ones keep
    /// theirs. The number of connections per listener is fixed when the listener starts.
    pub fn update_terms(&self, terms: S2sTerms) {
        self.connections.set_limits(terms.settings.per_address);
        self.terms.set(terms);
    }
}

/// Accepts server connections until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    kind: S2sListenerKind,
    ctx: Arc<InboundContext>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(
        ctx.terms.get().settings.max_connections.max(1),
    ));
    loop {
        let Some((socket, peer)) = accept_next(&listener, &shutdown).await else {
            return;
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            debug!(%peer, "too many server connections; refusing");
            continue;
        };
        let address_permit = match ctx.connections.admit(peer.ip()) {
            Ok(permit) => permit,
            Err(refusal) => {
                refuse(&socket, kind, refusal, &ctx);
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let conn_id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
        let span = info_span!("s2s_in", conn = conn_id, %peer, from = tracing::field::Empty);
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(
            async move {
                run(socket, kind, ctx, shutdown).await;
                drop(address_permit);
                drop(permit);
            }
            .instrument(span),
        );
    }
}

/// Closes a connection its address may not open (XEP-0205 §4.1, §4.2), as the client
/// listeners do: on a STARTTLS listener after a `policy-violation` stream error saying why
/// (written without waiting: a new socket's send buffer takes it whole), on a direct-TLS
/// listener without a word.
fn refuse(socket: &TcpStream, kind: S2sListenerKind, refusal: Refusal, ctx: &InboundContext) {
    if kind == S2sListenerKind::StartTls {
        let mut responder = S2sResponder::new(ctx.terms.get().policy.clone(), false, None);
        let error = StreamError::with_text(Cond::PolicyViolation, refusal.to_string());
        let _ = socket.try_write(&responder.error_bytes(&error));
    }
}

type Verification = Pin<Box<dyn Future<Output = (String, String, Verdict)> + Send>>;

/// What a pass over the input decided.
enum Flow {
    Continue,
    StartTls,
    Closed,
}

struct Conn {
    ctx: Arc<InboundContext>,
    /// The settings and policy in force when the connection was accepted.
    terms: Arc<S2sTerms>,
    responder: S2sResponder,
    reader: Reader,
    verifications: FuturesUnordered<Verification>,
}

fn peer_certificate(ctx: &InboundContext, io: &Io) -> Option<Arc<dyn CertificateCheck>> {
    let chain = io.peer_chain();
    if chain.is_empty() {
        return None;
    }
    Some(Arc::new(PeerCertificate::new(chain, ctx.tls.clone())))
}

async fn accept_tls(ctx: &InboundContext, tcp: TcpStream, deadline: Instant) -> Option<Io> {
    match tokio::time::timeout_at(deadline, ctx.tls.acceptor().accept(tcp)).await {
        Ok(Ok(tls)) => Some(Io::Tls(Box::new(tokio_rustls::TlsStream::Server(tls)))),
        Ok(Err(e)) => {
            debug!(error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            debug!("TLS handshake timed out");
            None
        }
    }
}

async fn run(
    socket: TcpStream,
    kind: S2sListenerKind,
    ctx: Arc<InboundContext>,
    shutdown: CancellationToken,
) {
    let terms = ctx.terms.get();
    let deadline = Instant::now() + terms.settings.negotiation_timeout;
    let _connection = ctx.router.metrics().connection(ConnectionKind::S2sIn);
    let mut link = ctx.router.metrics().s2s_link(false);
    let unauthenticated = Limits {
        max_stanza_bytes: terms.settings.max_stanza_bytes_unauthenticated,
        ..Limits::default()
    };
    let (mut io, responder) = match kind {
        S2sListenerKind::StartTls => (
            Io::Plain(socket),
            S2sResponder::new(terms.policy.clone(), false, None),
        ),
        S2sListenerKind::DirectTls => {
            let Some(io) = accept_tls(&ctx, socket, deadline).await else {
                return;
            };
            let cert = peer_certificate(&ctx, &io);
            (io, S2sResponder::new(terms.policy.clone(), true, cert))
        }
    };
    let mut conn = Conn {
        responder,
        reader: Reader::new(unauthenticated),
        ctx,
        terms,
        verifications: FuturesUnordered::new(),
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut idle = Instant::now() + conn.terms.settings.idle_timeout;
    let mut shaper = conn.terms.settings.read_rate.map(ReadShaper::new);
    // While set, the peer is over its read rate and is not read until then.
    let mut paused_until: Option<Instant> = None;
    loop {
        let authorized = conn.responder.is_authorized();
        if authorized {
            link.established();
        }
        let flow = tokio::select! {
            _ = shutdown.cancelled() => {
                let e = StreamError::with_text(Cond::SystemShutdown, "the server is shutting down");
                conn.close(&mut io, e).await
            }
            _ = tokio::time::sleep_until(deadline), if !authorized => {
                let e = StreamError::with_text(Cond::ConnectionTimeout, "no domain was authenticated in time");
                conn.close(&mut io, e).await
            }
            _ = tokio::time::sleep_until(idle), if authorized => {
                debug!("idle; closing");
                io.write_all_within(b"</stream:stream>", conn.terms.settings.write_timeout).await;
                Flow::Closed
            }
            Some((originating, receiving, verdict)) = conn.verifications.next(), if !conn.verifications.is_empty() => {
                info!(%originating, %receiving, ?verdict, "dialback verified");
                let mut out = Vec::new();
                conn.responder.dialback_verified(&originating, &receiving, verdict, &mut out);
                conn.execute(&mut io, out).await
            }
            _ = tokio::time::sleep_until(paused_until.unwrap_or(deadline)), if paused_until.is_some() => {
                paused_until = None;
                Flow::Continue
            }
            read = io.read(&mut buf), if paused_until.is_none() => match read {
                Ok(0) | Err(_) => Flow::Closed,
                Ok(n) => {
                    let now = Instant::now();
                    idle = now + conn.terms.settings.idle_timeout;
                    paused_until = shaper.as_mut().and_then(|s| s.consumed(n, now));
                    conn.reader.feed(&buf[..n]);
                    conn.process(&mut io).await
                }
            },
        };
        match flow {
            Flow::Continue => {}
            Flow::Closed => break,
            Flow::StartTls => {
                let Io::Plain(tcp) = io else { break };
                let Some(tls) = accept_tls(&conn.ctx, tcp, deadline).await else {
                    break;
                };
                io = tls;
                let cert = peer_certificate(&conn.ctx, &io);
                conn.responder.tls_established(cert);
                // Bytes pipelined behind <starttls/> are never read as if encrypted.
                conn.reader = Reader::new(unauthenticated);
            }
        }
    }
    debug!("server connection ended");
}

impl Conn {
    async fn close(&mut self, io: &mut Io, error: StreamError) -> Flow {
        info!(condition = error.condition.as_str(), text = ?error.text, "closing server stream with an error");
        let bytes = self.responder.error_bytes(&error);
        io.write_all_within(&bytes, self.terms.settings.write_timeout)
            .await;
        Flow::Closed
    }

    async fn process(&mut self, io: &mut Io) -> Flow {
        loop {
            let event = match self.reader.next_event() {
                Ok(Some(event)) => event,
                Ok(None) => return Flow::Continue,
                Err(e) => return self.close(io, StreamError::from(&e)).await,
            };
            let mut out = Vec::new();
            self.responder.handle(event, &mut out);
            match self.execute(io, out).await {
                Flow::Continue => {}
                other => return other,
            }
        }
    }

    async fn execute(&mut self, io: &mut Io, outputs: Vec<InboundOutput>) -> Flow {
        let timeout = self.terms.settings.write_timeout;
        for output in outputs {
            match output {
                InboundOutput::Send(bytes) => {
                    if !io.write_all_within(&bytes, timeout).await {
                        return Flow::Closed;
                    }
                }
                InboundOutput::StartTls => return Flow::StartTls,
                InboundOutput::ResetStream => self.reader.reset(),
                InboundOutput::Authorized { from, to, method } => {
                    tracing::Span::current().record("from", from.as_str());
                    info!(%from, %to, ?method, "remote domain authenticated");
                    self.reader.set_limits(Limits {
                        max_stanza_bytes: self.terms.settings.max_stanza_bytes,
                        ..Limits::default()
                    });
                }
                InboundOutput::VerifyDialback {
                    originating,
                    receiving,
                    stream_id,
                    key,
                } => {
                    let pool = self.ctx.pool.clone();
                    self.verifications.push(Box::pin(async move {
                        let verdict = pool
                            .verify(&receiving, &originating, &stream_id, &key)
                            .await;
                        (originating, receiving, verdict)
                    }));
                }
                InboundOutput::Stanza(el) => route(&self.ctx, el).await,
                InboundOutput::Close(e) => return self.close(io, e).await,
                InboundOutput::PeerClosed => {
                    io.write_all_within(b"</stream:stream>", timeout).await;
                    return Flow::Closed;
                }
            }
        }
        Flow::Continue
    }
}

/// Routes a stanza from an authorised pair; a malformed one is answered through the
/// router (an inbound stream carries nothing back to the peer).
async fn route(ctx: &InboundContext, el: xmppd_xml::Element) {
    let router = &ctx.router;
    match Stanza::parse_keeping(el, ns::SERVER).map_err(Rejected::into_parts) {
        Ok(mut stanza) => {
            router.metrics().received(Peer::Server, stanza.kind());
            stanza.remove_claimed_delays(|from| router.is_server_owned(from));
            router.route(stanza).await;
        }
        Err((StanzaParseError::Invalid(error), el)) => {
            debug!(%error, "invalid stanza from a remote server");
            let reply = bounce_unparsed(&el, &error).map(|r| Stanza::parse(r, ns::CLIENT));
            if let Some(Ok(reply)) = reply {
                router.route(reply).await;
            }
        }
        // The responder lets only message, presence and iq through.
        Err((StanzaParseError::NotAStanza(name), _)) => {
            debug!(%name, "not a stanza");
        }
    }
}
