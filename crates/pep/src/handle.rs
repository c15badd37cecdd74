//! The in-process API: what the iq handlers do, for other modules too (bookmarks and avatar
//! conversion). Every call applies the same rules — ownership, access model, limits,
//! preconditions — and sends the same notifications as the protocol.

use std::sync::Arc;

use jid::{BareJid, Jid};
use xmppd_core::Router;
use xmppd_core::storage::StorageError;
use xmppd_proto::StanzaError;
use xmppd_proto::data_form::{DataForm, FormType};
use xmppd_proto::pubsub::{Event, EventKind, Item};

use crate::access::{self, Relation};
use crate::config::{MaxItems, NodeConfig};
use crate::store::NodeRecord;
use crate::{Pep, PepError};

/// The PEP service of every account, for other modules. Cheap to clone.
///
/// Writes act as the owner (the calling module has decided the owner asked: a bookmarks
/// conversion on the owner's behalf); reads take the requester and apply the access model.
/// Notifications and limits are those of the protocol. A module built on PEP is declared
/// after `pep` in the server's `modules.rs` and given the handle the `pep` declaration kept
/// from [`crate::PepModule::handle`].
#[derive(Clone)]
pub struct PepHandle(pub(crate) Arc<Pep>);

impl std::fmt::Debug for PepHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PepHandle")
    }
}

/// A fresh id for an item or a notification: 64 random bits in hex.
pub(crate) fn fresh_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No entropy source: time and a counter still make ids unique in this process.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = (t ^ n.rotate_left(32)).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl PepHandle {
    /// A node name or item id within the length limit, and without U+0001, which separates
    /// them in storage keys (XML cannot carry it; an in-process caller could).
    fn check_name(&self, name: &str) -> Result<(), PepError> {
        let max = self.0.settings.get().max_name_bytes;
        if name.len() > max {
            return Err(PepError::NameTooLong(max));
        }
        if name.contains('\u{1}') {
            return Err(PepError::Refused(StanzaError::bad_request(
                "a node name or item id cannot contain U+0001",
            )));
        }
        Ok(())
    }

    /// The relation of `requester` to `owner` (one roster read for a contact).
    pub async fn relation(&self, owner: &BareJid, requester: &Jid) -> Result<Relation, PepError> {
        self.0.relation(owner, requester).await
    }

    /// Publishes `item` to `owner`'s `node` as the owner (XEP-0060 §7.1), creating the node
    /// with `options` (or the defaults) if needed, else checking `options` as preconditions
    /// (§7.1.5); notifies the interested resources; returns the item's id (the given one or a
    /// fresh one).
    pub async fn publish(
        &self,
        router: &Router,
        owner: &BareJid,
        node: &str,
        mut item: Item,
        options: Option<&DataForm>,
    ) -> Result<String, PepError> {
        let pep = &self.0;
        let settings = pep.settings.get();
        self.check_name(node)?;
        let id = match item.id.take().filter(|id| !id.is_empty()) {
            Some(id) => {
                self.check_name(&id)?;
                id
            }
            None => fresh_id(),
        };
        item.id = Some(id.clone());
        let size = item.payload.as_ref().map_or(0, |p| p.to_bytes().len());
        if size > settings.max_item_bytes {
            return Err(PepError::PayloadTooBig(size, settings.max_item_bytes));
        }
        let guard = pep.locks.lock(owner.as_str()).await;
        let mut record = match pep.store.node(owner, node).await? {
            Some(record) => {
                if let Some(options) = options
                    && !record
                        .config
                        .satisfies(options)
                        .map_err(PepError::Refused)?
                {
                    return Err(PepError::PreconditionNotMet);
                }
                record
            }
            None => {
                if pep.store.count_nodes(owner).await? >= settings.max_nodes {
                    return Err(PepError::TooManyNodes(settings.max_nodes));
                }
                let mut config = NodeConfig::default_with(
                    settings.default_access_model,
                    MaxItems::Count(settings.default_max_items),
                );
                if let Some(options) = options {
                    config.apply(options).map_err(PepError::Refused)?;
                }
                NodeRecord {
                    config,
                    items: Vec::new(),
                    last_published_us: None,
                }
            }
        };
        record.items.retain(|i| *i != id);
        record.items.push(id.clone());
        record.last_published_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .and_then(|d| i64::try_from(d.as_micros()).ok());
        let dropped = self.trim(&mut record);
        // The item and the trim in one write, so an item that replaces another (a new avatar
        // in a node of one) is judged against the quota without the one it replaces.
        let max_bytes = (settings.max_bytes > 0).then_some(settings.max_bytes);
        match pep
            .store
            .put_item(owner, node, &item, &dropped, max_bytes)
            .await
        {
            Err(StorageError::QuotaExceeded(_)) => {
                return Err(PepError::QuotaExceeded(settings.max_bytes));
            }
            other => other?,
        }
        pep.store.put_node(owner, node, &record).await?;
        drop(guard);
        let event = Event {
            node: node.to_owned(),
            kind: EventKind::Items(vec![item]),
        };
        pep.notify(router, owner, &record.config, event).await;
        Ok(id)
    }

    /// Cuts the record's item list to what its configuration keeps; returns the ids dropped.
    fn trim(&self, record: &mut NodeRecord) -> Vec<String> {
        let config = &record.config;
        let keep = if config.persist_items {
            config.max_items.limit(self.0.settings.get().max_items)
        } else {
            1
        };
        let excess = record.items.len().saturating_sub(keep.max(1) as usize);
        record.items.drain(..excess).collect()
    }

    /// The node's record, or `item-not-found`.
    async fn existing(&self, owner: &BareJid, node: &str) -> Result<NodeRecord, PepError> {
        self.check_name(node)?;
        self.0
            .store
            .node(owner, node)
            .await?
            .ok_or_else(|| PepError::NotFound(format!("no node {node}")))
    }

    /// Items of `owner`'s `node` that `requester` may read (§6.5): those named by `ids`, or
    /// the newest `max_items`, or all; oldest first.
    pub async fn items(
        &self,
        owner: &BareJid,
        requester: &Jid,
        node: &str,
        ids: &[String],
        max_items: Option<u32>,
    ) -> Result<Vec<Item>, PepError> {
        let record = self.existing(owner, node).await?;
        let relation = self.relation(owner, requester).await?;
        access::check(&record.config, &relation).map_err(PepError::Denied)?;
        let store = &self.0.store;
        if !ids.is_empty() {
            let wanted: Vec<String> = ids
                .iter()
                .filter(|id| record.items.contains(id))
                .cloned()
                .collect();
            if wanted.is_empty() {
                return Err(PepError::NotFound("no such item".into()));
            }
            return Ok(store.items(owner, node, &wanted).await?);
        }
        let skip = match max_items {
            Some(max) => record.items.len().saturating_sub(max as usize),
            None => 0,
        };
        Ok(store.items(owner, node, &record.items[skip..]).await?)
    }

    /// Deletes items (§7.2) as the owner; notifies when `notify` or the node's
    /// `notify_retract` asks for it. An id the node does not hold is `item-not-found`.
    pub async fn retract(
        &self,
        router: &Router,
        owner: &BareJid,
        node: &str,
        ids: &[String],
        notify: bool,
    ) -> Result<(), PepError> {
        let pep = &self.0;
        let guard = pep.locks.lock(owner.as_str()).await;
        let mut record = self.existing(owner, node).await?;
        if let Some(missing) = ids.iter().find(|id| !record.items.contains(id)) {
            return Err(PepError::NotFound(format!("no item {missing}")));
        }
        if record.items.last().is_some_and(|last| ids.contains(last)) {
            record.last_published_us = None;
        }
        record.items.retain(|i| !ids.contains(i));
        pep.store.delete_items(owner, node, ids).await?;
        pep.store.put_node(owner, node, &record).await?;
        drop(guard);
        if notify || record.config.notify_retract {
            let event = Event {
                node: node.to_owned(),
                kind: EventKind::Retract(ids.to_vec()),
            };
            pep.notify(router, owner, &record.config, event).await;
        }
        Ok(())
    }

    /// Deletes the node and its items (§8.4) and tells the interested resources.
    pub async fn delete(
        &self,
        router: &Router,
        owner: &BareJid,
        node: &str,
    ) -> Result<(), PepError> {
        self.clear(router, owner, node, EventKind::Delete).await
    }

    /// Deletes every item of the node (§8.5) and tells the interested resources.
    pub async fn purge(
        &self,
        router: &Router,
        owner: &BareJid,
        node: &str,
    ) -> Result<(), PepError> {
        self.clear(router, owner, node, EventKind::Purge).await
    }

    /// Deletes the node's items, and the node itself for [`EventKind::Delete`]; notifies.
    async fn clear(
        &self,
        router: &Router,
        owner: &BareJid,
        node: &str,
        kind: EventKind,
    ) -> Result<(), PepError> {
        let pep = &self.0;
        let guard = pep.locks.lock(owner.as_str()).await;
        let mut record = self.existing(owner, node).await?;
        let items = std::mem::take(&mut record.items);
        record.last_published_us = None;
        pep.store.delete_items(owner, node, &items).await?;
        if kind == EventKind::Delete {
            pep.store.delete_node(owner, node).await?;
        } else {
            pep.store.put_node(owner, node, &record).await?;
        }
        drop(guard);
        let event = Event {
            node: node.to_owned(),
            kind,
        };
        pep.notify(router, owner, &record.config, event).await;
        Ok(())
    }

    /// The node's configuration (§8.2.1).
    pub async fn configuration(&self, owner: &BareJid, node: &str) -> Result<NodeConfig, PepError> {
        Ok(self.existing(owner, node).await?.config)
    }

    /// Changes the node's configuration (§8.2.4); items beyond a lowered `max_items` go.
    pub async fn configure(
        &self,
        owner: &BareJid,
        node: &str,
        form: &DataForm,
    ) -> Result<(), PepError> {
        let pep = &self.0;
        let _guard = pep.locks.lock(owner.as_str()).await;
        let mut record = self.existing(owner, node).await?;
        record.config.apply(form).map_err(PepError::Refused)?;
        let dropped = self.trim(&mut record);
        pep.store.delete_items(owner, node, &dropped).await?;
        pep.store.put_node(owner, node, &record).await?;
        Ok(())
    }

    /// The configuration form of a node (§8.2.1).
    pub async fn configuration_form(
        &self,
        owner: &BareJid,
        node: &str,
    ) -> Result<DataForm, PepError> {
        Ok(self
            .configuration(owner, node)
            .await?
            .to_form(FormType::Form))
    }
}

#[cfg(test)]
#[path = "handle_tests.rs"]
mod tests;
