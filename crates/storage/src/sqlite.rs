//! The embedded SQLite backend: one write connection, one read connection per CPU, WAL,
//! `synchronous=FULL`. The crate docs explain why.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    Sqlite, SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous,
};
use sqlx::{Connection as _, Transaction};
use xmppd_core::storage::{
    KeyVal, KeyValDoc, MapChange, MapStore, MapUsage, StorageResult, UserData,
};

use crate::select::{map_change, map_quota_refusal, map_usage_from};
use crate::sqlite_checkpoint::{Checkpointer, WRITER_AUTOCHECKPOINT_PAGES};
use crate::sqlite_connections::{
    Connections, Lent, READER_CACHE_KIB, WRITER_CACHE_KIB, note_failure, readers,
};
use crate::{OpenError, backend_error, count_from_db};

/// The schema migrations for SQLite, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// A Map store's running totals (kept by the `map_usage` triggers).
const MAP_USAGE: &str =
    "SELECT items, bytes FROM map_usage WHERE host = ? AND username = ? AND store = ?";

/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The SQLite backend of all four storage shapes.
///
/// Cloning is cheap and shares the connections.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Exactly one connection: every write goes through it, in `BEGIN IMMEDIATE`
    /// transactions, so in-process writers queue here instead of on SQLite's lock.
    writer: Arc<Connections>,
    /// Read-only (`query_only`) connections for lookups and queries.
    reader: Arc<Connections>,
    /// Checkpoints the WAL on a connection of its own, off the write path.
    checkpointer: Arc<Checkpointer>,
    /// The database file, for diagnostics.
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `path`, creating its parent directories,
    /// and applies the embedded migrations.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|source| OpenError::CreateDir {
                    path: parent.to_path_buf(),
                    source,
                })?;
        }
        // SQLite reports a failed open as "unable to open database file"; opening the file
        // ourselves first yields the operating system's reason (permission denied, is a
        // directory …). An empty file is a valid empty database.
        tokio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .await
            .map_err(|source| OpenError::SqliteFile {
                path: path.clone(),
                source,
            })?;

        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true);
        let sqlite_err = |source| OpenError::Sqlite {
            path: path.clone(),
            source,
        };

        // Statement journals (a statement's undo inside a longer transaction, such as each
        // insert of an archive batch) stay in memory instead of a temporary file; and the
        // writer leaves checkpoints to the checkpoint task (`sqlite_checkpoint`), keeping its
        // own only as a backstop. Neither touches durability: commits still sync the WAL
        // (`synchronous=FULL`).
        let writer_options = options
            .clone()
            .pragma("cache_size", format!("-{WRITER_CACHE_KIB}"))
            .pragma("temp_store", "MEMORY")
            .pragma(
                "wal_autocheckpoint",
                WRITER_AUTOCHECKPOINT_PAGES.to_string(),
            );
        let writer = Connections::open(writer_options, 1)
            .await
            .map_err(sqlite_err)?;
        {
            let mut lent = writer.get().await.map_err(sqlite_err)?;
            MIGRATOR
                .run(lent.parts().0)
                .await
                .map_err(|source| OpenError::Migrate {
                    backend: "SQLite",
                    location: path.display().to_string(),
                    source,
                })?;
        }
        let checkpointer = Checkpointer::start(options.clone().pragma("cache_size", "-4"))
            .await
            .map_err(sqlite_err)?;
        let reader = Connections::open(
            options
                .pragma("query_only", "ON")
                .pragma("cache_size", format!("-{READER_CACHE_KIB}")),
            readers(),
        )
        .await
        .map_err(sqlite_err)?;
        tracing::debug!(path = %path.display(), "opened SQLite storage");
        Ok(Self {
            writer: Arc::new(writer),
            reader: Arc::new(reader),
            checkpointer: Arc::new(checkpointer),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes all connections, waiting for running statements; later calls fail.
    ///
    /// Not needed for durability (every commit is already synced); it checkpoints the WAL
    /// into the main file on a clean shutdown.
    pub async fn close(&self) {
        self.checkpointer.stop().await;
        self.reader.close().await;
        self.writer.close().await;
    }

    /// The write connection, for tests that inspect its settings.
    #[cfg(test)]
    pub(crate) async fn writer_for_tests(&self) -> Lent<'_> {
        self.writer.get().await.expect("writer connection")
    }

    /// A read connection, for tests that inspect its settings.
    #[cfg(test)]
    pub(crate) async fn reader_for_tests(&self) -> Lent<'_> {
        self.reader.get().await.expect("reader connection")
    }

    /// A read connection.
    pub(crate) async fn read(&self, operation: &'static str) -> StorageResult<Lent<'_>> {
        self.reader
            .get()
            .await
            .map_err(|e| backend_error(operation, e))
    }

    /// The write connection.
    pub(crate) async fn write(&self, operation: &'static str) -> StorageResult<Lent<'_>> {
        self.writer
            .get()
            .await
            .map_err(|e| backend_error(operation, e))
    }
}

/// A Map store's running totals, read on `conn`.
async fn map_usage_in(
    conn: &mut SqliteConnection,
    host: &str,
    user: &str,
    store: &str,
    broken: &AtomicBool,
    operation: &'static str,
) -> StorageResult<MapUsage> {
    let row = sqlx::query_as(MAP_USAGE)
        .bind(host)
        .bind(user)
        .bind(store)
        .fetch_optional(conn)
        .await
        .map_err(|e| backend_error(operation, note_failure(broken, e)))?;
    map_usage_from(row)
}

/// Starts a write transaction that holds SQLite's write lock from its first statement.
pub(crate) async fn begin_immediate<'c>(
    conn: &'c mut SqliteConnection,
    broken: &AtomicBool,
    operation: &'static str,
) -> StorageResult<Transaction<'c, Sqlite>> {
    conn.begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(|e| backend_error(operation, note_failure(broken, e)))
}

/// Creates or replaces one `keyval` document.
const KEYVAL_PUT: &str = "INSERT INTO keyval (host, username, store, value) VALUES (?, ?, ?, ?) \
     ON CONFLICT (host, username, store) DO UPDATE SET value = excluded.value";

#[async_trait]
impl KeyVal for SqliteStore {
    async fn get(&self, host: &str, user: &str, store: &str) -> StorageResult<Option<Vec<u8>>> {
        let mut lent = self.read("keyval.get").await?;
        let (conn, broken) = lent.parts();
        sqlx::query_scalar("SELECT value FROM keyval WHERE host = ? AND username = ? AND store = ?")
            .bind(host)
            .bind(user)
            .bind(store)
            .fetch_optional(conn)
            .await
            .map_err(|e| backend_error("keyval.get", note_failure(broken, e)))
    }

    async fn put(&self, host: &str, user: &str, store: &str, value: &[u8]) -> StorageResult<()> {
        let mut lent = self.write("keyval.put").await?;
        let (conn, broken) = lent.parts();
        sqlx::query(KEYVAL_PUT)
            .bind(host)
            .bind(user)
            .bind(store)
            .bind(value)
            .execute(conn)
            .await
            .map_err(|e| backend_error("keyval.put", note_failure(broken, e)))?;
        Ok(())
    }

    async fn put_many(&self, store: &str, docs: &[KeyValDoc<'_>]) -> StorageResult<()> {
        const OP: &str = "keyval.put_many";
        let mut lent = self.write(OP).await?;
        let (conn, broken) = lent.parts();
        let mut tx = begin_immediate(conn, broken, OP).await?;
        for doc in docs {
            sqlx::query(KEYVAL_PUT)
                .bind(doc.host)
                .bind(doc.user)
                .bind(store)
                .bind(doc.value)
                .execute(&mut *tx)
                .await
                .map_err(|e| backend_error(OP, note_failure(broken, e)))?;
        }
        tx.commit()
            .await
            .map_err(|e| backend_error(OP, note_failure(broken, e)))
    }

    async fn insert_new(
        &self,
        host: &str,
        user: &str,
        store: &str,
        value: &[u8],
    ) -> StorageResult<bool> {
        let mut lent = self.write("keyval.insert_new").await?;
        let (conn, broken) = lent.parts();
        let done = sqlx::query(
            "INSERT INTO keyval (host, username, store, value) VALUES (?, ?, ?, ?) \
             ON CONFLICT (host, username, store) DO NOTHING",
        )
        .bind(host)
        .bind(user)
        .bind(store)
        .bind(value)
        .execute(conn)
        .await
        .map_err(|e| backend_error("keyval.insert_new", note_failure(broken, e)))?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete(&self, host: &str, user: &str, store: &str) -> StorageResult<bool> {
        let mut lent = self.write("keyval.delete").await?;
        let (conn, broken) = lent.parts();
        let done = sqlx::query("DELETE FROM keyval WHERE host = ? AND username = ? AND store = ?")
            .bind(host)
            .bind(user)
            .bind(store)
            .execute(conn)
            .await
            .map_err(|e| backend_error("keyval.delete", note_failure(broken, e)))?;
        Ok(done.rows_affected() > 0)
    }

    async fn users(&self, host: &str, store: &str) -> StorageResult<Vec<String>> {
        let mut lent = self.read("keyval.users").await?;
        let (conn, broken) = lent.parts();
        sqlx::query_scalar(
            "SELECT username FROM keyval WHERE host = ? AND store = ? ORDER BY username",
        )
        .bind(host)
        .bind(store)
        .fetch_all(conn)
        .await
        .map_err(|e| backend_error("keyval.users", note_failure(broken, e)))
    }
}

#[async_trait]
impl MapStore for SqliteStore {
    async fn get(
        &self,
        host: &str,
        user: &str,
        store: &str,
        key: &str,
    ) -> StorageResult<Option<Vec<u8>>> {
        let mut lent = self.read("map.get").await?;
        let (conn, broken) = lent.parts();
        sqlx::query_scalar(
            "SELECT value FROM map \
             WHERE host = ? AND username = ? AND store = ? AND item_key = ?",
        )
        .bind(host)
        .bind(user)
        .bind(store)
        .bind(key)
        .fetch_optional(conn)
        .await
        .map_err(|e| backend_error("map.get", note_failure(broken, e)))
    }

    async fn put(
        &self,
        host: &str,
        user: &str,
        store: &str,
        key: &str,
        value: &[u8],
    ) -> StorageResult<()> {
        let mut lent = self.write("map.put").await?;
        let (conn, broken) = lent.parts();
        sqlx::query(
            "INSERT INTO map (host, username, store, item_key, value) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (host, username, store, item_key) DO UPDATE SET value = excluded.value",
        )
        .bind(host)
        .bind(user)
        .bind(store)
        .bind(key)
        .bind(value)
        .execute(conn)
        .await
        .map_err(|e| backend_error("map.put", note_failure(broken, e)))?;
        Ok(())
    }

    async fn delete(&self, host: &str, user: &str, store: &str, key: &str) -> StorageResult<bool> {
        let mut lent = self.write("map.delete").await?;
        let (conn, broken) = lent.parts();
        let done = sqlx::query(
            "DELETE FROM map WHERE host = ? AND username = ? AND store = ? AND item_key = ?",
        )
        .bind(host)
        .bind(user)
        .bind(store)
        .bind(key)
        .execute(conn)
        .await
        .map_err(|e| backend_error("map.delete", note_failure(broken, e)))?;
        Ok(done.rows_affected() > 0)
    }

    async fn list(
        &self,
        host: &str,
        user: &str,
        store: &str,
    ) -> StorageResult<Vec<(String, Vec<u8>)>> {
        let mut lent = self.read("map.list").await?;
        let (conn, broken) = lent.parts();
        sqlx::query_as(
            "SELECT item_key, value FROM map \
             WHERE host = ? AND username = ? AND store = ? ORDER BY item_key",
        )
        .bind(host)
        .bind(user)
        .bind(store)
        .fetch_all(conn)
        .await
        .map_err(|e| backend_error("map.list", note_failure(broken, e)))
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
        let mut select = sqlx::QueryBuilder::<Sqlite>::new(
            "SELECT store, item_key, value FROM map WHERE host = ",
        );
        select
            .push_bind(host)
            .push(" AND username = ")
            .push_bind(user);
        select.push(" AND store IN (");
        let mut names = select.separated(", ");
        for store in stores {
            names.push_bind(*store);
        }
        select.push(") ORDER BY store, item_key");
        let mut lent = self.read("map.list_stores").await?;
        let (conn, broken) = lent.parts();
        let rows: Vec<(String, String, Vec<u8>)> = select
            .build_query_as()
            .fetch_all(conn)
            .await
            .map_err(|e| backend_error("map.list_stores", note_failure(broken, e)))?;
        Ok(crate::split_by_store(stores, rows))
    }

    async fn count(&self, host: &str, user: &str, store: &str) -> StorageResult<u64> {
        let mut lent = self.read("map.count").await?;
        let (conn, broken) = lent.parts();
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM map WHERE host = ? AND username = ? AND store = ?",
        )
        .bind(host)
        .bind(user)
        .bind(store)
        .fetch_one(conn)
        .await
        .map_err(|e| backend_error("map.count", note_failure(broken, e)))?;
        count_from_db("map.count", n)
    }

    async fn clear(&self, host: &str, user: &str, store: &str) -> StorageResult<u64> {
        let mut lent = self.write("map.clear").await?;
        let (conn, broken) = lent.parts();
        let done = sqlx::query("DELETE FROM map WHERE host = ? AND username = ? AND store = ?")
            .bind(host)
            .bind(user)
            .bind(store)
            .execute(conn)
            .await
            .map_err(|e| backend_error("map.clear", note_failure(broken, e)))?;
        Ok(done.rows_affected())
    }

    async fn usage(&self, host: &str, user: &str, store: &str) -> StorageResult<MapUsage> {
        const OP: &str = "map.usage";
        let mut lent = self.read(OP).await?;
        let (conn, broken) = lent.parts();
        map_usage_in(conn, host, user, store, broken, OP).await
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
        // BEGIN IMMEDIATE: no other writer (not even another process) changes the store
        // between the totals read before and after. The triggers keep the totals, so the
        // changes are applied and the quota judged on the result; a refusal rolls back.
        let mut lent = self.write(OP).await?;
        let (conn, broken) = lent.parts();
        let mut tx = begin_immediate(conn, broken, OP).await?;
        let before = match max_bytes {
            Some(_) => map_usage_in(&mut tx, host, user, store, broken, OP).await?,
            None => MapUsage::default(),
        };
        for change in changes {
            map_change::<Sqlite>(host, user, store, *change)
                .build()
                .execute(&mut *tx)
                .await
                .map_err(|e| backend_error(OP, note_failure(broken, e)))?;
        }
        let after = map_usage_in(&mut tx, host, user, store, broken, OP).await?;
        map_quota_refusal(before, after, max_bytes, host, user, store)?;
        tx.commit()
            .await
            .map_err(|e| backend_error(OP, note_failure(broken, e)))?;
        Ok(after)
    }
}

#[async_trait]
impl UserData for SqliteStore {
    async fn delete_user(&self, host: &str, user: &str) -> StorageResult<()> {
        const OP: &str = "users.delete_user";
        let mut lent = self.write(OP).await?;
        let (conn, broken) = lent.parts();
        let mut tx = begin_immediate(conn, broken, OP).await?;
        for statement in [
            "DELETE FROM keyval WHERE host = ? AND username = ?",
            "DELETE FROM map WHERE host = ? AND username = ?",
            "DELETE FROM archive WHERE host = ? AND username = ?",
            "DELETE FROM archive_usage WHERE host = ? AND username = ?",
            "DELETE FROM map_usage WHERE host = ? AND username = ?",
            "DELETE FROM room_archive WHERE host = ? AND room = ?",
        ] {
            sqlx::query(statement)
                .bind(host)
                .bind(user)
                .execute(&mut *tx)
                .await
                .map_err(|e| backend_error(OP, note_failure(broken, e)))?;
        }
        tx.commit()
            .await
            .map_err(|e| backend_error(OP, note_failure(broken, e)))?;
        Ok(())
    }
}
