//! The PostgreSQL backend, for deployments that share storage between nodes.
//!
//! Writes that must be serialised per archive (append: the quota check and id order) take a
//! transaction-scoped advisory lock on the archive, `pg_advisory_xact_lock(class, key)`, in
//! the two-`int4` key space (which does not overlap the `bigint` one sqlx's migrator uses).
//! The lock is released by commit or rollback, also when a node dies mid-transaction.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, Postgres};
use xmppd_core::storage::{
    KeyVal, KeyValDoc, MapChange, MapStore, MapUsage, StorageResult, UserData,
};

use crate::select::{map_change, map_quota_refusal, map_usage_from};
use crate::{OpenError, backend_error, count_from_db, redact_url};

/// The schema migrations for PostgreSQL, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// A Map store's running totals (kept by the `map_usage` trigger).
const MAP_USAGE: &str =
    "SELECT items, bytes FROM map_usage WHERE host = $1 AND username = $2 AND store = $3";

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
    pub(crate) pool: PgPool,
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

/// Creates or replaces one `keyval` document.
const KEYVAL_PUT: &str = "INSERT INTO keyval (host, username, store, value) VALUES ($1, $2, $3, $4) \
     ON CONFLICT (host, username, store) DO UPDATE SET value = excluded.value";

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
        sqlx::query(KEYVAL_PUT)
            .bind(host)
            .bind(user)
            .bind(store)
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(|e| backend_error("keyval.put", e))?;
        Ok(())
    }

    async fn put_many(&self, store: &str, docs: &[KeyValDoc<'_>]) -> StorageResult<()> {
        const OP: &str = "keyval.put_many";
        let mut tx = self.pool.begin().await.map_err(|e| backend_error(OP, e))?;
        for doc in docs {
            sqlx::query(KEYVAL_PUT)
                .bind(doc.host)
                .bind(doc.user)
                .bind(store)
                .bind(doc.value)
                .execute(&mut *tx)
                .await
                .map_err(|e| backend_error(OP, e))?;
        }
        tx.commit().await.map_err(|e| backend_error(OP, e))
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

    async fn usage(&self, host: &str, user: &str, store: &str) -> StorageResult<MapUsage> {
        let row = sqlx::query_as(MAP_USAGE)
            .bind(host)
            .bind(user)
            .bind(store)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| backend_error("map.usage", e))?;
        map_usage_from(row)
    }

    async fn apply_within(
        &self,
        host: &str,
        user: &str,
        store: &str,
        changes: &[MapChange<'_>],
        max_bytes: Option<u64>,
    ) -> StorageResult<MapUsage> {
        const OP: &str = "map.apply_within";
        let mut tx = self.pool.begin().await.map_err(|e| backend_error(OP, e))?;
        // Changes to this store are serialised until commit, so the totals read before and
        // after are this call's alone. Class 0x584D4150 is "XMAP". The trigger keeps the
        // totals; the quota is judged on the result and a refusal rolls back.
        lock_key(&mut tx, 0x584D_4150, host, user, store, OP).await?;
        let before = match max_bytes {
            Some(_) => map_usage_in(&mut tx, host, user, store).await?,
            None => MapUsage::default(),
        };
        for change in changes {
            map_change::<Postgres>(host, user, store, *change)
                .build()
                .execute(&mut *tx)
                .await
                .map_err(|e| backend_error(OP, e))?;
        }
        let after = map_usage_in(&mut tx, host, user, store).await?;
        map_quota_refusal(before, after, max_bytes, host, user, store)?;
        tx.commit().await.map_err(|e| backend_error(OP, e))?;
        Ok(after)
    }
}

/// A Map store's running totals, read inside `tx`.
async fn map_usage_in(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    host: &str,
    user: &str,
    store: &str,
) -> StorageResult<MapUsage> {
    let row = sqlx::query_as(MAP_USAGE)
        .bind(host)
        .bind(user)
        .bind(store)
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| backend_error("map.apply_within", e))?;
    map_usage_from(row)
}

/// Takes a transaction-scoped advisory lock on `(host, user, store)` in the key space
/// `class` (one per shape), released by commit or rollback.
pub(crate) async fn lock_key(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    class: i32,
    host: &str,
    user: &str,
    store: &str,
    operation: &'static str,
) -> StorageResult<()> {
    // Hash collisions only serialise two unrelated keys.
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2 || chr(31) || $3 || chr(31) || $4))")
        .bind(class)
        .bind(host)
        .bind(user)
        .bind(store)
        .execute(&mut **tx)
        .await
        .map_err(|e| backend_error(operation, e))?;
    Ok(())
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
            "DELETE FROM archive_usage WHERE host = $1 AND username = $2",
            "DELETE FROM map_usage WHERE host = $1 AND username = $2",
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
