//! Which accounts block anyone: the filter's first question, answered without a lookup in the
//! common case.
//!
//! Most accounts never block anybody, and on many servers nobody does. The filter sees every
//! stanza, so it asks this index first: when no account of the server has a non-empty list,
//! a stanza costs two atomic loads; otherwise only a stanza to or from an account in the index
//! goes on to that account's list (cached, or read). The index is a host-wide document per
//! host (the `blockers` store, user ""), read once, and changed when a list becomes non-empty
//! or empty.
//!
//! Crash safety: an account is added to the index *before* its first item is stored and
//! removed *after* its last one is deleted, so a crash between the two writes leaves an extra
//! name (a list read that finds nothing), never a blocker the filter does not know.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use jid::BareJid;
use tokio::sync::Mutex;
use xmppd_core::FastHasher;
use xmppd_core::storage::{KeyVal, StorageError, StorageResult};

/// The KeyVal store of the index.
pub const INDEX_STORE: &str = "blockers";

/// The accounts with a non-empty block list, per host.
pub(super) struct BlockerIndex {
    keyval: Arc<dyn KeyVal>,
    hosts: Vec<String>,
    loaded: AtomicBool,
    /// How many accounts are in `accounts`: the filter's one load when nobody blocks.
    count: AtomicUsize,
    accounts: RwLock<HashSet<String, FastHasher>>,
    /// Serialises loading and the read-modify-write of the documents.
    writing: Mutex<()>,
}

impl BlockerIndex {
    pub(super) fn new(keyval: Arc<dyn KeyVal>, hosts: Vec<String>) -> Self {
        BlockerIndex {
            keyval,
            hosts,
            loaded: AtomicBool::new(false),
            count: AtomicUsize::new(0),
            accounts: RwLock::new(HashSet::default()),
            writing: Mutex::new(()),
        }
    }

    /// Whether no account blocks anyone (known only once the index is loaded).
    #[inline]
    pub(super) fn nobody_blocks(&self) -> bool {
        self.loaded.load(Ordering::Acquire) && self.count.load(Ordering::Acquire) == 0
    }

    /// Whether `account` (a bare JID's text) may have a non-empty list: `true` while the index
    /// is not loaded.
    pub(super) fn may_block(&self, account: &str) -> bool {
        if !self.loaded.load(Ordering::Acquire) {
            return true;
        }
        if self.count.load(Ordering::Acquire) == 0 {
            return false;
        }
        self.accounts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(account)
    }

    /// Reads the index of every host, once.
    pub(super) async fn ensure_loaded(&self) -> StorageResult<()> {
        if self.loaded.load(Ordering::Acquire) {
            return Ok(());
        }
        let _writing = self.writing.lock().await;
        if self.loaded.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut found = Vec::new();
        for host in &self.hosts {
            for user in self.read(host).await? {
                found.push(format!("{user}@{host}"));
            }
        }
        let mut accounts = self
            .accounts
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        accounts.extend(found);
        self.count.store(accounts.len(), Ordering::Release);
        self.loaded.store(true, Ordering::Release);
        Ok(())
    }

    async fn read(&self, host: &str) -> StorageResult<Vec<String>> {
        match self.keyval.get(host, "", INDEX_STORE).await? {
            None => Ok(Vec::new()),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StorageError::Corrupt(format!("block list index of {host}: {e}"))),
        }
    }

    /// Records that `account` has a non-empty list (before its first item is written).
    pub(super) async fn add(&self, account: &BareJid) -> StorageResult<()> {
        self.change(account, true).await
    }

    /// Records that `account`'s list is empty (after its last item is deleted).
    pub(super) async fn remove(&self, account: &BareJid) -> StorageResult<()> {
        self.change(account, false).await
    }

    async fn change(&self, account: &BareJid, blocks: bool) -> StorageResult<()> {
        self.ensure_loaded().await?;
        let (Some(user), host) = (account.node(), account.domain().as_str()) else {
            return Ok(());
        };
        let _writing = self.writing.lock().await;
        let mut users = self.read(host).await?;
        let present = users.iter().any(|u| u == user.as_str());
        if present == blocks {
            return Ok(());
        }
        if blocks {
            users.push(user.as_str().to_owned());
        } else {
            users.retain(|u| u != user.as_str());
        }
        let bytes = serde_json::to_vec(&users)
            .map_err(|e| StorageError::Corrupt(format!("block list index: {e}")))?;
        self.keyval.put(host, "", INDEX_STORE, &bytes).await?;
        let mut accounts = self
            .accounts
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if blocks {
            accounts.insert(account.as_str().to_owned());
        } else {
            accounts.remove(account.as_str());
        }
        self.count.store(accounts.len(), Ordering::Release);
        Ok(())
    }
}
