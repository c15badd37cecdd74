//! What survives a restart, through the storage shapes, all under the service's domain as
//! host and the room's localpart as user:
//!
//! - KeyVal `muc_rooms`: a persistent room's [`StoredRoom`] (configuration, affiliations with
//!   reserved nicknames, subject) in JSON, written on every change to any of them;
//! - Archive `muc_archive`: the room's messages (XEP-0313 on the room JID), each the
//!   reflected `<message/>` without `to`, `with` the sender's occupant JID;
//! - Map `muc_owned` under each user's own host and name: the rooms the user created and
//!   still owns (key: the room JID), for the per-user room limit (XEP-0045 §17.? security
//!   "limiting the number of rooms that any given non-administrative user can own");
//! - KeyVal `muc_secret` under the service's domain: the key occupant ids are derived from;
//! - Map `muc_directory` under the service's domain: the public persistent rooms and their
//!   names, for disco#items.

use std::collections::BTreeMap;
use std::sync::Arc;

use jid::BareJid;
use serde::{Deserialize, Serialize};
use xmppd_core::storage::{
    ArchiveQuery, ArchiveRecord, KeyVal, MapStore, NewArchiveRecord, Storage, StorageError,
    StorageResult,
};
use xmppd_proto::muc::Affiliation;

use crate::config::RoomConfig;

/// Persistent rooms.
pub const ROOMS: &str = "muc_rooms";
/// Room archives (the store the backends may keep clustered per room).
pub const ARCHIVE: &str = xmppd_core::storage::ROOM_ARCHIVE;
/// Rooms per creator.
pub const OWNED: &str = "muc_owned";
/// The occupant-id key.
pub const SECRET: &str = "muc_secret";
/// The public persistent rooms of a service (key: the room's localpart, value: its name),
/// so that listing thousands of rooms is one read.
pub const DIRECTORY: &str = "muc_directory";

/// One user's standing in a room, with the nickname reserved for them (§7.10).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AffiliationEntry {
    /// The affiliation.
    #[serde(with = "affiliation_name")]
    pub affiliation: Affiliation,
    /// The registered nickname, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nick: Option<String>,
    /// Why (shown in the lists, §9.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

mod affiliation_name {
    use serde::{Deserialize, Deserializer, Serializer};
    use xmppd_proto::muc::Affiliation;

    pub fn serialize<S: Serializer>(a: &Affiliation, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(a.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Affiliation, D::Error> {
        let name = String::deserialize(d)?;
        Affiliation::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown affiliation {name}")))
    }
}

/// The subject and who set it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The text (empty: none).
    pub text: String,
    /// The nickname that set it.
    pub by: String,
}

/// A persistent room as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoredRoom {
    /// Its configuration.
    pub config: RoomConfig,
    /// Affiliations other than `none`, by bare JID.
    pub affiliations: BTreeMap<String, AffiliationEntry>,
    /// The subject.
    pub subject: Subject,
}

/// The MUC stores.
#[derive(Clone)]
pub struct RoomStore {
    keyval: Arc<dyn KeyVal>,
    map: Arc<dyn MapStore>,
    archive: Arc<dyn xmppd_core::storage::ArchiveStore>,
}

impl std::fmt::Debug for RoomStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RoomStore")
    }
}

fn parts(room: &BareJid) -> (&str, &str) {
    (
        room.domain().as_str(),
        room.node().map_or("", |n| n.as_str()),
    )
}

impl RoomStore {
    /// The stores of `storage`.
    pub fn new(storage: &Storage) -> Self {
        RoomStore {
            keyval: storage.keyval.clone(),
            map: storage.map.clone(),
            archive: storage.archive.clone(),
        }
    }

    /// The stored room, if it is persistent.
    pub async fn load(&self, room: &BareJid) -> StorageResult<Option<StoredRoom>> {
        let (host, name) = parts(room);
        match self.keyval.get(host, name, ROOMS).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StorageError::Corrupt(format!("room {room}: {e}"))),
        }
    }

    /// Stores the room, and its directory entry if it is public.
    pub async fn save(&self, room: &BareJid, stored: &StoredRoom) -> StorageResult<()> {
        let (host, name) = parts(room);
        let bytes = serde_json::to_vec(stored).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        self.keyval.put(host, name, ROOMS, &bytes).await?;
        if stored.config.public {
            let display = if stored.config.name.is_empty() {
                name
            } else {
                stored.config.name.as_str()
            };
            self.map
                .put(host, "", DIRECTORY, name, display.as_bytes())
                .await
        } else {
            self.map.delete(host, "", DIRECTORY, name).await.map(drop)
        }
    }

    /// The public persistent rooms of a service domain: (localpart, name), sorted.
    pub async fn directory(&self, domain: &str) -> StorageResult<Vec<(String, String)>> {
        Ok(self
            .map
            .list(domain, "", DIRECTORY)
            .await?
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect())
    }

    /// Forgets the room and its archive (destruction, or no longer persistent).
    pub async fn remove(&self, room: &BareJid, archive_too: bool) -> StorageResult<()> {
        let (host, name) = parts(room);
        self.keyval.delete(host, name, ROOMS).await?;
        self.map.delete(host, "", DIRECTORY, name).await?;
        if archive_too {
            self.archive.clear(host, name, ARCHIVE).await?;
        }
        Ok(())
    }

    /// Appends a message to the room's archive; returns its id.
    pub async fn archive(
        &self,
        room: &BareJid,
        record: NewArchiveRecord,
        keep_last: Option<u64>,
    ) -> StorageResult<String> {
        let (host, name) = parts(room);
        let append = xmppd_core::storage::ArchiveAppend {
            host: host.to_owned(),
            user: name.to_owned(),
            store: ARCHIVE.to_owned(),
            record,
            id: None,
            keep_last,
            expire_before_us: None,
            keep_bytes: None,
        };
        let mut ids = self
            .archive
            .append_batch(std::slice::from_ref(&append))
            .await?;
        ids.pop()
            .ok_or_else(|| StorageError::Corrupt("the archive returned no id".to_owned()))
    }

    /// Archived messages.
    pub async fn query(
        &self,
        room: &BareJid,
        query: &ArchiveQuery,
    ) -> StorageResult<Vec<ArchiveRecord>> {
        let (host, name) = parts(room);
        self.archive.query(host, name, ARCHIVE, query).await
    }

    /// Archived messages matching the query's filters.
    pub async fn count(&self, room: &BareJid, query: &ArchiveQuery) -> StorageResult<u64> {
        let (host, name) = parts(room);
        self.archive
            .count_matching(host, name, ARCHIVE, query)
            .await
    }

    /// The archive shape (for the MAM query engine).
    pub fn archive_store(&self) -> &Arc<dyn xmppd_core::storage::ArchiveStore> {
        &self.archive
    }

    /// Records that `user` owns `room`; returns how many rooms `user` now owns.
    pub async fn add_owned(&self, user: &BareJid, room: &BareJid) -> StorageResult<u64> {
        let (host, name) = parts(user);
        self.map.put(host, name, OWNED, room.as_str(), b"").await?;
        self.map.count(host, name, OWNED).await
    }

    /// How many rooms `user` owns.
    pub async fn owned(&self, user: &BareJid) -> StorageResult<u64> {
        let (host, name) = parts(user);
        self.map.count(host, name, OWNED).await
    }

    /// Records that `user` no longer owns `room`.
    pub async fn remove_owned(&self, user: &BareJid, room: &BareJid) -> StorageResult<()> {
        let (host, name) = parts(user);
        self.map.delete(host, name, OWNED, room.as_str()).await?;
        Ok(())
    }

    /// The occupant-id key of a service, created on first use.
    pub async fn secret(&self, domain: &str) -> StorageResult<Vec<u8>> {
        if let Some(key) = self.keyval.get(domain, "", SECRET).await? {
            return Ok(key);
        }
        let mut key = vec![0u8; 32];
        getrandom::fill(&mut key)
            .map_err(|e| StorageError::Corrupt(format!("no randomness for the key: {e}")))?;
        if !self.keyval.insert_new(domain, "", SECRET, &key).await? {
            // Another node created it first: use theirs.
            return self
                .keyval
                .get(domain, "", SECRET)
                .await?
                .ok_or_else(|| StorageError::Corrupt("the occupant-id key vanished".to_owned()));
        }
        Ok(key)
    }
}
