//! Per-key serialisation with bounded memory: a fixed set of async mutexes, a key hashed to
//! one of them.
//!
//! Modules serialise changes to one account's data (a roster, a block list: read, check,
//! write) without a lock per account, which would grow with the accounts ever seen. Two
//! accounts may share a stripe and then wait for each other briefly; a caller must not hold
//! its guard while routing, since routing may come back for another key of the same stripe.

use std::hash::{BuildHasher, Hash};

use tokio::sync::{Mutex, MutexGuard};

/// A fixed number of async mutexes, chosen by key.
#[derive(Debug)]
pub struct StripedLocks {
    stripes: Vec<Mutex<()>>,
    hasher: crate::FastHasher,
}

impl StripedLocks {
    /// `stripes` mutexes (at least one).
    pub fn new(stripes: usize) -> Self {
        StripedLocks {
            stripes: (0..stripes.max(1)).map(|_| Mutex::new(())).collect(),
            hasher: crate::FastHasher::default(),
        }
    }

    /// Waits for the stripe of `key`.
    pub async fn lock<K: Hash + ?Sized>(&self, key: &K) -> MutexGuard<'_, ()> {
        let i = (self.hasher.hash_one(key) as usize) % self.stripes.len();
        self.stripes[i].lock().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_key_is_serialised() {
        let locks = StripedLocks::new(4);
        let guard = locks.lock("a@x").await;
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), locks.lock("a@x"))
                .await
                .is_err(),
            "the same key waits"
        );
        drop(guard);
        let _again = locks.lock("a@x").await;
    }
}
