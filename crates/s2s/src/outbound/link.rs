//! The link task: negotiates one outbound stream (TLS, authentication, dialback
//! verifications sent as soon as the stream is open), then writes stanzas in batches until
//! the link is idle, shut down or broken.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::AsyncReadExt as _;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, info, warn};
use xmppd_core::metrics::{ConnectionKind, LinkGuard};
use xmppd_core::router::client_bytes;
use xmppd_proto::{DefinedCondition, Stanza, StanzaError};
use xmppd_stream::dialback::Verdict;
use xmppd_stream::s2s::{OutboundFailure, OutboundOutput, S2sInitiator};
use xmppd_xml::{Limits, Reader};

use super::{LinkEnd, S2sPool, VERIFY_QUEUE, VerifyRequest, not_found, timed_out};
use crate::S2sTerms;
use crate::io::Io;
use crate::resolve::Transport;

/// Stanzas written in one batch.
const WRITE_BATCH: usize = 64;
/// Idle time after which a link that never carried a stanza (only dialback verifications)
/// closes.
const VERIFY_ONLY_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// One outbound connection's task.
pub(super) struct Link {
    pub(super) pool: Arc<S2sPool>,
    /// The settings and policy in force when the link started.
    pub(super) terms: Arc<S2sTerms>,
    pub(super) local: String,
    pub(super) remote: String,
    pub(super) id: u64,
    pub(super) stanzas: mpsc::Receiver<Stanza>,
    pub(super) verifies: mpsc::Receiver<VerifyRequest>,
    /// Verifications not yet sendable (the stream is not open yet).
    pub(super) waiting: Vec<VerifyRequest>,
    /// Verifications sent, by stream id.
    pub(super) sent: HashMap<String, Vec<oneshot::Sender<Verdict>>>,
    /// Stanzas written so far.
    pub(super) written: u64,
    /// Whether we closed the stream on purpose (idle, shutdown).
    pub(super) deliberate: bool,
    /// The link in `xmppd_s2s_links` while it runs.
    pub(super) state: Option<LinkGuard>,
}

/// What processing the peer's input asks the negotiation to do.
enum Step {
    StartTls,
    Ready,
}

impl Link {
    pub(super) async fn run(mut self) {
        self.state = self.pool.router().map(|r| r.metrics().s2s_link(true));
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
        let deadline = Instant::now() + self.terms.settings.negotiation_timeout;
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
        let metrics = self.pool.router().map(|r| r.metrics().clone());
        let _connection = metrics.map(|m| m.connection(ConnectionKind::S2sOut));
        let mut initiator = S2sInitiator::new(&self.local, &self.remote, &self.terms.policy);
        let limits = Limits {
            max_stanza_bytes: self.terms.settings.max_stanza_bytes_unauthenticated,
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
            .write_all_within(&header, self.terms.settings.write_timeout)
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
                        .write_all_within(&header, self.terms.settings.write_timeout)
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
            max_stanza_bytes: self.terms.settings.max_stanza_bytes,
            ..Limits::default()
        });
        // Authenticated: the rest of what was read is processed, then stanzas flow.
        if let Err(end) = self.process(&mut initiator, &mut reader, &mut io).await {
            return end;
        }
        if let Some(state) = self.state.as_mut() {
            state.established();
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
        let settings = self.terms.settings.clone();
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
                    let mut too_big = Vec::new();
                    batch.retain(|stanza| {
                        // Written with jabber:client as the parent namespace, the elements
                        // inherit the stream's jabber:server, while forwarded jabber:client
                        // payloads keep their own declaration.
                        let one = client_bytes(stanza);
                        if initiator.peer_max_bytes().is_some_and(|max| one.len() as u64 > max) {
                            too_big.push(stanza.clone());
                            return false;
                        }
                        bytes.extend_from_slice(&one);
                        true
                    });
                    self.refuse_too_big(too_big, initiator.peer_max_bytes()).await;
                    if batch.is_empty() {
                        continue;
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

    /// XEP-0478 §3: stanzas larger than the peer announced it accepts are not sent; each
    /// sender gets `policy-violation` without a `by` (the policy is the peer's, not ours).
    async fn refuse_too_big(&self, stanzas: Vec<Stanza>, max: Option<u64>) {
        let (Some(router), Some(max)) = (self.pool.router(), max) else {
            return;
        };
        if stanzas.is_empty() {
            return;
        }
        info!(
            count = stanzas.len(),
            max, "stanzas larger than the peer accepts refused"
        );
        let text = format!("{} accepts stanzas of at most {max} bytes", self.remote);
        let err = StanzaError::new(DefinedCondition::PolicyViolation).with_text(text);
        for stanza in stanzas {
            if let Some(bounce) = stanza.error_reply(&err) {
                router.route(bounce).await;
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
        let timeout = self.terms.settings.write_timeout;
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
                        .write_all_within(&bytes, self.terms.settings.write_timeout)
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
}
