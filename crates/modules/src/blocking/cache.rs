//! The block lists of online accounts that block anyone, read by the pre-route filter
//! without waiting.
//!
//! Only accounts in the blocker index (`index.rs`) are looked up here, so on most stanzas
//! this map is not touched at all. Lists are loaded by the first stanza that needs one,
//! replaced after each change and dropped with the account's last session.

use std::sync::Arc;

use dashmap::DashMap;
use xmppd_core::FastHasher;

use super::BlockList;

/// The lists of accounts with a bound session, keyed by bare JID.
pub(super) struct ListCache {
    lists: DashMap<String, Arc<BlockList>, FastHasher>,
}

impl ListCache {
    pub(super) fn new() -> Self {
        ListCache {
            lists: DashMap::default(),
        }
    }

    /// What `check` says of `account`'s cached list, `None` when none is cached. The list is
    /// only borrowed, not cloned out of the map.
    pub(super) fn check(&self, account: &str, check: impl Fn(&BlockList) -> bool) -> Option<bool> {
        self.lists.get(account).map(|list| check(&list))
    }

    /// The cached list of `account`.
    pub(super) fn get(&self, account: &str) -> Option<Arc<BlockList>> {
        self.lists.get(account).map(|list| list.clone())
    }

    /// Sets `account`'s list.
    pub(super) fn insert(&self, account: &str, list: Arc<BlockList>) {
        self.lists.insert(account.to_owned(), list);
    }

    /// Sets `account`'s list unless one is cached; returns the cached one.
    pub(super) fn insert_if_absent(&self, account: &str, list: Arc<BlockList>) -> Arc<BlockList> {
        self.lists.entry(account.to_owned()).or_insert(list).clone()
    }

    /// Drops `account`'s list. After a peak of online accounts the map gives its table back.
    pub(super) fn remove(&self, account: &str) {
        if self.lists.remove(account).is_some() && self.lists.len() * 4 < self.lists.capacity() {
            self.lists.shrink_to_fit();
        }
    }

    /// How many lists are cached.
    pub(super) fn len(&self) -> usize {
        self.lists.len()
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
        assert_eq!(cache.check("a@x", |l| l.is_empty()), Some(true));
        cache.insert("a@x", list(&["b@x"]));
        assert_eq!(cache.get("a@x").map(|l| l.len()), Some(1));
        cache.remove("a@x");
        assert!(cache.get("a@x").is_none());
        assert_eq!(cache.check("a@x", |_| true), None);
    }

    #[test]
    fn insert_if_absent_keeps_a_newer_list() {
        let cache = ListCache::new();
        cache.insert("a@x", list(&["b@x"]));
        let kept = cache.insert_if_absent("a@x", list(&[]));
        assert_eq!(kept.len(), 1);
    }
}
