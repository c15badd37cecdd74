//! The Archive shape on PostgreSQL: appends (one and batched, under a per-archive advisory
//! lock), queries, counts and deletes.

use std::collections::BTreeSet;

use async_trait::async_trait;
use sqlx::Row;
use sqlx::postgres::{PgRow, Postgres};
use xmppd_core::storage::{
    ArchiveAppend, ArchiveQuery, ArchiveQuota, ArchiveRecord, ArchiveStore, ArchiveUsage,
    NewArchiveRecord, StorageError, StorageResult,
};

use crate::postgres::{PostgresStore, lock_key};
use crate::retention::trim_shared;
use crate::select::{
    Table, archive_count, archive_select, first_per_archive, quota_check, usage_from,
};
use crate::{backend_error, count_from_db, parse_id};

/// An archive's running totals (kept by the `archive_usage` trigger).
const USAGE: &str =
    "SELECT records, bytes FROM archive_usage WHERE host = $1 AND username = $2 AND store = $3";

/// Decodes one `archive` row.
fn archive_record(row: &PgRow) -> StorageResult<ArchiveRecord> {
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

/// Takes the transaction-scoped advisory lock of one archive (see the module docs of
/// [`crate::postgres`]). Class 0x584D5050 is "XMPP".
async fn lock_archive(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    host: &str,
    user: &str,
    store: &str,
    operation: &'static str,
) -> StorageResult<()> {
    lock_key(tx, 0x584D_5050, host, user, store, operation).await
}

#[async_trait]
impl ArchiveStore for PostgresStore {
    async fn append_within(
        &self,
        host: &str,
        user: &str,
        store: &str,
        record: NewArchiveRecord,
        quota: ArchiveQuota,
    ) -> StorageResult<String> {
        const OP: &str = "archive.append";
        let mut tx = self.pool.begin().await.map_err(|e| backend_error(OP, e))?;
        // Serialise appends to this archive until commit: the quota check below cannot race
        // another append, and ids are allocated (and committed) in lock order, so a reader
        // never sees a smaller id appear after a larger one. Class 0x584D5050 is "XMPP";
        // hash collisions only serialise two unrelated archives.
        lock_archive(&mut tx, host, user, store, OP).await?;
        if quota != ArchiveQuota::default() {
            let row = sqlx::query_as(USAGE)
                .bind(host)
                .bind(user)
                .bind(store)
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| backend_error(OP, e))?;
            quota_check(quota, usage_from(row)?, &record, host, user, store)?;
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO archive (host, username, store, with_jid, timestamp_us, payload) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(host)
        .bind(user)
        .bind(store)
        .bind(&record.with)
        .bind(record.timestamp_us)
        .bind(&record.payload)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| backend_error(OP, e))?;
        tx.commit().await.map_err(|e| backend_error(OP, e))?;
        Ok(id.to_string())
    }

    async fn usage(&self, host: &str, user: &str, store: &str) -> StorageResult<ArchiveUsage> {
        let row = sqlx::query_as(USAGE)
            .bind(host)
            .bind(user)
            .bind(store)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend_error("archive.usage", e))?;
        usage_from(row)
    }

    async fn append_batch(&self, batch: &[ArchiveAppend]) -> StorageResult<Vec<String>> {
        const OP: &str = "archive.append_batch";
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(|e| backend_error(OP, e))?;
        // Every archive of the batch is locked first, in one global order (sorted keys), so
        // two batches touching the same archives cannot deadlock, and ids within each archive
        // are committed in allocation order as with `append`.
        let archives: BTreeSet<(&str, &str, &str)> = batch
            .iter()
            .map(|a| (a.host.as_str(), a.user.as_str(), a.store.as_str()))
            .collect();
        for (host, user, store) in &archives {
            lock_archive(&mut tx, host, user, store, OP).await?;
        }
        let mut ids = Vec::with_capacity(batch.len());
        for a in batch {
            // A reserved id (ArchiveAppend::id) is given; otherwise the identity makes one.
            let reserved = match a.id.as_deref() {
                Some(id) => Some(parse_id(id).ok_or_else(|| {
                    StorageError::Backend(format!(
                        "{OP}: {id:?} is not an id reserved by this archive"
                    ))
                })?),
                None => None,
            };
            let insert = sqlx::query_scalar(if reserved.is_some() {
                "INSERT INTO archive (host, username, store, with_jid, timestamp_us, payload, id) \
                 OVERRIDING SYSTEM VALUE VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id"
            } else {
                "INSERT INTO archive (host, username, store, with_jid, timestamp_us, payload) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id"
            })
            .bind(&a.host)
            .bind(&a.user)
            .bind(&a.store)
            .bind(&a.record.with)
            .bind(a.record.timestamp_us)
            .bind(&a.record.payload);
            // The id only where the statement has its parameter.
            let insert = match reserved {
                Some(id) => insert.bind(id),
                None => insert,
            };
            let id: i64 = insert
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| backend_error(OP, e))?;
            ids.push(id.to_string());
        }
        // Retention, once per archive, after the inserts.
        let archives = first_per_archive(batch);
        trim_shared::<Postgres>(&mut tx, &archives, |e| backend_error(OP, e)).await?;
        tx.commit().await.map_err(|e| backend_error(OP, e))?;
        Ok(ids)
    }

    async fn reserve_ids(&self, n: u32) -> StorageResult<Vec<String>> {
        const OP: &str = "archive.reserve_ids";
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut tx = self.pool.begin().await.map_err(|e| backend_error(OP, e))?;
        // A transaction id makes the commit flush the WAL, the sequence's advance with it: an
        // id handed out stays taken even if the server stops before using it.
        sqlx::query("SELECT txid_current()")
            .execute(&mut *tx)
            .await
            .map_err(|e| backend_error(OP, e))?;
        let mut ids: Vec<i64> = sqlx::query_scalar(
            "SELECT nextval(pg_get_serial_sequence('archive', 'id')) FROM generate_series(1, $1)",
        )
        .bind(i64::from(n))
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| backend_error(OP, e))?;
        tx.commit().await.map_err(|e| backend_error(OP, e))?;
        ids.sort_unstable();
        Ok(ids.iter().map(i64::to_string).collect())
    }

    async fn query(
        &self,
        host: &str,
        user: &str,
        store: &str,
        query: &ArchiveQuery,
    ) -> StorageResult<Vec<ArchiveRecord>> {
        let Some(mut select) = archive_select::<Postgres>(Table::Shared, host, user, store, query)
        else {
            return Ok(Vec::new());
        };
        let rows = select
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(|e| backend_error("archive.query", e))?;
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
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM archive WHERE host = $1 AND username = $2 AND store = $3",
        )
        .bind(host)
        .bind(user)
        .bind(store)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| backend_error("archive.count", e))?;
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
        let Some(mut select) = archive_count::<Postgres>(Table::Shared, host, user, store, query)
        else {
            return Ok(0);
        };
        let n: i64 = select
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(|e| backend_error(OP, e))?;
        count_from_db(OP, n)
    }

    async fn delete(
        &self,
        host: &str,
        user: &str,
        store: &str,
        ids: &[String],
    ) -> StorageResult<u64> {
        let ids: Vec<i64> = ids.iter().filter_map(|id| parse_id(id)).collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let done = sqlx::query(
            "DELETE FROM archive \
             WHERE host = $1 AND username = $2 AND store = $3 AND id = ANY($4)",
        )
        .bind(host)
        .bind(user)
        .bind(store)
        .bind(ids)
        .execute(&self.pool)
        .await
        .map_err(|e| backend_error("archive.delete", e))?;
        Ok(done.rows_affected())
    }

    async fn clear(&self, host: &str, user: &str, store: &str) -> StorageResult<u64> {
        let done =
            sqlx::query("DELETE FROM archive WHERE host = $1 AND username = $2 AND store = $3")
                .bind(host)
                .bind(user)
                .bind(store)
                .execute(&self.pool)
                .await
                .map_err(|e| backend_error("archive.clear", e))?;
        Ok(done.rows_affected())
    }

    async fn expire(&self, store: &str, before_us: i64, limit: u32) -> StorageResult<u64> {
        let done = sqlx::query(
            "DELETE FROM archive WHERE id IN (SELECT id FROM archive \
             WHERE store = $1 AND timestamp_us < $2 ORDER BY timestamp_us LIMIT $3)",
        )
        .bind(store)
        .bind(before_us)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await
        .map_err(|e| backend_error("archive.expire", e))?;
        Ok(done.rows_affected())
    }

    async fn count_by_store(&self) -> StorageResult<Vec<(String, u64)>> {
        const OP: &str = "archive.count_by_store";
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT store, SUM(records)::BIGINT FROM archive_usage GROUP BY store \
                 HAVING SUM(records) > 0 ORDER BY store",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| backend_error(OP, e))?;
        rows.into_iter()
            .map(|(store, n)| Ok((store, count_from_db(OP, n)?)))
            .collect()
    }
}
