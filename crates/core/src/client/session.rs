//! A bound client session, whatever carries it (RFC 6120 §8.1.2, RFC 6121 §4).
//!
//! The session keeps the state that belongs to it alone: whether it is available, to whom it
//! sent directed presence (§4.6, because those entities must hear that it went away even when
//! they are not subscribers), its queue of stanzas to write and the modules' per-session
//! state. Everything about contacts is left to the router's hooks (the IM module).
//!
//! It owns no socket: a transport takes elements from the client to [`ClientSession::handle`]
//! and writes what [`ClientSession::next_now`] hands out. Moving the value from one transport
//! to another (stream management resumption) keeps the registration, the queue and the
//! presence; only [`ClientSession::end`] unbinds it.

use std::sync::Arc;

use jid::{FullJid, Jid};
use tracing::info;
use xmppd_proto::{
    DefinedCondition, Rejected, Stanza, StanzaError, StanzaKind, StanzaParseError, StreamError,
    StreamErrorCondition as Cond, ns,
};
use xmppd_xml::Element;

use crate::extensions::Extensions;
use crate::hooks::{SessionEvent, SessionRef};
use crate::metrics::Peer;
use crate::outbound::Outbound;
use crate::queue::{Next, QueueReceiver, QueueSignal, session_queue};
use crate::router::Router;
use crate::session::SessionControl;

use super::csi::CsiHold;
use super::directed::MAX_DIRECTED_PRESENCE;
use super::sm::state::SmState;

/// A session after resource binding.
#[derive(Debug)]
pub struct ClientSession {
    pub(super) jid: FullJid,
    pub(super) conn_id: u64,
    pub(super) rx: QueueReceiver,
    pub(super) control: Arc<SessionControl>,
    /// Whether the session has sent available presence (RFC 6121 §4.2). Where it sent
    /// directed presence meanwhile is kept in its control (see [`super::DirectedPresence`]).
    pub(super) available: bool,
    /// Stanzas taken from the queue whose write failed.
    pub(super) unwritten: Vec<Arc<Stanza>>,
    /// Stream management, once enabled (boxed: most sessions of a busy server are idle and
    /// the counters are then not worth their room inline).
    pub(super) sm: Option<Box<SmState>>,
    /// What is held back while the client says it is inactive (XEP-0352); `None` while it
    /// is active.
    pub(super) csi: Option<Box<CsiHold>>,
    /// The router's metrics, where what the session hands its transport is counted.
    pub(super) metrics: Arc<crate::metrics::Metrics>,
}

impl ClientSession {
    /// Binds `jid` (the connection `conn_id`) with a queue of `capacity` stanzas. A session
    /// already bound to the same full JID is replaced (RFC 6120 §7.7.2.2): its presence ends
    /// now, before this one can send any.
    pub async fn bind(router: &Router, jid: FullJid, conn_id: u64, capacity: usize) -> Self {
        let (tx, rx) = session_queue(capacity);
        let control = Arc::new(SessionControl::waking(rx.signal()));
        let replaced = router.sessions().bind(&jid, conn_id, tx, control.clone());
        if let Some(old) = replaced
            && old.priority.is_some()
        {
            // The kicked task stays silent: the full JID is live again. The entities the old
            // session sent directed presence to are told here, before the new session can
            // send them any (RFC 6121 §4.6.3): a room would otherwise keep the old occupant
            // and send its traffic to the new session.
            let directed = old.take_directed();
            announce_unavailable(router, &jid, old.ext(), &directed).await;
        }
        let session = ClientSession {
            jid,
            conn_id,
            rx,
            control,
            available: false,
            unwritten: Vec::new(),
            sm: None,
            csi: None,
            metrics: router.metrics().clone(),
        };
        info!(jid = %session.jid, "resource bound");
        router
            .session_event(session.as_ref(), SessionEvent::Bound)
            .await;
        session
    }

    /// The session's full JID.
    pub fn jid(&self) -> &FullJid {
        &self.jid
    }

    /// The modules' state for this session.
    pub fn ext(&self) -> &Extensions {
        self.control.ext()
    }

    /// The session as hooks see it.
    pub fn as_ref(&self) -> SessionRef<'_> {
        SessionRef {
            jid: &self.jid,
            ext: self.control.ext(),
        }
    }

    /// What wakes the session's transport: a stanza queued, a kick.
    pub fn signal(&self) -> QueueSignal {
        self.rx.signal()
    }

    /// Why the session must end, if something ended it from outside (replacement, slow
    /// consumer, shutdown, an admin).
    pub fn kicked(&self) -> Option<StreamError> {
        self.control.is_kicked().then(|| self.control.reason())
    }

    /// Whether the session writes what is queued before the stream error of its kick
    /// ([`SessionControl::kick_after_queued`]).
    pub fn drains_before_close(&self) -> bool {
        self.control.drains_before_close()
    }

    /// The next stanza to write, without waiting. With stream management it counts as sent
    /// from here on, and stays until the client acknowledges it; while the client is
    /// inactive, what can wait is held back (see [`crate::client::csi`]).
    pub fn next_now(&mut self) -> Next {
        let next = loop {
            if let Some(released) = self.csi.as_mut().and_then(|csi| csi.released()) {
                break Next::Item(released);
            }
            match self.rx.next_now() {
                Next::Item(outbound) => match self.csi.as_mut() {
                    None => break Next::Item(outbound),
                    Some(csi) => match csi.filter(outbound) {
                        Some(now) => break Next::Item(now),
                        None => continue,
                    },
                },
                other => break other,
            }
        };
        if let Next::Item(outbound) = &next {
            self.metrics.sent_bytes(Peer::Client, &outbound.bytes);
            if self.sm.is_some() {
                self.record_sent(outbound);
            }
        }
        next
    }

    /// Another queued stanza, if one is there now (to batch writes); counted and held as
    /// [`ClientSession::next_now`] does.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        let next = match self.csi.as_mut() {
            None => self.rx.try_recv(),
            Some(csi) => loop {
                if let Some(released) = csi.released() {
                    break Some(released);
                }
                match self.rx.try_recv() {
                    Some(outbound) => {
                        if let Some(now) = csi.filter(outbound) {
                            break Some(now);
                        }
                    }
                    None => break None,
                }
            },
        };
        if let Some(outbound) = &next {
            self.metrics.sent_bytes(Peer::Client, &outbound.bytes);
            if self.sm.is_some() {
                self.record_sent(outbound);
            }
        }
        next
    }

    /// Whether the session's queue is half full: the transport writes it out before it takes
    /// more from the client. What the client's own stanzas cause (answers, errors) goes to
    /// this queue without waiting, so a client that sends faster than the server writes to
    /// it would otherwise fill its own queue and be closed as a slow consumer, or lose the
    /// errors owed to it; this way the client's reading paces its sending.
    pub fn queue_half_full(&self) -> bool {
        self.rx.len() * 2 >= self.rx.capacity()
    }

    /// The next stanza to write while the queue is half full
    /// ([`ClientSession::queue_half_full`]), taken as [`ClientSession::next_now`] does;
    /// `None` once it is less than that.
    pub fn next_backlog(&mut self) -> Option<Outbound> {
        if !self.queue_half_full() {
            return None;
        }
        match self.next_now() {
            Next::Item(outbound) => Some(outbound),
            Next::Empty | Next::Finished => None,
        }
    }

    /// The client says it is inactive (XEP-0352 `<inactive/>`).
    pub fn set_inactive(&mut self) {
        self.csi.get_or_insert_with(Box::default);
    }

    /// The client is active again (`<active/>`, or a resumed stream, which always starts
    /// active): everything held, joined, to write before anything else the client's next
    /// stanzas cause (§5); counted as sent.
    pub fn set_active(&mut self) -> Vec<u8> {
        let Some(csi) = self.csi.take() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for outbound in csi.drain() {
            out.extend_from_slice(&outbound.bytes);
            self.record_sent(&outbound);
        }
        out
    }

    /// What the inactive client has been spared so far, when the session ends.
    pub(super) fn take_held(&mut self) -> Vec<Outbound> {
        self.csi
            .take()
            .map(|csi| csi.drain().collect())
            .unwrap_or_default()
    }

    /// Stanzas the transport took but could not write: they are routed again when the
    /// session ends. With stream management they are already among the unacknowledged.
    pub fn unwritten(&mut self, batch: impl IntoIterator<Item = Outbound>) {
        if self.sm.is_none() {
            self.unwritten
                .extend(batch.into_iter().filter_map(|outbound| outbound.reroute));
        }
    }

    /// Handles one element from the client: checks, stamps `from`, and routes it. Returns
    /// bytes to write straight back to the client, or the stream error that ends the
    /// session.
    pub async fn handle(
        &mut self,
        router: &Router,
        el: Element,
    ) -> Result<Option<Vec<u8>>, StreamError> {
        // The element is moved through parsing and from-stamping, never copied: a refused one
        // comes back with the error for the bounce.
        let stanza = match Stanza::parse_keeping(el, ns::CLIENT).map_err(Rejected::into_parts) {
            Ok(s) => s,
            Err((StanzaParseError::NotAStanza(name), _)) => {
                let text = format!("<{name}/> is not a stanza this server understands");
                return Err(StreamError::with_text(Cond::UnsupportedStanzaType, text));
            }
            Err((StanzaParseError::Invalid(error), el)) => {
                return Ok(bounce_unparsed(&el, &self.jid, &error));
            }
        };
        // RFC 6120 §8.1.2.1: a client may only name itself (full or bare JID) as the sender.
        if let Some(from) = stanza.from() {
            let own = match from.try_as_full() {
                Ok(full) => full == &self.jid,
                Err(bare) => bare == &self.jid.to_bare(),
            };
            if !own {
                let text = format!("you are {}, not {from}", self.jid);
                return Err(StreamError::with_text(Cond::InvalidFrom, text));
            }
        }
        let mut stanza = stanza.into_with_from(Jid::from(self.jid.clone()));
        stanza.remove_claimed_delays(|from| router.is_server_owned(from));
        if stanza.kind() == StanzaKind::Presence {
            let Some(to) = stanza.to().cloned() else {
                self.broadcast_presence(router, stanza).await;
                return Ok(None);
            };
            if !self.track_directed(&stanza, to) {
                let error = StanzaError::new(DefinedCondition::PolicyViolation).with_text(format!(
                    "at most {MAX_DIRECTED_PRESENCE} entities can receive directed presence at once"
                ));
                return Ok(stanza.error_reply(&error).map(|bounce| {
                    let mut out = Vec::new();
                    bounce.element().write_to(&mut out, ns::CLIENT);
                    out
                }));
            }
        }
        if let Some(completion) = router.route_from_session(self.as_ref(), stanza).await {
            self.handled_later(completion).await;
        }
        Ok(None)
    }

    /// The entities that had directed presence, forgotten.
    pub(super) fn take_directed(&mut self) -> Vec<Jid> {
        self.control.directed().take()
    }

    /// Remembers directed presence (RFC 6121 §4.6): available presence adds the target
    /// (while the session is available), unavailable presence removes it; subscription
    /// stanzas change nothing. Returns `false` when the target would exceed
    /// [`MAX_DIRECTED_PRESENCE`]; the presence is then refused rather than sent untracked, so
    /// no entity is left believing the session is online.
    fn track_directed(&mut self, stanza: &Stanza, to: Jid) -> bool {
        let directed = self.control.directed();
        match stanza.type_attr() {
            None if self.available => directed.add(to),
            Some("unavailable") => {
                directed.remove(&to);
                true
            }
            _ => true,
        }
    }

    /// Presence without `to` is the session's broadcast presence.
    async fn broadcast_presence(&mut self, router: &Router, stanza: Stanza) {
        let sessions = router.sessions();
        match stanza.type_attr() {
            None => {
                let initial = !self.available;
                self.available = true;
                let priority = priority_of(&stanza);
                let mut stanza = router.run_broadcast_presence(self.as_ref(), stanza).await;
                // Kept as the session's presence while it lasts: without the room the hooks'
                // additions left (the avatar's `<x><photo/></x>` cost 1.4 KiB per session).
                stanza.shrink_to_fit();
                let stanza = Arc::new(stanza);
                sessions.set_presence(&self.jid, self.conn_id, Some((priority, stanza.clone())));
                let event = SessionEvent::Available {
                    stanza: &stanza,
                    initial,
                    priority,
                };
                router.session_event(self.as_ref(), event).await;
            }
            Some("unavailable") => {
                if self.available {
                    self.available = false;
                    sessions.set_presence(&self.jid, self.conn_id, None);
                    let directed = self.take_directed();
                    let event = SessionEvent::Unavailable {
                        stanza: &stanza,
                        directed: &directed,
                    };
                    router.session_event(self.as_ref(), event).await;
                }
            }
            // Subscription management and probes without a 'to' mean nothing.
            Some(_) => {}
        }
    }

    /// Unregisters the session; an available one is announced unavailable to the user's
    /// other resources, whether its stream ended cleanly or the transport died. A session
    /// that was replaced by a new one with the same resource was already announced when it
    /// was replaced and says nothing now: the full JID is live again.
    ///
    /// Stanzas still queued for the session, or sent but not acknowledged under stream
    /// management, are routed again once it is unbound, so none is lost silently (see
    /// [`ClientSession::dispose_pending`]).
    pub async fn end(mut self, router: &Router) {
        self.settle_handled().await;
        self.expire_resumption(router);
        let still_bound = router.sessions().unbind(&self.jid, self.conn_id);
        if still_bound && self.available {
            let directed = self.take_directed();
            announce_unavailable(router, &self.jid, self.control.ext(), &directed).await;
        }
        if still_bound {
            router
                .session_event(self.as_ref(), SessionEvent::Closed)
                .await;
        }
        self.dispose_pending(router).await;
    }
}

/// An error answer for an element that failed envelope checks, addressed back to the session
/// (we cannot trust its addresses, so it carries none but ours). `None` for error stanzas.
fn bounce_unparsed(el: &Element, me: &FullJid, error: &StanzaError) -> Option<Vec<u8>> {
    let mut reply = xmppd_proto::bounce_unparsed(el, error)?;
    reply.remove_attr("from");
    reply.set_attr("to", me.as_str());
    let mut out = Vec::new();
    reply.write_to(&mut out, ns::CLIENT);
    Some(out)
}

/// RFC 6121 §4.7.2.3: an integer from -128 to 127; anything else counts as 0.
fn priority_of(stanza: &Stanza) -> i8 {
    stanza
        .element()
        .child("priority", ns::CLIENT)
        .and_then(|p| p.text().trim().parse::<i8>().ok())
        .unwrap_or(0)
}

/// Tells the account's other available resources, its contacts and the entities it sent
/// directed presence to that `jid` went offline (RFC 6121 §4.5.2, §4.6.3), on behalf of a
/// session that ended or was replaced. The registry must no longer hold that session's
/// presence.
pub(super) async fn announce_unavailable(
    router: &Router,
    jid: &FullJid,
    ext: &Extensions,
    directed: &[Jid],
) {
    let el = Element::new("presence", ns::CLIENT)
        .with_attr("type", "unavailable")
        .with_attr("from", jid.as_str());
    let stanza =
        Stanza::new_unchecked(StanzaKind::Presence, Some(Jid::from(jid.clone())), None, el);
    let event = SessionEvent::Unavailable {
        stanza: &stanza,
        directed,
    };
    router.session_event(SessionRef { jid, ext }, event).await;
}
