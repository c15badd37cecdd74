//! Where a client session sent directed presence (RFC 6121 §4.6), kept with the session's
//! control rather than in its task.
//!
//! Every entity that got directed available presence must later get unavailable presence
//! from the same full JID (§4.6.3), however the session ends. It can end away from its task:
//! a new login with the same resource replaces it (RFC 6120 §7.7.2.2) and the replacement's
//! bind announces the old presence's end at once, before the new session can send anything,
//! while the kicked task may take until its write timeout to notice. So the set lives in the
//! [`SessionControl`](crate::session::SessionControl) shared by the task and the registry,
//! and whoever ends the presence takes it. A MUC room is the usual such entity: left
//! untold, it keeps a ghost occupant whose messages go to the new session, which never
//! joined.

use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard, PoisonError};

use jid::Jid;

/// Directed-presence targets one session may have at once: each must later get its
/// unavailable, so the set cannot be allowed to grow without bound.
pub const MAX_DIRECTED_PRESENCE: usize = 1000;

/// The set, boxed and absent until used: few sessions send directed presence, and every
/// session's control carries this (the box keeps an unused set to one pointer).
type Targets = Option<Box<HashSet<Jid>>>;

/// The entities a session sent directed available presence to while available (§4.6.2).
#[derive(Debug, Default)]
pub struct DirectedPresence {
    targets: Mutex<Targets>,
}

impl DirectedPresence {
    fn lock(&self) -> MutexGuard<'_, Targets> {
        // The set is consistent after any single operation: a panic elsewhere while it was
        // held leaves nothing half-done.
        self.targets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `to`; `false` (nothing recorded) when that would exceed
    /// [`MAX_DIRECTED_PRESENCE`].
    pub(crate) fn add(&self, to: Jid) -> bool {
        let mut targets = self.lock();
        let set = targets.get_or_insert_default();
        if set.contains(&to) {
            return true;
        }
        if set.len() >= MAX_DIRECTED_PRESENCE {
            return false;
        }
        set.insert(to);
        true
    }

    /// Forgets `to` (it got directed unavailable presence).
    pub(crate) fn remove(&self, to: &Jid) {
        if let Some(set) = self.lock().as_mut() {
            set.remove(to);
        }
    }

    /// The targets, forgotten: the caller tells them the presence ended.
    pub(crate) fn take(&self) -> Vec<Jid> {
        self.lock()
            .take()
            .map(|set| set.into_iter().collect())
            .unwrap_or_default()
    }

    /// The targets, kept (to save a session for resumption after a restart).
    pub(crate) fn snapshot(&self) -> Vec<Jid> {
        self.lock()
            .as_ref()
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Replaces the targets (a session restored after a restart).
    pub(crate) fn restore(&self, targets: Vec<Jid>) {
        *self.lock() = (!targets.is_empty()).then(|| Box::new(targets.into_iter().collect()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::new(s).expect("a valid JID")
    }

    #[test]
    fn targets_are_bounded_and_taken_once() {
        let d = DirectedPresence::default();
        for i in 0..MAX_DIRECTED_PRESENCE {
            assert!(d.add(jid(&format!("room{i}@conference.example/me"))));
        }
        // Already known: still fine; a new one: refused.
        assert!(d.add(jid("room0@conference.example/me")));
        assert!(!d.add(jid("one-more@conference.example/me")));
        d.remove(&jid("room0@conference.example/me"));
        assert!(d.add(jid("one-more@conference.example/me")));
        assert_eq!(d.snapshot().len(), MAX_DIRECTED_PRESENCE);
        assert_eq!(d.take().len(), MAX_DIRECTED_PRESENCE);
        assert!(d.take().is_empty());
    }

    #[test]
    fn restore_replaces_the_targets() {
        let d = DirectedPresence::default();
        d.add(jid("a@example/x"));
        d.restore(vec![jid("b@example/y")]);
        assert_eq!(d.take(), vec![jid("b@example/y")]);
        d.restore(Vec::new());
        assert!(d.snapshot().is_empty());
    }
}
