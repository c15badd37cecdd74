//! Archive ids that came with imported messages (XEP-0227 §archive, `xmppd import`).
//!
//! A message archived here is known by its store id run through the host's permutation
//! (`ids.rs`). A message imported from another server had an id there, which its owner's
//! clients remember: the last one they saw is where their next query pages from
//! (`after-id`, RSM `<after/>`), and they match results to the messages they hold by it. So
//! the import keeps each such id beside the record, and queries speak it both ways: a
//! requested id is looked up here first, then decoded; a record with a kept id is reported
//! under it. Both directions are keys of the account's Map store named [`STORE`] (the
//! module's own name; the Archive shape holds the messages under it): the old id, and U+0001
//! followed by the store id, which no id from XML can begin with. A query checks once
//! whether the account has any (a count), so an archive that was never imported pays one
//! indexed read per query and nothing per result.
//!
//! The kept entries go with the account (`delete_user`). Trimming and retention delete
//! records but not their entries; an id whose record is gone pages like any id before the
//! oldest record.

use xmppd_core::storage::{MapChange, MapStore, StorageResult};

use super::STORE;
use super::query::{ArchiveView, QueryError};

/// Longest id kept; a longer one (no exporter writes such) is dropped and the record gets an
/// id of this server.
pub const MAX_IMPORTED_ID: usize = 256;

fn reverse_key(store_id: &str) -> String {
    format!("\u{1}{store_id}")
}

/// Keeps `(old id, store id)` pairs of an account's imported records, in one transaction.
/// An old id already kept, empty or longer than [`MAX_IMPORTED_ID`] is skipped: its record
/// keeps the id this server gives it, so that no id names two records.
pub async fn keep_imported_ids(
    map: &dyn MapStore,
    host: &str,
    user: &str,
    pairs: &[(String, String)],
) -> StorageResult<()> {
    let mut keys = Vec::with_capacity(pairs.len());
    let mut seen = std::collections::HashSet::new();
    for (old, store_id) in pairs {
        if old.is_empty()
            || old.len() > MAX_IMPORTED_ID
            || old.starts_with('\u{1}')
            || !seen.insert(old.as_str())
        {
            continue;
        }
        if map.get(host, user, STORE, old).await?.is_some() {
            continue;
        }
        keys.push((old.as_str(), reverse_key(store_id), store_id.as_str()));
    }
    let mut changes = Vec::with_capacity(keys.len() * 2);
    for (old, reverse, store_id) in &keys {
        changes.push(MapChange::Put {
            key: old,
            value: store_id.as_bytes(),
        });
        changes.push(MapChange::Put {
            key: reverse,
            value: old.as_bytes(),
        });
    }
    if changes.is_empty() {
        return Ok(());
    }
    map.apply_within(host, user, STORE, &changes, None)
        .await
        .map(drop)
}

/// The kept id of a record, if it has one.
pub async fn imported_id(
    map: &dyn MapStore,
    host: &str,
    user: &str,
    store_id: &str,
) -> StorageResult<Option<String>> {
    Ok(map
        .get(host, user, STORE, &reverse_key(store_id))
        .await?
        .and_then(|v| String::from_utf8(v).ok()))
}

impl ArchiveView<'_> {
    /// The store of kept ids, if this archive has any.
    pub(super) async fn kept_ids(&self) -> Result<Option<&dyn MapStore>, QueryError> {
        let Some(map) = self.imported else {
            return Ok(None);
        };
        let any = map.count(self.host, self.node, STORE).await? > 0;
        Ok(any.then_some(map))
    }

    /// The store id of a public id: a kept one, or one this server handed out.
    pub(super) async fn decode_id(
        &self,
        kept: Option<&dyn MapStore>,
        public: &str,
    ) -> Result<String, QueryError> {
        if let Some(map) = kept
            && let Some(id) = map.get(self.host, self.node, STORE, public).await?
            && let Ok(id) = String::from_utf8(id)
        {
            return Ok(id);
        }
        self.cipher
            .decode(public)
            .ok_or_else(|| QueryError::NotFound(public.to_owned()))
    }

    /// [`ArchiveView::decode_id`] of an optional id.
    pub(super) async fn decode_opt(
        &self,
        kept: Option<&dyn MapStore>,
        public: Option<&String>,
    ) -> Result<Option<String>, QueryError> {
        match public {
            Some(id) => Ok(Some(self.decode_id(kept, id).await?)),
            None => Ok(None),
        }
    }

    /// The public id of a record: its kept id, or this server's.
    pub(super) async fn encode_id(
        &self,
        kept: Option<&dyn MapStore>,
        store_id: &str,
    ) -> Result<String, QueryError> {
        if let Some(map) = kept
            && let Some(id) = imported_id(map, self.host, self.node, store_id).await?
        {
            return Ok(id);
        }
        Ok(self.cipher.encode(store_id))
    }
}
