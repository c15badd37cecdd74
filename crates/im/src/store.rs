//! Roster storage through the Map and KeyVal shapes.
//!
//! - `roster` (Map, key = contact bare JID): the [`RosterItem`]s, JSON;
//! - `roster_pending` (Map, key = contact bare JID): subscription requests awaiting the
//!   user's answer, as the serialised `subscribe` stanza. They are kept apart from the roster
//!   because a request must not add the contact to the user's roster before approval
//!   (RFC 6121 §3.1.3), yet must survive a restart to be delivered at the next login;
//! - `roster_version` (KeyVal): the roster version (XEP-0237), a counter bumped with every
//!   change that is pushed.

use std::sync::Arc;

use jid::BareJid;
use xmppd_core::storage::{KeyVal, MapStore, StorageError, StorageResult};

use crate::roster::RosterItem;

pub(crate) const ROSTER: &str = "roster";
pub(crate) const PENDING: &str = "roster_pending";
pub(crate) const VERSION: &str = "roster_version";

/// The roster stores of all users.
#[derive(Clone)]
pub struct RosterStore {
    map: Arc<dyn MapStore>,
    keyval: Arc<dyn KeyVal>,
}

impl std::fmt::Debug for RosterStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RosterStore")
    }
}

/// `(host, user)` of an account.
fn owner(user: &BareJid) -> (&str, &str) {
    (
        user.domain().as_str(),
        user.node().map_or("", |n| n.as_str()),
    )
}

fn decode(bytes: &[u8]) -> StorageResult<RosterItem> {
    serde_json::from_slice(bytes).map_err(|e| StorageError::Corrupt(format!("roster item: {e}")))
}

impl RosterStore {
    /// Over these shapes.
    pub fn new(map: Arc<dyn MapStore>, keyval: Arc<dyn KeyVal>) -> Self {
        RosterStore { map, keyval }
    }

    /// Every item, sorted by JID.
    pub async fn items(&self, user: &BareJid) -> StorageResult<Vec<RosterItem>> {
        let (host, node) = owner(user);
        let rows = self.map.list(host, node, ROSTER).await?;
        rows.iter().map(|(_, v)| decode(v)).collect()
    }

    /// Every item, sorted by JID, and every pending request, as stored: what a session
    /// needs when it becomes available, in one read. The items are decoded on their own, so
    /// that an undecodable roster does not take the requests with it.
    pub async fn items_and_pending(
        &self,
        user: &BareJid,
    ) -> StorageResult<(StorageResult<Vec<RosterItem>>, Vec<Vec<u8>>)> {
        let (host, node) = owner(user);
        let mut lists = self.map.list_stores(host, node, &[ROSTER, PENDING]).await?;
        let pending = lists.pop().unwrap_or_default();
        let items = lists.pop().unwrap_or_default();
        let items = items.iter().map(|(_, v)| decode(v)).collect();
        Ok((items, pending.into_iter().map(|(_, v)| v).collect()))
    }

    /// One item.
    pub async fn item(
        &self,
        user: &BareJid,
        contact: &BareJid,
    ) -> StorageResult<Option<RosterItem>> {
        let (host, node) = owner(user);
        match self.map.get(host, node, ROSTER, contact.as_str()).await? {
            Some(v) => decode(&v).map(Some),
            None => Ok(None),
        }
    }

    /// Creates or replaces an item.
    pub async fn put(&self, user: &BareJid, item: &RosterItem) -> StorageResult<()> {
        let (host, node) = owner(user);
        let bytes = serde_json::to_vec(item)
            .map_err(|e| StorageError::Corrupt(format!("roster item: {e}")))?;
        self.map.put(host, node, ROSTER, &item.jid, &bytes).await
    }

    /// Removes an item; whether there was one.
    pub async fn remove(&self, user: &BareJid, contact: &BareJid) -> StorageResult<bool> {
        let (host, node) = owner(user);
        self.map.delete(host, node, ROSTER, contact.as_str()).await
    }

    /// Number of items.
    pub async fn count(&self, user: &BareJid) -> StorageResult<u64> {
        let (host, node) = owner(user);
        self.map.count(host, node, ROSTER).await
    }

    /// Whether a request from `contact` awaits the user's answer.
    pub async fn has_pending(&self, user: &BareJid, contact: &BareJid) -> StorageResult<bool> {
        let (host, node) = owner(user);
        Ok(self
            .map
            .get(host, node, PENDING, contact.as_str())
            .await?
            .is_some())
    }

    /// Records a request (the serialised `subscribe` stanza).
    pub async fn set_pending(
        &self,
        user: &BareJid,
        contact: &BareJid,
        stanza: &[u8],
    ) -> StorageResult<()> {
        let (host, node) = owner(user);
        self.map
            .put(host, node, PENDING, contact.as_str(), stanza)
            .await
    }

    /// Forgets a request.
    pub async fn clear_pending(&self, user: &BareJid, contact: &BareJid) -> StorageResult<()> {
        let (host, node) = owner(user);
        self.map
            .delete(host, node, PENDING, contact.as_str())
            .await
            .map(|_| ())
    }

    /// Number of pending requests.
    pub async fn count_pending(&self, user: &BareJid) -> StorageResult<u64> {
        let (host, node) = owner(user);
        self.map.count(host, node, PENDING).await
    }

    /// The current roster version.
    pub async fn version(&self, user: &BareJid) -> StorageResult<u64> {
        let (host, node) = owner(user);
        match self.keyval.get(host, node, VERSION).await? {
            None => Ok(0),
            Some(v) => std::str::from_utf8(&v)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| StorageError::Corrupt("roster version".into())),
        }
    }

    /// Moves to the next version and returns it.
    pub async fn bump_version(&self, user: &BareJid) -> StorageResult<u64> {
        let next = self.version(user).await? + 1;
        let (host, node) = owner(user);
        self.keyval
            .put(host, node, VERSION, next.to_string().as_bytes())
            .await?;
        Ok(next)
    }
}
