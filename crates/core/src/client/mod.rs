//! One client session, independent of the transport that carries it.
//!
//! A client's stream is negotiated by the sans-IO [`C2sResponder`] and, once a resource is
//! bound, carried by a [`ClientSession`]. [`ClientStream`] joins the two and does the
//! asynchronous steps between them (credential lookups, binding, routing), so that a
//! transport — TCP with STARTTLS or direct TLS today, WebSocket and BOSH next — only moves
//! bytes: it feeds the XML events it parsed to [`ClientStream::handle_event`] and carries out
//! the [`StreamAction`]s it gets back, in order; and it writes what the session's queue holds
//! whenever [`ClientSession::signal`] wakes it.
//!
//! Stream management resumption moves a session from a dead transport to a new one:
//! [`ClientStream::detach`] takes it out without ending it (it stays bound and keeps
//! receiving into its queue), and [`ClientStream::attach`] puts it into a new stream whose
//! client authenticated as the same account.

pub mod csi;
mod directed;
mod session;
mod session_sm;
pub mod sm;
mod stream_sm;

pub use directed::{DirectedPresence, MAX_DIRECTED_PRESENCE};
pub use session::ClientSession;

use std::sync::Arc;

use tracing::{error, info};
use xmppd_proto::{StanzaError, StreamError, StreamErrorCondition as Cond, ns};
use xmppd_stream::{C2sOutput, C2sResponder};
use xmppd_xml::StreamEvent;

use crate::module::{IqType, RegistrationRequest};
use crate::router::Router;

/// What a transport must do, in order, after an event.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamAction {
    /// Write these bytes to the client.
    Send(Vec<u8>),
    /// Start TLS now: the transport discards everything it read so far, handshakes and then
    /// calls [`C2sResponder::tls_established`] (TCP only).
    StartTls,
    /// The stream restarted after SASL success: the transport's parser starts a new document,
    /// with the limits of an authenticated stream.
    Restart,
    /// A resource was bound: the session's queue is now worth waiting on.
    Bound,
    /// Write these bytes (a stream error, with our header if it was not sent yet) and close.
    Close(Vec<u8>),
    /// The client closed its stream: answer with `</stream:stream>` and close.
    PeerClosed,
}

/// A client's stream from its first event to its last, whatever carries it.
#[derive(Debug)]
pub struct ClientStream {
    router: Arc<Router>,
    responder: C2sResponder,
    conn_id: u64,
    queue_capacity: usize,
    session: Option<ClientSession>,
    /// The invitation token this stream presented and the registration accepted (XEP-0445
    /// §4), for the registration that follows on the same stream.
    preauth: Option<String>,
}

impl ClientStream {
    /// A stream negotiated by `responder`; a bound session gets a queue of
    /// `queue_capacity` stanzas; `conn_id` tells this connection from a replacement.
    pub fn new(
        router: Arc<Router>,
        responder: C2sResponder,
        conn_id: u64,
        queue_capacity: usize,
    ) -> Self {
        ClientStream {
            router,
            responder,
            conn_id,
            queue_capacity,
            session: None,
            preauth: None,
        }
    }

    /// The negotiation (for TLS state and stream error bytes).
    pub fn responder_mut(&mut self) -> &mut C2sResponder {
        &mut self.responder
    }

    /// The router.
    pub fn router(&self) -> &Arc<Router> {
        &self.router
    }

    /// The bound session.
    pub fn session(&self) -> Option<&ClientSession> {
        self.session.as_ref()
    }

    /// The bound session, to drain its queue.
    pub fn session_mut(&mut self) -> Option<&mut ClientSession> {
        self.session.as_mut()
    }

    /// The bytes that end the stream with `error`.
    pub fn error_bytes(&mut self, error: &StreamError) -> Vec<u8> {
        info!(condition = error.condition.as_str(), text = ?error.text, "closing with stream error");
        self.responder.error_bytes(error)
    }

    /// Takes the session out of this stream without ending it: it stays bound, keeps its
    /// presence and keeps receiving into its queue until it is attached to another stream or
    /// ended.
    pub fn detach(&mut self) -> Option<ClientSession> {
        self.session.take()
    }

    /// Carries `session` on this stream from now on. Refused (the session comes back) unless
    /// the stream authenticated as the session's account and has no session yet.
    pub async fn attach(&mut self, session: ClientSession) -> Result<(), ClientSession> {
        let same_account = self
            .responder
            .user()
            .is_some_and(|user| *user == session.jid().to_bare());
        if !same_account || self.session.is_some() {
            return Err(session);
        }
        self.responder.attached();
        self.router
            .session_event(session.as_ref(), crate::hooks::SessionEvent::Resumed)
            .await;
        self.session = Some(session);
        Ok(())
    }

    /// Handles one event of the client's stream; appends what the transport must do.
    pub async fn handle_event(&mut self, event: StreamEvent, actions: &mut Vec<StreamAction>) {
        self.handle_event_from(event, None, actions).await;
    }

    /// [`ClientStream::handle_event`] for a transport that knows the client's address, which
    /// registration policies and the slowing of failed authentications (XEP-0205 §4.3, see
    /// [`crate::per_address::AuthThrottle`]) need before authentication (IPv4-mapped IPv6
    /// addresses count as the IPv4 address they carry). The address is not kept: an idle
    /// connection's state stays as small as it was.
    pub async fn handle_event_from(
        &mut self,
        event: StreamEvent,
        peer: Option<std::net::IpAddr>,
        actions: &mut Vec<StreamAction>,
    ) {
        let peer = peer.map(|ip| ip.to_canonical());
        let mut outputs = Vec::new();
        self.responder.handle(event, &mut outputs);
        let mut queue: std::collections::VecDeque<C2sOutput> = outputs.into();
        while let Some(output) = queue.pop_front() {
            match output {
                C2sOutput::Send(bytes) => {
                    // Once bound, what the negotiation sends is its answer to a stanza (the
                    // legacy session iq, a second bind).
                    if let Some(session) = self.session.as_mut() {
                        session.count_handled();
                        session.record_direct(&bytes);
                    }
                    actions.push(StreamAction::Send(bytes));
                }
                C2sOutput::StartTls => actions.push(StreamAction::StartTls),
                C2sOutput::ResetStream => actions.push(StreamAction::Restart),
                C2sOutput::LookupCredentials { host, username } => {
                    match self.router.accounts().credentials(&host, &username).await {
                        Ok(creds) => {
                            let mut more = Vec::new();
                            self.responder.credentials(creds.as_ref(), &mut more);
                            queue.extend(more);
                        }
                        Err(e) => {
                            error!(error = %e, "credential lookup failed");
                            let e = StreamError::with_text(
                                Cond::InternalServerError,
                                "the account database is unavailable",
                            );
                            actions.push(StreamAction::Close(self.error_bytes(&e)));
                            return;
                        }
                    }
                }
                C2sOutput::Register {
                    host,
                    iq_id,
                    set,
                    query,
                } => {
                    let answer = match self.router.registry().registration_on(&host) {
                        Some(registration) => {
                            let request = RegistrationRequest {
                                host: &host,
                                peer,
                                iq_type: if set { IqType::Set } else { IqType::Get },
                                query: &query,
                                router: &self.router,
                                preauth: &mut self.preauth,
                            };
                            registration.handle(request).await
                        }
                        None => Err(StanzaError::service_unavailable()),
                    };
                    let mut more = Vec::new();
                    self.responder.registered(&iq_id, set, answer, &mut more);
                    queue.extend(more);
                }
                C2sOutput::SaslAnswer { success } => {
                    if let Some(ip) = peer {
                        self.router.auth_throttle().answer(ip, success).await;
                    }
                }
                C2sOutput::Authenticated {
                    jid,
                    mechanism,
                    channel_binding,
                } => {
                    tracing::Span::current().record("jid", tracing::field::display(&jid));
                    self.router.metrics().login(mechanism.name());
                    info!(
                        mechanism = %mechanism.name(),
                        channel_binding = %channel_binding.map_or("none", |cb| cb.name()),
                        "authenticated"
                    );
                }
                C2sOutput::AuthFailed {
                    mechanism,
                    condition,
                } => {
                    let mechanism = mechanism.map_or("none", |m| m.name());
                    let metrics = self.router.metrics();
                    metrics.login_failed(mechanism, condition.as_str());
                    info!(
                        mechanism = %mechanism,
                        condition = %condition.as_str(),
                        "authentication failed"
                    );
                }
                C2sOutput::Bind { iq_id, jid } => {
                    tracing::Span::current().record("jid", tracing::field::display(&jid));
                    let session =
                        ClientSession::bind(&self.router, jid, self.conn_id, self.queue_capacity)
                            .await;
                    session.control.set_origin(crate::session::SessionOrigin {
                        ip: peer,
                        websocket: self.responder.is_websocket(),
                        tls: self.responder.is_tls(),
                        since: std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs()),
                    });
                    let result = self.responder.bound(&iq_id, session.jid());
                    self.session = Some(session);
                    actions.push(StreamAction::Bound);
                    actions.push(StreamAction::Send(result));
                }
                C2sOutput::Stanza(el) => {
                    let Some(session) = self.session.as_mut() else {
                        continue;
                    };
                    let metrics = self.router.metrics();
                    metrics.received_element(crate::metrics::Peer::Client, el.name());
                    if el.ns() == ns::CSI {
                        // XEP-0352: nonzas, neither answered nor counted.
                        match el.name() {
                            "inactive" => session.set_inactive(),
                            "active" => {
                                let held = session.set_active();
                                if !held.is_empty() {
                                    actions.push(StreamAction::Send(held));
                                }
                            }
                            other => {
                                let e = StreamError::with_text(
                                    Cond::UnsupportedStanzaType,
                                    format!("<{other}/> is not a client state"),
                                );
                                actions.push(StreamAction::Close(self.error_bytes(&e)));
                                return;
                            }
                        }
                        continue;
                    }
                    match session.handle(&self.router, el).await {
                        Ok(None) => session.count_handled(),
                        Ok(Some(reply)) => {
                            session.count_handled();
                            session.record_direct(&reply);
                            actions.push(StreamAction::Send(reply));
                        }
                        Err(e) => {
                            actions.push(StreamAction::Close(self.error_bytes(&e)));
                            return;
                        }
                    }
                }
                C2sOutput::StreamManagement(el) => {
                    if !self.stream_management(&el, actions).await {
                        return;
                    }
                }
                C2sOutput::Close(e) => {
                    actions.push(StreamAction::Close(self.error_bytes(&e)));
                    return;
                }
                C2sOutput::PeerClosed => {
                    actions.push(StreamAction::PeerClosed);
                    return;
                }
            }
        }
    }

    /// Ends the stream's session, if any (see [`ClientSession::end`]).
    pub async fn end(&mut self) {
        if let Some(session) = self.session.take() {
            session.end(&self.router).await;
        }
    }

    /// The transport is done with the stream: its session is handed to a stream that resumes
    /// it, or waits to be resumed when the link was lost (`link_lost`: the connection broke
    /// or went silent, as opposed to a closed stream), or is saved at shutdown; otherwise it
    /// ends.
    pub async fn finish(&mut self, link_lost: bool) {
        let Some(session) = self.session.take() else {
            return;
        };
        let Some(session) = session.hand_over() else {
            return;
        };
        let shutdown = session
            .kicked()
            .is_some_and(|e| e.condition == Cond::SystemShutdown);
        if shutdown {
            session.save_or_end(&self.router).await;
        } else if link_lost && session.kicked().is_none() && session.resumable() {
            let window = session.resume_window();
            sm::park(self.router.clone(), session, window).await;
        } else {
            session.end(&self.router).await;
        }
    }
}
