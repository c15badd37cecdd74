//! One XMPP-over-WebSocket connection, from the upgrade to the close.
//!
//! The shape is that of the TCP connection (`xmppd_c2s::connection`): one `select!` over the
//! socket, the session's queue, the timer and the shutdown; what was read goes through
//! [`Decoder`] (frames) and [`MessageReader`] (XML) into the [`ClientStream`], and what the
//! stream asks to send is cut by [`framing::messages`] into one text frame per element.
//!
//! Ending: the client's `<close/>` is answered with ours and a close frame (RFC 7395 "Closing the Connection");
//! a stream error is sent, followed by `<close/>` and a close frame ("Stream Errors"); a framing error
//! closes with its RFC 6455 code (1009 for a message over the limit). A connection that drops
//! without `<close/>`, or a close frame alone, is a lost link: a resumable session then
//! waits for its client (XEP-0198), as it would after a TCP connection broke.
//!
//! Like a TCP client connection, a WebSocket is read at most at its listener's rate
//! (XEP-0205 §4.8, [`ReadShaper`]): over it, the socket is not read until the budget is
//! back, so a flooding client is slowed by TCP flow control and never cut off for it.
//!
//! An idle connection holds no read buffer: reads go into the worker thread's buffer, and
//! the decoder and the XML reader keep bytes only while a frame or an element is incomplete.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::time::{Instant, Sleep};
use tracing::debug;
use xmppd_core::metrics::ConnectionKind;
use xmppd_core::read_shaper::{ReadRate, ReadShaper};
use xmppd_core::{ClientStream, Next, Outbound, QueueSignal, StreamAction};
use xmppd_proto::{StreamError, StreamErrorCondition as Cond};
use xmppd_stream::C2sResponder;
use xmppd_stream::sasl::ChannelBindingData;
use xmppd_xml::{Limits, StreamEvent};

use super::frame::{self, Decoder, Frame, FrameLimits, code};
use super::framing::{self, MessageReader};
use super::io::{linger, poll_read_into};
use crate::HttpContext;

/// Stanzas written in one batch before flushing.
const WRITE_BATCH: usize = 64;

/// How the connection ended.
enum End {
    /// Closed by either side: the session ends.
    Closed,
    /// The link broke or went silent: a resumable session waits for its client.
    Lost,
}

/// What a wait produced.
enum Input {
    Read(std::io::Result<usize>),
    /// The read shaper lets the connection be read again.
    Resume,
    Queue,
    Timer,
    Shutdown,
}

struct Conn {
    ctx: Arc<HttpContext>,
    io: TokioIo<Upgraded>,
    stream: ClientStream,
    decoder: Decoder,
    reader: MessageReader,
    /// The authentication deadline until a resource is bound, then the keepalive.
    timer: Pin<Box<Sleep>>,
    bound: bool,
    /// Whether the queue may hold stanzas without a wake-up pending (a batch was taken).
    queue_now: bool,
    last_read: Instant,
    /// When the client was asked to show it is there, without an answer yet.
    probe_at: Option<Instant>,
    /// The client's address (as a trusted proxy names it), for registration policies and
    /// the slowing of failed authentications before a resource is bound.
    client_ip: IpAddr,
    /// How fast the socket may be read, when the listener has a rate.
    shaper: Option<ReadShaper>,
}

/// What the upgraded connection knows of its client and listener.
pub(crate) struct Link {
    /// The client's address, as a trusted proxy names it.
    pub(crate) client_ip: IpAddr,
    /// Whether the client's connection is TLS (ours, or the proxy's).
    pub(crate) tls: bool,
    /// Our TLS session's channel-binding data (none behind a proxy).
    pub(crate) channel_binding: ChannelBindingData,
    /// The listener's read rate.
    pub(crate) read_rate: Option<ReadRate>,
}

/// Runs an upgraded connection to its end.
pub(crate) async fn run(upgraded: Upgraded, ctx: Arc<HttpContext>, conn_id: u64, link: Link) {
    let Link {
        client_ip,
        tls,
        channel_binding: cb,
        read_rate,
    } = link;
    let limits = ctx.c2s.settings().limits;
    let _connection = ctx
        .c2s
        .router
        .metrics()
        .connection(ConnectionKind::WebSocket);
    let responder = C2sResponder::websocket(ctx.ws_policy(), tls, cb);
    let stream = ClientStream::new(
        ctx.c2s.router.clone(),
        responder,
        conn_id,
        limits.session_queue,
    );
    let frame_limits = FrameLimits {
        // A message is one stanza; the XML reader applies the stanza limit within it.
        max_message: limits.max_stanza_bytes,
        max_fragments: ctx.settings.websocket_max_fragments,
    };
    let mut conn = Conn {
        io: TokioIo::new(upgraded),
        stream,
        decoder: Decoder::new(frame_limits),
        reader: MessageReader::new(xml_limits(&ctx, false)),
        timer: Box::pin(tokio::time::sleep(limits.auth_timeout)),
        bound: false,
        queue_now: false,
        last_read: Instant::now(),
        probe_at: None,
        client_ip,
        shaper: read_rate.map(ReadShaper::new),
        ctx,
    };
    let end = conn.drive().await;
    if matches!(end, End::Closed) {
        Box::pin(linger(&mut conn.io, &mut conn.decoder)).await;
    }
    // The socket, its TLS state and the frame buffers go before the session ends: ending it
    // may wait for storage (a logout's record), and when thousands of sessions end at once
    // their connections must not stay open for that (as the TCP listener does).
    let Conn { io, mut stream, .. } = conn;
    drop(io);
    Box::pin(stream.finish(matches!(end, End::Lost))).await;
}

fn xml_limits(ctx: &HttpContext, authenticated: bool) -> Limits {
    let settings = ctx.c2s.settings();
    let l = &settings.limits;
    Limits {
        max_stanza_bytes: if authenticated {
            l.max_stanza_bytes
        } else {
            l.max_stanza_bytes_unauthenticated
        },
        max_depth: l.max_depth,
        max_attrs: l.max_attrs,
    }
}

/// Ends when the read shaper lets the connection be read again (never without a pause).
async fn resume(paused_until: Option<Instant>) {
    match paused_until {
        // Boxed: only a client over its rate waits here, and inline the timer would make
        // the task of every connection larger.
        Some(at) => Box::pin(tokio::time::sleep_until(at)).await,
        None => std::future::pending().await,
    }
}

async fn queue_wait(signal: Option<QueueSignal>) {
    match signal {
        Some(signal) => signal.notified().await,
        None => std::future::pending().await,
    }
}

impl Conn {
    async fn drive(&mut self) -> End {
        let mut frames = Vec::new();
        let shutdown = self.ctx.shutdown.clone();
        loop {
            if self.stream.session().is_some() && !self.bound {
                self.bound = true;
                self.queue_now = true;
                self.last_read = Instant::now();
                self.arm_keepalive();
                if shutdown.is_cancelled() {
                    return Box::pin(self.close_with(system_shutdown())).await;
                }
            }
            let signal = self.stream.session().map(|s| s.signal());
            let queued_now = self.bound && self.queue_now;
            let paused_until = self
                .shaper
                .as_ref()
                .and_then(|s| s.resume_at(Instant::now()));
            let input = {
                let Conn {
                    io, decoder, timer, ..
                } = self;
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled(), if !self.bound => Input::Shutdown,
                    _ = timer.as_mut() => Input::Timer,
                    _ = queue_wait(signal), if !queued_now => Input::Queue,
                    _ = std::future::ready(()), if queued_now => Input::Queue,
                    _ = resume(paused_until), if paused_until.is_some() => Input::Resume,
                    r = std::future::poll_fn(|cx| poll_read_into(io, decoder, &mut frames, cx)), if paused_until.is_none() => {
                        Input::Read(r)
                    }
                }
            };
            let end = match input {
                // Each handler is boxed: inline, the largest of them would size the task of
                // every idle connection.
                Input::Shutdown => Some(Box::pin(self.close_with(system_shutdown())).await),
                Input::Timer if self.bound => Box::pin(self.keepalive()).await,
                Input::Timer => {
                    let e = StreamError::with_text(
                        Cond::ConnectionTimeout,
                        "authentication and resource binding took too long",
                    );
                    Some(Box::pin(self.close_with(e)).await)
                }
                Input::Queue => Box::pin(self.on_queue()).await,
                Input::Resume => None,
                Input::Read(Ok(0)) => {
                    debug!("peer closed the connection");
                    Some(End::Lost)
                }
                Input::Read(Ok(n)) => {
                    let now = Instant::now();
                    self.last_read = now;
                    // What was read is processed; over the rate, the next read waits.
                    if let Some(shaper) = self.shaper.as_mut() {
                        shaper.consumed(n, now);
                    }
                    self.probe_at = None;
                    Box::pin(self.on_frames(&mut frames)).await
                }
                Input::Read(Err(e)) => Some(Box::pin(self.on_read_error(e)).await),
            };
            if let Some(end) = end {
                return end;
            }
        }
    }

    async fn on_read_error(&mut self, e: std::io::Error) -> End {
        let framing = e
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<frame::FrameError>())
            .cloned();
        match framing {
            Some(e) => {
                debug!(error = %e, "WebSocket framing error");
                let mut out = Vec::new();
                frame::close(&mut out, e.code());
                self.write(&out).await;
                End::Closed
            }
            None => {
                debug!(error = %e, "read failed");
                End::Lost
            }
        }
    }

    /// Handles the frames a read completed.
    async fn on_frames(&mut self, frames: &mut Vec<Frame>) -> Option<End> {
        for f in std::mem::take(frames) {
            let end = match f {
                Frame::Text(text) => self.on_message(&text).await,
                Frame::Binary(_) => {
                    // RFC 7395 "WebSocket Messages": XMPP travels in text frames.
                    debug!("binary frame refused");
                    let mut out = Vec::new();
                    frame::close(&mut out, code::UNSUPPORTED);
                    self.write(&out).await;
                    Some(End::Closed)
                }
                Frame::Ping(payload) => {
                    let mut out = Vec::new();
                    frame::pong(&mut out, &payload);
                    (!self.write(&out).await).then_some(End::Lost)
                }
                Frame::Pong => None,
                Frame::Close(code) => {
                    // Without <close/> first: the client went away, as a dropped TCP link.
                    debug!(?code, "close frame without <close/>");
                    let mut out = Vec::new();
                    frame::close(&mut out, code.unwrap_or(code::NORMAL));
                    self.write(&out).await;
                    Some(End::Lost)
                }
            };
            if end.is_some() {
                return end;
            }
        }
        None
    }

    /// One text message: its XML events through the client stream.
    async fn on_message(&mut self, text: &[u8]) -> Option<End> {
        if self
            .stream
            .session()
            .is_some_and(|session| session.queue_half_full())
            && let Some(end) = self.write_backlog().await
        {
            return Some(end);
        }
        let mut events = Vec::new();
        if let Err(e) = self.reader.message(text, &mut events) {
            return Some(self.close_with(StreamError::from(&e)).await);
        }
        let mut actions = Vec::new();
        for event in events {
            let closing = matches!(event, StreamEvent::Close);
            actions.clear();
            let peer = (!self.bound).then_some(self.client_ip);
            self.stream
                .handle_event_from(event, peer, &mut actions)
                .await;
            if let Some(end) = self.execute(&mut actions).await {
                return Some(end);
            }
            if closing {
                return Some(End::Closed);
            }
        }
        None
    }

    async fn execute(&mut self, actions: &mut Vec<StreamAction>) -> Option<End> {
        let mut out = Vec::new();
        for action in actions.drain(..) {
            match action {
                StreamAction::Send(bytes) => push_messages(&mut out, &bytes),
                StreamAction::Restart => {
                    // The new <open/> comes as a message of its own; the reader goes on.
                    self.reader.set_limits(xml_limits(&self.ctx, true));
                }
                StreamAction::Bound => {}
                // The responder never offers STARTTLS on a WebSocket.
                StreamAction::StartTls => {}
                StreamAction::Close(bytes) => {
                    push_messages(&mut out, &bytes);
                    frame::close(&mut out, code::NORMAL);
                    self.write(&out).await;
                    return Some(End::Closed);
                }
                StreamAction::PeerClosed => {
                    push_messages(&mut out, &xmppd_stream::framing::close_bytes());
                    frame::close(&mut out, code::NORMAL);
                    self.write(&out).await;
                    return Some(End::Closed);
                }
            }
        }
        if !out.is_empty() && !self.write(&out).await {
            return Some(End::Lost);
        }
        None
    }

    async fn close_with(&mut self, error: StreamError) -> End {
        let close_code = if error.condition == Cond::SystemShutdown {
            code::GOING_AWAY
        } else {
            code::NORMAL
        };
        let bytes = self.stream.error_bytes(&error);
        let mut out = Vec::new();
        push_messages(&mut out, &bytes);
        frame::close(&mut out, close_code);
        self.write(&out).await;
        End::Closed
    }

    /// Writes and flushes within the write timeout; `false` when the link is gone.
    async fn write(&mut self, bytes: &[u8]) -> bool {
        let io = &mut self.io;
        let write = async {
            io.write_all(bytes).await?;
            io.flush().await
        };
        match tokio::time::timeout(self.ctx.c2s.settings().limits.write_timeout, write).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                debug!(error = %e, "write failed");
                false
            }
            Err(_) => {
                debug!("write timed out");
                false
            }
        }
    }

    /// The session's queue: a kick, or stanzas to write (a batch per write).
    async fn on_queue(&mut self) -> Option<End> {
        let ctx = self.ctx.clone();
        let session = self.stream.session_mut()?;
        if session.takeover_requested() {
            let e =
                StreamError::with_text(Cond::Conflict, "the session was resumed on another stream");
            return Some(self.close_with(e).await);
        }
        if let Some(e) = session.kicked() {
            let saved = e.condition == Cond::SystemShutdown
                && session.resumable()
                && ctx.c2s.router.stream_management().saves_sessions();
            if saved {
                // To the client this is a lost link: it resumes the session after the restart.
                return Some(End::Closed);
            }
            return Some(self.close_with(e).await);
        }
        let first = match session.next_now() {
            Next::Item(first) => first,
            Next::Empty => {
                self.queue_now = false;
                return None;
            }
            Next::Finished => return Some(End::Closed),
        };
        self.queue_now = true;
        self.write_batch(first).await
    }

    /// Writes the session's queue until it is less than half full, before the next message
    /// from the client is handled (see [`xmppd_core::ClientSession::queue_half_full`]).
    async fn write_backlog(&mut self) -> Option<End> {
        while let Some(first) = self.stream.session_mut()?.next_backlog() {
            if let Some(end) = self.write_batch(first).await {
                return Some(end);
            }
        }
        None
    }

    /// Writes `first` and what else is queued now, up to a batch, in one write.
    async fn write_batch(&mut self, first: Outbound) -> Option<End> {
        let ctx = self.ctx.clone();
        let session = self.stream.session_mut()?;
        let mut batch = vec![first];
        while batch.len() < WRITE_BATCH {
            match session.try_recv() {
                Some(next) => batch.push(next),
                None => break,
            }
        }
        let every = ctx.c2s.router.stream_management().config().request_every;
        let ack_request = session.ack_request_due(every);
        let mut out = Vec::new();
        for outbound in &batch {
            push_messages(&mut out, &outbound.bytes);
        }
        if let Some(r) = ack_request {
            push_messages(&mut out, r);
            self.probe_at.get_or_insert_with(Instant::now);
        }
        if self.write(&out).await {
            self.arm_keepalive();
            None
        } else {
            if let Some(session) = self.stream.session_mut() {
                session.unwritten(batch);
            }
            Some(End::Lost)
        }
    }

    /// How long stanzas sent may wait for an `<r/>` (XEP-0198 §4, `[sm]`).
    fn request_after(&self) -> Duration {
        let sm = self.ctx.c2s.router.stream_management();
        sm.config().request_after
    }

    /// When the keepalive must look again (as for TCP: a probe unanswered, a quiet client,
    /// stanzas due an `<r/>`).
    fn arm_keepalive(&mut self) {
        let settings = self.ctx.c2s.settings();
        let limits = &settings.limits;
        let base = match self.probe_at {
            Some(at) => at + limits.dead_after,
            None => self.last_read + limits.ping_after,
        };
        let after = self.request_after();
        let next = match self
            .stream
            .session()
            .and_then(|s| s.ack_request_deadline(after))
        {
            Some(due) => base.min(due),
            None => base,
        };
        self.timer.as_mut().reset(next);
    }

    /// A quiet client is asked to answer: `<r/>` under stream management, else a WebSocket
    /// ping (RFC 6455 §5.5.2), which every client answers without its application's help.
    /// One silent for `dead_after` more is gone.
    async fn keepalive(&mut self) -> Option<End> {
        let now = Instant::now();
        let limits = self.ctx.c2s.settings().limits;
        if self
            .probe_at
            .is_some_and(|at| now >= at + limits.dead_after)
        {
            debug!("the client stopped answering");
            return Some(End::Lost);
        }
        let after = self.request_after();
        let ping_due = self.probe_at.is_none() && now >= self.last_read + limits.ping_after;
        let session = self.stream.session_mut()?;
        let request_due = session
            .ack_request_deadline(after)
            .is_some_and(|due| due <= now);
        let mut out = Vec::new();
        if session.sm_enabled() && (request_due || ping_due) {
            push_messages(&mut out, xmppd_proto::sm::REQUEST_BYTES);
            session.ack_requested();
        } else if ping_due {
            frame::ping(&mut out);
        }
        if !out.is_empty() {
            self.probe_at.get_or_insert(now);
            if !self.write(&out).await {
                return Some(End::Lost);
            }
        }
        self.arm_keepalive();
        None
    }
}

/// Appends one text frame per element of `bytes`.
fn push_messages(out: &mut Vec<u8>, bytes: &[u8]) {
    for message in framing::messages(bytes) {
        frame::text(out, &message);
    }
}

fn system_shutdown() -> StreamError {
    StreamError::with_text(Cond::SystemShutdown, "the server is shutting down")
}
