//! XEP-0114 external components: the listener gateways (IRC, Matrix, …) connect to.
//!
//! Each configured component has a domain and a shared secret; several components may share
//! one listener (the stream header's `to` says which one is connecting). A component's stream
//! is plain TCP, as the protocol has no TLS: listen on loopback (the default) or on a private
//! network only.
//!
//! Once the handshake succeeds, the component is registered with the router: stanzas to any
//! JID at its domain are queued to it (bounded), and its stanzas are routed like anyone's,
//! after [`xmppd_stream::component`] checked their `from`.
//!
//! Before the handshake a connection may send only [`ComponentLimits::handshake_bytes`] in
//! all (a header and a handshake fit in a few hundred), and answers to handshakes from an
//! address that failed recently wait, as failed client authentications do (the router's
//! [`xmppd_core::per_address::AuthThrottle`], shared with them): a weak secret cannot be
//! guessed online at the speed of the network.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, debug, info, info_span};
use xmppd_core::listener::accept_next;
use xmppd_core::metrics::Peer;
use xmppd_core::per_address::{ConnectionLimiter, ConnectionLimits};
use xmppd_core::{Outbound, Router, SessionControl};
use xmppd_proto::{
    Rejected, Stanza, StanzaParseError, StreamError, StreamErrorCondition as Cond, bounce_unparsed,
    ns,
};
use xmppd_stream::component::{ComponentOutput, ComponentResponder};
use xmppd_xml::{Limits, Reader};

/// What the component listener enforces.
#[derive(Clone, Copy, Debug)]
pub struct ComponentLimits {
    /// Largest stanza (components relay whole channels: this is the s2s-sized limit).
    pub max_stanza_bytes: usize,
    /// Bytes a connection may send before its handshake succeeds.
    pub handshake_bytes: usize,
    /// Time allowed for the header and handshake.
    pub auth_timeout: Duration,
    /// Stanzas queued to a component before it counts as stalled.
    pub queue: usize,
    /// Time allowed to write one batch.
    pub write_timeout: Duration,
    /// Connections and connection attempts per address (XEP-0205 §4.1, §4.2).
    pub per_address: ConnectionLimits,
}

impl Default for ComponentLimits {
    fn default() -> Self {
        ComponentLimits {
            max_stanza_bytes: 512 * 1024,
            handshake_bytes: 16 * 1024,
            auth_timeout: Duration::from_secs(30),
            queue: 4096,
            write_timeout: Duration::from_secs(60),
            per_address: ConnectionLimits::default(),
        }
    }
}

/// Shared state of one component listener.
#[derive(Debug)]
pub struct ComponentContext {
    router: Arc<Router>,
    secrets: Arc<HashMap<String, String>>,
    limits: ComponentLimits,
    connections: Arc<ConnectionLimiter>,
    next_id: AtomicU64,
}

impl ComponentContext {
    /// A listener context for these components (domain → secret).
    pub fn new(
        router: Arc<Router>,
        secrets: HashMap<String, String>,
        limits: ComponentLimits,
    ) -> Self {
        ComponentContext {
            router,
            secrets: Arc::new(secrets),
            connections: ConnectionLimiter::new(limits.per_address, "component"),
            limits,
            next_id: AtomicU64::new(1),
        }
    }
}

/// Accepts component connections until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<ComponentContext>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let Some((socket, peer)) = accept_next(&listener, &shutdown).await else {
            return;
        };
        // Refused at once, without a word (XEP-0205 §4.1, §4.2; the refusal is logged).
        let Ok(address_permit) = ctx.connections.admit(peer.ip()) else {
            continue;
        };
        let _ = socket.set_nodelay(true);
        let conn_id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
        let span = info_span!("component", conn = conn_id, %peer, domain = tracing::field::Empty);
        let ctx = ctx.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(
            async move {
                run(socket, ctx, conn_id, shutdown).await;
                drop(address_permit);
            }
            .instrument(span),
        );
    }
}

enum Input {
    Read(std::io::Result<usize>),
    Outbound(Option<Outbound>),
    Kicked,
    Shutdown,
    Deadline,
}

struct Conn {
    ctx: Arc<ComponentContext>,
    conn_id: u64,
    responder: ComponentResponder,
    reader: Reader,
    /// Set once authenticated and registered.
    link: Option<(String, mpsc::Receiver<Outbound>, Arc<SessionControl>)>,
    /// The component's address, whose failed handshakes slow its answers.
    peer: Option<IpAddr>,
    /// Bytes received while no handshake succeeded.
    read_before_handshake: usize,
}

async fn run(
    mut socket: TcpStream,
    ctx: Arc<ComponentContext>,
    conn_id: u64,
    shutdown: CancellationToken,
) {
    let _connection = ctx
        .router
        .metrics()
        .connection(xmppd_core::metrics::ConnectionKind::Component);
    let before_handshake = Limits {
        max_stanza_bytes: ctx.limits.handshake_bytes,
        ..Limits::default()
    };
    let mut conn = Conn {
        responder: ComponentResponder::new(ctx.secrets.clone()),
        reader: Reader::new(before_handshake),
        ctx,
        conn_id,
        link: None,
        peer: socket.peer_addr().ok().map(|a| a.ip()),
        read_before_handshake: 0,
    };
    let deadline = Instant::now() + conn.ctx.limits.auth_timeout;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let control = conn.link.as_ref().map(|(_, _, c)| c.clone());
        let authenticated = conn.link.is_some();
        let input = tokio::select! {
            biased;
            _ = shutdown.cancelled() => Input::Shutdown,
            _ = async { match control { Some(c) => c.kicked().await, None => std::future::pending().await } } => Input::Kicked,
            _ = async { if authenticated { std::future::pending().await } else { tokio::time::sleep_until(deadline).await } } => Input::Deadline,
            out = async { match conn.link.as_mut() { Some((_, rx, _)) => rx.recv().await, None => std::future::pending().await } } => Input::Outbound(out),
            read = socket.read(&mut buf) => Input::Read(read),
        };
        let done = match input {
            Input::Shutdown => {
                conn.close(
                    &mut socket,
                    StreamError::with_text(Cond::SystemShutdown, "the server is shutting down"),
                )
                .await
            }
            Input::Kicked => {
                let reason = conn.link.as_ref().map(|(_, _, c)| c.reason());
                conn.close(
                    &mut socket,
                    reason.unwrap_or_else(|| StreamError::new(Cond::UndefinedCondition)),
                )
                .await
            }
            Input::Deadline => {
                conn.close(
                    &mut socket,
                    StreamError::with_text(Cond::ConnectionTimeout, "no handshake in time"),
                )
                .await
            }
            Input::Outbound(None) => true,
            Input::Outbound(Some(first)) => !conn.write_queue(&mut socket, first).await,
            Input::Read(Ok(0)) | Input::Read(Err(_)) => true,
            Input::Read(Ok(n)) if conn.over_handshake_budget(n) => {
                let e = StreamError::with_text(
                    Cond::PolicyViolation,
                    "too much data before the handshake",
                );
                conn.close(&mut socket, e).await
            }
            Input::Read(Ok(n)) => {
                conn.reader.feed(&buf[..n]);
                conn.process(&mut socket).await
            }
        };
        if done {
            break;
        }
    }
    conn.end().await;
}

impl Conn {
    /// Counts `n` bytes read; whether they take an unauthenticated connection over its budget.
    fn over_handshake_budget(&mut self, n: usize) -> bool {
        if self.link.is_some() {
            return false;
        }
        self.read_before_handshake = self.read_before_handshake.saturating_add(n);
        self.read_before_handshake > self.ctx.limits.handshake_bytes
    }

    async fn write(&self, socket: &mut TcpStream, bytes: &[u8]) -> bool {
        let write = async {
            socket.write_all(bytes).await?;
            socket.flush().await
        };
        matches!(
            tokio::time::timeout(self.ctx.limits.write_timeout, write).await,
            Ok(Ok(()))
        )
    }

    async fn close(&mut self, socket: &mut TcpStream, error: StreamError) -> bool {
        info!(
            condition = error.condition.as_str(),
            "closing component stream"
        );
        let bytes = self.responder.error_bytes(&error);
        self.write(socket, &bytes).await;
        true
    }

    /// Writes a queued stanza and what else is queued; on failure, the unwritten ones go back
    /// to the router (which bounces them: the component is gone).
    async fn write_queue(&mut self, socket: &mut TcpStream, first: Outbound) -> bool {
        let mut bytes = first.bytes.to_vec();
        let mut batch = vec![first.reroute];
        if let Some((_, rx, _)) = self.link.as_mut() {
            while batch.len() < 64 {
                match rx.try_recv() {
                    Ok(more) => {
                        bytes.extend_from_slice(&more.bytes);
                        batch.push(more.reroute);
                    }
                    Err(_) => break,
                }
            }
        }
        if self.write(socket, &bytes).await {
            return true;
        }
        self.unregister();
        for stanza in batch.into_iter().flatten() {
            self.ctx.router.route(Arc::unwrap_or_clone(stanza)).await;
        }
        false
    }

    /// Returns whether the connection is over.
    async fn process(&mut self, socket: &mut TcpStream) -> bool {
        loop {
            let event = match self.reader.next_event() {
                Ok(Some(e)) => e,
                Ok(None) => return false,
                Err(e) => return self.close(socket, StreamError::from(&e)).await,
            };
            let mut outputs = Vec::new();
            self.responder.handle(event, &mut outputs);
            for output in outputs {
                match output {
                    ComponentOutput::Send(bytes) => {
                        if !self.write(socket, &bytes).await {
                            return true;
                        }
                    }
                    ComponentOutput::HandshakeAnswer { success } => {
                        if let Some(ip) = self.peer {
                            self.ctx.router.auth_throttle().answer(ip, success).await;
                        }
                    }
                    ComponentOutput::Authenticated(domain) => {
                        let (tx, rx) = mpsc::channel(self.ctx.limits.queue);
                        let control = Arc::new(SessionControl::default());
                        let components = self.ctx.router.components();
                        if components
                            .connect(&domain, self.conn_id, tx, control.clone())
                            .is_err()
                        {
                            let text = format!("{domain} is already connected");
                            return self
                                .close(socket, StreamError::with_text(Cond::Conflict, text))
                                .await;
                        }
                        tracing::Span::current().record("domain", domain.as_str());
                        info!("component connected");
                        self.reader.set_limits(Limits {
                            max_stanza_bytes: self.ctx.limits.max_stanza_bytes,
                            ..Limits::default()
                        });
                        self.link = Some((domain, rx, control));
                        let ok = self.responder.handshake_ok();
                        if !self.write(socket, &ok).await {
                            return true;
                        }
                    }
                    ComponentOutput::Stanza(el) => {
                        match Stanza::parse_keeping(el, ns::COMPONENT_ACCEPT)
                            .map_err(Rejected::into_parts)
                        {
                            Ok(mut stanza) => {
                                let metrics = self.ctx.router.metrics();
                                metrics.received(Peer::Component, stanza.kind());
                                // Its own domain's delays are the component's to give.
                                let own = self.link.as_ref().map(|(d, _, _)| d.as_str());
                                let router = &self.ctx.router;
                                stanza.remove_claimed_delays(|from| {
                                    Some(from.domain().as_str()) != own
                                        && router.is_server_owned(from)
                                });
                                router.route(stanza).await;
                            }
                            Err((StanzaParseError::NotAStanza(name), _)) => {
                                let text = format!("<{name}/> is not a stanza");
                                return self
                                    .close(
                                        socket,
                                        StreamError::with_text(Cond::UnsupportedStanzaType, text),
                                    )
                                    .await;
                            }
                            Err((StanzaParseError::Invalid(error), el)) => {
                                debug!(%error, "invalid stanza from the component");
                                if let Some(mut reply) = bounce_unparsed(&el, &error) {
                                    reply.rename_ns(ns::CLIENT, ns::COMPONENT_ACCEPT);
                                    let mut bytes = Vec::new();
                                    reply.write_to(&mut bytes, ns::COMPONENT_ACCEPT);
                                    if !self.write(socket, &bytes).await {
                                        return true;
                                    }
                                }
                            }
                        }
                    }
                    ComponentOutput::Close(e) => return self.close(socket, e).await,
                    ComponentOutput::PeerClosed => {
                        self.write(socket, b"</stream:stream>").await;
                        return true;
                    }
                }
            }
        }
    }

    fn unregister(&mut self) {
        if let Some((domain, _, _)) = &self.link {
            self.ctx
                .router
                .components()
                .disconnect(domain, self.conn_id);
        }
    }

    /// Unregisters, then hands every stanza still queued back to the router, which now bounces
    /// it (`service-unavailable`): nothing addressed to a dead component is dropped silently.
    async fn end(&mut self) {
        self.unregister();
        if let Some((domain, mut rx, _)) = self.link.take() {
            info!(%domain, "component disconnected");
            rx.close();
            while let Ok(outbound) = rx.try_recv() {
                if let Some(stanza) = outbound.reroute {
                    self.ctx.router.route(Arc::unwrap_or_clone(stanza)).await;
                }
            }
        }
    }
}
