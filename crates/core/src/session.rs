//! The session registry: which resources of which account are online, and how to reach them.
//!
//! Sharded by bare JID (a `DashMap`), so delivering to one user never contends with another
//! user's login. Each entry holds the session's bounded outbound queue and a control handle to
//! end it. Values sent are already serialised (`Bytes`), shared between recipients of a
//! broadcast.
//!
//! Replacement: binding a resource that is already bound ends the older session with a
//! `conflict` stream error (RFC 6120 §7.7.2.2, "override" policy). Unbinding names the
//! connection id, so a replaced session cannot remove its replacement on its way out.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::client::ClientSession;
use crate::client::DirectedPresence;
use crate::extensions::Extensions;
use crate::outbound::Outbound;
use crate::queue::{QueueSender, QueueSignal, TrySendError};
use dashmap::DashMap;
use jid::{BareJid, FullJid};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use xmppd_proto::{Stanza, StreamError, StreamErrorCondition};

/// Ends one session from outside its task (replacement, slow consumer, admin).
#[derive(Debug, Default)]
pub struct SessionControl {
    /// What a kick leaves for the session's task.
    kick: Mutex<Kick>,
    /// Set by a kick (under the lock of `kick`); read without that lock by a task that is
    /// woken through its queue.
    kicked: AtomicBool,
    /// Whether the stanzas queued when the kick came are written before the stream error
    /// (an answer the client must still see, such as the result of its account's removal).
    drain: AtomicBool,
    /// A client session's queue: its task waits on it anyway, so a kick wakes it there rather
    /// than through a second waiter polled on every wake-up.
    wake: Option<QueueSignal>,
    /// The modules' per-session state (carbons, CSI, stream management …), reachable from
    /// the session's task and from routing alike.
    ext: Extensions,
    /// Where a client session sent directed presence: here, not in its task, so that a
    /// replacement can tell them the old presence ended (see [`DirectedPresence`]).
    directed: DirectedPresence,
    /// Where and when the session was bound, for administration.
    origin: std::sync::OnceLock<SessionOrigin>,
}

/// What a kick or a resuming stream leaves for the session's task, under one lock.
#[derive(Debug, Default)]
struct Kick {
    /// The first reason given.
    reason: Option<StreamError>,
    /// Cancelled by the kick. Made only when a task waits in [`SessionControl::kicked`] (a
    /// component's): a client session is woken through its queue, and a token made for every
    /// session cost each idle session an allocation of 112 bytes.
    token: Option<CancellationToken>,
    /// Where a resumable client session is to be handed to the stream that resumes it
    /// (XEP-0198 §5). Here, where the resumption table already points, rather than in an
    /// allocation of its own for every resumable session.
    handoff: Option<oneshot::Sender<ClientSession>>,
}

/// Where and when a session was bound (for the admin's session list): the connection that
/// bound it, which a stream-management resumption does not change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionOrigin {
    /// The client's address, when its transport knows it.
    pub ip: Option<std::net::IpAddr>,
    /// Whether it came over WebSocket (RFC 7395) rather than a TCP stream.
    pub websocket: bool,
    /// Whether the stream was over TLS.
    pub tls: bool,
    /// When it was bound, in seconds since the Unix epoch.
    pub since: u64,
}

impl SessionControl {
    /// The control of a session whose task waits on `queue`: a kick wakes it there, and it
    /// checks [`SessionControl::is_kicked`] when woken.
    pub fn waking(queue: QueueSignal) -> Self {
        SessionControl {
            wake: Some(queue),
            ..Default::default()
        }
    }

    /// Records where and when the session was bound (once; later calls change nothing).
    pub fn set_origin(&self, origin: SessionOrigin) {
        let _ = self.origin.set(origin);
    }

    fn kick_state(&self) -> MutexGuard<'_, Kick> {
        // Nothing panics while holding the lock; the state stays consistent if it did.
        self.kick.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the session to close with this stream error. The first reason wins.
    pub fn kick(&self, error: StreamError) {
        {
            let mut kick = self.kick_state();
            kick.reason.get_or_insert(error);
            self.kicked.store(true, Ordering::Release);
            if let Some(token) = &kick.token {
                token.cancel();
            }
        }
        if let Some(queue) = &self.wake {
            queue.notify();
        }
    }

    /// Like [`SessionControl::kick`], but the session first writes what is queued for it
    /// now: it ends after the answers already on their way.
    pub fn kick_after_queued(&self, error: StreamError) {
        self.drain.store(true, Ordering::Release);
        self.kick(error);
    }

    /// Whether the kick lets the session write what was queued first
    /// ([`SessionControl::kick_after_queued`]).
    pub fn drains_before_close(&self) -> bool {
        self.drain.load(Ordering::Acquire)
    }

    /// Wakes the session's task without ending it (another stream claims the session).
    pub fn wake(&self) {
        if let Some(queue) = &self.wake {
            queue.notify();
        }
    }

    /// The modules' state for this session.
    pub fn ext(&self) -> &Extensions {
        &self.ext
    }

    /// Where the session sent directed presence (RFC 6121 §4.6).
    pub(crate) fn directed(&self) -> &DirectedPresence {
        &self.directed
    }

    /// A stream that resumes the session asks for it; an earlier claim, if any, is dropped
    /// (its claimant gives up). The caller then wakes the session's owner.
    pub(crate) fn claim(&self, to: oneshot::Sender<ClientSession>) {
        self.kick_state().handoff = Some(to);
    }

    /// Whether a stream waits for the session.
    pub(crate) fn claimed(&self) -> bool {
        self.kick_state()
            .handoff
            .as_ref()
            .is_some_and(|tx| !tx.is_closed())
    }

    /// The claimant's sender, taken.
    pub(crate) fn take_claim(&self) -> Option<oneshot::Sender<ClientSession>> {
        self.kick_state().handoff.take()
    }

    /// Whether [`SessionControl::kick`] was called.
    pub fn is_kicked(&self) -> bool {
        self.kicked.load(Ordering::Acquire)
    }

    /// Resolves when the session was kicked.
    pub async fn kicked(&self) {
        let token = {
            let mut kick = self.kick_state();
            if self.kicked.load(Ordering::Acquire) {
                return;
            }
            kick.token
                .get_or_insert_with(CancellationToken::new)
                .clone()
        };
        token.cancelled().await;
    }

    /// The reason given to [`SessionControl::kick`].
    pub fn reason(&self) -> StreamError {
        self.kick_state()
            .reason
            .clone()
            .unwrap_or_else(|| StreamError::new(StreamErrorCondition::UndefinedCondition))
    }
}

/// One bound resource.
#[derive(Clone, Debug)]
struct Entry {
    resource: String,
    conn_id: u64,
    tx: QueueSender,
    control: Arc<SessionControl>,
    /// `None` until initial presence; then the advertised priority (RFC 6121 §4.7.2.3).
    priority: Option<i8>,
    /// The last available presence broadcast, to answer probes (RFC 6121 §4.3.2) and for
    /// the account's resources that come later. Kept once, as a stanza: serialising it
    /// again for those rare uses costs less than keeping every session's presence twice.
    last_presence: Option<Arc<Stanza>>,
}

/// A snapshot of one resource for routing decisions.
#[derive(Clone, Debug)]
pub struct ResourceInfo {
    /// The full JID.
    pub jid: FullJid,
    /// `Some(priority)` when the resource is available (sent initial presence).
    pub priority: Option<i8>,
    /// The last available presence it broadcast.
    pub last_presence: Option<Arc<Stanza>>,
    tx: QueueSender,
    control: Arc<SessionControl>,
}

/// Why a stanza could not be handed to a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The resource is not online.
    #[error("no such session")]
    NoSession,
    /// The session's queue was full: it has been disconnected as a slow consumer.
    #[error("session queue full")]
    QueueFull,
}

impl ResourceInfo {
    /// How many more stanzas its queue takes right now without counting it as a slow
    /// consumer (for bulk deliveries such as offline messages).
    pub fn free_slots(&self) -> usize {
        self.tx.free_slots()
    }

    /// The modules' state for this session.
    pub fn ext(&self) -> &Extensions {
        self.control.ext()
    }

    /// Waits until the session's queue is at most half full (or closed): for a stanza owed
    /// to the session that another task hands it in a burst, such as the errors for the
    /// messages a dead session held. The other half is for the session's own answers, which
    /// its task queues without waiting (it writes its queue out before it reads more once the
    /// queue is half full). Not bounded in time: the caller puts a timeout around it.
    pub async fn room_for_owed(&self) {
        self.tx.room_for(self.tx.capacity().div_ceil(2)).await;
    }

    /// The entities the session sent directed presence to, forgotten: the caller tells them
    /// its presence ended.
    pub(crate) fn take_directed(&self) -> Vec<jid::Jid> {
        self.control.directed().take()
    }

    /// Where and when the session was bound, if its transport said.
    pub fn origin(&self) -> Option<SessionOrigin> {
        self.control.origin.get().copied()
    }

    /// Ends this session with `error` once it has written what is queued for it now (an
    /// administrator's kick).
    pub fn kick(&self, error: StreamError) {
        self.control.kick_after_queued(error);
    }

    /// Queues a stanza for this session. A full queue ends the session (slow consumer) and
    /// reports [`DeliveryError::QueueFull`] so the caller can bounce the stanza.
    pub fn deliver(&self, outbound: Outbound) -> Result<(), DeliveryError> {
        queue_for(&self.tx, &self.control, outbound)
    }
}

/// [`ResourceInfo::deliver`] for a session's queue and control.
fn queue_for(
    tx: &QueueSender,
    control: &SessionControl,
    outbound: Outbound,
) -> Result<(), DeliveryError> {
    match tx.try_send(outbound) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(_)) => {
            control.kick(StreamError::with_text(
                StreamErrorCondition::PolicyViolation,
                "too many stanzas queued for this session (reading too slowly)",
            ));
            Err(DeliveryError::QueueFull)
        }
        Err(TrySendError::Closed(_)) => Err(DeliveryError::NoSession),
    }
}

/// All bound client sessions of this node.
#[derive(Debug, Default)]
pub struct SessionRegistry {
    /// Keyed by the bare JID's normalised text, so that a full JID's lookup borrows its
    /// prefix instead of building a `BareJid` for every routed stanza.
    by_bare: DashMap<Box<str>, Vec<Entry>, crate::FastHasher>,
    /// Sessions unbound since the map's capacity was last checked.
    unbinds: std::sync::atomic::AtomicUsize,
    /// Sessions bound now (approximately, under concurrent binds): when it reaches zero the
    /// map gives back its whole table.
    bound: std::sync::atomic::AtomicUsize,
}

/// Unbinds between checks whether the registry's map should give back memory.
const SHRINK_CHECK_EVERY: usize = 1024;

impl SessionRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a session. A session already bound to the same full JID is kicked with
    /// `conflict`, removed at once, and returned: its presence ends here, so the caller
    /// announces it unavailable before the new session can send anything (the kicked task
    /// may take until its write timeout to notice).
    pub fn bind(
        &self,
        jid: &FullJid,
        conn_id: u64,
        tx: QueueSender,
        control: Arc<SessionControl>,
    ) -> Option<ResourceInfo> {
        let resource = jid.resource().as_str().to_owned();
        let entry = Entry {
            resource,
            conn_id,
            tx,
            control,
            priority: None,
            last_presence: None,
        };
        // Most accounts have one session: room for one entry, not the default four.
        let mut entries = self
            .by_bare
            .entry(Box::from(bare_of(jid)))
            .or_insert_with(|| Vec::with_capacity(1));
        let replaced = entries
            .iter()
            .position(|e| e.resource == entry.resource)
            .map(|pos| {
                let old = entries.swap_remove(pos);
                old.control.kick(StreamError::with_text(
                    StreamErrorCondition::Conflict,
                    "replaced by a new session with the same resource",
                ));
                info(jid.clone(), &old)
            });
        entries.push(entry);
        if replaced.is_none() {
            self.bound
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        replaced
    }

    /// Removes a session if it is still the one bound under `jid`; returns whether it was
    /// (false for a session that was replaced).
    pub fn unbind(&self, jid: &FullJid, conn_id: u64) -> bool {
        let resource = jid.resource().as_str();
        let mut removed = false;
        self.by_bare.remove_if_mut(bare_of(jid), |_, entries| {
            let before = entries.len();
            entries.retain(|e| !(e.resource == resource && e.conn_id == conn_id));
            removed = entries.len() < before;
            entries.is_empty()
        });
        if removed {
            self.shrink_after_peak();
        }
        removed
    }

    /// A hash map keeps its capacity when emptied: after a peak of logins the registry would
    /// hold the table sized for the peak. Checked every [`SHRINK_CHECK_EVERY`] unbinds, so the
    /// cost is negligible, and shrunk when less than a quarter is in use; and given back
    /// entirely when the last session goes, or the table sized for the sessions left at the
    /// last check would stay.
    fn shrink_after_peak(&self) {
        use std::sync::atomic::Ordering;
        let n = self.unbinds.fetch_add(1, Ordering::Relaxed) + 1;
        let left = self.bound.fetch_sub(1, Ordering::Relaxed).saturating_sub(1);
        let check = left == 0 || n.is_multiple_of(SHRINK_CHECK_EVERY);
        if check && self.by_bare.len() * 4 < self.by_bare.capacity() {
            self.by_bare.shrink_to_fit();
        }
    }

    /// Records a session's broadcast presence: `Some((priority, stanza))` when available,
    /// `None` when it became unavailable.
    pub fn set_presence(&self, jid: &FullJid, conn_id: u64, presence: Option<(i8, Arc<Stanza>)>) {
        if let Some(mut entries) = self.by_bare.get_mut(bare_of(jid)) {
            let resource = jid.resource().as_str();
            for e in entries
                .iter_mut()
                .filter(|e| e.resource == resource && e.conn_id == conn_id)
            {
                e.priority = presence.as_ref().map(|(p, _)| *p);
                e.last_presence = presence.as_ref().map(|(_, s)| s.clone());
            }
        }
    }

    /// Replaces a session's recorded broadcast presence with `new`, only if it is still
    /// `expected` (the same shared stanza): a presence the session recorded meanwhile wins.
    /// Returns whether it was replaced.
    pub fn replace_presence(
        &self,
        jid: &FullJid,
        expected: &Arc<Stanza>,
        new: Arc<Stanza>,
    ) -> bool {
        let Some(mut entries) = self.by_bare.get_mut(bare_of(jid)) else {
            return false;
        };
        let resource = jid.resource().as_str();
        let entry = entries.iter_mut().find(|e| {
            e.resource == resource
                && e.last_presence
                    .as_ref()
                    .is_some_and(|p| Arc::ptr_eq(p, expected))
        });
        match entry {
            Some(e) => {
                e.last_presence = Some(new);
                true
            }
            None => false,
        }
    }

    /// The session bound to this full JID.
    pub fn get(&self, jid: &FullJid) -> Option<ResourceInfo> {
        let entries = self.by_bare.get(bare_of(jid))?;
        let resource = jid.resource().as_str();
        entries
            .iter()
            .find(|e| e.resource == resource)
            .map(|e| info(jid.clone(), e))
    }

    /// Whether the session of `control` is bound under `account` (a stream that resumes a
    /// session must have authenticated as its account).
    pub(crate) fn holds(&self, account: &BareJid, control: &Arc<SessionControl>) -> bool {
        self.by_bare
            .get(account.as_str())
            .is_some_and(|entries| entries.iter().any(|e| Arc::ptr_eq(&e.control, control)))
    }

    /// Queues `outbound` for the session bound to `full`, as [`ResourceInfo::deliver`] does,
    /// without copying the session's entry (the one-to-one message path). `None`: no session
    /// is bound to that JID.
    pub fn deliver_to(
        &self,
        full: &FullJid,
        outbound: impl FnOnce() -> Outbound,
    ) -> Option<Result<(), DeliveryError>> {
        let entries = self.by_bare.get(bare_of(full))?;
        let resource = full.resource().as_str();
        let entry = entries.iter().find(|e| e.resource == resource)?;
        // Queuing only wakes the session's task; nothing here touches the registry again
        // while this shard's read lock is held.
        Some(queue_for(&entry.tx, &entry.control, outbound()))
    }

    /// Every session of an account.
    pub fn resources(&self, bare: &BareJid) -> Vec<ResourceInfo> {
        let Some(entries) = self.by_bare.get(bare.as_str()) else {
            return Vec::new();
        };
        entries
            .iter()
            .filter_map(|e| {
                bare.with_resource_str(&e.resource)
                    .ok()
                    .map(|jid| info(jid, e))
            })
            .collect()
    }

    /// Every bound session, for administration (listing, announcements): a snapshot taken
    /// shard by shard, so sessions bound or ended meanwhile may or may not be in it.
    pub fn all(&self) -> Vec<ResourceInfo> {
        let mut all = Vec::with_capacity(self.bound.load(std::sync::atomic::Ordering::Relaxed));
        for entries in self.by_bare.iter() {
            let Ok(bare) = BareJid::new(entries.key()) else {
                continue;
            };
            all.extend(entries.value().iter().filter_map(|e| {
                bare.with_resource_str(&e.resource)
                    .ok()
                    .map(|jid| info(jid, e))
            }));
        }
        all
    }

    /// Stanzas queued for every bound session and not yet taken by its transport.
    pub fn queued(&self) -> usize {
        self.by_bare
            .iter()
            .map(|e| e.value().iter().map(|s| s.tx.len()).sum::<usize>())
            .sum()
    }

    /// Number of bound sessions.
    pub fn len(&self) -> usize {
        self.by_bare.iter().map(|e| e.value().len()).sum()
    }

    /// Whether no session is bound.
    pub fn is_empty(&self) -> bool {
        self.by_bare.is_empty()
    }

    /// Ends every session of an account (its removal) with `error`, each once it has written
    /// what is queued for it now; returns how many there were.
    pub fn end_account(&self, bare: &BareJid, error: &StreamError) -> usize {
        let Some(entries) = self.by_bare.get(bare.as_str()) else {
            return 0;
        };
        for e in entries.iter() {
            e.control.kick_after_queued(error.clone());
        }
        entries.len()
    }

    /// Kicks every session (shutdown).
    pub fn kick_all(&self, error: &StreamError) {
        for entries in self.by_bare.iter() {
            for e in entries.value() {
                e.control.kick(error.clone());
            }
        }
    }
}

/// The bare part of a JID's normalised text (a localpart and a domainpart cannot hold a
/// `/`, RFC 7622 §3.2 and §3.3), equal to its `BareJid`'s text, without building one: the
/// key of per-account lookups done for every routed stanza.
pub fn bare_text(jid: &str) -> &str {
    jid.split_once('/').map_or(jid, |(bare, _)| bare)
}

fn bare_of(jid: &FullJid) -> &str {
    bare_text(jid.as_str())
}

fn info(jid: FullJid, e: &Entry) -> ResourceInfo {
    ResourceInfo {
        jid,
        priority: e.priority,
        last_presence: e.last_presence.clone(),
        tx: e.tx.clone(),
        control: e.control.clone(),
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
