//! Outbound federation: one connection per (local domain, remote domain) pair, reused.
//!
//! The first stanza for a pair starts a link task; stanzas wait in the link's bounded queue
//! while it resolves, connects, starts TLS and authenticates, and are written as soon as the
//! stream is ready. If the link fails, every queued stanza is bounced to its sender
//! (`remote-server-not-found`, or `remote-server-timeout` when time ran out), so nothing is
//! dropped silently. A link with nothing to send for the idle timeout closes its stream;
//! stanzas that raced with the close are routed again, which opens a new link.
//!
//! The same link carries `<db:verify/>` requests (XEP-0220 §2.3) when the remote domain
//! claimed, on an inbound stream, to be the sender: they go out as soon as the stream is
//! open, before it is authenticated, because the peer may itself be waiting for our answer to
//! authenticate this very stream.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use dashmap::DashMap;
use rustls::pki_types::ServerName;
use tokio::io::AsyncReadExt as _;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, debug, info, info_span, warn};
use xmppd_core::router::client_bytes;
use xmppd_core::{RemoteRoute, Router};
use xmppd_proto::{DefinedCondition, Stanza, StanzaError};
use xmppd_stream::dialback::Verdict;
use xmppd_stream::s2s::{OutboundFailure, OutboundOutput, S2sInitiator, S2sPolicy};
use xmppd_xml::{Limits, Reader};

use crate::io::Io;
use crate::resolve::{S2sResolver, Transport};
use crate::tls::S2sTls;
use crate::{S2sSettings, StaticRoute};

/// Stanzas written in one batch.
const WRITE_BATCH: usize = 64;
/// Dialback verifications waiting per link.
const VERIFY_QUEUE: usize = 64;
/// Idle time after which a link that never carried a stanza (only dialback verifications)
/// closes.
const VERIFY_ONLY_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

struct VerifyRequest {
    receiving: String,
    stream_id: String,
    key: String,
    reply: oneshot::Sender<Verdict>,
}

#[derive(Clone)]
struct LinkHandle {
    id: u64,
    stanzas: mpsc::Sender<Stanza>,
    verifies: mpsc::Sender<VerifyRequest>,
}

/// The outbound links of this server.
pub struct S2sPool {
    /// The pool itself, for the link tasks it spawns.
    me: Weak<S2sPool>,
    router: OnceLock<Weak<Router>>,
    links: DashMap<(String, String), LinkHandle>,
    settings: S2sSettings,
    policy: S2sPolicy,
    tls: Arc<S2sTls>,
    resolver: Option<S2sResolver>,
    next_id: AtomicU64,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl std::fmt::Debug for S2sPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S2sPool")
            .field("links", &self.links.len())
            .finish_non_exhaustive()
    }
}

/// Why a link ended.
#[derive(Debug)]
enum LinkEnd {
    /// Closed on purpose (idle, shutdown): queued stanzas are routed again.
    Closed,
    /// Failed: queued stanzas are bounced with this condition.
    Failed(DefinedCondition, String),
}

fn not_found(text: impl Into<String>) -> LinkEnd {
    LinkEnd::Failed(DefinedCondition::RemoteServerNotFound, text.into())
}

fn timed_out(text: impl Into<String>) -> LinkEnd {
    LinkEnd::Failed(DefinedCondition::RemoteServerTimeout, text.into())
}

impl S2sPool {
    /// A pool; `resolver` is `None` when the system has no DNS configuration (then only
    /// static routes work).
    pub fn new(
        settings: S2sSettings,
        policy: S2sPolicy,
        tls: Arc<S2sTls>,
        resolver: Option<S2sResolver>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| S2sPool {
            me: me.clone(),
            router: OnceLock::new(),
            links: DashMap::new(),
            settings,
            policy,
            tls,
            resolver,
            next_id: AtomicU64::new(1),
            shutdown,
            tracker,
        })
    }

    /// Connects the pool and the router both ways: remote stanzas come here, and bounces
    /// and re-routed stanzas go back through the router.
    pub fn attach(self: &Arc<Self>, router: &Arc<Router>) {
        let _ = self.router.set(Arc::downgrade(router));
        router.set_remote(self.clone());
    }

    /// The number of open or opening links.
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    fn router(&self) -> Option<Arc<Router>> {
        self.router.get().and_then(Weak::upgrade)
    }

    /// The link for a pair, started if there is none; `None` once the pool is shutting down
    /// or holds as many links as it may.
    fn link(&self, local: &str, remote: &str) -> Option<LinkHandle> {
        if self.shutdown.is_cancelled() {
            return None;
        }
        let pool = self.me.upgrade()?;
        let key = (local.to_owned(), remote.to_owned());
        if self.links.len() >= self.settings.max_outbound_links && !self.links.contains_key(&key) {
            warn!(remote, "too many outbound streams; refusing a new one");
            return None;
        }
        let handle = self
            .links
            .entry(key.clone())
            .or_insert_with(|| {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let (stanzas, stanzas_rx) = mpsc::channel(self.settings.queue.max(1));
                let (verifies, verifies_rx) = mpsc::channel(VERIFY_QUEUE);
                let link = Link {
                    pool,
                    local: key.0.clone(),
                    remote: key.1.clone(),
                    id,
                    stanzas: stanzas_rx,
                    verifies: verifies_rx,
                    waiting: Vec::new(),
                    sent: HashMap::new(),
                    written: 0,
                    deliberate: false,
                };
                let span =
                    info_span!(parent: None, "s2s_out", link = id, local = %key.0, remote = %key.1);
                self.tracker.spawn(link.run().instrument(span));
                LinkHandle {
                    id,
                    stanzas,
                    verifies,
                }
            })
            .clone();
        Some(handle)
    }

    fn forget(&self, local: &str, remote: &str, id: u64) {
        self.links
            .remove_if(&(local.to_owned(), remote.to_owned()), |_, h| h.id == id);
    }

    /// Asks `remote`'s authoritative server whether `key` is the dialback key it gave for our
    /// domain `receiving` on the stream `stream_id` (XEP-0220 §2.3). Any failure to ask is an
    /// error verdict.
    pub async fn verify(
        &self,
        receiving: &str,
        remote: &str,
        stream_id: &str,
        key: &str,
    ) -> Verdict {
        let (reply, answer) = oneshot::channel();
        let mut request = VerifyRequest {
            receiving: receiving.to_owned(),
            stream_id: stream_id.to_owned(),
            key: key.to_owned(),
            reply,
        };
        // Once more with a new link if the one found was just ending.
        for attempt in 0..2 {
            let Some(link) = self.link(receiving, remote) else {
                return Verdict::Error(DefinedCondition::RemoteServerNotFound);
            };
            match link.verifies.try_send(request) {
                Ok(()) => break,
                Err(mpsc::error::TrySendError::Closed(r)) if attempt == 0 => {
                    self.forget(receiving, remote, link.id);
                    request = r;
                }
                Err(_) => return Verdict::Error(DefinedCondition::RemoteServerNotFound),
            }
        }
        match tokio::time::timeout(self.settings.negotiation_timeout, answer).await {
            Ok(Ok(verdict)) => verdict,
            _ => Verdict::Error(DefinedCondition::RemoteServerNotFound),
        }
    }
}

impl RemoteRoute for S2sPool {
    fn send_remote(&self, stanza: Stanza, from_domain: &str, to_domain: &str) -> Option<Stanza> {
        let mut stanza = stanza;
        for _ in 0..2 {
            let Some(link) = self.link(from_domain, to_domain) else {
                let err = StanzaError::new(DefinedCondition::RemoteServerNotFound)
                    .with_text("no new server-to-server stream can be opened now");
                return stanza.error_reply(&err);
            };
            match link.stanzas.try_send(stanza) {
                Ok(()) => return None,
                Err(mpsc::error::TrySendError::Full(s)) => {
                    let err = StanzaError::new(DefinedCondition::RemoteServerTimeout)
                        .with_text(format!("too many stanzas are waiting for {to_domain}"));
                    return s.error_reply(&err);
                }
                // The link just ended: forget it and open a new one.
                Err(mpsc::error::TrySendError::Closed(s)) => {
                    self.forget(from_domain, to_domain, link.id);
                    stanza = s;
                }
            }
        }
        let err = StanzaError::new(DefinedCondition::RemoteServerNotFound)
            .with_text(format!("{to_domain} cannot be reached"));
        stanza.error_reply(&err)
    }
}

/// One outbound connection's task.
struct Link {
    pool: Arc<S2sPool>,
    local: String,
    remote: String,
    id: u64,
    stanzas: mpsc::Receiver<Stanza>,
    verifies: mpsc::Receiver<VerifyRequest>,
    /// Verifications not yet sendable (the stream is not open yet).
    waiting: Vec<VerifyRequest>,
    /// Verifications sent, by stream id.
    sent: HashMap<String, Vec<oneshot::Sender<Verdict>>>,
    /// Stanzas written so far.
    written: u64,
    /// Whether we closed the stream on purpose (idle, shutdown).
    deliberate: bool,
}

/// What processing the peer's input asks the negotiation to do.
enum Step {
    StartTls,
    Ready,
}

impl Link {
    async fn run(mut self) {
        let end = self.connect_and_serve().await;
        match &end {
            LinkEnd::Closed => debug!("link closed"),
            LinkEnd::Failed(condition, text) => {
                warn!(condition = condition.as_str(), %text, "link failed");
            }
        }
        self.finish(end).await;
    }

    async fn connect_and_serve(&mut self) -> LinkEnd {
        let deadline = Instant::now() + self.pool.settings.negotiation_timeout;
        let shutdown = self.pool.shutdown.clone();
        let connected = tokio::select! {
            _ = shutdown.cancelled() => return LinkEnd::Closed,
            _ = tokio::time::sleep_until(deadline) => {
                return timed_out(format!("no connection to {} in time", self.remote));
            }
            c = self.connect() => c,
        };
        let (mut io, transport) = match connected {
            Ok(c) => c,
            Err(end) => return end,
        };
        let mut initiator = S2sInitiator::new(&self.local, &self.remote, &self.pool.policy);
        let limits = Limits {
            max_stanza_bytes: self.pool.settings.max_stanza_bytes_unauthenticated,
            ..Limits::default()
        };
        let mut reader = Reader::new(limits);
        let header = if transport == Transport::DirectTls {
            let valid = self.cert_valid(&io);
            initiator.tls_established(valid)
        } else {
            initiator.header()
        };
        if !io
            .write_all_within(&header, self.pool.settings.write_timeout)
            .await
        {
            return not_found("the connection broke");
        }
        let mut buf = vec![0u8; 16 * 1024];
        // Negotiation.
        loop {
            let step = tokio::select! {
                _ = shutdown.cancelled() => return LinkEnd::Closed,
                _ = tokio::time::sleep_until(deadline) => {
                    return timed_out(format!("{} did not authenticate in time", self.remote));
                }
                Some(request) = self.verifies.recv(), if self.waiting.len() < VERIFY_QUEUE => {
                    self.waiting.push(request);
                    None
                }
                read = io.read(&mut buf) => match read {
                    Ok(0) | Err(_) => {
                        return not_found(format!("{} closed the connection", self.remote));
                    }
                    Ok(n) => {
                        reader.feed(&buf[..n]);
                        match self.process(&mut initiator, &mut reader, &mut io).await {
                            Ok(step) => step,
                            Err(end) => return end,
                        }
                    }
                },
            };
            match step {
                Some(Step::StartTls) => {
                    io = match self.upgrade(io, deadline).await {
                        Ok(io) => io,
                        Err(end) => return end,
                    };
                    let valid = self.cert_valid(&io);
                    let header = initiator.tls_established(valid);
                    // Nothing read before the handshake counts afterwards.
                    reader = Reader::new(limits);
                    if !io
                        .write_all_within(&header, self.pool.settings.write_timeout)
                        .await
                    {
                        return not_found("the connection broke");
                    }
                }
                Some(Step::Ready) => break,
                None => {}
            }
            if !self.send_waiting_verifies(&initiator, &mut io).await {
                return not_found("the connection broke");
            }
        }
        if !self.send_waiting_verifies(&initiator, &mut io).await {
            return not_found("the connection broke");
        }
        reader.set_limits(Limits {
            max_stanza_bytes: self.pool.settings.max_stanza_bytes,
            ..Limits::default()
        });
        // Authenticated: the rest of what was read is processed, then stanzas flow.
        if let Err(end) = self.process(&mut initiator, &mut reader, &mut io).await {
            return end;
        }
        self.serve(initiator, reader, io, buf).await
    }

    /// Writes stanzas as they come until idle, shutdown or failure.
    async fn serve(
        &mut self,
        mut initiator: S2sInitiator,
        mut reader: Reader,
        mut io: Io,
        mut buf: Vec<u8>,
    ) -> LinkEnd {
        let settings = self.pool.settings.clone();
        let shutdown = self.pool.shutdown.clone();
        let mut last_activity = Instant::now();
        loop {
            // A link that only carried dialback verifications has done its job sooner
            // (XEP-0220 §2.1.2); none closes while a verification awaits its answer.
            let idle_for = if self.written == 0 {
                settings.idle_timeout.min(VERIFY_ONLY_IDLE)
            } else {
                settings.idle_timeout
            };
            let idle = last_activity + idle_for;
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.deliberate = true;
                    io.write_all_within(b"</stream:stream>", settings.write_timeout).await;
                    return LinkEnd::Closed;
                }
                _ = tokio::time::sleep_until(idle), if self.sent.is_empty() => {
                    debug!("idle; closing");
                    self.deliberate = true;
                    io.write_all_within(b"</stream:stream>", settings.write_timeout).await;
                    return LinkEnd::Closed;
                }
                stanza = self.stanzas.recv() => {
                    let Some(first) = stanza else { return LinkEnd::Closed };
                    let mut batch = vec![first];
                    while batch.len() < WRITE_BATCH {
                        match self.stanzas.try_recv() {
                            Ok(more) => batch.push(more),
                            Err(_) => break,
                        }
                    }
                    let mut bytes = Vec::with_capacity(512 * batch.len());
                    for stanza in &batch {
                        // Written with jabber:client as the parent namespace, the elements
                        // inherit the stream's jabber:server, while forwarded jabber:client
                        // payloads keep their own declaration.
                        bytes.extend_from_slice(&client_bytes(stanza));
                    }
                    if !io.write_all_within(&bytes, settings.write_timeout).await {
                        self.bounce(batch, DefinedCondition::RemoteServerTimeout, "the connection broke").await;
                        return timed_out("the connection broke");
                    }
                    self.written += batch.len() as u64;
                    last_activity = Instant::now();
                }
                Some(request) = self.verifies.recv(), if self.waiting.len() < VERIFY_QUEUE => {
                    self.waiting.push(request);
                    if !self.send_waiting_verifies(&initiator, &mut io).await {
                        return not_found("the connection broke");
                    }
                    last_activity = Instant::now();
                }
                read = io.read(&mut buf) => match read {
                    Ok(0) | Err(_) => return LinkEnd::Closed,
                    Ok(n) => {
                        reader.feed(&buf[..n]);
                        if let Err(end) = self.process(&mut initiator, &mut reader, &mut io).await {
                            return end;
                        }
                    }
                },
            }
        }
    }

    /// Handles what the peer sent; returns a negotiation step when one is due.
    async fn process(
        &mut self,
        initiator: &mut S2sInitiator,
        reader: &mut Reader,
        io: &mut Io,
    ) -> Result<Option<Step>, LinkEnd> {
        let timeout = self.pool.settings.write_timeout;
        let was_ready = initiator.is_ready();
        loop {
            let event = match reader.next_event() {
                Ok(Some(event)) => event,
                Ok(None) => return Ok(None),
                Err(e) => {
                    let error = xmppd_proto::StreamError::from(&e);
                    io.write_all_within(&error.to_closing_bytes(), timeout)
                        .await;
                    return Err(not_found(format!("{} sent bad XML: {e}", self.remote)));
                }
            };
            let mut out = Vec::new();
            initiator.handle(event, &mut out);
            for output in out {
                match output {
                    OutboundOutput::Send(bytes) => {
                        if !io.write_all_within(&bytes, timeout).await {
                            return Err(not_found("the connection broke"));
                        }
                    }
                    OutboundOutput::StartTls => return Ok(Some(Step::StartTls)),
                    OutboundOutput::ResetStream => reader.reset(),
                    OutboundOutput::Authenticated(method) => {
                        info!(?method, "authenticated to the remote server");
                        if !was_ready {
                            return Ok(Some(Step::Ready));
                        }
                    }
                    OutboundOutput::VerifyAnswer { id, verdict } => {
                        for reply in self.sent.remove(&id).unwrap_or_default() {
                            let _ = reply.send(verdict);
                        }
                    }
                    OutboundOutput::Failed(failure) => {
                        io.write_all_within(b"</stream:stream>", timeout).await;
                        // XEP-0220 §2.1.3 and §2.4 say how queued stanzas go back.
                        let condition = match failure {
                            OutboundFailure::KeyInvalid(_) => DefinedCondition::InternalServerError,
                            OutboundFailure::DialbackError(..) => {
                                DefinedCondition::RemoteServerTimeout
                            }
                            _ => DefinedCondition::RemoteServerNotFound,
                        };
                        return Err(LinkEnd::Failed(condition, failure.to_string()));
                    }
                    OutboundOutput::PeerClosed => {
                        io.write_all_within(b"</stream:stream>", timeout).await;
                        return Err(if was_ready {
                            LinkEnd::Closed
                        } else {
                            not_found(format!("{} closed the stream", self.remote))
                        });
                    }
                }
            }
        }
    }

    /// Sends the verifications the stream can carry now; false if writing failed.
    async fn send_waiting_verifies(&mut self, initiator: &S2sInitiator, io: &mut Io) -> bool {
        let mut still_waiting = Vec::new();
        for request in std::mem::take(&mut self.waiting) {
            match initiator.verify_request(&request.receiving, &request.stream_id, &request.key) {
                Some(bytes) => {
                    if !io
                        .write_all_within(&bytes, self.pool.settings.write_timeout)
                        .await
                    {
                        let _ = request
                            .reply
                            .send(Verdict::Error(DefinedCondition::RemoteServerNotFound));
                        return false;
                    }
                    // Answers nobody waits for any more (the asker timed out) are forgotten.
                    self.sent.retain(|_, replies| {
                        replies.retain(|r| !r.is_closed());
                        !replies.is_empty()
                    });
                    self.sent
                        .entry(request.stream_id)
                        .or_default()
                        .push(request.reply);
                }
                None => still_waiting.push(request),
            }
        }
        self.waiting = still_waiting;
        true
    }

    fn cert_valid(&self, io: &Io) -> bool {
        let chain = io.peer_chain();
        match self.pool.tls.judge(&chain, &self.remote) {
            Ok(()) => true,
            Err(reason) => {
                info!(%reason, "the remote server's certificate is not valid for it");
                false
            }
        }
    }

    /// Where to connect: the static route, or DNS.
    async fn targets(&self) -> Result<Vec<StaticRoute>, LinkEnd> {
        if let Some(routes) = self.pool.settings.routes.get(&self.remote) {
            return Ok(routes.clone());
        }
        let Some(resolver) = &self.pool.resolver else {
            return Err(not_found("no DNS configuration and no static route"));
        };
        let resolution = resolver
            .resolve(&self.remote)
            .await
            .map_err(|e| not_found(e.to_string()))?;
        if resolution.service_refused {
            return Err(not_found(format!(
                "{} publishes no XMPP server service",
                self.remote
            )));
        }
        Ok(resolution
            .targets
            .into_iter()
            .map(|t| StaticRoute {
                host: t.host,
                port: t.port,
                transport: t.transport,
            })
            .collect())
    }

    async fn connect(&self) -> Result<(Io, Transport), LinkEnd> {
        let targets = self.targets().await?;
        let mut last = format!("no address for {}", self.remote);
        for target in targets {
            let addrs: Vec<IpAddr> = match target.host.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => match &self.pool.resolver {
                    Some(r) => match r.addresses(&target.host).await {
                        Ok(a) => a,
                        Err(e) => {
                            last = e.to_string();
                            continue;
                        }
                    },
                    None => continue,
                },
            };
            for ip in addrs {
                let addr = SocketAddr::new(ip, target.port);
                match self.connect_one(addr, target.transport).await {
                    Ok(io) => {
                        info!(%addr, transport = ?target.transport, "connected");
                        return Ok((io, target.transport));
                    }
                    Err(e) => {
                        debug!(%addr, error = %e, "connection attempt failed");
                        last = format!("{addr}: {e}");
                    }
                }
            }
        }
        Err(not_found(last))
    }

    async fn connect_one(&self, addr: SocketAddr, transport: Transport) -> Result<Io, String> {
        let timeout = self.pool.settings.connect_timeout;
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("connection timed out".into()),
        };
        let _ = tcp.set_nodelay(true);
        if transport == Transport::StartTls {
            return Ok(Io::Plain(tcp));
        }
        self.handshake(tcp, true, Instant::now() + timeout)
            .await
            .map_err(|e| format!("{e:?}"))
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        direct: bool,
        deadline: Instant,
    ) -> Result<Io, LinkEnd> {
        let connector = self
            .pool
            .tls
            .connector(&self.local, direct)
            .map_err(|e| not_found(e.to_string()))?;
        let name = ServerName::try_from(self.remote.clone())
            .map_err(|_| not_found(format!("{} is not a DNS name", self.remote)))?;
        match tokio::time::timeout_at(deadline, connector.connect(name, tcp)).await {
            Ok(Ok(tls)) => Ok(Io::Tls(Box::new(tokio_rustls::TlsStream::Client(tls)))),
            Ok(Err(e)) => Err(not_found(format!("TLS handshake failed: {e}"))),
            Err(_) => Err(timed_out("TLS handshake timed out")),
        }
    }

    async fn upgrade(&self, io: Io, deadline: Instant) -> Result<Io, LinkEnd> {
        match io {
            Io::Plain(tcp) => self.handshake(tcp, false, deadline).await,
            Io::Tls(_) => Err(not_found("STARTTLS on a TLS stream")),
        }
    }

    async fn bounce(&self, stanzas: Vec<Stanza>, condition: DefinedCondition, text: &str) {
        let Some(router) = self.pool.router() else {
            return;
        };
        let err = StanzaError::new(condition).with_text(format!("{}: {text}", self.remote));
        for stanza in stanzas {
            if let Some(bounce) = stanza.error_reply(&err) {
                router.route(bounce).await;
            }
        }
    }

    /// Leaves the pool, then deals with everything still queued: bounced after a failure,
    /// routed again (through a new link) after a deliberate close. Waiting verifications
    /// get an error verdict.
    async fn finish(mut self, end: LinkEnd) {
        self.pool.forget(&self.local, &self.remote, self.id);
        self.stanzas.close();
        self.verifies.close();
        for request in std::mem::take(&mut self.waiting) {
            let _ = request
                .reply
                .send(Verdict::Error(DefinedCondition::RemoteServerNotFound));
        }
        while let Ok(request) = self.verifies.try_recv() {
            let _ = request
                .reply
                .send(Verdict::Error(DefinedCondition::RemoteServerNotFound));
        }
        for reply in std::mem::take(&mut self.sent).into_values().flatten() {
            let _ = reply.send(Verdict::Error(DefinedCondition::RemoteServerNotFound));
        }
        let mut queued = Vec::new();
        while let Ok(stanza) = self.stanzas.try_recv() {
            queued.push(stanza);
        }
        if queued.is_empty() {
            return;
        }
        match end {
            LinkEnd::Failed(condition, text) => self.bounce(queued, condition, &text).await,
            // The peer accepted the stream and closed it before taking anything: routing
            // the queue again would only repeat that, so it goes back to the senders.
            LinkEnd::Closed if !self.deliberate && self.written == 0 => {
                let text = "the stream was closed before anything could be sent";
                self.bounce(queued, DefinedCondition::RemoteServerTimeout, text)
                    .await;
            }
            LinkEnd::Closed => {
                let Some(router) = self.pool.router() else {
                    return;
                };
                for stanza in queued {
                    router.route(stanza).await;
                }
            }
        }
    }
}
