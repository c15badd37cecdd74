//! What stream management (XEP-0198) adds to a client session: counting what it sends and
//! handles, keeping what the client has not acknowledged, handing the session to the stream
//! that resumes it, and disposing of its stanzas when it ends for good.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info};
use xmppd_proto::{
    DefinedCondition, Stanza, StanzaError, StanzaKind, StreamError, StreamErrorCondition,
};
use xmppd_xml::Element;

use super::ClientSession;
use super::session::announce_unavailable;
use super::sm::handled::MAX_WAITING;
use super::sm::id::SmId;
use super::sm::persist::{self, Restored, SavedPresence, SavedSession, SavedStanza};
use super::sm::state::{HandledCountTooHigh, SmState};
use crate::completion::Completion;
use crate::hooks::SessionEvent;
use crate::outbound::Outbound;
use crate::queue::session_queue;
use crate::router::Router;
use crate::session::SessionControl;

/// Connection ids of sessions restored at start, apart from those of connections.
static RESTORED_CONN_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1 << 63);

impl ClientSession {
    /// Whether stream management is enabled.
    pub fn sm_enabled(&self) -> bool {
        self.sm.is_some()
    }

    /// Client stanzas handled since `<enable/>` (the `h` of `<a/>` and `<resumed/>`), not
    /// counting any whose completion is still pending, nor what the client sent after it.
    pub fn handled(&mut self) -> Option<u32> {
        self.sm.as_mut().map(|sm| sm.handled.settle())
    }

    /// Counts one stanza from the client as handled: called once it was processed (routed,
    /// and committed where a module commits it), never before; behind a pending completion
    /// it is counted when that completion is done.
    pub fn count_handled(&mut self) {
        if let Some(sm) = self.sm.as_mut() {
            sm.handled.count();
        }
    }

    /// The stanza about to be counted is handled only when `completion` is done (see
    /// [`crate::completion`]). Without stream management nothing is counted, so nothing
    /// waits. A session with [`MAX_WAITING`] completions pending waits for the oldest first,
    /// which holds back its reading.
    pub async fn handled_later(&mut self, completion: Completion) {
        let Some(sm) = self.sm.as_mut() else { return };
        sm.handled.settle();
        if sm.handled.waiting() >= MAX_WAITING {
            sm.handled.wait_oldest().await;
        }
        sm.handled.wait_for(completion);
    }

    /// Waits until no completion is pending, so that `h` counts everything handled (before
    /// the session is saved or ends for good; each completion is one commit away).
    pub(super) async fn settle_handled(&mut self) {
        if let Some(sm) = self.sm.as_mut() {
            while sm.handled.waiting() > 0 {
                sm.handled.wait_oldest().await;
            }
        }
    }

    /// Enables stream management (§3) with `window` to resume, when `id` is given; returns
    /// the `<enabled/>` answer.
    pub(crate) fn enable_sm(&mut self, router: &Router, resume: bool, max: Option<u32>) -> Element {
        let sm = router.stream_management();
        let id = if resume { SmId::generate() } else { None };
        let mut state = SmState::new(id, sm.window(max));
        state.set_max_unacked(sm.config().max_unacked);
        if let Some(id) = id {
            sm.register(id, self.control.clone());
        }
        let window = state.window();
        self.sm = Some(Box::new(state));
        info!(resumable = id.is_some(), "stream management enabled");
        xmppd_proto::sm::enabled(
            id.as_ref().map(SmId::as_str),
            id.map(|_| window.as_secs() as u32),
        )
    }

    /// Counts a stanza handed to the transport; beyond `[sm] max_unacked` the session is
    /// closed with `policy-violation` and will not be resumed.
    pub(super) fn record_sent(&mut self, outbound: &Outbound) {
        let Some(sm) = self.sm.as_mut() else { return };
        sm.sent(outbound);
        if sm.over_max_unacked() && !sm.no_resume {
            sm.no_resume = true;
            self.control.kick(StreamError::with_text(
                StreamErrorCondition::PolicyViolation,
                "too many stanzas left unacknowledged",
            ));
        }
    }

    /// Counts bytes written straight back to the client (an answer to one of its stanzas).
    pub fn record_direct(&mut self, bytes: &[u8]) {
        if self.sm.is_some() {
            let outbound = Outbound {
                bytes: bytes::Bytes::copy_from_slice(bytes),
                reroute: None,
            };
            self.record_sent(&outbound);
        }
    }

    /// The client acknowledged `h` stanzas.
    pub(crate) fn sm_ack(&mut self, h: u32) -> Result<(), HandledCountTooHigh> {
        match self.sm.as_mut() {
            Some(sm) => sm.ack(h).inspect_err(|_| sm.no_resume = true),
            None => Ok(()),
        }
    }

    /// `<r/>` to write after a batch, when `every` stanzas were sent since the last one.
    pub fn ack_request_due(&mut self, every: u32) -> Option<&'static [u8]> {
        let sm = self.sm.as_mut()?;
        if sm.request_due(every) {
            sm.requested();
            return Some(xmppd_proto::sm::REQUEST_BYTES);
        }
        None
    }

    /// When stanzas sent but not yet requested call for an `<r/>`, `after` they were sent.
    pub fn ack_request_deadline(&self, after: Duration) -> Option<Instant> {
        self.sm.as_ref()?.request_deadline(after)
    }

    /// An `<r/>` was written for another reason (the link is quiet).
    pub fn ack_requested(&mut self) {
        if let Some(sm) = self.sm.as_mut() {
            sm.requested();
        }
    }

    /// Whether another stream asked for this session (resumption while still connected).
    pub fn takeover_requested(&self) -> bool {
        self.sm.is_some() && self.control.claimed()
    }

    /// Hands the session to the stream that claimed it; the session comes back when none did
    /// (or the claimant gave up).
    pub(crate) fn hand_over(self) -> Option<ClientSession> {
        let Some(tx) = self.sm.as_ref().and_then(|_| self.control.take_claim()) else {
            return Some(self);
        };
        debug!("handed over to the resuming stream");
        tx.send(self).err()
    }

    /// Whether the session can wait for a new stream when its transport is lost.
    pub fn resumable(&self) -> bool {
        self.sm
            .as_ref()
            .is_some_and(|sm| sm.id.is_some() && !sm.no_resume)
    }

    pub(crate) fn resume_window(&self) -> Duration {
        self.sm.as_ref().map_or(Duration::ZERO, |sm| sm.window())
    }

    pub(crate) fn set_resume_deadline(&mut self, deadline: Instant) {
        if let Some(sm) = self.sm.as_mut() {
            sm.deadline = Some(deadline);
        }
    }

    /// The stanzas to send again on resumption, joined, after the client's `h` was applied.
    pub(crate) fn unacked_bytes(&self) -> Vec<u8> {
        let Some(sm) = self.sm.as_ref() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for outbound in sm.unacked() {
            out.extend_from_slice(&outbound.bytes);
        }
        out
    }

    /// The session's SM-ID, if resumable.
    pub(crate) fn sm_id(&self) -> Option<SmId> {
        self.sm.as_ref().and_then(|sm| sm.id)
    }

    /// Forgets the resumption id: the session ends for good.
    pub(super) fn expire_resumption(&mut self, router: &Router) {
        if let Some(sm) = &mut self.sm
            && let Some(id) = sm.id
        {
            router
                .stream_management()
                .expire(id, &self.jid.to_bare(), sm.handled.settle());
        }
    }

    /// Routes again what the session will never write, once it is unbound. Without stream
    /// management that is whatever was still queued, treated as sent to a resource that is
    /// gone (RFC 6121 §8.5.3.2). With it, also what was sent and not acknowledged (§4:
    /// handled "as a stanza sent to an unavailable resource"), under the durability rule:
    /// `chat` and `normal` messages go to another resource or to offline storage, iq
    /// requests are answered with `recipient-unavailable`, everything else is dropped.
    pub(super) async fn dispose_pending(&mut self, router: &Router) {
        self.rx.close();
        let managed = self.sm.is_some();
        let mut pending: Vec<Arc<Stanza>> = Vec::new();
        if let Some(sm) = self.sm.as_mut() {
            pending.extend(sm.take_unacked().into_iter().filter_map(|o| o.reroute));
        }
        pending.extend(self.take_held().into_iter().filter_map(|o| o.reroute));
        pending.append(&mut self.unwritten);
        while let Some(outbound) = self.rx.try_recv() {
            pending.extend(outbound.reroute);
        }
        for stanza in pending {
            let stanza = Arc::unwrap_or_clone(stanza);
            if !managed {
                router.reroute(stanza).await;
                continue;
            }
            match (stanza.kind(), stanza.type_attr()) {
                (StanzaKind::Message, None | Some("normal" | "chat")) => {
                    router.reroute(stanza).await;
                }
                (StanzaKind::Iq, Some("get" | "set")) => {
                    let error = StanzaError::new(DefinedCondition::RecipientUnavailable)
                        .with_text("the session ended before it handled this request");
                    if let Some(bounce) = stanza.error_reply(&error) {
                        router.route_owed(bounce).await;
                    }
                }
                _ => {}
            }
        }
    }

    /// At shutdown: saves a resumable session to be restored at the next start, unbinding
    /// it without telling anyone it went away; any other session simply ends.
    pub(crate) async fn save_or_end(mut self, router: &Router) {
        let id = match self.sm_id() {
            Some(id) if self.resumable() && router.stream_management().store().is_some() => id,
            _ => return self.end(router).await,
        };
        let presence = router
            .sessions()
            .get(&self.jid)
            .and_then(|r| r.priority.zip(r.last_presence));
        if !router.sessions().unbind(&self.jid, self.conn_id) {
            // Replaced by another session of the same resource meanwhile.
            return self.end(router).await;
        }
        self.rx.close();
        self.settle_handled().await;
        let mut unsent = self.take_held();
        while let Some(outbound) = self.rx.try_recv() {
            unsent.push(outbound);
        }
        let Some(sm) = self.sm.as_mut() else { return };
        sm.append_unsent(unsent);
        let remaining = sm
            .deadline
            .map_or(sm.window(), |d| d.saturating_duration_since(Instant::now()));
        let saved = SavedSession {
            jid: self.jid.to_string(),
            window_secs: sm.window().as_secs(),
            expires_at: persist::now_secs() + remaining.as_secs(),
            handled: sm.handled.settle(),
            acked: sm.acked(),
            unacked: sm.unacked().map(SavedStanza::from_outbound).collect(),
            presence: presence.map(|(priority, stanza)| SavedPresence {
                priority,
                xml: String::from_utf8_lossy(&crate::router::client_bytes(&stanza)).into_owned(),
            }),
            directed: self
                .control
                .directed()
                .snapshot()
                .iter()
                .map(|j| j.to_string())
                .collect(),
            modules: router.registry().save_session_state(self.control.ext()),
        };
        if persist::save(router, id.as_str(), &saved).await {
            router.stream_management().forget(id);
            info!("saved for resumption after the restart");
            return;
        }
        // Not saved: it ends now, as it would have without persistence.
        self.expire_resumption(router);
        if self.available {
            let directed = self.take_directed();
            announce_unavailable(router, &self.jid, self.control.ext(), &directed).await;
        }
        router
            .session_event(self.as_ref(), SessionEvent::Closed)
            .await;
        self.dispose_pending(router).await;
    }

    /// Binds a session saved at the last shutdown again and lets it wait for its client.
    pub(crate) async fn restore(router: &Arc<Router>, restored: Restored) {
        let capacity = router.stream_management().config().max_unacked.max(1);
        let (tx, rx) = session_queue(capacity);
        let control = Arc::new(SessionControl::waking(rx.signal()));
        let conn_id = RESTORED_CONN_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        router
            .sessions()
            .bind(&restored.jid, conn_id, tx, control.clone());
        let available = restored.presence.is_some();
        if let Some(presence) = restored.presence {
            router
                .sessions()
                .set_presence(&restored.jid, conn_id, Some(presence));
        }
        router
            .registry()
            .restore_session_state(control.ext(), &restored.modules);
        control.directed().restore(restored.directed);
        let mut state = SmState::restored(
            restored.id,
            restored.window,
            restored.handled,
            restored.acked,
            restored.unacked,
        );
        state.set_max_unacked(router.stream_management().config().max_unacked);
        router
            .stream_management()
            .register(restored.id, control.clone());
        let session = ClientSession {
            jid: restored.jid,
            conn_id,
            rx,
            control,
            available,
            unwritten: Vec::new(),
            sm: Some(Box::new(state)),
            csi: None,
            metrics: router.metrics().clone(),
        };
        if restored.remaining.is_zero() {
            session.end(router).await;
        } else {
            super::sm::park(router.clone(), session, restored.remaining).await;
        }
    }
}
