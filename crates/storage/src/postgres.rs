//! The PostgreSQL backend, for deployments that share storage between nodes.
//!
//! Writes that must be serialised per archive (append: the quota check and id order) take a
//! transaction-scoped advisory lock on the archive, `pg_advisory_xact_lock(class, key)`, in
//! the two-`int4` key space (which does not overlap the `bigint` one sqlx's migrator uses).
//! The lock is released by commit or rollback, also when a node dies mid-transaction.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow, Postgres};
use sqlx::{Connection, Row};
use xmppd_core::storage::{
    ArchiveAppend, ArchiveQuery, ArchiveQuota, ArchiveRecord, ArchiveStore, ArchiveUsage, KeyVal,
    MapStore, NewArchiveRecord, StorageError, StorageResult, UserData,
};

use crate::select::{archive_count, archive_select, archive_trims, quota_check, usage_from};
use crate::{OpenError, backend_error, count_from_db, parse_id, redact_url};

/// The schema migrations for PostgreSQL, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// An archive's running totals (kept by the `archive_usage` trigger).
const USAGE: &str =
    "SELECT records, bytes FROM archive_usage WHERE host = $1 AND username = $2 AND store = $3";

/// Connections per node.
const MAX_CONNECTIONS: u32 = 16;

/// How long a call waits for a free connection before failing.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// The PostgreSQL backend of all four storage shapes.
///
/// Cloning is cheap and shares the connection pool.
#[derive(Clone, Debug)]
pub struct PostgresStore {
    /// Connections; PostgreSQL serialises concurrent writers itself.
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database at `url` and applies the embedded migrations (under
    /// PostgreSQL's migration lock, so several nodes may start at once).
    pub async fn open(url: &str) -> Result<Self, OpenError> {
        let redacted = redact_url(url);
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(OpenError::PostgresUrl {
                url: redacted,
                reason: "expected a postgres:// or postgresql:// URL".to_owned(),
            });
        }
        let options = PgConnectOptions::from_str(url).map_err(|e| OpenError::PostgresUrl {
            url: redacted.clone(),
            reason: e.to_string(),
        })?;
        let connect_err = |source| OpenError::Postgres {
            url: redacted.clone(),
            source,
        };
        // One direct connection first: the pool would retry a refused connection until its
        // acquire timeout and then report only "timed out", hiding the reason.
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(connect_err)?;
        MIGRATOR
            .run(&mut conn)
            .await
            .map_err(|source| OpenError::Migrate {
                backend: "PostgreSQL",
                location: redacted.clone(),
                source,
            })?;
        if let Err(e) = conn.close().await {
            tracing::debug!(error = %e, "closing the migration connection");
        }
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(connect_err)?;
        tracing::debug!(url = %redacted, "opened PostgreSQL storage");
        Ok(Self { pool })
    }

    /// Closes all connections, waiting for running statements; later calls fail.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

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

#[async_trait]
impl KeyVal for PostgresStore {
    async fn get(&self, host: &str, user: &str, store: &str) -> StorageResult<Option<Vec<u8>>> {
        sqlx::query_scalar(
            "SELECT value FROM keyval WHERE host = $1 AND username = $2 AND store = $3",
        )
        .bind(host)
        .bind(user)
        .bind(store)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| backend_error("keyval.get", e))
    }

    async fn put(&self, host: &str, user: &str, store: &str, value: &[u8]) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO keyval (host, username, store, value) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (host, username, store) DO UPDATE SET value = excluded.value",
        )
        .bind(host)
        .bind(user)
        .bind(store)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(|e| backend_error("keyval.put", e))?;
        Ok(())
    }

    async fn insert_new(
        &self,
        host: &str,
        user: &str,
        store: &str,
        value: &[u8],
    ) -> StorageResult<bool> {
        let done = sqlx::query(
            "INSERT INTO keyval (host, username, store, value) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (host, username, store) DO NOTHING",
        )
        .bind(host)
        .bind(user)
        .bind(store)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(|e| backend_error("keyval.insert_new", e))?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete(&self, host: &str, user: &str, store: &str) -> StorageResult<bool> {
        let done =
            sqlx::query("DELETE FROM keyval WHERE host = $1 AND username = $2 AND store = $3")
                .bind(host)
                .bind(user)
                .bind(store)
                .execute(&self.pool)
                .await
                .map_err(|e| backend_error("keyval.delete", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn users(&self, host: &str, store: &str) -> StorageResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT username FROM keyval WHERE host = $1 AND store = $2 ORDER BY username",
        )
        .bind(host)
        .bind(store)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| backend_error("keyval.users", e))
    }
}

#[async_trait]
impl MapStore for PostgresStore {
    async fn get(
        &self,
        host: &str,
        user: &str,
        store: &str,
        key: &str,
    ) -> StorageResult<Option<Vec<u8>>> {
        sqlx::query_scalar(
            "SELECT value FROM map \
             WHERE host = $1 AND username = $2 AND store = $3 AND item_key = $4",
        )
        .bind(host)
        .bind(user)
        .bind(store)
        .bind(key)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| backend_error("map.get", e))
    }

    async fn put(
        &self,
        host: &str,
        user: &str,
        store: &str,
        key: &str,
        value: &[u8],
    ) -> StorageResult<()> {
        sqlx::query(
            "INSERT INTO map (host, username, store, item_key, value) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (host, username, store, item_key) DO UPDATE SET value = excluded.value",
        )
        .bind(host)
        .bind(user)
        .bind(store)
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await
        .map_err(|e| backend_error("map.put", e))?;
        Ok(())
    }

    async fn delete(&self, host: &str, user: &str, store: &str, key: &str) -> StorageResult<bool> {
        let done = sqlx::query(
            "DELETE FROM map \
             WHERE host = $1 AND username = $2 AND store = $3 AND item_key = $4",
        )
        .bind(host)
        .bind(user)
        .bind(store)
        .bind(key)
        .execute(&self.pool)
        .await
        .map_err(|e| backend_error("map.delete", e))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list(
        &self,
        host: &str,
        user: &str,
        store: &str,
    ) -> StorageResult<Vec<(String, Vec<u8>)>> {
        sqlx::query_as(
            "SELECT item_key, value FROM map \
             WHERE host = $1 AND username = $2 AND store = $3 ORDER BY item_key",
        )
        .bind(host)
        .bind(user)
        .bind(store)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| backend_error("map.list", e))
    }

    async fn list_stores(
        &self,
        host: &str,
        user: &str,
        stores: &[&str],
    ) -> StorageResult<Vec<Vec<(String, Vec<u8>)>>> {
        if stores.is_empty() {
            return Ok(Vec::new());
        }
        let rows: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
            "SELECT store, item_key, value FROM map \
             WHERE host = $1 AND username = $2 AND store = ANY($3) ORDER BY store, item_key",
        )
        .bind(host)
        .bind(user)
        .bind(stores.to_vec())
        .fetch_all(&self.pool)
        .await
        .map_err(|e| backend_error("map.list_stores", e))?;
        Ok(crate::split_by_store(stores, rows))
    }

    async fn count(&self, host: &str, user: &str, store: &str) -> StorageResult<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM map WHERE host = $1 AND username = $2 AND store = $3",
        )
        .bind(host)
        .bind(user)
        .bind(store)
        .fetch_one(&self.pool)
        .await
        .map_err(|e| backend_error("map.count", e))?;
        count_from_db("map.count", n)
    }

    async fn clear(&self, host: &str, user: &str, store: &str) -> StorageResult<u64> {
        let done = sqlx::query("DELETE FROM map WHERE host = $1 AND username = $2 AND store = $3")
            .bind(host)
            .bind(user)
            .bind(store)
            .execute(&self.pool)
            .await
            .map_err(|e| backend_error("map.clear", e))?;
        Ok(done.rows_affected())
    }
}

/// Takes the transaction-scoped advisory lock of one archive (see the module docs).
async fn lock_archive(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    host: &str,
    user: &str,
    store: &str,
    operation: &'static str,
) -> StorageResult<()> {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(1481461840, \
         hashtext($1 || chr(31) || $2 || chr(31) || $3))",
    )
    .bind(host)
    .bind(user)
    .bind(store)
    .execute(&mut **tx)
    .await
    .map_err(|e| backend_error(operation, e))?;
    Ok(())
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
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO archive (host, username, store, with_jid, timestamp_us, payload) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(&a.host)
            .bind(&a.user)
            .bind(&a.store)
            .bind(&a.record.with)
            .bind(a.record.timestamp_us)
            .bind(&a.record.payload)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| backend_error(OP, e))?;
            ids.push(id.to_string());
        }
        // Retention, once per archive: each delete removes a prefix of the archive (every id
        // up to a bound), so no hole is ever made.
        let mut trimmed = BTreeSet::new();
        for a in batch {
            if !trimmed.insert((&a.host, &a.user, &a.store)) {
                continue;
            }
            for mut trim in archive_trims(a) {
                trim.build()
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| backend_error(OP, e))?;
            }
        }
        tx.commit().await.map_err(|e| backend_error(OP, e))?;
        Ok(ids)
    }

    async fn query(
        &self,
        host: &str,
        user: &str,
        store: &str,
        query: &ArchiveQuery,
    ) -> StorageResult<Vec<ArchiveRecord>> {
        let Some(mut select) = archive_select::<Postgres>(host, user, store, query) else {
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
        let Some(mut select) = archive_count::<Postgres>(host, user, store, query) else {
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

#[async_trait]
impl UserData for PostgresStore {
    async fn delete_user(&self, host: &str, user: &str) -> StorageResult<()> {
        const OP: &str = "users.delete_user";
        let mut tx = self.pool.begin().await.map_err(|e| backend_error(OP, e))?;
        for statement in [
            "DELETE FROM keyval WHERE host = $1 AND username = $2",
            "DELETE FROM map WHERE host = $1 AND username = $2",
            "DELETE FROM archive WHERE host = $1 AND username = $2",
        ] {
            sqlx::query(statement)
                .bind(host)
                .bind(user)
                .execute(&mut *tx)
                .await
                .map_err(|e| backend_error(OP, e))?;
        }
        tx.commit().await.map_err(|e| backend_error(OP, e))?;
        Ok(())
    }
}
