//! A batch of appends to the shared archive table in one call to SQLite's connection thread:
//! `BEGIN IMMEDIATE`, the insert, each archive's retention and `COMMIT` as one statement list.
//!
//! Each call to the connection's thread is a round trip that a runtime worker picks up only
//! when it next looks at tasks woken from other threads. Begin, insert, the usage read that
//! decides the trims, and commit made four of them per batch, and every message of the batch
//! waited for all four. Here the trims decide in SQL, from the running totals the triggers
//! keep: each delete is guarded by a `CASE` on the archive's total, so the walk to its bound
//! runs only when the archive is over its limit (SQLite evaluates only the branch taken).
//!
//! On failure the caller must not lend the connection again: the transaction begun here may
//! still be open on it (dropping the connection rolls it back).

use sqlx::QueryBuilder;
use sqlx::sqlite::{Sqlite, SqliteConnection};
use xmppd_core::storage::ArchiveAppend;

use crate::select::first_per_archive;

/// Records in one list: 6 parameters each, well under SQLite's 32,766 with the trims'.
const MAX_RECORDS: usize = 512;

/// Appends `batch` (records of the shared table only) and applies each archive's retention,
/// by the limits of its first append in the batch, in one call; returns the ids in batch
/// order. `None` when the batch is too large for one list.
pub(crate) async fn shared_in_one_call(
    conn: &mut SqliteConnection,
    batch: &[ArchiveAppend],
) -> Option<sqlx::Result<Vec<i64>>> {
    if batch.is_empty() || batch.len() > MAX_RECORDS {
        return None;
    }
    let mut qb = QueryBuilder::<Sqlite>::new(
        "BEGIN IMMEDIATE; \
         INSERT INTO archive (host, username, store, with_jid, timestamp_us, payload) ",
    );
    qb.push_values(batch, |mut row, a| {
        row.push_bind(a.host.as_str())
            .push_bind(a.user.as_str())
            .push_bind(a.store.as_str())
            .push_bind(a.record.with.as_str())
            .push_bind(a.record.timestamp_us)
            .push_bind(a.record.payload.as_slice());
    });
    qb.push(" RETURNING id; ");
    for a in first_per_archive(batch) {
        push_trims(&mut qb, a);
    }
    qb.push("COMMIT");
    // Only the insert returns rows; they are drained, so every statement runs.
    let returned = qb.build_query_scalar::<i64>().fetch_all(&mut *conn).await;
    Some(returned.and_then(|mut ids| {
        if ids.len() != batch.len() {
            return Err(sqlx::Error::Protocol(format!(
                "{} ids for {} records",
                ids.len(),
                batch.len()
            )));
        }
        // RETURNING gives no order; the ids were assigned in the order of the rows.
        ids.sort_unstable();
        Ok(ids)
    }))
}

/// Pushes `host = ? AND username = ? AND store = ?` for `a`'s archive.
fn push_archive(qb: &mut QueryBuilder<Sqlite>, a: &ArchiveAppend) {
    qb.push("host = ")
        .push_bind(a.host.as_str())
        .push(" AND username = ")
        .push_bind(a.user.as_str())
        .push(" AND store = ")
        .push_bind(a.store.as_str());
}

/// Pushes `(SELECT column FROM archive_usage WHERE …)` for `a`'s archive.
fn push_total(qb: &mut QueryBuilder<Sqlite>, column: &str, a: &ArchiveAppend) {
    qb.push("(SELECT ")
        .push(column)
        .push(" FROM archive_usage WHERE ");
    push_archive(qb, a);
    qb.push(")");
}

/// The retention deletes of `a`'s archive, each removing a prefix of it (as
/// `select::archive_trims` and `select::archive_byte_trim` do after reading the totals):
/// records older than `expire_before_us`; the oldest beyond `keep_last`; then, past
/// `keep_bytes`, as few of the oldest as leave at most `keep - keep / 16`, never the newest.
fn push_trims(qb: &mut QueryBuilder<Sqlite>, a: &ArchiveAppend) {
    if let Some(before) = a.expire_before_us {
        qb.push("DELETE FROM archive WHERE ");
        push_archive(qb, a);
        qb.push(" AND id <= (SELECT MAX(id) FROM archive WHERE ");
        push_archive(qb, a);
        qb.push(" AND timestamp_us < ")
            .push_bind(before)
            .push("); ");
    }
    if let Some(keep) = a.keep_last {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        qb.push("DELETE FROM archive WHERE ");
        push_archive(qb, a);
        qb.push(" AND id <= CASE WHEN ");
        push_total(qb, "records", a);
        qb.push(" > ")
            .push_bind(keep)
            .push(" THEN (SELECT id FROM archive WHERE ");
        push_archive(qb, a);
        qb.push(" ORDER BY id DESC LIMIT 1 OFFSET ")
            .push_bind(keep)
            .push(") END; ");
    }
    if let Some(keep) = a.keep_bytes {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let left = keep - keep / 16;
        qb.push("DELETE FROM archive WHERE ");
        push_archive(qb, a);
        qb.push(" AND id < (SELECT MAX(id) FROM archive WHERE ");
        push_archive(qb, a);
        qb.push(") AND id <= CASE WHEN ");
        push_total(qb, "bytes", a);
        qb.push(" > ").push_bind(keep);
        // The first id whose running sum of payloads, from the oldest, frees what is over.
        qb.push(
            " THEN COALESCE((SELECT id FROM (SELECT id, SUM(octet_length(payload)) \
             OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS freed \
             FROM archive WHERE ",
        );
        push_archive(qb, a);
        qb.push(") AS oldest WHERE freed >= ");
        push_total(qb, "bytes", a);
        qb.push(" - ")
            .push_bind(left)
            .push(" ORDER BY id LIMIT 1), ")
            .push_bind(i64::MAX)
            .push(") END; ");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use sqlx::Connection as _;
    use xmppd_core::storage::{ArchiveQuery, NewArchiveRecord};

    use super::*;
    use crate::{StorageConfig, open};

    fn append(user: &str, with: &str) -> ArchiveAppend {
        ArchiveAppend {
            host: "h".into(),
            user: user.into(),
            store: "mam".into(),
            record: NewArchiveRecord {
                with: with.into(),
                timestamp_us: 10,
                payload: b"message".to_vec(),
            },
            keep_last: Some(100),
            expire_before_us: Some(1),
            keep_bytes: Some(1 << 20),
        }
    }

    /// A statement of the list that fails leaves nothing of the batch, and the transaction
    /// the list began is not left open for the next batch, which commits.
    #[tokio::test]
    async fn a_failed_batch_leaves_nothing_and_the_next_commits() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("xmppd.db");
        let s = open(&StorageConfig::Sqlite { path: path.clone() })
            .await
            .expect("open");
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("connect");
        sqlx::query(
            "CREATE TRIGGER refuse BEFORE INSERT ON archive WHEN NEW.with_jid = 'refused' \
             BEGIN SELECT RAISE(ABORT, 'refused'); END",
        )
        .execute(&mut conn)
        .await
        .expect("trigger");
        drop(conn);
        let failed = [append("alice", "a"), append("bob", "refused")];
        assert!(s.archive.append_batch(&failed).await.is_err());
        let ids = s
            .archive
            .append_batch(&[append("alice", "b"), append("bob", "c")])
            .await
            .expect("the next batch commits");
        assert_eq!(ids.len(), 2);
        for (user, with, id) in [("alice", "b", &ids[0]), ("bob", "c", &ids[1])] {
            let records = s
                .archive
                .query("h", user, "mam", &ArchiveQuery::default())
                .await
                .expect("query");
            assert_eq!(records.len(), 1, "{user}");
            assert_eq!((records[0].with.as_str(), &records[0].id), (with, id));
            let usage = s.archive.usage("h", user, "mam").await.expect("usage");
            assert_eq!(usage.records, 1, "{user}");
        }
    }
}
