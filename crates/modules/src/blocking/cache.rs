//! The block lists of online accounts, read by the pre-route filter for every stanza.
//!
//! The lists live in a concurrent map, but its shard locks are atomic read-modify-writes on
//! cache lines that both worker threads touch for every message, which cost about 7 % of the
//! server's CPU per message in the throughput benchmark. So each worker thread also keeps the
//! lists it read in a map of its own, valid as long as nothing in the shared map changed: a
//! generation counter, bumped by every change (a list loaded, replaced or dropped), is loaded
//! once per lookup; while it stays the same the thread answers from its own map without
//! writing to any shared memory. Changes are rare next to stanzas (a login's first stanza, a
//! block, a logout), and a changed generation simply sends the thread back to the shared map.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use dashmap::DashMap;
use xmppd_core::FastHasher;

use super::BlockList;

/// Identifies a cache, so that servers sharing a process (tests) do not read each other's.
static NEXT_CACHE: AtomicU64 = AtomicU64::new(1);

/// Lists one thread keeps at most; beyond it lookups go to the shared map.
const THREAD_LISTS: usize = 4096;

/// One worker thread's copies.
#[derive(Default)]
struct ThreadCopies {
    cache: u64,
    generation: u64,
    lists: HashMap<String, Arc<BlockList>, FastHasher>,
}

thread_local! {
    static COPIES: RefCell<ThreadCopies> = RefCell::new(ThreadCopies::default());
}

/// The lists of accounts with a bound session, keyed by bare JID.
pub(super) struct ListCache {
    id: u64,
    generation: AtomicU64,
    shared: DashMap<String, Arc<BlockList>, FastHasher>,
}

impl ListCache {
    pub(super) fn new() -> Self {
        ListCache {
            id: NEXT_CACHE.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
            shared: DashMap::default(),
        }
    }

    /// What `check` says of `account`'s cached list, `None` when none is cached. The list is
    /// only borrowed: cloning its `Arc` would be one more atomic write, on a counter both
    /// worker threads share, per stanza.
    pub(super) fn check(&self, account: &str, check: impl Fn(&BlockList) -> bool) -> Option<bool> {
        let generation = self.generation.load(Ordering::Acquire);
        let own = COPIES.with_borrow_mut(|copies| {
            self.refresh(copies, generation);
            copies.lists.get(account).map(|list| check(list))
        });
        if own.is_some() {
            return own;
        }
        self.get_at(account, generation).map(|list| check(&list))
    }

    /// Starts a thread's copies over when they belong to another cache or generation, giving
    /// back what a peak made the map hold.
    fn refresh(&self, copies: &mut ThreadCopies, generation: u64) {
        if copies.cache != self.id || copies.generation != generation {
            if copies.lists.capacity() > 64 {
                copies.lists = HashMap::default();
            } else {
                copies.lists.clear();
            }
            copies.cache = self.id;
            copies.generation = generation;
        }
    }

    /// The cached list of `account`.
    pub(super) fn get(&self, account: &str) -> Option<Arc<BlockList>> {
        let generation = self.generation.load(Ordering::Acquire);
        let own = COPIES.with_borrow_mut(|copies| {
            self.refresh(copies, generation);
            copies.lists.get(account).cloned()
        });
        if own.is_some() {
            return own;
        }
        self.get_at(account, generation)
    }

    /// From the shared map, keeping a copy for this thread.
    fn get_at(&self, account: &str, generation: u64) -> Option<Arc<BlockList>> {
        let list = self.shared.get(account).map(|l| l.clone())?;
        COPIES.with_borrow_mut(|copies| {
            if copies.cache == self.id
                && copies.generation == generation
                && copies.lists.len() < THREAD_LISTS
            {
                copies.lists.insert(account.to_owned(), list.clone());
            }
        });
        Some(list)
    }

    /// Sets `account`'s list.
    pub(super) fn insert(&self, account: &str, list: Arc<BlockList>) {
        self.shared.insert(account.to_owned(), list);
        self.changed();
    }

    /// Sets `account`'s list unless one is cached; returns the cached one.
    pub(super) fn insert_if_absent(&self, account: &str, list: Arc<BlockList>) -> Arc<BlockList> {
        let cached = self
            .shared
            .entry(account.to_owned())
            .or_insert(list)
            .clone();
        self.changed();
        cached
    }

    /// Drops `account`'s list; whether there was one. After a peak of online accounts the
    /// shared map gives its table back.
    pub(super) fn remove(&self, account: &str) -> bool {
        let removed = self.shared.remove(account).is_some();
        if removed {
            self.changed();
            if self.shared.len() * 4 < self.shared.capacity() {
                self.shared.shrink_to_fit();
            }
        }
        removed
    }

    /// How many lists are cached.
    pub(super) fn len(&self) -> usize {
        self.shared.len()
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Arc<BlockList> {
        Arc::new(BlockList::new(items.iter().map(|s| (*s).to_owned())))
    }

    #[test]
    fn a_change_is_seen_by_the_next_lookup() {
        let cache = ListCache::new();
        assert!(cache.get("a@x").is_none());
        cache.insert("a@x", list(&[]));
        assert_eq!(cache.get("a@x").map(|l| l.len()), Some(0));
        // Read again from the thread's copy, then replaced: the copy must not be served.
        assert_eq!(cache.get("a@x").map(|l| l.len()), Some(0));
        cache.insert("a@x", list(&["b@x"]));
        assert_eq!(cache.get("a@x").map(|l| l.len()), Some(1));
        assert!(cache.remove("a@x"));
        assert!(cache.get("a@x").is_none());
        assert!(!cache.remove("a@x"));
    }

    #[test]
    fn two_caches_on_one_thread_do_not_mix() {
        let (one, two) = (ListCache::new(), ListCache::new());
        one.insert("a@x", list(&["b@x"]));
        two.insert("a@x", list(&[]));
        for _ in 0..3 {
            assert_eq!(one.get("a@x").map(|l| l.len()), Some(1));
            assert_eq!(two.get("a@x").map(|l| l.len()), Some(0));
        }
    }

    #[test]
    fn insert_if_absent_keeps_a_newer_list() {
        let cache = ListCache::new();
        cache.insert("a@x", list(&["b@x"]));
        let kept = cache.insert_if_absent("a@x", list(&[]));
        assert_eq!(kept.len(), 1);
    }
}
