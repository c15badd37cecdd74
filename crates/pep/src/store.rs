//! PEP storage through the Map shape, per account:
//!
//! - `pep_nodes` (key: the node name): a [`NodeRecord`] in JSON — the configuration and the
//!   ids of the items kept, oldest first, so that trimming to `max_items` and "the last item"
//!   need no listing;
//! - `pep_items` (key: node name, U+0001, item id): the `<item/>` as the server serialised it
//!   (`http://jabber.org/protocol/pubsub`).
//!
//! The storage keeps a running total of each account's `pep_items` (keys and values, in
//! bytes: [`MapUsage`]), so the byte quota of [`PepStore::put_item`] costs two reads of one
//! row, not a sum over the items, and stays right across restarts.
//!
//! U+0001 cannot occur in a node name or item id (XML 1.0 forbids it in attribute values), so
//! item keys of different nodes never collide. Both stores are per user, so account removal
//! (`UserData::delete_user`) takes them along.

use std::sync::Arc;

use jid::BareJid;
use serde::{Deserialize, Serialize};
use xmppd_core::storage::{MapChange, MapStore, MapUsage, StorageError, StorageResult};
use xmppd_proto::ns;
use xmppd_proto::pubsub::{Item, NS_PUBSUB};
use xmppd_proto::stanza::parse_stored;
use xmppd_xml::Element;

use crate::config::NodeConfig;

/// The Map store of node records.
pub const NODES: &str = "pep_nodes";
/// The Map store of items.
pub const ITEMS: &str = "pep_items";

/// A node as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Its configuration.
    pub config: NodeConfig,
    /// The ids of its items, oldest first.
    pub items: Vec<String>,
    /// When the last of them was published (microseconds since the epoch), for the
    /// `<delay/>` of the last item sent later (XEP-0163 §4.3.4 example); unknown once the
    /// last item is retracted.
    #[serde(default)]
    pub last_published_us: Option<i64>,
}

/// The PEP stores of every account.
#[derive(Clone)]
pub struct PepStore {
    map: Arc<dyn MapStore>,
}

impl std::fmt::Debug for PepStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PepStore")
    }
}

fn owner(user: &BareJid) -> (&str, &str) {
    (
        user.domain().as_str(),
        user.node().map_or("", |n| n.as_str()),
    )
}

fn item_key(node: &str, id: &str) -> String {
    format!("{node}\u{1}{id}")
}

impl PepStore {
    /// Over the Map shape.
    pub fn new(map: Arc<dyn MapStore>) -> Self {
        PepStore { map }
    }

    /// The node, if it exists.
    pub async fn node(&self, user: &BareJid, node: &str) -> StorageResult<Option<NodeRecord>> {
        let (host, u) = owner(user);
        match self.map.get(host, u, NODES, node).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StorageError::Corrupt(format!("pep node {node}: {e}"))),
        }
    }

    /// Every node of the account with its record, sorted by name. An undecodable record is
    /// skipped (and logged): one bad node must not hide the others.
    pub async fn nodes(&self, user: &BareJid) -> StorageResult<Vec<(String, NodeRecord)>> {
        let (host, u) = owner(user);
        let rows = self.map.list(host, u, NODES).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(name, bytes)| match serde_json::from_slice(&bytes) {
                Ok(record) => Some((name, record)),
                Err(e) => {
                    tracing::warn!(%user, node = %name, error = %e, "a PEP node record is corrupt");
                    None
                }
            })
            .collect())
    }

    /// How many nodes the account has.
    pub async fn count_nodes(&self, user: &BareJid) -> StorageResult<u64> {
        let (host, u) = owner(user);
        self.map.count(host, u, NODES).await
    }

    /// Writes the node record.
    pub async fn put_node(
        &self,
        user: &BareJid,
        node: &str,
        record: &NodeRecord,
    ) -> StorageResult<()> {
        let (host, u) = owner(user);
        let bytes = serde_json::to_vec(record)
            .map_err(|e| StorageError::Backend(format!("pep node encoding: {e}")))?;
        self.map.put(host, u, NODES, node, &bytes).await
    }

    /// Deletes the node record (its items are deleted with [`PepStore::delete_items`]).
    pub async fn delete_node(&self, user: &BareJid, node: &str) -> StorageResult<bool> {
        let (host, u) = owner(user);
        self.map.delete(host, u, NODES, node).await
    }

    /// Writes an item (its `<item/>` element) and deletes the items `dropped` of the same
    /// node, in one transaction, within the account's byte quota: with `max_bytes`, a write
    /// that would leave the account's items (over all its nodes) larger than that fails with
    /// [`StorageError::QuotaExceeded`] and changes nothing. A replaced item counts its new
    /// size less the old one, and `dropped` free theirs first.
    pub async fn put_item(
        &self,
        user: &BareJid,
        node: &str,
        item: &Item,
        dropped: &[String],
        max_bytes: Option<u64>,
    ) -> StorageResult<()> {
        let (host, u) = owner(user);
        let id = item.id.as_deref().unwrap_or_default();
        let mut bytes = Vec::with_capacity(256);
        item.to_element_in(NS_PUBSUB)
            .write_to(&mut bytes, ns::CLIENT);
        let key = item_key(node, id);
        let dropped: Vec<String> = dropped.iter().map(|d| item_key(node, d)).collect();
        let mut changes = Vec::with_capacity(dropped.len() + 1);
        changes.push(MapChange::Put {
            key: &key,
            value: &bytes,
        });
        changes.extend(dropped.iter().map(|key| MapChange::Delete { key }));
        self.map
            .apply_within(host, u, ITEMS, &changes, max_bytes)
            .await
            .map(drop)
    }

    /// Writes a node brought over from another server (XEP-0227 import) with its items,
    /// oldest first: the items first, each within the account's byte quota as
    /// [`PepStore::put_item`] counts it, then the record that lists exactly them, so the
    /// record never names an item that is not stored. The caller has already applied the
    /// node's `max_items`; an error leaves whatever was written for the caller to remove (an
    /// import removes the whole new account).
    pub async fn import_node(
        &self,
        user: &BareJid,
        node: &str,
        config: NodeConfig,
        items: &[Item],
        max_bytes: Option<u64>,
    ) -> StorageResult<()> {
        let mut ids = Vec::with_capacity(items.len());
        for item in items {
            self.put_item(user, node, item, &[], max_bytes).await?;
            ids.push(item.id.clone().unwrap_or_default());
        }
        let record = NodeRecord {
            config,
            items: ids,
            last_published_us: None,
        };
        self.put_node(user, node, &record).await
    }

    /// What the account's items hold, over all its nodes.
    pub async fn usage(&self, user: &BareJid) -> StorageResult<MapUsage> {
        let (host, u) = owner(user);
        self.map.usage(host, u, ITEMS).await
    }

    /// One item, if stored.
    pub async fn item(&self, user: &BareJid, node: &str, id: &str) -> StorageResult<Option<Item>> {
        let (host, u) = owner(user);
        let Some(bytes) = self.map.get(host, u, ITEMS, &item_key(node, id)).await? else {
            return Ok(None);
        };
        let el: Element = parse_stored(&bytes)
            .ok_or_else(|| StorageError::Corrupt(format!("pep item {node}/{id}")))?;
        Ok(Some(Item {
            id: Some(id.to_owned()),
            payload: el.children().next().cloned(),
        }))
    }

    /// The items with these ids, in the order given; ids not stored are skipped.
    pub async fn items(
        &self,
        user: &BareJid,
        node: &str,
        ids: &[String],
    ) -> StorageResult<Vec<Item>> {
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(item) = self.item(user, node, id).await? {
                items.push(item);
            }
        }
        Ok(items)
    }

    /// Deletes the items with these ids.
    pub async fn delete_items(
        &self,
        user: &BareJid,
        node: &str,
        ids: &[String],
    ) -> StorageResult<()> {
        let (host, u) = owner(user);
        for id in ids {
            self.map.delete(host, u, ITEMS, &item_key(node, id)).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AccessModel, MaxItems};

    /// Nodes and items round-trip through SQLite, items of two nodes whose names share a
    /// prefix stay apart, and removing the account (`UserData::delete_user`) takes them all.
    #[tokio::test]
    async fn records_round_trip_and_go_with_the_account() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = xmppd_storage::StorageConfig::Sqlite {
            path: dir.path().join("pep.db"),
        };
        let storage = xmppd_storage::open(&config).await.expect("storage");
        let store = PepStore::new(storage.map.clone());
        let alice = BareJid::new("alice@x").expect("jid");
        let bob = BareJid::new("bob@x").expect("jid");
        let record = NodeRecord {
            config: NodeConfig::default_with(AccessModel::Open, MaxItems::Max),
            items: vec!["1".into()],
            last_published_us: Some(1),
        };
        let item = |text: &str| Item {
            id: Some("1".into()),
            payload: Some(Element::new("n", "urn:n").with_text(text)),
        };
        for (user, node, text) in [
            (&alice, "a", "a"),
            (&alice, "a\u{1}", "a1"),
            (&bob, "a", "b"),
        ] {
            store.put_node(user, node, &record).await.expect("node");
            store
                .put_item(user, node, &item(text), &[], None)
                .await
                .expect("item");
        }
        assert_eq!(
            store.node(&alice, "a").await.expect("read"),
            Some(record.clone())
        );
        assert_eq!(
            store.item(&alice, "a", "1").await.expect("read"),
            Some(item("a"))
        );
        assert_eq!(store.count_nodes(&alice).await.expect("count"), 2);
        storage
            .users
            .delete_user("x", "alice")
            .await
            .expect("delete");
        assert_eq!(store.node(&alice, "a").await.expect("read"), None);
        assert_eq!(store.item(&alice, "a", "1").await.expect("read"), None);
        assert!(store.nodes(&alice).await.expect("list").is_empty());
        assert_eq!(
            store.item(&bob, "a", "1").await.expect("read"),
            Some(item("b"))
        );
    }
}
