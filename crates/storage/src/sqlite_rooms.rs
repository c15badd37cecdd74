//! Room archives on SQLite: the store [`ROOM_ARCHIVE`] in `room_archive`, a table that only
//! grows at its end, with an id and a time index per room (migration `0004_room_archive.sql`
//! says why).
//!
//! Ids come from the sequence of `archive`'s AUTOINCREMENT, bumped once per statement for all
//! of its rows, so ids stay unique across both tables and are never reused. The rooms' usage
//! totals (`archive_usage`) grow once per room and batch here instead of once per row in a
//! trigger; deletes still go through the table's trigger, whichever path removes records.

use std::collections::BTreeMap;

use sqlx::sqlite::{Sqlite, SqliteConnection};
use xmppd_core::storage::{ArchiveAppend, NewArchiveRecord, ROOM_ARCHIVE};

/// Records per multi-row insert: 6 parameters each, well under SQLite's 32,766.
const INSERT_CHUNK: usize = 512;

/// One record for a room's archive.
pub(crate) struct RoomRow<'a> {
    /// The service's domain.
    pub(crate) host: &'a str,
    /// The room's localpart.
    pub(crate) room: &'a str,
    /// The record.
    pub(crate) record: &'a NewArchiveRecord,
    /// Its reserved id ([`ArchiveAppend::id`]), if it has one.
    pub(crate) id: Option<&'a str>,
}

impl<'a> From<&'a ArchiveAppend> for RoomRow<'a> {
    fn from(a: &'a ArchiveAppend) -> Self {
        RoomRow {
            host: &a.host,
            room: &a.user,
            record: &a.record,
            id: a.id.as_deref(),
        }
    }
}

/// Inserts `rows` in their order (their ids increase in it) and adds them to their rooms'
/// totals; returns their ids. Runs inside the caller's write transaction.
///
/// Each chunk is one call to the connection's thread, which runs every statement of it in
/// turn (sqlx binds each its own parameters, in order; see [`push_insert`]). A batch that fits
/// one chunk goes through [`append_in_one_call`] instead, its transaction included.
pub(crate) async fn insert(
    conn: &mut SqliteConnection,
    rows: &[RoomRow<'_>],
) -> sqlx::Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(rows.len());
    for run in rows.chunk_by(|a, b| a.id.is_some() == b.id.is_some()) {
        for chunk in run.chunks(INSERT_CHUNK) {
            let mut qb = sqlx::QueryBuilder::<Sqlite>::new("");
            if chunk[0].id.is_some() {
                let reserved = reserved_ids(chunk)?;
                push_insert_reserved(&mut qb, chunk, &reserved);
                qb.build().execute(&mut *conn).await?;
                ids.extend(reserved);
                continue;
            }
            push_insert(&mut qb, chunk);
            // Every statement runs only if the rows are drained: not `fetch_one`, which
            // stops at the first row (the sequence's).
            let returned: Vec<i64> = qb.build_query_scalar().fetch_all(&mut *conn).await?;
            ids.extend(chunk_ids(&returned, chunk.len())?);
        }
    }
    Ok(ids)
}

/// The reserved ids of `rows`, each of which has one.
fn reserved_ids(rows: &[RoomRow<'_>]) -> sqlx::Result<Vec<i64>> {
    rows.iter()
        .map(|r| {
            r.id.and_then(crate::parse_id).ok_or_else(|| {
                sqlx::Error::Protocol(format!(
                    "{:?} is not an id reserved by this archive",
                    r.id.unwrap_or_default()
                ))
            })
        })
        .collect()
}

/// Takes `n` ids from the sequence of `archive`'s AUTOINCREMENT in a transaction of its own,
/// committed (synced) before they are handed out: a room sends a message with its id before
/// the record's commit, so an id must stay taken even if the process dies before that commit.
/// AUTOINCREMENT never gives the shared table an id at or below the sequence's value.
pub(crate) async fn reserve(conn: &mut SqliteConnection, n: u32) -> sqlx::Result<Vec<i64>> {
    let mut qb = sqlx::QueryBuilder::<Sqlite>::new(ENSURE_SEQUENCE);
    qb.push("UPDATE sqlite_sequence SET seq = seq + ")
        .push_bind(i64::from(n))
        .push(" WHERE name = 'archive' RETURNING seq");
    let returned: Vec<i64> = qb.build_query_scalar().fetch_all(&mut *conn).await?;
    Ok(chunk_ids(&returned, n as usize)?.collect())
}

/// Appends `rows` and applies the retention of `trims` (each a room's first append in the
/// batch) in a single call to the connection's thread, transaction and commit included;
/// `None` when that cannot be one statement list: more rows than one insert takes, or a byte
/// limit (whose trim needs the total read first).
///
/// Each call is a round trip between a runtime worker and the connection's thread, and the
/// worker picks the answer up only when it next looks at tasks woken from other threads: in
/// a busy room the three calls of begin, insert and commit (and one or two more for the
/// retention) made each commit, and so every message of it, wait that much longer. On
/// failure the caller must not reuse the connection: a transaction begun here may still be
/// open on it (dropping the connection rolls it back).
pub(crate) async fn append_in_one_call(
    conn: &mut SqliteConnection,
    rows: &[RoomRow<'_>],
    trims: &[&ArchiveAppend],
) -> Option<sqlx::Result<Vec<i64>>> {
    if rows.len() > INSERT_CHUNK || trims.iter().any(|a| a.keep_bytes.is_some()) {
        return None;
    }
    let reserved = match rows.iter().filter(|r| r.id.is_some()).count() {
        0 => None,
        n if n == rows.len() => match reserved_ids(rows) {
            Ok(ids) => Some(ids),
            Err(e) => return Some(Err(e)),
        },
        // A list of both kinds: runs of each, in the transaction of `insert`.
        _ => return None,
    };
    let mut qb = sqlx::QueryBuilder::<Sqlite>::new("BEGIN IMMEDIATE; ");
    match &reserved {
        Some(ids) => push_insert_reserved(&mut qb, rows, ids),
        None => push_insert(&mut qb, rows),
    }
    qb.push("; ");
    for a in trims {
        push_trim(&mut qb, a);
    }
    qb.push("COMMIT");
    let returned = qb.build_query_scalar().fetch_all(&mut *conn).await;
    Some(returned.and_then(|r: Vec<i64>| match reserved {
        Some(ids) => Ok(ids),
        None => Ok(chunk_ids(&r, rows.len())?.collect()),
    }))
}

/// The ids of a chunk of `n` rows, from what its statements returned: the sequence's new
/// value, the last row's id.
fn chunk_ids(returned: &[i64], n: usize) -> sqlx::Result<std::ops::RangeInclusive<i64>> {
    let [last] = returned[..] else {
        return Err(sqlx::Error::Protocol(format!(
            "the id sequence returned {} rows",
            returned.len()
        )));
    };
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    Ok(last - n + 1..=last)
}

/// Creates the sequence's row should it be gone (the migration creates it), above every id of
/// both tables.
const ENSURE_SEQUENCE: &str = "INSERT INTO sqlite_sequence (name, seq) SELECT 'archive', \
     MAX(COALESCE((SELECT MAX(id) FROM archive), 0), \
         COALESCE((SELECT MAX(id) FROM room_archive), 0)) \
     WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'archive'); ";

/// The statements that insert one chunk of rows (at most [`INSERT_CHUNK`]): take the ids
/// from the sequence (returning its new value), insert the rows numbered from it, add them
/// to their rooms' totals.
fn push_insert(qb: &mut sqlx::QueryBuilder<Sqlite>, chunk: &[RoomRow<'_>]) {
    let n = i64::try_from(chunk.len()).unwrap_or(i64::MAX);
    qb.push(ENSURE_SEQUENCE);
    qb.push("UPDATE sqlite_sequence SET seq = seq + ");
    qb.push_bind(n);
    qb.push(
        " WHERE name = 'archive' RETURNING seq; \
         INSERT INTO room_archive (host, room, id, with_jid, timestamp_us, payload) \
         SELECT column1, column2, \
         (SELECT seq FROM sqlite_sequence WHERE name = 'archive') + column3, \
         column4, column5, column6 FROM (",
    );
    // Row k (from 1) of n takes the id seq - n + k.
    let mut offset = -n;
    qb.push_values(chunk, |mut row, r| {
        offset += 1;
        row.push_bind(r.host)
            .push_bind(r.room)
            .push_bind(offset)
            .push_bind(r.record.with.as_str())
            .push_bind(r.record.timestamp_us)
            .push_bind(r.record.payload.as_slice());
    });
    qb.push("); ");
    push_totals(qb, chunk);
}

/// The statements that insert one chunk of rows (at most [`INSERT_CHUNK`]) with their
/// reserved `ids` and add them to their rooms' totals.
fn push_insert_reserved(qb: &mut sqlx::QueryBuilder<Sqlite>, chunk: &[RoomRow<'_>], ids: &[i64]) {
    qb.push("INSERT INTO room_archive (host, room, id, with_jid, timestamp_us, payload) ");
    qb.push_values(chunk.iter().zip(ids), |mut row, (r, id)| {
        row.push_bind(r.host)
            .push_bind(r.room)
            .push_bind(*id)
            .push_bind(r.record.with.as_str())
            .push_bind(r.record.timestamp_us)
            .push_bind(r.record.payload.as_slice());
    });
    qb.push("; ");
    push_totals(qb, chunk);
}

/// Adds a chunk's rows to their rooms' running totals.
fn push_totals(qb: &mut sqlx::QueryBuilder<Sqlite>, chunk: &[RoomRow<'_>]) {
    let mut totals: BTreeMap<(&str, &str), (i64, i64)> = BTreeMap::new();
    for r in chunk {
        let total = totals.entry((r.host, r.room)).or_default();
        total.0 += 1;
        total.1 = total
            .1
            .saturating_add(i64::try_from(r.record.payload.len()).unwrap_or(i64::MAX));
    }
    qb.push("INSERT INTO archive_usage (host, username, store, records, bytes) ");
    qb.push_values(totals, |mut row, ((host, room), (records, bytes))| {
        row.push_bind(host)
            .push_bind(room)
            .push_bind(ROOM_ARCHIVE)
            .push_bind(records)
            .push_bind(bytes);
    });
    qb.push(
        " ON CONFLICT (host, username, store) DO UPDATE \
         SET records = records + excluded.records, bytes = bytes + excluded.bytes",
    );
}

/// The age and count deletes of a room's retention as statements of a list (for [`trim`] and
/// [`append_in_one_call`]): the count limit compares the room's total with `keep_last` in
/// SQL instead of reading it first (an OFFSET below zero counts as zero
/// in SQLite, and the comparison then deletes nothing).
fn push_trim(qb: &mut sqlx::QueryBuilder<Sqlite>, append: &ArchiveAppend) {
    let (host, room) = (append.host.as_str(), append.user.as_str());
    if let Some(before) = append.expire_before_us {
        qb.push("DELETE FROM room_archive WHERE host = ")
            .push_bind(host)
            .push(" AND room = ")
            .push_bind(room)
            .push(" AND id <= (SELECT MAX(id) FROM room_archive WHERE host = ")
            .push_bind(host)
            .push(" AND room = ")
            .push_bind(room)
            .push(" AND timestamp_us < ")
            .push_bind(before)
            .push("); ");
    }
    if let Some(keep) = append.keep_last {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let total = |qb: &mut sqlx::QueryBuilder<Sqlite>| {
            qb.push("(SELECT records FROM archive_usage WHERE host = ")
                .push_bind(host)
                .push(" AND username = ")
                .push_bind(room)
                .push(" AND store = ")
                .push_bind(ROOM_ARCHIVE)
                .push(")");
        };
        qb.push("DELETE FROM room_archive WHERE host = ")
            .push_bind(host)
            .push(" AND room = ")
            .push_bind(room)
            .push(" AND id <= (SELECT id FROM room_archive WHERE host = ")
            .push_bind(host)
            .push(" AND room = ")
            .push_bind(room)
            .push(" ORDER BY id LIMIT 1 OFFSET ");
        total(qb);
        qb.push(" - ").push_bind(keep).push(" - 1) AND ");
        total(qb);
        qb.push(" > ").push_bind(keep).push("; ");
    }
}

/// The retention deletes after an append to a room's archive, each removing a prefix of it:
/// records older than `expire_before_us`, then the oldest beyond `keep_last` (one call,
/// [`push_trim`]), then those over `keep_bytes`. Each reads the room's total instead of
/// walking its index.
pub(crate) async fn trim(conn: &mut SqliteConnection, append: &ArchiveAppend) -> sqlx::Result<()> {
    if append.expire_before_us.is_some() || append.keep_last.is_some() {
        let mut qb = sqlx::QueryBuilder::<Sqlite>::new("");
        push_trim(&mut qb, append);
        qb.build().execute(&mut *conn).await?;
    }
    if let Some(keep) = append.keep_bytes {
        trim_bytes(conn, &append.host, &append.user, keep).await?;
    }
    Ok(())
}

/// A room's running totals (records, bytes), kept in `archive_usage` as for every archive.
async fn room_totals(
    conn: &mut SqliteConnection,
    host: &str,
    room: &str,
) -> sqlx::Result<(i64, i64)> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT records, bytes FROM archive_usage WHERE host = ? AND username = ? AND store = ?",
    )
    .bind(host)
    .bind(room)
    .bind(ROOM_ARCHIVE)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.unwrap_or((0, 0)))
}

/// `ArchiveAppend::keep_bytes` for a room: past `keep` bytes, its oldest records go, as few as
/// leave at most `keep - keep / 16`, never its newest (the same rule as every archive's).
async fn trim_bytes(
    conn: &mut SqliteConnection,
    host: &str,
    room: &str,
    keep: u64,
) -> sqlx::Result<()> {
    let (_, bytes) = room_totals(conn, host, room).await?;
    let bytes = u64::try_from(bytes).unwrap_or(0);
    if bytes <= keep {
        return Ok(());
    }
    let free = i64::try_from(bytes - (keep - keep / 16)).unwrap_or(i64::MAX);
    sqlx::query(
        "DELETE FROM room_archive WHERE host = ? AND room = ? \
         AND id < (SELECT MAX(id) FROM room_archive WHERE host = ? AND room = ?) \
         AND id <= COALESCE((SELECT id FROM (SELECT id, SUM(octet_length(payload)) \
         OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS freed \
         FROM room_archive WHERE host = ? AND room = ?) AS oldest WHERE freed >= ? \
         ORDER BY id LIMIT 1), ?)",
    )
    .bind(host)
    .bind(room)
    .bind(host)
    .bind(room)
    .bind(host)
    .bind(room)
    .bind(free)
    .bind(i64::MAX)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Deletes at most `limit` room records older than `before_us`, oldest first, across every
/// room. Rooms trim their own archives on append, so no index serves this: it scans.
pub(crate) async fn expire(
    conn: &mut SqliteConnection,
    before_us: i64,
    limit: u32,
) -> sqlx::Result<u64> {
    let done = sqlx::query(
        "DELETE FROM room_archive WHERE id IN (SELECT id FROM room_archive \
         WHERE timestamp_us < ? ORDER BY timestamp_us LIMIT ?)",
    )
    .bind(before_us)
    .bind(i64::from(limit))
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected())
}
