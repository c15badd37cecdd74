//! A fixed set of SQLite connections, each lent to one task at a time.
//!
//! `sqlx::Pool` is not used for SQLite because of what it does around every statement. An
//! SQLite connection in sqlx is a worker thread fed through a channel, and the pool talks to
//! that thread three times per statement:
//! - it pings the thread when a connection is taken (`test_before_acquire`);
//! - the statement itself is the second round trip;
//! - it pings again, unconditionally, from a task it spawns when the connection is given back.
//!
//! Each round trip wakes the worker thread and is woken by it. On the login path (five reads
//! per login) that was fifteen thread switches per login on each side, and about a third of
//! the server's CPU time per login went to switching.
//!
//! For a network database the pings find connections whose peer went away. Here the peer is
//! a thread of this process, and cancellation is already safe without them:
//! - sqlx's worker rolls back a `BEGIN` whose caller stopped waiting for it;
//! - a dropped `Transaction` queues its rollback before the connection is lent again;
//! - the worker runs commands in order, so the next borrower's statement runs after whatever
//!   a cancelled one left in the queue.
//!
//! A connection whose worker has stopped (`WorkerCrashed`) is not lent again: the borrower
//! reports the failure ([`note_failure`]) and the next borrower opens a fresh connection.
//! Every connection is opened up front, so that a bad file or setting fails at startup and
//! the set's threads exist before the first peak instead of being started by it; a connection
//! that had to be dropped is reopened by the next borrower.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio::sync::{Semaphore, SemaphorePermit};

/// Read connections: one per CPU, at least two and at most eight. WAL readers run in parallel
/// with each other and with the writer, so reads scale with cores; beyond the cores a reader
/// only adds memory: each keeps its thread, its prepared statements and its page cache (about
/// 0.4 MiB once used, measured after a login peak).
pub(crate) fn readers() -> u32 {
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    u32::try_from(cpus.clamp(2, 8)).unwrap_or(2)
}

/// Page cache of each read connection, in KiB (SQLite's `cache_size` takes a negative
/// number as KiB). SQLite's default, 2 MiB per connection, was kept full after one login peak
/// (every account's credential row read once): 8 MiB over the four readers that never came
/// back, a third of the server's resident memory when idle; 512 KiB each still left 2 MiB.
/// Readers do point lookups by primary key, and any write empties their caches anyway (a WAL
/// reader drops its cache when the database changed), so a missed page is a read from the
/// operating system's page cache, which the kernel can reclaim, instead of a copy in ours,
/// which it cannot. Server CPU per login was the same with 512, 64, 16 and 4 KiB (within the
/// machine's noise, three runs each), while the caches kept after a login peak went from
/// 470 KiB (64) to 160 KiB (16) and 22 KiB (4: the pages a lookup pins, no more).
pub(crate) const READER_CACHE_KIB: u32 = 4;

/// Page cache of the write connection, in KiB. SQLite's default (2 MiB) filled up and stayed
/// after one login peak once every logout wrote a record (last activity): 2.3 MiB more
/// resident after 10k logins and logouts. A write touches a few B-tree pages per row (root,
/// interior, leaf) and the rest stays in the operating system's cache; with 64 KiB the first
/// peak left the same resident memory as before last activity existed (13.4 against 13.3 MiB
/// in one run), and server CPU per login did not change (256 KiB kept 0.6 MiB more). Message
/// archives changed the balance: every archived message inserts a row into four indexes of
/// ever-growing archives, and with 64 KiB an eighth of the server's time went to reading the
/// same index pages back from the operating system. 2 MiB (SQLite's default) keeps the hot
/// pages of the archive's indexes; it costs up to 2 MiB of resident memory after a peak.
pub(crate) const WRITER_CACHE_KIB: u32 = 2048;

/// How long a borrower waits for a connection before failing (sqlx's pool default).
pub(crate) const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Up to `size` connections opened with the same options.
#[derive(Debug)]
pub(crate) struct Connections {
    /// Open connections not lent to anyone.
    idle: Mutex<Vec<SqliteConnection>>,
    /// One permit per connection that may exist; a borrower holds one while it has a
    /// connection, so at most `size` are open and waiting borrowers queue fairly.
    permits: Semaphore,
    size: u32,
    options: SqliteConnectOptions,
    /// [`ACQUIRE_TIMEOUT`], shorter in tests.
    acquire_timeout: std::time::Duration,
}

/// A connection lent to one task; given back when dropped.
#[derive(Debug)]
pub(crate) struct Lent<'a> {
    /// Always `Some` until dropped.
    conn: Option<SqliteConnection>,
    /// Set when a statement found the worker thread stopped: the connection is then closed
    /// instead of given back. Atomic so that it can be shared with the statements of a
    /// transaction while the transaction holds the connection ([`Lent::parts`]).
    broken: AtomicBool,
    set: &'a Connections,
    /// Released after `conn` is back in `idle` (fields drop after `Drop::drop`).
    _permit: SemaphorePermit<'a>,
}

impl Connections {
    /// Opens every connection now.
    pub(crate) async fn open(options: SqliteConnectOptions, size: u32) -> sqlx::Result<Self> {
        let mut idle = Vec::with_capacity(size as usize);
        for _ in 0..size {
            idle.push(options.connect().await?);
        }
        Ok(Connections {
            idle: Mutex::new(idle),
            permits: Semaphore::new(size as usize),
            size,
            options,
            acquire_timeout: ACQUIRE_TIMEOUT,
        })
    }

    /// Waits for a free connection; opens a new one in place of one that was dropped.
    ///
    /// Fails with [`sqlx::Error::PoolClosed`] after [`Connections::close`], with
    /// [`sqlx::Error::PoolTimedOut`] when no connection came free within
    /// [`ACQUIRE_TIMEOUT`] (a stalled disk fails requests instead of piling them up), or with
    /// the driver's error if a new connection cannot be opened.
    pub(crate) async fn get(&self) -> sqlx::Result<Lent<'_>> {
        let acquire = self.permits.acquire();
        let permit = match tokio::time::timeout(self.acquire_timeout, acquire).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(sqlx::Error::PoolClosed),
            Err(_) => return Err(sqlx::Error::PoolTimedOut),
        };
        let idle = self.lock_idle().pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.options.connect().await?,
        };
        Ok(Lent {
            conn: Some(conn),
            broken: AtomicBool::new(false),
            set: self,
            _permit: permit,
        })
    }

    /// Waits until no connection is lent, refuses later borrowers and closes every
    /// connection (the last one to close checkpoints SQLite's WAL into the database file).
    pub(crate) async fn close(&self) {
        let all = self.permits.acquire_many(self.size).await;
        self.permits.close();
        drop(all);
        let idle: Vec<SqliteConnection> = std::mem::take(&mut *self.lock_idle());
        for conn in idle {
            if let Err(error) = sqlx::Connection::close(conn).await {
                tracing::warn!(%error, "closing an SQLite connection failed");
            }
        }
    }

    /// The idle list; a panic while it was held cannot leave it inconsistent (every
    /// critical section is a single push, pop or take).
    fn lock_idle(&self) -> std::sync::MutexGuard<'_, Vec<SqliteConnection>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Lent<'_> {
    /// The connection, and the flag that [`note_failure`] sets when a statement on it found
    /// its worker thread stopped.
    pub(crate) fn parts(&mut self) -> (&mut SqliteConnection, &AtomicBool) {
        match &mut self.conn {
            Some(conn) => (conn, &self.broken),
            None => unreachable!("a lent connection is only taken back when dropped"),
        }
    }
}

/// Records, for [`Lent`]'s drop, whether `error` means the connection's worker thread has
/// stopped; returns the error.
pub(crate) fn note_failure(broken: &AtomicBool, error: sqlx::Error) -> sqlx::Error {
    if matches!(error, sqlx::Error::WorkerCrashed) {
        broken.store(true, Ordering::Relaxed);
    }
    error
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        match self.conn.take() {
            // Dropping it ends its worker thread; the next borrower opens a new one.
            Some(_) if self.broken.load(Ordering::Relaxed) => {}
            Some(conn) => self.set.lock_idle().push(conn),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use sqlx::Connection as _;
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};

    use super::*;

    async fn set(dir: &tempfile::TempDir, size: u32) -> Connections {
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("c.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        Connections::open(options, size).await.expect("open")
    }

    fn idle(set: &Connections) -> usize {
        set.lock_idle().len()
    }

    /// At most the set's size are lent; a borrower beyond it waits until one is given back,
    /// then gets that same connection.
    #[tokio::test]
    async fn lends_at_most_size_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let set = set(&dir, 2).await;
        assert_eq!(idle(&set), 2, "every connection is opened up front");
        let a = set.get().await.unwrap();
        let b = set.get().await.unwrap();
        assert_eq!(idle(&set), 0);
        let third = tokio::time::timeout(Duration::from_millis(50), set.get()).await;
        assert!(third.is_err(), "a third borrower waits");
        drop(a);
        assert_eq!(idle(&set), 1);
        let c = tokio::time::timeout(Duration::from_secs(5), set.get())
            .await
            .expect("a given-back connection is lent again")
            .unwrap();
        assert_eq!(idle(&set), 0, "no new connection was opened");
        drop((b, c));
        assert_eq!(idle(&set), 2);
        set.close().await;
    }

    /// A borrower that stops in the middle of a transaction (its future is dropped) leaves
    /// nothing behind: the next borrower of the same connection sees no open transaction and
    /// none of the uncommitted rows.
    #[tokio::test]
    async fn a_cancelled_transaction_is_rolled_back_before_the_next_borrower() {
        let dir = tempfile::tempdir().unwrap();
        let set = set(&dir, 1).await;
        {
            let mut lent = set.get().await.unwrap();
            sqlx::query("CREATE TABLE t (x INTEGER)")
                .execute(lent.parts().0)
                .await
                .unwrap();
        }
        let started = tokio::sync::Notify::new();
        let work = async {
            let mut lent = set.get().await.unwrap();
            let mut tx = lent.parts().0.begin().await.unwrap();
            sqlx::query("INSERT INTO t VALUES (1)")
                .execute(&mut *tx)
                .await
                .unwrap();
            started.notify_one();
            std::future::pending::<()>().await;
        };
        tokio::select! {
            () = work => unreachable!(),
            () = started.notified() => {}
        }
        let mut lent = tokio::time::timeout(Duration::from_secs(5), set.get())
            .await
            .expect("the cancelled borrower gave its connection back")
            .unwrap();
        let conn = lent.parts().0;
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(rows, 0, "the uncommitted insert was rolled back");
        // Beginning again works only if no transaction is open.
        let tx = conn.begin_with("BEGIN IMMEDIATE").await;
        assert!(tx.is_ok(), "no transaction was left open: {:?}", tx.err());
        drop(tx);
        drop(lent);
        set.close().await;
    }

    /// A connection whose worker thread stopped is closed instead of lent again; the next
    /// borrower gets a new, working one.
    #[tokio::test]
    async fn a_connection_whose_worker_stopped_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let set = set(&dir, 1).await;
        {
            let mut lent = set.get().await.unwrap();
            let (_, broken) = lent.parts();
            let error = note_failure(broken, sqlx::Error::WorkerCrashed);
            assert!(matches!(error, sqlx::Error::WorkerCrashed));
        }
        assert_eq!(idle(&set), 0, "the failed connection was not given back");
        {
            let mut lent = set.get().await.unwrap();
            let one: i64 = sqlx::query_scalar("SELECT 1")
                .fetch_one(lent.parts().0)
                .await
                .unwrap();
            assert_eq!(one, 1);
            // Other errors keep the connection.
            let (_, broken) = lent.parts();
            let _ = note_failure(broken, sqlx::Error::RowNotFound);
        }
        assert_eq!(idle(&set), 1);
        set.close().await;
    }

    /// A borrower that waits longer than the acquire timeout gets an error instead of
    /// waiting forever behind a stalled connection.
    #[tokio::test]
    async fn a_borrower_gives_up_after_the_acquire_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let mut set = set(&dir, 1).await;
        set.acquire_timeout = Duration::from_millis(50);
        let held = set.get().await.unwrap();
        assert!(matches!(set.get().await, Err(sqlx::Error::PoolTimedOut)));
        drop(held);
        assert!(set.get().await.is_ok());
        set.close().await;
    }

    /// Closing waits for lent connections to come back, and later borrowers are refused.
    #[tokio::test]
    async fn close_waits_for_borrowers_and_refuses_later_ones() {
        let dir = tempfile::tempdir().unwrap();
        let set = std::sync::Arc::new(set(&dir, 2).await);
        let lent = set.get().await.unwrap();
        let closing = tokio::spawn({
            let set = set.clone();
            async move { set.close().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !closing.is_finished(),
            "close waits for the lent connection"
        );
        drop(lent);
        tokio::time::timeout(Duration::from_secs(5), closing)
            .await
            .expect("close finished once the connection came back")
            .unwrap();
        assert_eq!(idle(&set), 0);
        assert!(matches!(set.get().await, Err(sqlx::Error::PoolClosed)));
    }
}
