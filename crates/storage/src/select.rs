//! The archive query, built once for both backends.
//!
//! Only constant SQL fragments are pushed; every caller-supplied value is a bind parameter.
//! [`QueryBuilder`] writes each backend's placeholder syntax (`?` or `$n`). Building the
//! statement from the bounds actually present (instead of one statement with
//! `(? IS NULL OR …)` guards) lets the planner pick the `with` or timestamp index.

use sqlx::{Database, Encode, QueryBuilder, Type};
use xmppd_core::storage::{
    ArchiveAppend, ArchiveQuery, ArchiveQuota, ArchiveUsage, MapChange, MapUsage, NewArchiveRecord,
    ROOM_ARCHIVE, StorageError, map_quota_check,
};

use crate::{count_from_db, parse_id};

/// The table an archive's records are in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Table {
    /// `archive`, keyed by `(host, username, store)`: every store on PostgreSQL, every store
    /// but [`ROOM_ARCHIVE`] on SQLite.
    Shared,
    /// `room_archive` (SQLite), keyed by `(host, room)`: the store [`ROOM_ARCHIVE`].
    Rooms,
}

impl Table {
    /// Where SQLite keeps the records of `store`.
    pub(crate) fn sqlite(store: &str) -> Table {
        if store == ROOM_ARCHIVE {
            Table::Rooms
        } else {
            Table::Shared
        }
    }

    /// The table's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Table::Shared => "archive",
            Table::Rooms => "room_archive",
        }
    }

    /// `host = … AND …`: the conditions that select one archive, the columns prefixed with
    /// `prefix` (a table alias and its dot, or nothing).
    fn push_key<'a, DB>(
        self,
        qb: &mut QueryBuilder<DB>,
        prefix: &'static str,
        host: &'a str,
        user: &'a str,
        store: &'a str,
    ) where
        DB: Database,
        &'a str: Encode<'a, DB> + Type<DB>,
    {
        qb.push(prefix);
        qb.push("host = ");
        qb.push_bind(host);
        qb.push(" AND ");
        qb.push(prefix);
        match self {
            Table::Shared => {
                qb.push("username = ");
                qb.push_bind(user);
                qb.push(" AND ");
                qb.push(prefix);
                qb.push("store = ");
                qb.push_bind(store);
            }
            Table::Rooms => {
                qb.push("room = ");
                qb.push_bind(user);
            }
        }
    }
}

/// `head`, the table and `WHERE` the conditions that select one archive: a statement on one
/// archive, to be continued with more conditions.
pub(crate) fn in_archive<'a, DB>(
    head: &'static str,
    table: Table,
    host: &'a str,
    user: &'a str,
    store: &'a str,
) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::<DB>::new(head);
    qb.push(table.name());
    qb.push(" WHERE ");
    table.push_key(&mut qb, "", host, user, store);
    qb
}

/// Builds the `SELECT` for [`ArchiveStore::query`](xmppd_core::storage::ArchiveStore::query),
/// or `None` when a paging id cannot match any record (the result is empty).
///
/// Rows come back in descending id order when `query.reverse` is set; the caller restores
/// append order.
pub(crate) fn archive_select<'a, DB>(
    table: Table,
    host: &'a str,
    user: &'a str,
    store: &'a str,
    query: &'a ArchiveQuery,
) -> Option<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
{
    let mut qb = filtered::<DB>(
        "SELECT id, with_jid, timestamp_us, payload FROM ",
        table,
        host,
        user,
        store,
        query,
    )?;
    qb.push(if query.reverse {
        " ORDER BY id DESC"
    } else {
        " ORDER BY id ASC"
    });
    if query.limit.is_some() || query.offset.is_some() {
        // SQLite accepts OFFSET only after a LIMIT; i64::MAX stands for "no limit" on both.
        qb.push(" LIMIT ");
        qb.push_bind(query.limit.map_or(i64::MAX, i64::from));
    }
    if let Some(offset) = query.offset {
        qb.push(" OFFSET ");
        qb.push_bind(i64::from(offset));
    }
    Some(qb)
}

/// Builds the `SELECT COUNT(*)` for
/// [`ArchiveStore::count_matching`](xmppd_core::storage::ArchiveStore::count_matching), or
/// `None` when nothing can match.
pub(crate) fn archive_count<'a, DB>(
    table: Table,
    host: &'a str,
    user: &'a str,
    store: &'a str,
    query: &'a ArchiveQuery,
) -> Option<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
{
    filtered::<DB>("SELECT COUNT(*) FROM ", table, host, user, store, query)
}

/// `head`, the table and the archive's key, then every filter of `query` (not its order,
/// limit or offset).
fn filtered<'a, DB>(
    head: &'static str,
    table: Table,
    host: &'a str,
    user: &'a str,
    store: &'a str,
    query: &'a ArchiveQuery,
) -> Option<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
{
    let after = match &query.after_id {
        Some(id) => Some(parse_id(id)?),
        None => None,
    };
    let before = match &query.before_id {
        Some(id) => Some(parse_id(id)?),
        None => None,
    };
    let ids: Option<Vec<i64>> = query
        .ids
        .as_ref()
        .map(|ids| ids.iter().filter_map(|id| parse_id(id)).collect());
    if ids.as_ref().is_some_and(Vec::is_empty) {
        return None;
    }

    let mut qb = in_archive::<DB>(head, table, host, user, store);
    if let Some(with) = &query.with {
        qb.push(" AND (with_jid = ");
        qb.push_bind(with.as_str());
        if query.with_resources {
            // Full JIDs of `with` sort between `with/` and `with0` ('0' follows '/') in byte
            // order, which both backends use for this column: a range the index serves.
            qb.push(" OR (with_jid >= ");
            qb.push_bind(format!("{with}/"));
            qb.push(" AND with_jid < ");
            qb.push_bind(format!("{with}0"));
            qb.push(")");
        }
        qb.push(")");
    }
    if let Some(start) = query.start_us {
        qb.push(" AND timestamp_us >= ");
        qb.push_bind(start);
    }
    if let Some(end) = query.end_us {
        qb.push(" AND timestamp_us <= ");
        qb.push_bind(end);
    }
    if let Some(ids) = ids {
        qb.push(" AND id IN (");
        let mut list = qb.separated(", ");
        for id in ids {
            list.push_bind(id);
        }
        qb.push(")");
    }
    for (id, cmp) in [(after, " AND id > "), (before, " AND id < ")] {
        let Some(id) = id else { continue };
        qb.push(cmp);
        qb.push_bind(id);
        // The paging id must name a record of this very archive; otherwise nothing matches.
        qb.push(" AND EXISTS (SELECT 1 FROM ");
        qb.push(table.name());
        qb.push(" AS anchor WHERE anchor.id = ");
        qb.push_bind(id);
        qb.push(" AND ");
        table.push_key(&mut qb, "anchor.", host, user, store);
        qb.push(")");
    }
    Some(qb)
}

/// The retention deletes of one batched append, each removing a prefix of the archive (every
/// id up to a bound, so no hole is made): records older than `expire_before_us`, then the
/// oldest beyond `keep_last` — only when `records` (the archive's running count, read after
/// the inserts) says there are more, since finding the bound walks `keep_last` index entries.
pub(crate) fn archive_trims<'a, DB>(
    append: &'a ArchiveAppend,
    records: u64,
) -> Vec<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let archive = |qb: &mut QueryBuilder<DB>| {
        qb.push_bind(append.host.as_str());
        qb.push(" AND username = ");
        qb.push_bind(append.user.as_str());
        qb.push(" AND store = ");
        qb.push_bind(append.store.as_str());
    };
    let mut trims = Vec::new();
    if let Some(before) = append.expire_before_us {
        let mut qb = QueryBuilder::<DB>::new("DELETE FROM archive WHERE host = ");
        archive(&mut qb);
        qb.push(" AND id <= (SELECT MAX(id) FROM archive WHERE host = ");
        archive(&mut qb);
        qb.push(" AND timestamp_us < ");
        qb.push_bind(before);
        qb.push(")");
        trims.push(qb);
    }
    if let Some(keep) = append.keep_last.filter(|keep| records > *keep) {
        let mut qb = QueryBuilder::<DB>::new("DELETE FROM archive WHERE host = ");
        archive(&mut qb);
        qb.push(" AND id <= (SELECT id FROM archive WHERE host = ");
        archive(&mut qb);
        qb.push(" ORDER BY id DESC LIMIT 1 OFFSET ");
        qb.push_bind(i64::try_from(keep).unwrap_or(i64::MAX));
        qb.push(")");
        trims.push(qb);
    }
    trims
}

/// The first append of each archive of a batch, in batch order: retention runs once per
/// archive, with the limits that append carries.
pub(crate) fn first_per_archive(batch: &[ArchiveAppend]) -> Vec<&ArchiveAppend> {
    let mut seen = std::collections::HashSet::new();
    batch
        .iter()
        .filter(|a| seen.insert((a.host.as_str(), a.user.as_str(), a.store.as_str())))
        .collect()
}

/// One read of the running totals (`host, username, store, records, bytes`) of `archives`,
/// for the retention of a batched append; none for no archive. One statement for the whole
/// batch instead of one per archive: each statement is a round trip to the connection (on
/// SQLite a hop to its worker thread and back), and the per-archive reads were most of the
/// round trips of a commit.
pub(crate) fn usage_select<'a, DB>(archives: &[&'a ArchiveAppend]) -> Option<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
{
    if archives.is_empty() {
        return None;
    }
    let mut qb = QueryBuilder::<DB>::new(
        "SELECT host, username, store, records, bytes FROM archive_usage \
         WHERE (host, username, store) IN (VALUES ",
    );
    for (i, a) in archives.iter().enumerate() {
        qb.push(if i == 0 { "(" } else { ", (" });
        qb.push_bind(a.host.as_str());
        qb.push(", ");
        qb.push_bind(a.user.as_str());
        qb.push(", ");
        qb.push_bind(a.store.as_str());
        qb.push(")");
    }
    qb.push(")");
    Some(qb)
}

/// The usage of each of `archives` from the rows [`usage_select`] returned, in the same
/// order (zero for an archive without a row: it never had a record).
pub(crate) fn usage_of(
    archives: &[&ArchiveAppend],
    rows: Vec<(String, String, String, i64, i64)>,
) -> Result<Vec<ArchiveUsage>, StorageError> {
    let index: std::collections::HashMap<(&str, &str, &str), usize> = archives
        .iter()
        .enumerate()
        .map(|(i, a)| ((a.host.as_str(), a.user.as_str(), a.store.as_str()), i))
        .collect();
    let mut usage = vec![ArchiveUsage::default(); archives.len()];
    for (host, user, store, records, bytes) in rows {
        if let Some(&i) = index.get(&(host.as_str(), user.as_str(), store.as_str())) {
            usage[i] = usage_from(Some((records, bytes)))?;
        }
    }
    Ok(usage)
}

/// An archive's usage from its `archive_usage` row (`records`, `bytes`), none when the
/// archive never had a record.
pub(crate) fn usage_from(row: Option<(i64, i64)>) -> Result<ArchiveUsage, StorageError> {
    let (records, bytes) = totals_from("archive.usage", row)?;
    Ok(ArchiveUsage { records, bytes })
}

/// The two counts of a running-totals row, zero without a row.
fn totals_from(
    operation: &'static str,
    row: Option<(i64, i64)>,
) -> Result<(u64, u64), StorageError> {
    let (n, bytes) = row.unwrap_or_default();
    Ok((
        count_from_db(operation, n)?,
        count_from_db(operation, bytes)?,
    ))
}

/// [`ArchiveQuota::check`] for an append to one archive, its refusal logged and naming the
/// archive.
pub(crate) fn quota_check(
    quota: ArchiveQuota,
    usage: ArchiveUsage,
    record: &NewArchiveRecord,
    host: &str,
    user: &str,
    store: &str,
) -> Result<(), StorageError> {
    quota
        .check(usage, record.payload.len())
        .map_err(|e| match e {
            StorageError::QuotaExceeded(why) => {
                tracing::debug!(host, user, store, %why, "archive quota reached");
                StorageError::QuotaExceeded(format!("archive {store} of {user}@{host} holds {why}"))
            }
            other => other,
        })
}

/// A Map store's usage from its `map_usage` row (`items`, `bytes`), none when the store never
/// had an item.
pub(crate) fn map_usage_from(row: Option<(i64, i64)>) -> Result<MapUsage, StorageError> {
    let (items, bytes) = totals_from("map.usage", row)?;
    Ok(MapUsage { items, bytes })
}

/// [`map_quota_check`] for changes to one Map store, its refusal logged and naming the store.
pub(crate) fn map_quota_refusal(
    before: MapUsage,
    after: MapUsage,
    max_bytes: Option<u64>,
    host: &str,
    user: &str,
    store: &str,
) -> Result<(), StorageError> {
    map_quota_check(before, after, max_bytes).map_err(|e| match e {
        StorageError::QuotaExceeded(why) => {
            tracing::debug!(host, user, store, %why, "map store quota reached");
            StorageError::QuotaExceeded(format!("store {store} of {user}@{host} holds {why}"))
        }
        other => other,
    })
}

/// The byte trim of one archive of a batched append that holds `bytes` of payload: when that
/// is over its `keep_bytes`, a delete of its oldest records, as few as leave at most
/// `keep_bytes - keep_bytes / 16`, never its newest record (see
/// [`ArchiveAppend::keep_bytes`]). A prefix of the archive, so no hole is made. The running
/// sum walks the archive's id index from the oldest end only as far as the bytes to free.
pub(crate) fn archive_byte_trim<'a, DB>(
    append: &'a ArchiveAppend,
    bytes: u64,
) -> Option<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let keep = append.keep_bytes?;
    if bytes <= keep {
        return None;
    }
    let free = bytes - (keep - keep / 16);
    let archive = |qb: &mut QueryBuilder<DB>| {
        qb.push_bind(append.host.as_str());
        qb.push(" AND username = ");
        qb.push_bind(append.user.as_str());
        qb.push(" AND store = ");
        qb.push_bind(append.store.as_str());
    };
    let mut qb = QueryBuilder::<DB>::new("DELETE FROM archive WHERE host = ");
    archive(&mut qb);
    qb.push(" AND id < (SELECT MAX(id) FROM archive WHERE host = ");
    archive(&mut qb);
    // The first id whose running sum of payloads, from the oldest, reaches `free`.
    qb.push(
        ") AND id <= COALESCE((SELECT id FROM (SELECT id, SUM(octet_length(payload)) \
         OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS freed \
         FROM archive WHERE host = ",
    );
    archive(&mut qb);
    qb.push(") AS oldest WHERE freed >= ");
    qb.push_bind(i64::try_from(free).unwrap_or(i64::MAX));
    qb.push(" ORDER BY id LIMIT 1), ");
    qb.push_bind(i64::MAX);
    qb.push(")");
    Some(qb)
}

/// The statement of one change of a `MapStore::apply_within`.
pub(crate) fn map_change<'a, DB>(
    host: &'a str,
    user: &'a str,
    store: &'a str,
    change: MapChange<'a>,
) -> QueryBuilder<DB>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    &'a [u8]: Encode<'a, DB> + Type<DB>,
{
    match change {
        MapChange::Put { key, value } => {
            let mut qb = QueryBuilder::<DB>::new(
                "INSERT INTO map (host, username, store, item_key, value) VALUES (",
            );
            let mut values = qb.separated(", ");
            values.push_bind(host);
            values.push_bind(user);
            values.push_bind(store);
            values.push_bind(key);
            values.push_bind(value);
            qb.push(
                ") ON CONFLICT (host, username, store, item_key) \
                 DO UPDATE SET value = excluded.value",
            );
            qb
        }
        MapChange::Delete { key } => {
            let mut qb = QueryBuilder::<DB>::new("DELETE FROM map WHERE host = ");
            qb.push_bind(host);
            qb.push(" AND username = ");
            qb.push_bind(user);
            qb.push(" AND store = ");
            qb.push_bind(store);
            qb.push(" AND item_key = ");
            qb.push_bind(key);
            qb
        }
    }
}
