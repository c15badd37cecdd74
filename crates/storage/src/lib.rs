//! SQLite and PostgreSQL backends for the xmppd storage shapes.
//!
//! Both backends implement the four traits of [`xmppd_core::storage`] — [`KeyVal`],
//! [`MapStore`], [`ArchiveStore`], [`UserData`] — over three generic tables (`keyval`, `map`,
//! `archive`) keyed by `(host, username, store)`. Features never get a table of their own, so
//! a new feature needs no migration. The server calls [`open`] with a [`StorageConfig`] and
//! receives a [`Storage`] whose four handles share one backend.
//!
//! One store is laid out apart on SQLite: room archives
//! ([`ROOM_ARCHIVE`](xmppd_core::storage::ROOM_ARCHIVE)) live in
//! `room_archive`, with only an id and a time index per room, because a busy room appends far
//! more often than any user archive and each index of `archive` is a page written per commit
//! (migration `0004_room_archive.sql`; a `with` query walks the room's ids). The shape's contract is the
//! same for it, and the conformance suite runs over it as well (`room_tests`).
//!
//! # Durability
//!
//! The contract is "durable on return": an `Ok` from a write means the data survives a crash
//! or power loss, because callers acknowledge stanzas (XEP-0198 `h`, offline storage) on it.
//! SQLite therefore runs with `synchronous=FULL` in WAL mode: every commit fsyncs the WAL
//! before returning (`NORMAL` would only sync at checkpoints and can lose the last commits on
//! power loss). PostgreSQL commits with its default `synchronous_commit=on`.
//!
//! # One writer (SQLite)
//!
//! SQLite admits one writer at a time per database file. With several writing connections,
//! writers contend for the file lock by sleeping and retrying inside the busy handler, and a
//! deferred transaction that upgrades from read to write can fail with `SQLITE_BUSY` without
//! waiting at all. [`SqliteStore`] instead owns exactly one write connection, so in-process
//! writers queue fairly for it and never see the lock; every write
//! transaction starts with `BEGIN IMMEDIATE`, so a second process (the admin CLI with the
//! daemon running) is serialised by the file lock and waits up to the busy timeout. Reads go
//! to a separate set of connections: in WAL mode readers never block the writer nor each
//! other, and each read sees every transaction committed before it started.
//!
//! # Archive ids
//!
//! Ids are the backend's row ids (SQLite `AUTOINCREMENT`, whose sequence room archives draw
//! from too; PostgreSQL identity), returned as decimal strings, unique across the backend and
//! never reused. Appends to one archive are
//! serialised (SQLite: the single writer; PostgreSQL: a transaction-scoped advisory lock per
//! archive), so within an archive id order is commit order: a reader that saw id `n` will
//! never later see a smaller id appear in the same archive. The quota check and the insert
//! happen in the same serialised transaction, so concurrent appends cannot overshoot it.
//!
//! An `after_id`/`before_id` that does not parse as an id, or names no record of the queried
//! archive, selects nothing: [`ArchiveStore::query`] returns `Ok(vec![])`. Ids in
//! [`ArchiveStore::delete`] that do not parse or do not exist are ignored.
//!
//! # Conformance
//!
//! The module `conformance` (cargo feature `conformance`, always on in this crate's tests)
//! holds one check per behaviour of the shapes; the test suite runs every check on both
//! backends. SQLite tests use temporary directories. PostgreSQL tests read the server from
//! `XMPPD_TEST_POSTGRES_URL`; without it they are skipped with a notice, unless
//! `XMPPD_REQUIRE_POSTGRES=1` (set in CI) turns the absence into a failure:
//!
//! ```text
//! eval "$(.ci/start-postgres)"
//! XMPPD_REQUIRE_POSTGRES=1 cargo test -p xmppd-storage
//! .ci/stop-postgres
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use xmppd_core::storage::{ArchiveStore, KeyVal, MapStore, Storage, StorageError, UserData};

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod postgres;
mod postgres_archive;
mod retention;
#[cfg(test)]
mod room_tests;
mod select;
mod sqlite;
mod sqlite_archive;
mod sqlite_checkpoint;
mod sqlite_connections;
mod sqlite_rooms;
#[cfg(test)]
mod tests;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Which backend to open, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageConfig {
    /// An embedded SQLite database file; the file and its parent directories are created if
    /// missing.
    Sqlite {
        /// Path of the database file.
        path: PathBuf,
    },
    /// A PostgreSQL database (`postgres://user:password@host:port/database`).
    Postgres {
        /// Connection URL.
        url: String,
    },
}

/// Why a backend could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The directory that should hold the SQLite file could not be created.
    #[error("cannot create directory {} for the SQLite database: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The SQLite file could not be created or opened for reading and writing.
    #[error("cannot open SQLite database at {}: {source}", path.display())]
    SqliteFile {
        /// The database file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// SQLite refused the file (not a database, locked, unsupported settings …).
    #[error("cannot open SQLite database at {}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's reason.
        source: sqlx::Error,
    },
    /// The PostgreSQL URL could not be parsed.
    #[error("invalid PostgreSQL URL {url}: {reason}")]
    PostgresUrl {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The PostgreSQL server could not be reached or refused the connection.
    #[error("cannot connect to PostgreSQL at {url}: {source}")]
    Postgres {
        /// The URL with any password replaced by `***`.
        url: String,
        /// The driver's or server's reason.
        source: sqlx::Error,
    },
    /// The embedded schema migrations could not be applied.
    #[error("cannot migrate the {backend} database schema at {location}: {source}")]
    Migrate {
        /// `SQLite` or `PostgreSQL`.
        backend: &'static str,
        /// The SQLite path or the redacted PostgreSQL URL.
        location: String,
        /// The migrator's reason.
        source: sqlx::migrate::MigrateError,
    },
}

/// Opens the configured backend, applies its embedded migrations and returns the storage
/// handles, all four backed by the same store.
pub async fn open(config: &StorageConfig) -> Result<Storage, OpenError> {
    match config {
        StorageConfig::Sqlite { path } => Ok(into_storage(SqliteStore::open(path).await?)),
        StorageConfig::Postgres { url } => Ok(into_storage(PostgresStore::open(url).await?)),
    }
}

/// Wraps one backend into the four [`Storage`] handles.
pub fn into_storage<T>(store: T) -> Storage
where
    T: KeyVal + MapStore + ArchiveStore + UserData,
{
    let store = Arc::new(store);
    Storage {
        keyval: store.clone(),
        map: store.clone(),
        archive: store.clone(),
        users: store,
    }
}

/// Logs a failed statement and turns it into [`StorageError::Backend`] naming the operation.
pub(crate) fn backend_error(operation: &'static str, err: sqlx::Error) -> StorageError {
    tracing::error!(operation, error = %err, "storage statement failed");
    StorageError::Backend(format!("{operation}: {err}"))
}

/// Distributes `(store, key, value)` rows, sorted by store then key, into one list per store
/// in the order of `stores`.
pub(crate) fn split_by_store(
    stores: &[&str],
    rows: Vec<(String, String, Vec<u8>)>,
) -> Vec<Vec<(String, Vec<u8>)>> {
    let mut lists: Vec<Vec<(String, Vec<u8>)>> = stores.iter().map(|_| Vec::new()).collect();
    for (store, key, value) in rows {
        // A store named twice gets its items in each of its places, as separate reads would.
        let mut places = stores
            .iter()
            .zip(lists.iter_mut())
            .filter(|(name, _)| **name == store)
            .map(|(_, list)| list)
            .peekable();
        while let Some(list) = places.next() {
            if places.peek().is_some() {
                list.push((key.clone(), value.clone()));
            } else {
                list.push((key, value));
                break;
            }
        }
    }
    lists
}

/// Converts a row count read from the database (always `>= 0`).
pub(crate) fn count_from_db(operation: &'static str, n: i64) -> Result<u64, StorageError> {
    u64::try_from(n).map_err(|_| {
        tracing::error!(operation, count = n, "negative row count");
        StorageError::Corrupt(format!("{operation}: negative row count {n}"))
    })
}

/// Parses an archive id given by a caller; `None` when it cannot be one of ours.
pub(crate) fn parse_id(id: &str) -> Option<i64> {
    // Only canonical decimal forms we hand out: no sign, no leading zeros, no whitespace.
    if id.is_empty() || (id.len() > 1 && id.starts_with('0')) {
        return None;
    }
    if !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse::<i64>().ok().filter(|n| *n > 0)
}

/// The URL with the password (if any) replaced by `***`, for error messages and logs: both
/// `user:password@` and a `password=` query parameter.
pub(crate) fn redact_url(url: &str) -> String {
    let url = redact_userinfo(url);
    let Some(query_start) = url.find('?') else {
        return url;
    };
    let (base, query) = url.split_at(query_start + 1);
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{base}{}", query.join("&"))
}

/// Redacts the password of the `user:password@` part.
fn redact_userinfo(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..scheme_end + 3],
        &userinfo[..colon],
        &rest[at..]
    )
}
