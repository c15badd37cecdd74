//! XEP-0198 Stream Management: acknowledgements and resumption of client sessions.
//!
//! The counters and the queue of unacknowledged stanzas ([`state::SmState`]) belong to the
//! [`ClientSession`], so they move with it from one transport to another. What outlives a
//! transport lives here: the table of resumable sessions by SM-ID, the ids of sessions that
//! expired recently (so that a late `<resume/>` learns how many of its stanzas were handled,
//! §5), and the tasks that hold sessions waiting to be resumed ([`park`]).
//!
//! A resumable session is always owned by exactly one task: its connection while it has one,
//! then the task that waits for its resumption. Another stream resumes it by claiming it
//! through its control (`SessionControl::claim`) and waking its owner, which hands the value
//! over instead of ending it; so nothing about a session is ever shared between two streams.

pub(crate) mod handled;
pub(crate) mod id;
mod park;
pub(crate) mod persist;
pub(crate) mod state;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use dashmap::DashMap;
use jid::BareJid;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::client::ClientSession;
use crate::session::{SessionControl, SessionRegistry};
use crate::storage::MapStore;
use id::SmId;

pub(crate) use park::park;
pub use persist::restore_sessions;
pub use state::HandledCountTooHigh;

/// The `[sm]` settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmConfig {
    /// Whether `<sm/>` is offered at all.
    pub enabled: bool,
    /// How long a session waits to be resumed when the client asks no `max`.
    pub resume_timeout: Duration,
    /// The longest wait a client's `max` can ask for.
    pub max_resume_timeout: Duration,
    /// Stanzas sent and not acknowledged beyond which the session is closed with
    /// `policy-violation` (and ends: its stanzas go where an ended session's go).
    pub max_unacked: usize,
    /// `<r/>` after this many stanzas sent since the last one.
    pub request_every: u32,
    /// `<r/>` when stanzas sent this long ago are not yet requested (a quiet link).
    pub request_after: Duration,
    /// Whether resumable sessions are saved at shutdown and restored at start.
    pub persist: bool,
}

impl Default for SmConfig {
    fn default() -> Self {
        SmConfig {
            enabled: true,
            resume_timeout: Duration::from_secs(300),
            max_resume_timeout: Duration::from_secs(3600),
            max_unacked: 1000,
            request_every: 5,
            request_after: Duration::from_secs(5),
            persist: true,
        }
    }
}

/// How long a stream that resumes a session waits for its current owner to hand it over:
/// a connection blocked in a write sees the claim only when the write ends.
const HANDOFF_TIMEOUT: Duration = Duration::from_secs(15);

/// Expired ids remembered for a late `<resume/>`, at most.
const MAX_EXPIRED: usize = 10_000;

/// Sessions of one account waiting to be resumed at once, at most: a client that drops its
/// link and binds a new resource again and again cannot pile up waiting sessions.
pub const MAX_WAITING_PER_ACCOUNT: usize = 10;

/// Why a `<resume/>` cannot be honoured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumeError {
    /// Unknown, expired or another account's id; `h` is what the server handled of the
    /// expired session's stanzas, when it is remembered (§5).
    NotFound {
        /// Client stanzas handled on the expired session.
        h: Option<u32>,
    },
}

struct Expired {
    account: BareJid,
    h: u32,
    at: Instant,
}

#[derive(Default)]
struct ExpiredIds {
    by_id: HashMap<SmId, Expired>,
    order: VecDeque<SmId>,
}

/// The node's resumable sessions.
pub struct StreamManagement {
    config: SmConfig,
    /// Each resumable session's control, where a resuming stream claims the session and
    /// wakes its owner. The account it belongs to is not kept here: the session registry
    /// already says under which account that control is bound.
    live: DashMap<SmId, Arc<SessionControl>, crate::FastHasher>,
    /// Sessions waiting to be resumed, per account.
    waiting: DashMap<BareJid, usize, crate::FastHasher>,
    expired: Mutex<ExpiredIds>,
    tracker: TaskTracker,
    /// Where sessions are saved across a restart (the `sm` Map store, host-wide items).
    store: OnceLock<Arc<dyn MapStore>>,
}

impl std::fmt::Debug for StreamManagement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamManagement")
            .field("config", &self.config)
            .field("live", &self.live.len())
            .finish_non_exhaustive()
    }
}

impl Default for StreamManagement {
    fn default() -> Self {
        StreamManagement::new(SmConfig::default())
    }
}

impl StreamManagement {
    /// Stream management with these settings.
    pub fn new(config: SmConfig) -> Self {
        StreamManagement {
            config,
            live: DashMap::default(),
            waiting: DashMap::default(),
            expired: Mutex::default(),
            tracker: TaskTracker::new(),
            store: OnceLock::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &SmConfig {
        &self.config
    }

    /// Saves resumable sessions in `store` at shutdown (when `[sm] persist` is on).
    pub fn persist_to(&self, store: Arc<dyn MapStore>) {
        let _ = self.store.set(store);
    }

    /// Whether resumable sessions are saved at shutdown.
    pub fn saves_sessions(&self) -> bool {
        self.store().is_some()
    }

    pub(crate) fn store(&self) -> Option<&Arc<dyn MapStore>> {
        self.store.get().filter(|_| self.config.persist)
    }

    /// Sessions that can be resumed now (attached or waiting).
    pub fn resumable(&self) -> usize {
        self.live.len()
    }

    /// The resumption window for a client that asked for `max` seconds.
    pub(crate) fn window(&self, max: Option<u32>) -> Duration {
        match max {
            Some(secs) if secs > 0 => {
                Duration::from_secs(u64::from(secs)).min(self.config.max_resume_timeout)
            }
            _ => self.config.resume_timeout,
        }
    }

    /// The session of `control` can be resumed under `id`.
    pub(crate) fn register(&self, id: SmId, control: Arc<SessionControl>) {
        self.live.insert(id, control);
    }

    /// The session `id` ends for good: a later `<resume/>` gets `item-not-found` with `h`.
    pub(crate) fn expire(&self, id: SmId, account: &BareJid, h: u32) {
        self.live.remove(&id);
        let mut expired = self.expired.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let max_age = self.config.max_resume_timeout;
        while let Some(oldest) = expired.order.front().copied() {
            let stale = expired
                .by_id
                .get(&oldest)
                .is_none_or(|e| now.duration_since(e.at) > max_age);
            if !stale && expired.order.len() < MAX_EXPIRED {
                break;
            }
            expired.order.pop_front();
            expired.by_id.remove(&oldest);
        }
        let entry = Expired {
            account: account.clone(),
            h,
            at: now,
        };
        if expired.by_id.insert(id, entry).is_none() {
            expired.order.push_back(id);
        }
    }

    /// Counts a session of `account` that starts waiting; `false` when the account has
    /// [`MAX_WAITING_PER_ACCOUNT`] waiting already.
    pub(crate) fn reserve_waiting(&self, account: &BareJid) -> bool {
        let mut count = self.waiting.entry(account.clone()).or_insert(0);
        if *count >= MAX_WAITING_PER_ACCOUNT {
            return false;
        }
        *count += 1;
        true
    }

    /// A waiting session of `account` stopped waiting.
    pub(crate) fn release_waiting(&self, account: &BareJid) {
        self.waiting.remove_if_mut(account, |_, count| {
            *count = count.saturating_sub(1);
            *count == 0
        });
    }

    /// The session `id` was saved for the next start: it is no longer resumable here.
    pub(crate) fn forget(&self, id: SmId) {
        self.live.remove(&id);
    }

    /// Takes the session `id` of `account` (bound in `sessions`) from whichever task holds it.
    pub(crate) async fn claim(
        &self,
        id: &str,
        account: &BareJid,
        sessions: &SessionRegistry,
    ) -> Result<ClientSession, ResumeError> {
        let Some(id) = SmId::parse(id) else {
            return Err(ResumeError::NotFound { h: None });
        };
        // Cloned out of the table, so that its lock is not held while the registry's is taken.
        let live = self.live.get(&id).map(|control| control.clone());
        let Some(control) = live.filter(|control| sessions.holds(account, control)) else {
            let expired = self.expired.lock().unwrap_or_else(PoisonError::into_inner);
            let h = expired
                .by_id
                .get(&id)
                .filter(|e| e.account == *account)
                .map(|e| e.h);
            return Err(ResumeError::NotFound { h });
        };
        let (tx, rx) = oneshot::channel();
        control.claim(tx);
        control.wake();
        match tokio::time::timeout(HANDOFF_TIMEOUT, rx).await {
            Ok(Ok(session)) => Ok(session),
            _ => Err(ResumeError::NotFound { h: None }),
        }
    }

    /// Runs `task` (a session waiting for resumption) so that shutdown can wait for it.
    pub(crate) fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        self.tracker.spawn(task);
    }

    /// Waits (at most `limit`) for the waiting sessions to be saved or ended, at shutdown.
    pub async fn wait(&self, limit: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(limit, self.tracker.wait())
            .await
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_the_clients_up_to_the_maximum() {
        let sm = StreamManagement::default();
        assert_eq!(sm.window(None), Duration::from_secs(300));
        assert_eq!(sm.window(Some(0)), Duration::from_secs(300));
        assert_eq!(sm.window(Some(60)), Duration::from_secs(60));
        assert_eq!(sm.window(Some(u32::MAX)), Duration::from_secs(3600));
    }

    #[test]
    fn an_account_has_a_bounded_number_of_waiting_sessions() {
        let sm = StreamManagement::default();
        let alice = BareJid::new("alice@x").unwrap();
        for _ in 0..MAX_WAITING_PER_ACCOUNT {
            assert!(sm.reserve_waiting(&alice));
        }
        assert!(!sm.reserve_waiting(&alice));
        assert!(sm.reserve_waiting(&BareJid::new("bob@x").unwrap()));
        sm.release_waiting(&alice);
        assert!(sm.reserve_waiting(&alice));
        for _ in 0..MAX_WAITING_PER_ACCOUNT {
            sm.release_waiting(&alice);
        }
        assert!(
            sm.waiting.get(&alice).is_none(),
            "no entry left once none waits"
        );
    }

    #[tokio::test]
    async fn expired_ids_answer_with_h_only_to_their_account() {
        let sm = StreamManagement::default();
        let sessions = SessionRegistry::new();
        let id = SmId::generate().unwrap();
        let alice = BareJid::new("alice@x").unwrap();
        let bob = BareJid::new("bob@x").unwrap();
        sm.expire(id, &alice, 7);
        assert_eq!(
            sm.claim(id.as_str(), &alice, &sessions).await.err(),
            Some(ResumeError::NotFound { h: Some(7) })
        );
        assert_eq!(
            sm.claim(id.as_str(), &bob, &sessions).await.err(),
            Some(ResumeError::NotFound { h: None })
        );
        assert_eq!(
            sm.claim("nope", &alice, &sessions).await.err(),
            Some(ResumeError::NotFound { h: None })
        );
    }

    #[tokio::test]
    async fn a_session_is_claimed_only_by_the_account_it_is_bound_under() {
        let sm = StreamManagement::default();
        let sessions = SessionRegistry::new();
        let (tx, rx) = crate::queue::session_queue(4);
        let control = Arc::new(SessionControl::waking(rx.signal()));
        let id = SmId::generate().unwrap();
        sm.register(id, control.clone());
        let bob = BareJid::new("bob@x").unwrap();
        let not_bound = sm.claim(id.as_str(), &bob, &sessions).await;
        assert_eq!(not_bound.err(), Some(ResumeError::NotFound { h: None }));
        let alice = jid::FullJid::new("alice@x/phone").unwrap();
        sessions.bind(&alice, 1, tx, control.clone());
        let other_account = sm.claim(id.as_str(), &bob, &sessions).await;
        assert_eq!(other_account.err(), Some(ResumeError::NotFound { h: None }));
        assert!(!control.claimed(), "its owner was not disturbed");
        assert!(sessions.holds(&alice.to_bare(), &control));
    }
}
