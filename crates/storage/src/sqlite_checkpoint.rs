//! Checkpointing SQLite's write-ahead log away from the write connection.
//!
//! By default SQLite checkpoints in the connection that commits: the commit that takes the WAL
//! past `wal_autocheckpoint` pages copies every page of the log into the database file and
//! syncs it before it returns. Every write waiting behind it — an archive batch holding back
//! acknowledgements and deliveries — waits those milliseconds too: with message archiving on,
//! that commit was the slowest in a hundred (16 ms at 2,000 msg/s, where the others took 2).
//!
//! Here a connection of its own checkpoints, on a timer, in `PASSIVE` mode: it copies what no
//! reader still needs and never takes the write lock, so commits go on meanwhile, each paying
//! only for its own frames and their sync. The writer keeps a far higher automatic threshold
//! ([`WRITER_AUTOCHECKPOINT_PAGES`]) only as a backstop, should this task fall behind or stop;
//! the log then grows to that size and no further. A checkpoint never affects durability:
//! a committed transaction is in the synced log whether or not it has been copied.

use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::sqlite_connections::{Connections, note_failure};

/// How often the log is checkpointed. Each checkpoint copies a page once however many
/// commits wrote it in the interval (hot index pages are written by most commits), and
/// syncs the database file once.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);

/// The write connection's own automatic checkpoint (pages, 4 KiB each): reached only when
/// the checkpoint task has fallen behind by this much.
pub(crate) const WRITER_AUTOCHECKPOINT_PAGES: u32 = 50_000;

/// The task that checkpoints the log, and the means to stop it.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: watch::Sender<bool>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Checkpointer {
    /// Opens the checkpoint connection (failing now if it cannot) and starts the task.
    pub(crate) async fn start(options: SqliteConnectOptions) -> sqlx::Result<Self> {
        let conn = Connections::open(options, 1).await?;
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut timer = tokio::time::interval(CHECKPOINT_EVERY);
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = timer.tick() => checkpoint(&conn).await,
                    // Stopped, or every handle to the store dropped.
                    changed = stopped.changed() => {
                        if changed.is_err() || *stopped.borrow() {
                            break;
                        }
                    }
                }
            }
            conn.close().await;
        });
        Ok(Checkpointer {
            stop,
            task: tokio::sync::Mutex::new(Some(task)),
        })
    }

    /// Stops the task and closes its connection (after the one checkpoint it may be running).
    pub(crate) async fn stop(&self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.lock().await.take() {
            let _ = task.await;
        }
    }
}

/// One `PASSIVE` checkpoint. A failure is logged and the next tick tries again; the writer's
/// backstop bounds the log meanwhile.
async fn checkpoint(conn: &Connections) {
    let mut lent = match conn.get().await {
        Ok(lent) => lent,
        Err(e) => {
            tracing::warn!(error = %e, "WAL checkpoint: no connection");
            return;
        }
    };
    let (c, broken) = lent.parts();
    let done: sqlx::Result<(i64, i64, i64)> = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(c)
        .await
        .map_err(|e| note_failure(broken, e));
    match done {
        Ok((busy, log, copied)) => {
            tracing::trace!(busy, log, copied, "WAL checkpoint");
        }
        Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
    }
}
