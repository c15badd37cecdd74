//! One BOSH session (XEP-0124, XEP-0206): a task that owns the client stream and answers the
//! session's HTTP requests.
//!
//! The shape is that of a WebSocket connection ([`crate::ws::conn`]): one `select!` over what
//! the client sends (here: requests, handed over by the HTTP handler with a channel to answer
//! on), the session's queue, a timer and the shutdown. The payloads of each request go, in
//! `rid` order ([`Window`]), through the same [`ClientStream`] as those of a TCP or WebSocket
//! client: same negotiation, same session, same stream management. What the stream sends is
//! gathered until a held request can carry it.
//!
//! Memory stays bounded: at most `requests` requests are open, the answers kept for
//! retransmission are the last `requests`, and stanzas are taken from the session's bounded
//! queue only when a held request can carry them away, so a client that stops polling fills
//! that queue and is handled as a slow TCP reader is.
//!
//! Ending: the client's `type='terminate'` closes the stream (its payloads, such as an
//! unavailable presence, are processed first, §13); a stream error is sent in a terminating
//! body with `remote-stream-error` (XEP-0206 §7); a client silent for longer than `inactivity`
//! (or its `pause`) is a lost link, after which a resumable session waits for its client
//! (XEP-0198), as after a TCP connection broke (§8: "terminate the session without informing
//! the client").

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use xmppd_core::{ClientStream, Next, Outbound, QueueSignal, StreamAction};
use xmppd_proto::{StreamError, StreamErrorCondition as Cond};
use xmppd_xml::{StreamEvent, StreamHeader};

use super::body::{self, NS_XBOSH, Request};
use super::window::{Arrival, Due, Window};
use crate::HttpContext;

/// Stanzas taken from the session's queue for one answer.
const BATCH: usize = 64;

/// A request handed to its session, with the channel its answer goes back on.
#[derive(Debug)]
pub(crate) struct Incoming {
    pub(crate) req: Request,
    pub(crate) client_ip: IpAddr,
    pub(crate) reply: oneshot::Sender<Bytes>,
}

/// What the session creation response announced (XEP-0124 §7.1).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Terms {
    pub(crate) wait: Duration,
    pub(crate) hold: u32,
    pub(crate) requests: u32,
    pub(crate) inactivity: Duration,
    pub(crate) max_pause: Duration,
    pub(crate) polling: Duration,
    /// The client asked for acknowledgements (`ack='1'` at creation, XEP-0124 §9).
    pub(crate) acks: bool,
}

/// How the session ends: the body that tells the client, and whether the link counts as lost
/// (a resumable session then waits for its client) rather than closed.
struct Ending {
    attrs: Vec<(&'static str, &'static str)>,
    payload: Vec<u8>,
    lost: bool,
}

impl Ending {
    fn terminate(condition: &'static str) -> Self {
        Ending {
            attrs: vec![("type", "terminate"), ("condition", condition)],
            payload: Vec::new(),
            lost: false,
        }
    }
}

pub(crate) struct Task {
    ctx: Arc<HttpContext>,
    stream: ClientStream,
    terms: Terms,
    /// The host the session was created for.
    host: String,
    window: Window<Request>,
    /// The open requests' answer channels, by `rid` (held and early ones).
    waiters: HashMap<u64, oneshot::Sender<Bytes>>,
    /// Requests that only the session's end answers (they came after it, or ended it).
    extra: Vec<oneshot::Sender<Bytes>>,
    /// What the stream sent that no answer carried yet.
    out: Vec<u8>,
    /// The stanzas from the session's queue in `out`: routed again (or kept by stream
    /// management) if the session ends before an answer carries them.
    carried: Vec<Outbound>,
    bound: bool,
    /// Whether the queue may hold stanzas without a wake-up pending (a batch was taken).
    queue_now: bool,
    /// Authenticated: the stream restarted after SASL and the larger limits apply.
    authenticated: bool,
    /// The inactivity allowed now (`inactivity`, or a pause the client asked for).
    inactivity: Duration,
    last_answer: Instant,
    /// Whether the last answer carried nothing.
    last_answer_empty: bool,
    /// When the last empty request of a polling session was answered empty (XEP-0124 §12).
    last_empty_poll: Option<Instant>,
    ending: Option<Ending>,
    kill: CancellationToken,
}

/// The stream header a session creation request or a restart stands for.
fn header_of(req: &Request, host: &str) -> StreamEvent {
    let version = req
        .attrs
        .attr(&format!("{{{NS_XBOSH}}}version"))
        // Lenient in: XEP-0206 §4 says SHOULD; XMPP 1.0 is all we speak.
        .unwrap_or("1.0");
    let mut attrs = vec![
        (
            "to".to_owned(),
            req.attrs.attr("to").unwrap_or(host).to_owned(),
        ),
        ("version".to_owned(), version.to_owned()),
    ];
    if let Some(lang) = req.attrs.attr("xml:lang") {
        attrs.push(("xml:lang".to_owned(), lang.to_owned()));
    }
    StreamEvent::Open(StreamHeader {
        attrs,
        default_ns: Some(xmppd_proto::ns::CLIENT.to_owned()),
        prefixes: Vec::new(),
    })
}

async fn queue_wait(signal: Option<QueueSignal>) {
    match signal {
        Some(signal) => signal.notified().await,
        None => std::future::pending().await,
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400)
}

impl Task {
    /// Starts the stream of a session creation request: the answer to send (with the
    /// features, XEP-0206 §4) and the task that serves the session's next requests, or the
    /// terminating answer when the stream failed at once.
    pub(crate) async fn create(
        ctx: Arc<HttpContext>,
        stream: ClientStream,
        terms: Terms,
        first: &Request,
        creation_attrs: &[(&'static str, String)],
        client_ip: IpAddr,
        kill: CancellationToken,
    ) -> Result<(Self, Bytes), Bytes> {
        let host = first.attrs.attr("to").unwrap_or_default().to_owned();
        let mut task = Task {
            window: Window::new(first.rid, terms.requests, terms.hold, terms.wait),
            ctx,
            stream,
            terms,
            host,
            waiters: HashMap::new(),
            extra: Vec::new(),
            out: Vec::new(),
            carried: Vec::new(),
            bound: false,
            queue_now: false,
            authenticated: false,
            inactivity: terms.inactivity,
            last_answer: Instant::now(),
            last_answer_empty: false,
            last_empty_poll: None,
            ending: None,
            kill,
        };
        let header = header_of(first, &task.host);
        task.feed(header, client_ip).await;
        if let Some(ending) = task.ending.take() {
            let mut payload = std::mem::take(&mut task.out);
            payload.extend_from_slice(&ending.payload);
            return Err(body::answer(&ending.attrs, &payload));
        }
        let authid = task.stream.responder_mut().stream_id().to_owned();
        let mut attrs: Vec<(&str, &str)> = creation_attrs
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        attrs.push(("authid", &authid));
        let answer = body::answer(&attrs, &std::mem::take(&mut task.out));
        Ok((task, answer))
    }

    /// Serves the session until it ends.
    pub(crate) async fn run(mut self, mut rx: mpsc::Receiver<Incoming>) {
        let shutdown = self.ctx.shutdown.clone();
        let kill = self.kill.clone();
        let mut shutting_down = false;
        let lost = loop {
            if let Some(lost) = self.flush() {
                break lost;
            }
            let signal = self.stream.session().map(|s| s.signal());
            let queued_now =
                self.bound && self.window.has_held() && self.queue_now && self.ending.is_none();
            let watch_queue = self.bound && self.ending.is_none() && !queued_now;
            let deadline = self.deadline();
            tokio::select! {
                biased;
                _ = shutdown.cancelled(), if !shutting_down => {
                    shutting_down = true;
                    // A bound session is kicked by the router, and says so through its queue.
                    if !self.bound {
                        self.end(Ending::terminate("system-shutdown"));
                    }
                }
                _ = kill.cancelled(), if self.ending.is_none() => {
                    self.end(Ending::terminate("policy-violation"));
                }
                incoming = rx.recv() => match incoming {
                    Some(incoming) => Box::pin(self.on_request(incoming)).await,
                    None => break true,
                },
                _ = queue_wait(signal), if watch_queue => self.on_queue(),
                _ = std::future::ready(()), if queued_now => self.on_queue(),
                _ = tokio::time::sleep_until(deadline) => {
                    if let Some(lost) = self.on_timer() {
                        break lost;
                    }
                }
            }
        };
        rx.close();
        let carried = std::mem::take(&mut self.carried);
        if let Some(session) = self.stream.session_mut()
            && !carried.is_empty()
        {
            session.unwritten(carried);
        }
        for (_, waiter) in self.waiters.drain() {
            let _ = waiter.send(body::terminate("item-not-found"));
        }
        Box::pin(self.stream.finish(lost)).await;
    }

    /// The session ends with `ending` (the first reason wins).
    fn end(&mut self, ending: Ending) {
        if self.ending.is_none() {
            debug!(condition = ?ending.attrs, "BOSH session ending");
            self.ending = Some(ending);
        }
    }

    /// Answers what is due; `Some(lost)` once the session's end has been told (or there is
    /// nobody left to tell).
    fn flush(&mut self) -> Option<bool> {
        if let Some(ending) = &self.ending {
            if self.waiters.is_empty() && self.extra.is_empty() {
                // Nobody to tell now (a kick, a takeover by a resumption, the shutdown): the
                // session ends at once, so that a stream resuming it elsewhere need not
                // wait; the client's next request finds no session (`item-not-found`).
                return Some(ending.lost);
            }
            let mut payload = std::mem::take(&mut self.out);
            payload.extend_from_slice(&ending.payload);
            let answer = body::answer(&ending.attrs, &payload);
            self.carried.clear();
            for (_, waiter) in self.waiters.drain() {
                let _ = waiter.send(answer.clone());
            }
            for waiter in self.extra.drain(..) {
                let _ = waiter.send(answer.clone());
            }
            return Some(ending.lost);
        }
        let now = Instant::now().into_std();
        while let Some((rid, due)) = self.window.answer_due(!self.out.is_empty(), now) {
            let payload = match due {
                Due::Payloads | Due::OverHold | Due::Expired => std::mem::take(&mut self.out),
            };
            self.answer_with_ack(rid, &payload, &[]);
        }
        None
    }

    /// Answers the held request `rid` with `payload` and `attrs`, and the `ack` of §9.1 when
    /// the client asked for acknowledgements and it says more than that this request came.
    fn answer_with_ack(&mut self, rid: u64, payload: &[u8], attrs: &[(&str, &str)]) {
        let through = self.window.received_through();
        let ack = (self.terms.acks && through != rid).then(|| through.to_string());
        let mut all: Vec<(&str, &str)> = attrs.to_vec();
        if let Some(ack) = &ack {
            all.push(("ack", ack));
        }
        self.answer(rid, body::answer(&all, payload), true);
        self.last_answer_empty = payload.is_empty();
    }

    /// XEP-0124 §9.2: the client's `ack` says it has not received an answer sent a while
    /// ago, so the oldest held request is answered at once with `report` (the request whose
    /// answer is missing) and `time` (milliseconds since it was sent); the client may then
    /// send that request again and get the kept copy.
    fn report_missed(&mut self, client_ack: u64) {
        let now = Instant::now().into_std();
        let Some((missing, ago)) = self.window.missed(client_ack, now) else {
            return;
        };
        let Some(oldest) = self.window.held().next() else {
            return;
        };
        let (report, time) = (missing.to_string(), ago.as_millis().to_string());
        let payload = std::mem::take(&mut self.out);
        self.answer_with_ack(oldest, &payload, &[("report", &report), ("time", &time)]);
    }

    fn answer(&mut self, rid: u64, answer: Bytes, keep: bool) {
        if let Some(waiter) = self.waiters.remove(&rid) {
            let _ = waiter.send(answer.clone());
        }
        self.window
            .answered(rid, answer, keep, Instant::now().into_std());
        self.carried.clear();
        self.last_answer = Instant::now();
    }

    /// When something must happen without the client: a held request's `wait` ends, or the
    /// session's inactivity.
    fn deadline(&self) -> Instant {
        let wait = self.window.next_deadline().map(Instant::from_std);
        let idle = (!self.window.is_open() && self.waiters.is_empty() && self.extra.is_empty())
            .then(|| self.last_answer + self.inactivity);
        match (wait, idle) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or_else(far_future),
        }
    }

    /// Early requests given up; `Some(lost)` when the session was inactive too long (§8).
    fn on_timer(&mut self) -> Option<bool> {
        let now = Instant::now();
        for rid in self.window.expire_early(now.into_std()) {
            if let Some(waiter) = self.waiters.remove(&rid) {
                let _ = waiter.send(body::recoverable());
            }
        }
        let idle = !self.window.is_open() && self.waiters.is_empty() && self.extra.is_empty();
        if idle && now >= self.last_answer + self.inactivity {
            debug!("BOSH session inactive");
            return Some(self.ending.as_ref().is_none_or(|e| e.lost));
        }
        None
    }

    async fn on_request(&mut self, incoming: Incoming) {
        let Incoming {
            req,
            client_ip,
            reply,
        } = incoming;
        if self.ending.is_some() {
            self.extra.push(reply);
            return;
        }
        // §10: a pause lasts until the next request.
        self.inactivity = self.terms.inactivity;
        let rid = req.rid;
        match self.window.arrive(rid, req, Instant::now().into_std()) {
            Arrival::Repeat(answer) => {
                let _ = reply.send(answer);
            }
            Arrival::Replaces => {
                if let Some(older) = self.waiters.insert(rid, reply) {
                    let _ = older.send(body::recoverable());
                }
            }
            Arrival::Early => {
                self.waiters.insert(rid, reply);
            }
            Arrival::NotFound => {
                debug!(rid, "rid out of the window");
                self.extra.push(reply);
                self.end(Ending::terminate("item-not-found"));
            }
            Arrival::Process(ready) => {
                self.waiters.insert(rid, reply);
                // The report goes first, on the oldest held request, before this request's
                // payloads can have that one answered without it.
                let client_ack = ready
                    .first()
                    .filter(|_| self.terms.acks)
                    .and_then(|(_, req)| req.number("ack").ok().flatten());
                if let Some(client_ack) = client_ack {
                    self.report_missed(client_ack);
                }
                for (rid, req) in ready {
                    if self.ending.is_some() {
                        break;
                    }
                    self.process(rid, req, client_ip).await;
                }
            }
        }
    }

    /// One request's payloads, in its turn.
    async fn process(&mut self, rid: u64, req: Request, client_ip: IpAddr) {
        let empty =
            req.children.is_empty() && !req.terminate && !req.restart && req.pause.is_none();
        if self.terms.hold == 0 {
            // §12: two empty requests closer than `polling`, the first answered empty.
            let now = Instant::now();
            let too_soon = self
                .last_empty_poll
                .is_some_and(|at| now < at + self.terms.polling);
            if empty && too_soon {
                return self.end(Ending::terminate("policy-violation"));
            }
            self.last_empty_poll = None;
            if empty {
                self.flush();
                if self.last_answer_empty {
                    self.last_empty_poll = Some(now);
                }
                return;
            }
        }
        if let Some(pause) = req.pause {
            // §10: every held request answered now, the pause request without payloads and
            // not kept for retransmission; the inactivity allowed is the pause until the
            // next request.
            let held: Vec<u64> = self.window.held().filter(|r| *r != rid).collect();
            for other in held {
                let payload = std::mem::take(&mut self.out);
                self.answer_with_ack(other, &payload, &[]);
            }
            self.answer(rid, body::empty(), false);
            self.inactivity = Duration::from_secs(pause).min(self.terms.max_pause);
            return;
        }
        let limits = self.ctx.c2s.settings().limits;
        if !self.authenticated && req.size > limits.max_stanza_bytes_unauthenticated {
            let e =
                StreamError::with_text(Cond::PolicyViolation, "too large before authentication");
            return self.stream_error(&e);
        }
        if req.restart {
            // XEP-0206 §5: the restart request's payloads, if any, are ignored.
            let header = header_of(&req, &self.host);
            return self.feed(header, client_ip).await;
        }
        for child in req.children {
            if self.ending.is_some() {
                return;
            }
            self.feed(StreamEvent::Stanza(child), client_ip).await;
        }
        if req.terminate && self.ending.is_none() {
            self.feed(StreamEvent::Close, client_ip).await;
        }
    }

    /// One event through the client stream, and what it asks for.
    async fn feed(&mut self, event: StreamEvent, client_ip: IpAddr) {
        let mut actions = Vec::new();
        let peer = (!self.bound).then_some(client_ip);
        Box::pin(self.stream.handle_event_from(event, peer, &mut actions)).await;
        for action in actions {
            match action {
                StreamAction::Send(bytes) => self.out.extend_from_slice(&bytes),
                StreamAction::Restart => self.authenticated = true,
                StreamAction::Bound => {
                    self.bound = true;
                    self.queue_now = true;
                }
                // The responder never offers STARTTLS over BOSH.
                StreamAction::StartTls => {}
                StreamAction::Close(bytes) => {
                    return self.end(Ending {
                        attrs: vec![("type", "terminate"), ("condition", "remote-stream-error")],
                        payload: bytes,
                        lost: false,
                    });
                }
                StreamAction::PeerClosed => {
                    // §13: the termination is acknowledged with type='terminate'.
                    return self.end(Ending {
                        attrs: vec![("type", "terminate")],
                        payload: Vec::new(),
                        lost: false,
                    });
                }
            }
        }
    }

    /// Ends the stream with `error` (XEP-0206 §7: in a `remote-stream-error` body).
    fn stream_error(&mut self, error: &StreamError) {
        let bytes = self.stream.error_bytes(error);
        self.end(Ending {
            attrs: vec![("type", "terminate"), ("condition", "remote-stream-error")],
            payload: bytes,
            lost: false,
        });
    }

    /// The session's queue, while a held request can carry what it holds.
    fn on_queue(&mut self) {
        let ctx = self.ctx.clone();
        let Some(session) = self.stream.session_mut() else {
            return;
        };
        if session.takeover_requested() {
            let e =
                StreamError::with_text(Cond::Conflict, "the session was resumed on another stream");
            return self.stream_error(&e);
        }
        if let Some(e) = session.kicked() {
            let saved = e.condition == Cond::SystemShutdown
                && session.resumable()
                && ctx.c2s.router.stream_management().saves_sessions();
            if saved {
                // The client resumes the session after the restart.
                return self.end(Ending::terminate("system-shutdown"));
            }
            return self.stream_error(&e);
        }
        if !self.window.has_held() {
            // Nothing to carry stanzas now: they wait in the queue for the next request.
            self.queue_now = true;
            return;
        }
        let first = match session.next_now() {
            Next::Item(first) => first,
            Next::Empty => {
                self.queue_now = false;
                return;
            }
            Next::Finished => {
                return self.end(Ending {
                    attrs: vec![("type", "terminate")],
                    payload: Vec::new(),
                    lost: false,
                });
            }
        };
        self.queue_now = true;
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match session.try_recv() {
                Some(next) => batch.push(next),
                None => break,
            }
        }
        let every = ctx.c2s.router.stream_management().config().request_every;
        let ack_request = session.ack_request_due(every);
        for outbound in &batch {
            self.out.extend_from_slice(&outbound.bytes);
        }
        if let Some(r) = ack_request {
            self.out.extend_from_slice(r);
        }
        self.carried.extend(batch);
    }
}
