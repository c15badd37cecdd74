//! The Archive shape on SQLite: appends (one and batched), queries, counts and deletes.

use async_trait::async_trait;
use sqlx::Row;
use sqlx::sqlite::{Sqlite, SqliteRow};
use xmppd_core::storage::{
    ArchiveAppend, ArchiveQuery, ArchiveQuota, ArchiveRecord, ArchiveStore, ArchiveUsage,
    NewArchiveRecord, StorageError, StorageResult,
};

use crate::retention::trim_shared;
use crate::select::{
    Table, archive_count, archive_select, first_per_archive, in_archive, quota_check, usage_from,
};
use crate::sqlite::{SqliteStore, begin_immediate};
use crate::sqlite_connections::note_failure;
use crate::sqlite_rooms::{self, RoomRow};
use crate::{backend_error, count_from_db, parse_id};

/// Records per multi-row insert: 6 parameters each, well under SQLite's 32,766.
const INSERT_CHUNK: usize = 512;

/// An archive's running totals (kept by the `archive_usage` triggers).
const USAGE: &str =
    "SELECT records, bytes FROM archive_usage WHERE host = ? AND username = ? AND store = ?";

/// Decodes one `archive` row.
fn archive_record(row: &SqliteRow) -> StorageResult<ArchiveRecord> {
    let corrupt = |e: sqlx::Error| {
        tracing::error!(error = %e, "undecodable archive row");
        StorageError::Corrupt(format!("archive row: {e}"))
    };
    Ok(ArchiveRecord {
        id: row.try_get::<i64, _>(0).map_err(corrupt)?.to_string(),
        with: row.try_get(1).map_err(corrupt)?,
        timestamp_us: row.try_get(2).map_err(corrupt)?,
        payload: row.try_get(3).map_err(corrupt)?,
    })
}

#[async_trait]
impl ArchiveStore for SqliteStore {
    async fn append_within(
        &self,
        host: &str,
        user: &str,
        store: &str,
        record: NewArchiveRecord,
        quota: ArchiveQuota,
    ) -> StorageResult<String> {
        const OP: &str = "archive.append";
        // BEGIN IMMEDIATE takes the write lock before the quota check, so no other writer (not
        // even another process) can append between the check and the insert.
        let mut lent = self.write(OP).await?;
        let (conn, broken) = lent.parts();
        let mut tx = begin_immediate(conn, broken, OP).await?;
        if quota != ArchiveQuota::default() {
            let row = sqlx::query_as(USAGE)
                .bind(host)
                .bind(user)
                .bind(store)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| backend_error(OP, note_failure(broken, e)))?;
            let usage = usage_from(row)?;
            quota_check(quota, usage, &record, host, user, store)?;
        }
        if Table::sqlite(store) == Table::Rooms {
            let row = RoomRow {
                host,
                room: user,
                record: &record,
                id: None,
            };
            let ids = sqlite_rooms::insert(&mut tx, &[row])
                .await
                .map_err(|e| backend_error(OP, note_failure(broken, e)))?;
            tx.commit()
                .await
                .map_err(|e| backend_error(OP, note_failure(broken, e)))?;
            return ids
                .first()
                .map(i64::to_string)
                .ok_or_else(|| StorageError::Backend(format!("{OP}: no id")));
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO archive (host, username, store, with_jid, timestamp_us, payload) \
             VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(host)
        .bind(user)
        .bind(store)
        .bind(&record.with)
        .bind(record.timestamp_us)
        .bind(&record.payload)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| backend_error(OP, note_failure(broken, e)))?;
        tx.commit()
            .await
            .map_err(|e| backend_error(OP, note_failure(broken, e)))?;
        Ok(id.to_string())
    }

    async fn usage(&self, host: &str, user: &str, store: &str) -> StorageResult<ArchiveUsage> {
        const OP: &str = "archive.usage";
        let mut lent = self.read(OP).await?;
        let (conn, broken) = lent.parts();
        let row = sqlx::query_as(USAGE)
            .bind(host)
            .bind(user)
            .bind(store)
            .fetch_optional(conn)
            .await
            .map_err(|e| backend_error(OP, note_failure(broken, e)))?;
        usage_from(row)
    }

    async fn append_batch(&self, batch: &[ArchiveAppend]) -> StorageResult<Vec<String>> {
        const OP: &str = "archive.append_batch";
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // One IMMEDIATE transaction: the whole batch costs one WAL sync, and the single write
        // connection already serialises it against every other writer.
        let mut lent = self.write(OP).await?;
        let (conn, broken) = lent.parts();
        if batch
            .iter()
            .all(|a| Table::sqlite(&a.store) == Table::Rooms)
        {
            let rows: Vec<RoomRow<'_>> = batch.iter().map(RoomRow::from).collect();
            let trims = first_per_archive(batch);
            if let Some(result) = sqlite_rooms::append_in_one_call(conn, &rows, &trims).await {
                return match result {
                    Ok(ids) => Ok(ids.iter().map(i64::to_string).collect()),
                    Err(e) => {
                        // The list's transaction may still be open: the connection is closed
                        // (which rolls it back) instead of lent again.
                        broken.store(true, std::sync::atomic::Ordering::Relaxed);
                        Err(backend_error(OP, e))
                    }
                };
            }
        }
        let mut tx = begin_immediate(conn, broken, OP).await?;
        // Runs of records of one table, in batch order, so that ids grow in it across both.
        let mut ids = Vec::with_capacity(batch.len());
        for run in batch.chunk_by(|a, b| Table::sqlite(&a.store) == Table::sqlite(&b.store)) {
            let inserted = match Table::sqlite(&run[0].store) {
                Table::Shared => insert_shared(&mut tx, run).await,
                Table::Rooms => {
                    let rows: Vec<RoomRow<'_>> = run.iter().map(RoomRow::from).collect();
                    sqlite_rooms::insert(&mut tx, &rows).await
                }
            };
            let inserted = inserted.map_err(|e| backend_error(OP, note_failure(broken, e)))?;
            if inserted.len() != run.len() {
                return Err(StorageError::Backend(format!(
                    "{OP}: {} ids for {} records",
                    inserted.len(),
                    run.len()
                )));
            }
            ids.extend(inserted.into_iter().map(|id| id.to_string()));
        }
        // Retention, once per archive, after the inserts.
        let archives = first_per_archive(batch);
        let (rooms, shared): (Vec<&ArchiveAppend>, Vec<&ArchiveAppend>) = archives
            .into_iter()
            .partition(|a| Table::sqlite(&a.store) == Table::Rooms);
        for a in rooms {
            sqlite_rooms::trim(&mut tx, a)
                .await
                .map_err(|e| backend_error(OP, note_failure(broken, e)))?;
        }
        trim_shared::<Sqlite>(&mut tx, &shared, |e| {
            backend_error(OP, note_failure(broken, e))
        })
        .await?;
        tx.commit()
            .await
            .map_err(|e| backend_error(OP, note_failure(broken, e)))?;
        Ok(ids)
    }

    async fn reserve_ids(&self, n: u32) -> StorageResult<Vec<String>> {
        const OP: &str = "archive.reserve_ids";
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut lent = self.write(OP).await?;
        let (conn, broken) = lent.parts();
        let mut tx = begin_immediate(conn, broken, OP).await?;
        let ids = sqlite_rooms::reserve(&mut tx, n)
            .await
            .map_err(|e| backend_error(OP, note_failure(broken, e)))?;
        tx.commit()
            .await
            .map_err(|e| backend_error(OP, note_failure(broken, e)))?;
        Ok(ids.iter().map(i64::to_string).collect())
    }

    async fn query(
        &self,
        host: &str,
        user: &str,
        store: &str,
        query: &ArchiveQuery,
    ) -> StorageResult<Vec<ArchiveRecord>> {
        let Some(mut select) =
            archive_select::<Sqlite>(Table::sqlite(store), host, user, store, query)
        else {
            return Ok(Vec::new());
        };
        let mut lent = self.read("archive.query").await?;
        let (conn, broken) = lent.parts();
        let rows = select
            .build()
            .fetch_all(conn)
            .await
            .map_err(|e| backend_error("archive.query", note_failure(broken, e)))?;
        let mut records = rows
            .iter()
            .map(archive_record)
            .collect::<StorageResult<Vec<_>>>()?;
        if query.reverse {
            records.reverse();
        }
        Ok(records)
    }

    async fn count(&self, host: &str, user: &str, store: &str) -> StorageResult<u64> {
        let mut count = in_archive::<Sqlite>(
            "SELECT COUNT(*) FROM ",
            Table::sqlite(store),
            host,
            user,
            store,
        );
        let mut lent = self.read("archive.count").await?;
        let (conn, broken) = lent.parts();
        let n: i64 = count
            .build_query_scalar()
            .fetch_one(conn)
            .await
            .map_err(|e| backend_error("archive.count", note_failure(broken, e)))?;
        count_from_db("archive.count", n)
    }

    async fn count_matching(
        &self,
        host: &str,
        user: &str,
        store: &str,
        query: &ArchiveQuery,
    ) -> StorageResult<u64> {
        const OP: &str = "archive.count_matching";
        let Some(mut select) =
            archive_count::<Sqlite>(Table::sqlite(store), host, user, store, query)
        else {
            return Ok(0);
        };
        let mut lent = self.read(OP).await?;
        let (conn, broken) = lent.parts();
        let n: i64 = select
            .build_query_scalar()
            .fetch_one(conn)
            .await
            .map_err(|e| backend_error(OP, note_failure(broken, e)))?;
        count_from_db(OP, n)
    }

    async fn delete(
        &self,
        host: &str,
        user: &str,
        store: &str,
        ids: &[String],
    ) -> StorageResult<u64> {
        const OP: &str = "archive.delete";
        let ids: Vec<i64> = ids.iter().filter_map(|id| parse_id(id)).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        // One transaction: one WAL sync for the whole batch, and all-or-nothing.
        let mut lent = self.write(OP).await?;
        let (conn, broken) = lent.parts();
        let mut tx = begin_immediate(conn, broken, OP).await?;
        let mut deleted = 0;
        for id in ids {
            let mut delete =
                in_archive::<Sqlite>("DELETE FROM ", Table::sqlite(store), host, user, store);
            delete.push(" AND id = ");
            delete.push_bind(id);
            let done = delete
                .build()
                .execute(&mut *tx)
                .await
                .map_err(|e| backend_error(OP, note_failure(broken, e)))?;
            deleted += done.rows_affected();
        }
        tx.commit()
            .await
            .map_err(|e| backend_error(OP, note_failure(broken, e)))?;
        Ok(deleted)
    }

    async fn clear(&self, host: &str, user: &str, store: &str) -> StorageResult<u64> {
        let mut clear =
            in_archive::<Sqlite>("DELETE FROM ", Table::sqlite(store), host, user, store);
        let mut lent = self.write("archive.clear").await?;
        let (conn, broken) = lent.parts();
        let done = clear
            .build()
            .execute(conn)
            .await
            .map_err(|e| backend_error("archive.clear", note_failure(broken, e)))?;
        Ok(done.rows_affected())
    }

    async fn expire(&self, store: &str, before_us: i64, limit: u32) -> StorageResult<u64> {
        const OP: &str = "archive.expire";
        let mut lent = self.write(OP).await?;
        let (conn, broken) = lent.parts();
        if Table::sqlite(store) == Table::Rooms {
            return sqlite_rooms::expire(conn, before_us, limit)
                .await
                .map_err(|e| backend_error(OP, note_failure(broken, e)));
        }
        let done = sqlx::query(
            "DELETE FROM archive WHERE id IN (SELECT id FROM archive \
             WHERE store = ? AND timestamp_us < ? ORDER BY timestamp_us LIMIT ?)",
        )
        .bind(store)
        .bind(before_us)
        .bind(i64::from(limit))
        .execute(conn)
        .await
        .map_err(|e| backend_error(OP, note_failure(broken, e)))?;
        Ok(done.rows_affected())
    }

    async fn count_by_store(&self) -> StorageResult<Vec<(String, u64)>> {
        const OP: &str = "archive.count_by_store";
        let mut lent = self.read(OP).await?;
        let (conn, broken) = lent.parts();
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT store, SUM(records) FROM archive_usage GROUP BY store \
                 HAVING SUM(records) > 0 ORDER BY store",
        )
        .fetch_all(conn)
        .await
        .map_err(|e| backend_error(OP, note_failure(broken, e)))?;
        rows.into_iter()
            .map(|(store, n)| Ok((store, count_from_db(OP, n)?)))
            .collect()
    }
}

/// Inserts a run of records of the shared table in multi-row statements (one round trip to
/// the connection's thread per chunk instead of one per record); returns their ids in order.
/// Ids grow with insertion order under the write lock the caller's transaction holds, so a
/// chunk's ids, sorted, are its records' in order. Records with a reserved id
/// ([`ArchiveAppend::id`]) take it: AUTOINCREMENT leaves the sequence at or above it.
async fn insert_shared(
    conn: &mut sqlx::SqliteConnection,
    run: &[ArchiveAppend],
) -> sqlx::Result<Vec<i64>> {
    let mut ids = Vec::with_capacity(run.len());
    for same in run.chunk_by(|a, b| a.id.is_some() == b.id.is_some()) {
        for chunk in same.chunks(INSERT_CHUNK) {
            let reserved = chunk[0].id.is_some();
            let mut insert = sqlx::QueryBuilder::<Sqlite>::new(if reserved {
                "INSERT INTO archive (id, host, username, store, with_jid, timestamp_us, payload) "
            } else {
                "INSERT INTO archive (host, username, store, with_jid, timestamp_us, payload) "
            });
            let given: Vec<Option<i64>> = chunk
                .iter()
                .map(|a| a.id.as_deref().and_then(crate::parse_id))
                .collect();
            if let Some(a) = chunk
                .iter()
                .zip(&given)
                .find(|(a, id)| a.id.is_some() && id.is_none())
            {
                return Err(sqlx::Error::Protocol(format!(
                    "{:?} is not an id reserved by this archive",
                    a.0.id.as_deref().unwrap_or_default()
                )));
            }
            insert.push_values(chunk.iter().zip(&given), |mut row, (a, id)| {
                if reserved {
                    row.push_bind(*id);
                }
                row.push_bind(&a.host)
                    .push_bind(&a.user)
                    .push_bind(&a.store)
                    .push_bind(&a.record.with)
                    .push_bind(a.record.timestamp_us)
                    .push_bind(&a.record.payload);
            });
            if reserved {
                insert.build().execute(&mut *conn).await?;
                ids.extend(given.into_iter().flatten());
                continue;
            }
            insert.push(" RETURNING id");
            let mut chunk_ids: Vec<i64> = insert.build_query_scalar().fetch_all(&mut *conn).await?;
            chunk_ids.sort_unstable();
            ids.extend(chunk_ids);
        }
    }
    Ok(ids)
}
