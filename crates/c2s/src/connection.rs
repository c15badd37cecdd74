//! One client connection, from the first byte to the last.
//!
//! The loop waits in one `select!` for whichever comes first — bytes from the socket, a stanza
//! queued for the session, a kick (replacement, slow consumer), the server shutting down, or
//! the authentication deadline — and turns it into writes. Each wait returns a plain [`Input`]
//! value, so no borrow of the socket or the queue outlives the wait.
//!
//! STARTTLS ends the plain-text loop with [`Flow::UpgradeTls`]: the XML reader and everything
//! it buffered are dropped before the handshake, so bytes a client pipelined behind
//! `<starttls/>` can never be read as if they had come through TLS (the attack behind
//! CVE-2011-0411). If such bytes were already received, the connection is refused instead.
//!
//! An idle connection holds no read buffer: the loop waits for the socket to become readable
//! (not for a read into a buffer of its own), then reads without blocking into a buffer that
//! belongs to the worker thread and feeds the XML reader from it. Only bytes of an incomplete
//! stanza stay with the connection (in the reader, which frees its buffer once drained).
//! What runs on input (negotiation, credential lookup, routing) is a boxed future that lives
//! only while it runs, so the task of an idle connection is no larger than its wait.

use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};
use xmppd_core::metrics::ConnectionKind;
use xmppd_core::read_shaper::{ReadRate, ReadShaper};
use xmppd_core::{ClientStream, Next, StreamAction};
use xmppd_proto::{StreamError, StreamErrorCondition as Cond};
use xmppd_stream::C2sResponder;
use xmppd_stream::sasl::ChannelBindingData;
use xmppd_xml::{Limits, Reader};

use crate::tls_stream::ServerTlsStream;
use crate::{C2sContext, C2sLimits, C2sSettings, ChannelBinding, ListenerKind};

#[path = "keepalive.rs"]
mod keepalive;
#[path = "tracked_write.rs"]
mod tracked_write;
#[path = "transport.rs"]
mod transport;
#[path = "waits.rs"]
mod waits;

use transport::Transport;
use waits::{expired, queue_or_now, queue_wait, readable_or_now};

/// How a run of the loop ended.
enum Flow {
    /// The stream is over (closed by either side, or by a stream error).
    Closed,
    /// The link broke or went silent: a resumable session waits for its client.
    Lost,
    /// Upgrade to TLS and continue.
    UpgradeTls,
}

/// What a wait produced.
enum Input {
    Readable(std::io::Result<()>),
    /// The session's queue: `true` when its wait ended (the wait must be made anew).
    Queue(bool),
    Shutdown,
    Deadline,
}

/// Stanzas written in one batch before flushing.
const WRITE_BATCH: usize = 64;

/// The TCP/TLS transport of one client stream: it moves bytes, and the transport-independent
/// [`ClientStream`] does everything else.
struct Conn {
    ctx: Arc<C2sContext>,
    stream: ClientStream,
    reader: Reader,
    /// The connection's timer and what the keepalive needs beside it.
    timer: Pin<Box<Timer>>,
}

pin_project_lite::pin_project! {
    /// Until a resource is bound, the authentication deadline; then the keepalive: when to
    /// ask a quiet client for an ack or a ping, and when to give up on a silent one. One
    /// timer for both, boxed with the keepalive's state: inline, these would make the task
    /// of every idle connection larger, and it sits just below an allocator size class.
    struct Timer {
        #[pin]
        sleep: tokio::time::Sleep,
        // Whether a resource is bound (the timer is the keepalive).
        bound: bool,
        // When bytes last came from the client.
        last_read: Instant,
        // When the client was last asked to show it is there (`<r/>` or a ping) without an
        // answer yet.
        probe_at: Option<Instant>,
        // The listener's read rate, when it has one (XEP-0205 §4.8).
        shaper: Option<ReadShaper>,
        // The policy and limits as they were when the connection was accepted. Here rather
        // than in the task, whose size this would push up, while the box stays in its
        // allocator size class.
        settings: Arc<C2sSettings>,
    }
}

/// The task of one accepted connection; `held` (its admission permits) goes when it ends.
/// Not an `async fn`: its arguments would stay in the task's state for its whole life beside
/// their copies in its locals, and every idle connection's task one size class larger.
#[expect(
    clippy::too_many_arguments,
    reason = "what the listener hands one connection; grouping them would only move them"
)]
pub(crate) fn run<H: Send + 'static>(
    socket: TcpStream,
    kind: ListenerKind,
    channel_binding: ChannelBinding,
    read_rate: Option<ReadRate>,
    ctx: Arc<C2sContext>,
    conn_id: u64,
    shutdown: CancellationToken,
    held: H,
) -> impl Future<Output = ()> + Send + 'static {
    let settings = ctx.settings();
    let deadline = Instant::now() + settings.limits.auth_timeout;
    let connection = ctx.router.metrics().connection(ConnectionKind::C2s);
    let responder = C2sResponder::new(settings.policy.clone(), false, ChannelBindingData::none());
    let mut conn = Conn {
        stream: ClientStream::new(
            ctx.router.clone(),
            responder,
            conn_id,
            settings.limits.session_queue,
        ),
        reader: Reader::new(pre_auth_limits(&settings.limits)),
        ctx,
        timer: Box::pin(Timer {
            sleep: tokio::time::sleep_until(deadline),
            bound: false,
            last_read: Instant::now(),
            probe_at: None,
            shaper: read_rate.map(ReadShaper::new),
            settings,
        }),
    };
    // Taken by the TLS handshake; a plain-text stream keeps it to its end.
    let mut socket = Some(socket);
    async move {
        let mut flow = Flow::UpgradeTls;
        if kind == ListenerKind::StartTls
            && let Some(plain) = socket.as_mut()
        {
            flow = conn.drive(plain, &shutdown).await;
        }
        let upgrade = matches!(flow, Flow::UpgradeTls);
        // The handshake and the session's end are boxed and the TLS stream lives in a box of
        // its own: inline, the compiler lays each out beside the others in the task, and every
        // idle connection's task was 5.8 KiB instead of 2.4 KiB.
        // Not one `if let` chain: its temporaries (the socket taken) would stay in the task
        // beside the TLS stream's wait.
        let tls = match socket.take() {
            Some(plain) if upgrade => Box::pin(handshake(&conn, plain)).await,
            plain => {
                socket = plain;
                None
            }
        };
        if let Some(mut tls) = tls {
            let cb = match channel_binding {
                ChannelBinding::Offered => conn.ctx.tls.channel_binding(&mut tls),
                ChannelBinding::Off => ChannelBindingData::none(),
            };
            conn.stream.responder_mut().tls_established(cb);
            conn.reader = Reader::new(pre_auth_limits(&conn.timer.settings.limits));
            // A second STARTTLS is refused by the responder, so this run ends the stream.
            flow = conn.drive(&mut *tls, &shutdown).await;
            if !matches!(flow, Flow::Lost) {
                let _ = tokio::time::timeout(Duration::from_secs(1), tls.shutdown()).await;
            }
        }
        Box::pin(conn.stream.finish(matches!(flow, Flow::Lost))).await;
        // In the order a function's locals would go: the connection, then its permits.
        drop(socket);
        drop(conn);
        drop(connection);
        drop(held);
        info!("connection closed");
    }
}

/// The TLS handshake, within what is left of the authentication deadline.
async fn handshake(conn: &Conn, socket: TcpStream) -> Option<Box<ServerTlsStream>> {
    // The timer runs until a resource is bound, so it is there for the handshake.
    let remaining = conn
        .timer
        .sleep
        .deadline()
        .saturating_duration_since(Instant::now());
    within(remaining, "TLS handshake", conn.ctx.tls.accept(socket))
        .await
        .map(Box::new)
}

fn system_shutdown() -> StreamError {
    StreamError::with_text(Cond::SystemShutdown, "the server is shutting down")
}

/// Runs `op` for at most `limit`; its failure or timeout is logged as `what`'s and gives `None`.
async fn within<T>(
    limit: Duration,
    what: &str,
    op: impl Future<Output = std::io::Result<T>>,
) -> Option<T> {
    match tokio::time::timeout(limit, op).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(e)) => {
            debug!(error = %e, "{what} failed");
            None
        }
        Err(_) => {
            debug!("{what} timed out");
            None
        }
    }
}

fn pre_auth_limits(limits: &C2sLimits) -> Limits {
    Limits {
        max_stanza_bytes: limits.max_stanza_bytes_unauthenticated,
        max_depth: limits.max_depth,
        max_attrs: limits.max_attrs,
    }
}

fn post_auth_limits(limits: &C2sLimits) -> Limits {
    Limits {
        max_stanza_bytes: limits.max_stanza_bytes,
        max_depth: limits.max_depth,
        max_attrs: limits.max_attrs,
    }
}

impl Conn {
    async fn write<S: AsyncWrite + Unpin>(&self, io: &mut S, bytes: &[u8]) -> bool {
        let write = async {
            io.write_all(bytes).await?;
            io.flush().await
        };
        within(self.timer.settings.limits.write_timeout, "write", write)
            .await
            .is_some()
    }

    async fn close_with<S: AsyncWrite + Unpin>(&mut self, io: &mut S, error: StreamError) -> Flow {
        let bytes = self.stream.error_bytes(&error);
        self.write(io, &bytes).await;
        Flow::Closed
    }

    /// When the read shaper lets the connection be read again, if it holds it back now.
    fn paused_until(&self) -> Option<Instant> {
        let shaper = self.timer.shaper.as_ref()?;
        shaper.resume_at(Instant::now())
    }

    /// Not an `async fn`, whose arguments would be kept twice in the task of every idle
    /// connection (as arguments, and as the locals they are moved to).
    #[expect(clippy::manual_async_fn, reason = "the task's size, above")]
    fn drive<'a, S: Transport>(
        &'a mut self,
        io: &'a mut S,
        shutdown: &'a CancellationToken,
    ) -> impl Future<Output = Flow> + 'a {
        async move {
            // Whether the socket may have bytes: true at the start and after readiness or a read
            // (unless the read shaper holds the connection back).
            let mut try_read = self.paused_until().is_none();
            // Whether the queue may hold stanzas without a pending wake-up (a batch was taken).
            let mut queue_now = false;
            // Created once, not on every wake-up: each creation and drop takes the lock of a
            // waiter list.
            let shutting_down = shutdown.cancelled();
            tokio::pin!(shutting_down);
            // A bound session waits on one thing besides its socket: its queue, through which
            // kicks, and the shutdown (which kicks every bound session), also wake it.
            let queued = queue_wait(self.stream.session().map(|s| s.signal()));
            tokio::pin!(queued);
            loop {
                if try_read {
                    let flow = match io.read_now(&mut self.reader) {
                        Poll::Pending => {
                            try_read = false;
                            None
                        }
                        Poll::Ready(Ok(0)) => {
                            debug!("peer closed the connection");
                            Some(Flow::Lost)
                        }
                        // Boxed: negotiation, credential lookups and routing are deep futures, and
                        // inline they would size every idle connection's task for the largest.
                        Poll::Ready(Ok(n)) => {
                            let timer = self.timer.as_mut().project();
                            let now = Instant::now();
                            *timer.last_read = now;
                            *timer.probe_at = None;
                            // What was read is processed; over the rate, the next read waits.
                            if let Some(shaper) = timer.shaper.as_mut()
                                && shaper.consumed(n, now).is_some()
                            {
                                try_read = false;
                            }
                            Box::pin(self.process_input(io)).await
                        }
                        Poll::Ready(Err(e)) => {
                            debug!(error = %e, "read failed");
                            Some(Flow::Lost)
                        }
                    };
                    if let Some(flow) = flow {
                        return flow;
                    }
                }
                // The input just processed bound a resource (the timer still runs only until
                // then): stop the authentication deadline and wait on the session's queue.
                if self.stream.session().is_some() && !self.timer.bound {
                    let timer = self.timer.as_mut().project();
                    *timer.bound = true;
                    *timer.last_read = Instant::now();
                    self.arm_keepalive();
                    queued.set(queue_wait(self.stream.session().map(|s| s.signal())));
                    queue_now = true;
                    // The shutdown kicks the sessions it finds bound after cancelling the token;
                    // one bound after that sees the token cancelled here.
                    if shutdown.is_cancelled() {
                        return Box::pin(self.close_with(io, system_shutdown())).await;
                    }
                }
                let bound = self.stream.session().is_some();
                let paused_until = self.paused_until();
                let input = tokio::select! {
                    biased;
                    _ = &mut shutting_down, if !bound => Input::Shutdown,
                    _ = expired(&mut self.timer) => Input::Deadline,
                    woke = queue_or_now(queued.as_mut(), queue_now) => Input::Queue(woke),
                    // After a read, read again at once (TLS may hold more decrypted bytes than the
                    // socket shows), but only once the queue, kicks and shutdown had their turn.
                    ready = readable_or_now(io, try_read, paused_until) => Input::Readable(ready),
                };
                let flow = match input {
                    Input::Shutdown => Some(Box::pin(self.close_with(io, system_shutdown())).await),
                    Input::Deadline if self.timer.bound => Box::pin(self.keepalive(io)).await,
                    Input::Deadline => {
                        let e = StreamError::with_text(
                            Cond::ConnectionTimeout,
                            "TLS, authentication and resource binding took too long",
                        );
                        Some(Box::pin(self.close_with(io, e)).await)
                    }
                    Input::Queue(woke) => {
                        if woke {
                            queued.set(queue_wait(self.stream.session().map(|s| s.signal())));
                        }
                        match self.stream.session_mut() {
                            Some(session) if session.takeover_requested() => {
                                let e = StreamError::with_text(
                                    Cond::Conflict,
                                    "the session was resumed on another stream",
                                );
                                Some(Box::pin(self.close_with(io, e)).await)
                            }
                            Some(session) if let Some(e) = session.kicked() => {
                                let saved = e.condition == Cond::SystemShutdown
                                    && session.resumable()
                                    && self.ctx.router.stream_management().saves_sessions();
                                let drain = session.drains_before_close();
                                if saved {
                                    // To the client this is a lost link: it resumes the session,
                                    // saved now and restored at the next start.
                                    Some(Flow::Closed)
                                } else {
                                    if drain {
                                        Box::pin(self.write_queued(io)).await;
                                    }
                                    Some(Box::pin(self.close_with(io, e)).await)
                                }
                            }
                            Some(session) => match session.next_now() {
                                Next::Item(first) => {
                                    queue_now = true;
                                    Box::pin(self.write_outbound(io, first)).await
                                }
                                Next::Empty => {
                                    queue_now = false;
                                    None
                                }
                                Next::Finished => Some(Flow::Closed),
                            },
                            None => {
                                queue_now = false;
                                None
                            }
                        }
                    }
                    Input::Readable(Ok(())) => {
                        try_read = true;
                        None
                    }
                    Input::Readable(Err(e)) => {
                        debug!(error = %e, "read failed");
                        Some(Flow::Lost)
                    }
                };
                if let Some(flow) = flow {
                    return flow;
                }
            }
        }
    }

    /// Writes the session's queue until it is less than half full, before more input is
    /// taken (see [`xmppd_core::ClientSession::queue_half_full`]): a client that does not
    /// read is then held up by its own socket, up to the write timeout.
    async fn write_backlog<S: Transport>(&mut self, io: &mut S) -> Option<Flow> {
        while let Some(first) = self.stream.session_mut()?.next_backlog() {
            if let Some(flow) = Box::pin(self.write_outbound(io, first)).await {
                return Some(flow);
            }
        }
        None
    }

    /// Drains parsed events into the client stream and carries out what it asks.
    async fn process_input<S: Transport>(&mut self, io: &mut S) -> Option<Flow> {
        let mut actions = Vec::new();
        // Only a client that has not bound a resource may need its address (registration):
        // one system call per negotiation event, none per stanza.
        let peer = if self.stream.session().is_none() {
            io.peer_ip()
        } else {
            None
        };
        loop {
            if self
                .stream
                .session()
                .is_some_and(|session| session.queue_half_full())
                && let Some(flow) = self.write_backlog(io).await
            {
                return Some(flow);
            }
            let event = match self.reader.next_event() {
                Ok(Some(event)) => event,
                Ok(None) => return None,
                Err(e) => return Some(self.close_with(io, StreamError::from(&e)).await),
            };
            actions.clear();
            self.stream
                .handle_event_from(event, peer, &mut actions)
                .await;
            if actions.contains(&StreamAction::StartTls) && self.reader.skip_whitespace() > 0 {
                // Bytes pipelined behind <starttls/> (other than the newline clients such as
                // go-xmpp write after it): refuse rather than risk injection.
                info!("data pipelined after <starttls/>; refusing TLS");
                let failure = b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/></stream:stream>";
                self.write(io, failure).await;
                return Some(Flow::Closed);
            }
            if let Some(flow) = self.execute(io, &mut actions).await {
                return Some(flow);
            }
        }
    }

    async fn execute<S: AsyncWrite + Unpin>(
        &mut self,
        io: &mut S,
        actions: &mut Vec<StreamAction>,
    ) -> Option<Flow> {
        let mut actions = actions.drain(..).peekable();
        while let Some(action) = actions.next() {
            match action {
                StreamAction::Send(mut bytes) => {
                    // Consecutive sends (a stream header and its features) go out together:
                    // one TLS record and one system call, and one wake-up of the client.
                    while let Some(StreamAction::Send(next)) = actions.peek() {
                        bytes.extend_from_slice(next);
                        actions.next();
                    }
                    if !self.write(io, &bytes).await {
                        return Some(Flow::Lost);
                    }
                }
                StreamAction::StartTls => return Some(Flow::UpgradeTls),
                StreamAction::Restart => {
                    // SASL success restarts the stream; bytes the client already sent after
                    // it belong to the new stream and stay buffered.
                    self.reader.reset();
                    self.reader
                        .set_limits(post_auth_limits(&self.timer.settings.limits));
                }
                // The drive loop notices the session and stops the authentication deadline.
                StreamAction::Bound => {}
                StreamAction::Close(bytes) => {
                    self.write(io, &bytes).await;
                    return Some(Flow::Closed);
                }
                StreamAction::PeerClosed => {
                    self.write(io, b"</stream:stream>").await;
                    return Some(Flow::Closed);
                }
            }
        }
        None
    }
}
