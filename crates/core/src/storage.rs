//! The three storage shapes every feature stores through.
//!
//! Features never get a table of their own: per-user documents go to [`KeyVal`], per-user keyed
//! items (roster entries, pubsub items) to [`MapStore`], and time-ordered records (offline
//! messages, MAM, MUC history) to [`ArchiveStore`]. Each shape is implemented once per backend
//! (`xmppd-storage`: SQLite, PostgreSQL) and checked by one conformance suite.
//!
//! Every method is durable on return: an `Ok` means the write is committed (SQLite
//! `synchronous=FULL`, PostgreSQL commit), which is what lets a caller acknowledge a stanza.
//!
//! Keys are `(host, user, store)`: `host` the virtual host (domain), `user` the localpart (empty
//! for host-wide data), `store` the feature's name (`accounts`, `roster`, `offline` …).

use async_trait::async_trait;

/// The [`ArchiveStore`] store of room archives (XEP-0313 on a MUC room JID; `user` is the
/// room's localpart). A backend may keep these archives apart from the others, with fewer
/// indexes (SQLite does): many occupants append to one archive, which is read by id range,
/// and rooms trim their own archives on append, so they need no index for retention sweeps
/// across archives. The contract of the shape is the same for every store.
pub const ROOM_ARCHIVE: &str = "muc_archive";

/// A storage failure. The backend has already logged the details.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StorageError {
    /// The backend could not be reached or the statement failed.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// Stored data could not be decoded (corruption or an incompatible older format).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A per-user quota would be exceeded by this write; nothing was written.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
}

impl ArchiveQuota {
    /// [`StorageError::QuotaExceeded`] if an archive holding `usage` cannot take a record of
    /// `payload` bytes.
    pub fn check(&self, usage: ArchiveUsage, payload: usize) -> StorageResult<()> {
        if let Some(max) = self.max_records
            && usage.records >= max
        {
            return Err(StorageError::QuotaExceeded(format!(
                "{} of at most {max} records",
                usage.records
            )));
        }
        let after = usage.bytes.saturating_add(payload as u64);
        if let Some(max) = self.max_bytes
            && after > max
        {
            return Err(StorageError::QuotaExceeded(format!(
                "{} bytes with this one, of at most {max}",
                after
            )));
        }
        Ok(())
    }
}

/// Result alias for storage calls.
pub type StorageResult<T> = Result<T, StorageError>;

/// One user's document in a [`KeyVal::put_many`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyValDoc<'a> {
    /// The user's host.
    pub host: &'a str,
    /// The user (node).
    pub user: &'a str,
    /// The document.
    pub value: &'a [u8],
}

/// Per-user documents: one opaque value per `(host, user, store)`.
#[async_trait]
pub trait KeyVal: Send + Sync + 'static {
    /// The document, if any.
    async fn get(&self, host: &str, user: &str, store: &str) -> StorageResult<Option<Vec<u8>>>;
    /// Creates or replaces the document.
    async fn put(&self, host: &str, user: &str, store: &str, value: &[u8]) -> StorageResult<()>;
    /// Creates or replaces the documents of `store` of several users, all or none: one commit
    /// for all (one fsync on SQLite), where a `put` each would cost one commit each. Callers
    /// that write the same kind of document for many users at once (a logout each, when
    /// thousands of sessions end together) gather them for this.
    async fn put_many(&self, store: &str, docs: &[KeyValDoc<'_>]) -> StorageResult<()> {
        for doc in docs {
            self.put(doc.host, doc.user, store, doc.value).await?;
        }
        Ok(())
    }
    /// Inserts only if absent; `Ok(false)` when a document already existed (nothing written).
    async fn insert_new(
        &self,
        host: &str,
        user: &str,
        store: &str,
        value: &[u8],
    ) -> StorageResult<bool>;
    /// Deletes the document; `Ok(false)` if there was none.
    async fn delete(&self, host: &str, user: &str, store: &str) -> StorageResult<bool>;
    /// Users of `host` that have a document in `store`, sorted.
    async fn users(&self, host: &str, store: &str) -> StorageResult<Vec<String>>;
}

/// What a Map store holds now: running totals kept by the backend in the transaction of
/// every write (every path: put, delete, clear, account removal), not a scan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MapUsage {
    /// Items.
    pub items: u64,
    /// Bytes of keys and values, as stored (UTF-8 bytes of the key, bytes of the value).
    pub bytes: u64,
}

/// One change of a [`MapStore::apply_within`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapChange<'a> {
    /// Creates or replaces the item.
    Put {
        /// The item's key.
        key: &'a str,
        /// Its new value.
        value: &'a [u8],
    },
    /// Deletes the item, if it exists.
    Delete {
        /// The item's key.
        key: &'a str,
    },
}

impl MapChange<'_> {
    /// The bytes an item of `key` and `value` counts for in [`MapUsage::bytes`].
    pub fn item_bytes(key: &str, value: &[u8]) -> u64 {
        (key.len() as u64).saturating_add(value.len() as u64)
    }
}

/// Per-user keyed items: many `(key → value)` per `(host, user, store)`.
#[async_trait]
pub trait MapStore: Send + Sync + 'static {
    /// One item.
    async fn get(
        &self,
        host: &str,
        user: &str,
        store: &str,
        key: &str,
    ) -> StorageResult<Option<Vec<u8>>>;
    /// Creates or replaces one item.
    async fn put(
        &self,
        host: &str,
        user: &str,
        store: &str,
        key: &str,
        value: &[u8],
    ) -> StorageResult<()>;
    /// Deletes one item; `Ok(false)` if there was none.
    async fn delete(&self, host: &str, user: &str, store: &str, key: &str) -> StorageResult<bool>;
    /// All items sorted by key.
    async fn list(
        &self,
        host: &str,
        user: &str,
        store: &str,
    ) -> StorageResult<Vec<(String, Vec<u8>)>>;
    /// The items of several stores of one user, read together: one list per store, in the
    /// order of `stores`, each sorted by key. Backends answer it with one statement (a login
    /// reads a user's roster and pending subscription requests at once).
    async fn list_stores(
        &self,
        host: &str,
        user: &str,
        stores: &[&str],
    ) -> StorageResult<Vec<Vec<(String, Vec<u8>)>>> {
        let mut lists = Vec::with_capacity(stores.len());
        for store in stores {
            lists.push(self.list(host, user, store).await?);
        }
        Ok(lists)
    }
    /// Number of items.
    async fn count(&self, host: &str, user: &str, store: &str) -> StorageResult<u64>;
    /// Deletes every item of the store; returns how many were deleted.
    async fn clear(&self, host: &str, user: &str, store: &str) -> StorageResult<u64>;
    /// The store's item and byte totals.
    async fn usage(&self, host: &str, user: &str, store: &str) -> StorageResult<MapUsage>;
    /// Applies `changes` in order, in one transaction: all of them or none. With `max_bytes`,
    /// fails with [`StorageError::QuotaExceeded`], and writes nothing, if the store would then
    /// hold more than `max_bytes` bytes ([`MapUsage::bytes`]) *and* more than it holds now: a
    /// replacement counts its new size minus the old one, a deletion in the same call frees
    /// its bytes first, and changes that shrink a store already over its quota (lowered by
    /// the administrator) go through. Changes to one store are serialised, so concurrent calls
    /// cannot overshoot the quota together. Returns the totals after the changes.
    async fn apply_within(
        &self,
        host: &str,
        user: &str,
        store: &str,
        changes: &[MapChange<'_>],
        max_bytes: Option<u64>,
    ) -> StorageResult<MapUsage>;
}

/// [`StorageError::QuotaExceeded`] if a Map store that held `before` would hold `after` against
/// a quota of `max_bytes` (see [`MapStore::apply_within`]).
pub fn map_quota_check(
    before: MapUsage,
    after: MapUsage,
    max_bytes: Option<u64>,
) -> StorageResult<()> {
    match max_bytes {
        Some(max) if after.bytes > max && after.bytes > before.bytes => {
            Err(StorageError::QuotaExceeded(format!(
                "{} bytes with this change, of at most {max}",
                after.bytes
            )))
        }
        _ => Ok(()),
    }
}

/// A record to append to an archive.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewArchiveRecord {
    /// The JID of the other party (for filtering), may be empty.
    pub with: String,
    /// Microseconds since the Unix epoch.
    pub timestamp_us: i64,
    /// The serialised stanza or payload.
    pub payload: Vec<u8>,
}

/// A stored archive record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveRecord {
    /// Backend-assigned id, strictly increasing in append order within one archive and
    /// unique across the backend (a decimal string).
    pub id: String,
    /// As given when appended.
    pub with: String,
    /// As given when appended.
    pub timestamp_us: i64,
    /// As given when appended.
    pub payload: Vec<u8>,
}

/// Which records a query selects. All bounds are optional and combine with AND.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArchiveQuery {
    /// Only records whose `with` equals this.
    pub with: Option<String>,
    /// With `with` a bare JID, also the records whose `with` is one of its full JIDs
    /// (`with` followed by `/` and a resource): MAM's bare-JID filter (XEP-0313 §4.1.1.1).
    pub with_resources: bool,
    /// Only records with `timestamp_us >= start_us`.
    pub start_us: Option<i64>,
    /// Only records with `timestamp_us <= end_us`.
    pub end_us: Option<i64>,
    /// Only records appended after the record with this id.
    pub after_id: Option<String>,
    /// Only records appended before the record with this id.
    pub before_id: Option<String>,
    /// Only records with one of these ids (XEP-0313 `ids`); an empty list selects nothing.
    pub ids: Option<Vec<String>>,
    /// Skips this many matching records (from the end with `reverse`) before applying
    /// `limit`: RSM `<index/>` (XEP-0059 §2.4).
    pub offset: Option<u32>,
    /// At most this many records. With `reverse`, the *last* `limit` matching records are
    /// selected; results are always returned in append order.
    pub limit: Option<u32>,
    /// Select from the end (newest first) before applying `limit`.
    pub reverse: bool,
}

/// One record of an [`ArchiveStore::append_batch`], with the archive it goes to and the
/// archive's retention rules, applied in the same transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchiveAppend {
    /// The virtual host.
    pub host: String,
    /// The localpart.
    pub user: String,
    /// The feature's store name.
    pub store: String,
    /// The record.
    pub record: NewArchiveRecord,
    /// An id taken from [`ArchiveStore::reserve_ids`] for this record, which then gets it
    /// instead of a new one (`None`: a new one). A caller that must name a record before its
    /// commit (a room that sends a message with its stanza-id while the commit runs) reserves
    /// ids ahead; records of one archive must get their reserved ids in increasing order.
    pub id: Option<String>,
    /// After the insert, the oldest records beyond this many are deleted (`None`: no limit).
    /// Trimming from the oldest end, never a quota refusal: an archive that rotates keeps no
    /// holes (XEP-0313 §3.2).
    pub keep_last: Option<u64>,
    /// After the insert, if the archive holds more than this many bytes of payload, its
    /// oldest records are deleted until it holds at most `keep_bytes - keep_bytes / 16`
    /// (`None`: no limit). The margin makes the deletion run once in many appends rather than
    /// on each; the newest record is never deleted, so a record larger than the limit is kept
    /// alone. Like `keep_last`, trimming from the oldest end, never a refusal (XEP-0313 §3.2).
    pub keep_bytes: Option<u64>,
    /// After the insert, records with `timestamp_us` before this are deleted (retention).
    pub expire_before_us: Option<i64>,
}

/// What an archive may hold at most, checked by [`ArchiveStore::append_within`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchiveQuota {
    /// Records (`None`: no limit).
    pub max_records: Option<u64>,
    /// Bytes of payload, the new record's included (`None`: no limit).
    pub max_bytes: Option<u64>,
}

/// What an archive holds now: a running total kept by the backend in the transaction of
/// every write, not a scan.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArchiveUsage {
    /// Records.
    pub records: u64,
    /// Bytes of payload.
    pub bytes: u64,
}

/// Time-ordered records per `(host, user, store)`.
#[async_trait]
pub trait ArchiveStore: Send + Sync + 'static {
    /// Appends a record and returns its id. Fails with [`StorageError::QuotaExceeded`] if the
    /// archive already holds `max_records` records (`None`: no limit); the check and the
    /// insert are one transaction.
    async fn append(
        &self,
        host: &str,
        user: &str,
        store: &str,
        record: NewArchiveRecord,
        max_records: Option<u64>,
    ) -> StorageResult<String> {
        let quota = ArchiveQuota {
            max_records,
            max_bytes: None,
        };
        self.append_within(host, user, store, record, quota).await
    }
    /// Appends a record and returns its id. Fails with [`StorageError::QuotaExceeded`], and
    /// writes nothing, if the archive already holds `quota.max_records` records or would hold
    /// more than `quota.max_bytes` bytes of payload with this one; the check and the insert
    /// are one transaction, and the check reads the archive's [`ArchiveUsage`].
    async fn append_within(
        &self,
        host: &str,
        user: &str,
        store: &str,
        record: NewArchiveRecord,
        quota: ArchiveQuota,
    ) -> StorageResult<String>;
    /// The archive's record and byte totals.
    async fn usage(&self, host: &str, user: &str, store: &str) -> StorageResult<ArchiveUsage>;
    /// Appends every record of `batch` in one transaction (one commit, one sync for all of
    /// them: the group commit of concurrent writers) and returns their ids in the order of
    /// `batch`. All or nothing: on `Err` none of them is stored. Ids are allocated in batch
    /// order, so records of one archive keep their order within the batch.
    async fn append_batch(&self, batch: &[ArchiveAppend]) -> StorageResult<Vec<String>>;
    /// Reserves `n` new ids, each larger than every id given out before (reserved or not),
    /// in increasing order; none is ever given to another record, even if the process stops
    /// before using it (the reservation is durable before this returns). They are used
    /// through [`ArchiveAppend::id`].
    async fn reserve_ids(&self, n: u32) -> StorageResult<Vec<String>>;
    /// Records matching the query, in append order.
    async fn query(
        &self,
        host: &str,
        user: &str,
        store: &str,
        query: &ArchiveQuery,
    ) -> StorageResult<Vec<ArchiveRecord>>;
    /// Number of records.
    async fn count(&self, host: &str, user: &str, store: &str) -> StorageResult<u64>;
    /// Number of records matching the query's filters (`with`, times, paging ids, `ids`);
    /// its `limit`, `offset` and `reverse` are ignored. RSM `<count/>` and `index`.
    async fn count_matching(
        &self,
        host: &str,
        user: &str,
        store: &str,
        query: &ArchiveQuery,
    ) -> StorageResult<u64>;
    /// Deletes the records with these ids; returns how many were deleted.
    async fn delete(
        &self,
        host: &str,
        user: &str,
        store: &str,
        ids: &[String],
    ) -> StorageResult<u64>;
    /// Deletes every record of the archive; returns how many were deleted.
    async fn clear(&self, host: &str, user: &str, store: &str) -> StorageResult<u64>;
    /// Deletes at most `limit` records of `store`, in every host's and user's archive, whose
    /// `timestamp_us` is before `before_us`, oldest first; returns how many were deleted
    /// (fewer than `limit`: nothing older is left). Retention sweeps call it in rounds, so
    /// that no transaction holds the write lock for long.
    async fn expire(&self, store: &str, before_us: i64, limit: u32) -> StorageResult<u64>;
    /// The number of records of each store, over every host and user, sorted by store (stores
    /// without a record left out): from the per-archive totals the store keeps (see
    /// [`ArchiveStore::usage`]), not a count of the records, for the metrics' archive sizes.
    async fn count_by_store(&self) -> StorageResult<Vec<(String, u64)>>;
}

/// Removes everything a user owns across all stores and shapes (account deletion).
#[async_trait]
pub trait UserData: Send + Sync + 'static {
    /// Deletes every KeyVal document, Map item and Archive record of `(host, user)`, and
    /// the running totals of its Map stores and archives.
    async fn delete_user(&self, host: &str, user: &str) -> StorageResult<()>;
}

/// The storage handles a server is wired with; cheap to clone.
#[derive(Clone)]
pub struct Storage {
    /// Per-user documents.
    pub keyval: std::sync::Arc<dyn KeyVal>,
    /// Per-user keyed items.
    pub map: std::sync::Arc<dyn MapStore>,
    /// Time-ordered records.
    pub archive: std::sync::Arc<dyn ArchiveStore>,
    /// Whole-user operations.
    pub users: std::sync::Arc<dyn UserData>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Storage")
    }
}
