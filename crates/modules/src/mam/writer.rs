//! The group commit of archive appends.
//!
//! Every hook that archives a message hands its append to one writer task and waits for the
//! commit of the batch it lands in. The task takes the first pending append, then everything
//! else already queued (up to `max_batch`), and commits them in one transaction
//! ([`ArchiveStore::append_batch`]); while it commits, new appends queue up and form the next
//! batch. Under load a commit (one fsync on SQLite) thus serves many messages; alone, a
//! message waits for exactly one commit, as it would have without the task.
//!
//! A batch that fails is retried one append at a time, so one record the backend refuses
//! fails only its own message; when the backend itself is down each retry fails too, and
//! every waiting hook gets the error. Nothing is acknowledged that is not committed.
//!
//! A caller that must name a record before its commit (a room sends a message with its
//! stanza-id while the commit runs) takes an id from [`Writer::reserve_id`]: the writer
//! reserves them from the store a block at a time, each block committed before any of its
//! ids is handed out.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tracing::warn;
use xmppd_core::storage::{ArchiveAppend, ArchiveStore, StorageError, StorageResult};

use super::ArchiveError;

/// Appends waiting for the writer, at most; a hook beyond that waits for room.
const QUEUE: usize = 4096;

/// Ids reserved from the store at a time: one commit of the reservation per this many
/// records named ahead. Ids left at shutdown are gaps, nothing more.
const RESERVE_BLOCK: u32 = 4096;

/// One append and who waits for its commit.
#[expect(
    clippy::large_enum_variant,
    reason = "nearly every job is an append: boxing it would cost an allocation per message"
)]
enum Job {
    Append {
        append: ArchiveAppend,
        done: Done,
        /// A message is held until this commit ([`Writer::append`]): its batch does not
        /// linger.
        urgent: bool,
    },
    /// Answered once everything submitted before it is committed (or failed).
    Flush(oneshot::Sender<()>),
}

impl Job {
    /// Whether someone waits for this job's batch to go on: the batch then commits at once.
    fn is_urgent(&self) -> bool {
        match self {
            Job::Append { urgent, .. } => *urgent,
            Job::Flush(_) => true,
        }
    }
}

/// Who learns an append's result.
enum Done {
    /// A [`Pending`].
    Reply(oneshot::Sender<StorageResult<String>>),
    /// Called on the writer's task, so it must be quick ([`Writer::submit_then`]).
    Call(Box<dyn FnOnce(StorageResult<String>) + Send>),
}

impl Done {
    fn send(self, result: StorageResult<String>) {
        match self {
            // A hook that stopped waiting (its session ended) needs no answer.
            Done::Reply(tx) => {
                let _ = tx.send(result);
            }
            Done::Call(then) => then(result),
        }
    }
}

/// The handle hooks append through.
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    archive: Arc<dyn ArchiveStore>,
    /// Ids reserved and not yet handed out, smallest first.
    reserved: Mutex<VecDeque<String>>,
    /// Held while a block is reserved, so that one caller reserves and the others wait.
    reserving: tokio::sync::Mutex<()>,
}

impl Writer {
    /// Starts the writer task over `archive` (inside the tokio runtime). The task ends when
    /// the handle is dropped, after committing what was queued.
    pub fn spawn(archive: Arc<dyn ArchiveStore>, max_batch: usize) -> Result<Self, String> {
        Self::spawn_lingering(archive, max_batch, Duration::ZERO)
    }

    /// [`Writer::spawn`], with a batch that is not full waiting up to `linger` after its first
    /// append for more before it commits. For callers whose appends nobody waits for but the
    /// sender's acknowledgement (a room sends its messages while their commits run): without
    /// it, a writer that keeps up commits a handful of records at a time, and each commit
    /// costs its sync and its pages of the log whatever it holds.
    pub fn spawn_lingering(
        archive: Arc<dyn ArchiveStore>,
        max_batch: usize,
        linger: Duration,
    ) -> Result<Self, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| format!("the archive writer needs the runtime: {e}"))?;
        let (jobs, rx) = mpsc::channel(QUEUE);
        runtime.spawn(run(rx, archive.clone(), max_batch.max(1), linger));
        Ok(Writer {
            jobs,
            archive,
            reserved: Mutex::new(VecDeque::new()),
            reserving: tokio::sync::Mutex::new(()),
        })
    }

    /// An id for a record to be submitted later with it ([`ArchiveAppend::id`]), larger than
    /// every id handed out before. A caller that orders its records (a room, under its
    /// lock) takes their ids in that order.
    pub async fn reserve_id(&self) -> Result<String, ArchiveError> {
        loop {
            if let Some(id) = self.take_reserved() {
                return Ok(id);
            }
            let _reserving = self.reserving.lock().await;
            // Another caller may have reserved a block while this one waited.
            if let Some(id) = self.take_reserved() {
                return Ok(id);
            }
            let block = self.archive.reserve_ids(RESERVE_BLOCK).await?;
            if block.is_empty() {
                return Err(ArchiveError::Storage(StorageError::Corrupt(
                    "the archive reserved no ids".into(),
                )));
            }
            self.reserved
                .lock()
                .map_err(|_| StorageError::Corrupt("the reserved ids' lock is poisoned".into()))?
                .extend(block);
        }
    }

    fn take_reserved(&self) -> Option<String> {
        self.reserved.lock().ok()?.pop_front()
    }

    /// Appends a record; returns its id once the transaction holding it is committed.
    pub async fn append(&self, append: ArchiveAppend) -> Result<String, ArchiveError> {
        let (done, committed) = oneshot::channel();
        self.send(append, Done::Reply(done), true).await?;
        Pending(committed).committed().await
    }

    /// Queues a record and returns without waiting for its commit. Records are committed in
    /// the order they were submitted (their ids increase in that order), so a caller may
    /// submit while holding a lock that orders its records, release it, and only then wait.
    pub async fn submit(&self, append: ArchiveAppend) -> Result<Pending, ArchiveError> {
        let (done, committed) = oneshot::channel();
        self.send(append, Done::Reply(done), false).await?;
        Ok(Pending(committed))
    }

    /// Queues a record; `then` gets the result of its commit (its id), on the writer's task:
    /// it must not block. For a hook that lets the message go on and has only the sender's
    /// acknowledgement wait ([`xmppd_core::completion::defer`]), without a task per message.
    pub async fn submit_then(
        &self,
        append: ArchiveAppend,
        then: impl FnOnce(StorageResult<String>) + Send + 'static,
    ) -> Result<(), ArchiveError> {
        self.send(append, Done::Call(Box::new(then)), false).await
    }

    async fn send(
        &self,
        append: ArchiveAppend,
        done: Done,
        urgent: bool,
    ) -> Result<(), ArchiveError> {
        self.jobs
            .send(Job::Append {
                append,
                done,
                urgent,
            })
            .await
            .map_err(|_| ArchiveError::WriterGone)
    }

    /// Returns once every record submitted before is committed (or failed): a query after it
    /// finds every message that went out before it was asked.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Job::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// A submitted record on its way to a commit.
#[derive(Debug)]
pub struct Pending(oneshot::Receiver<StorageResult<String>>);

impl Pending {
    /// The record's id, once committed.
    pub async fn committed(self) -> Result<String, ArchiveError> {
        match self.0.await {
            Ok(result) => Ok(result?),
            Err(_) => Err(ArchiveError::WriterGone),
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<Job>,
    archive: Arc<dyn ArchiveStore>,
    max_batch: usize,
    linger: Duration,
) {
    let mut jobs = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut jobs, max_batch).await > 0 {
        if !linger.is_zero() && !jobs.iter().any(Job::is_urgent) {
            let deadline = tokio::time::Instant::now() + linger;
            while jobs.len() < max_batch {
                let room = max_batch - jobs.len();
                match tokio::time::timeout_at(deadline, rx.recv_many(&mut jobs, room)).await {
                    // More came, and nobody holds a message or a query for this batch; or the
                    // handle is gone, and what is here is committed.
                    Ok(n) if n > 0 && !jobs.iter().rev().take(n).any(Job::is_urgent) => {}
                    _ => break,
                }
            }
        }
        commit(&*archive, std::mem::take(&mut jobs)).await;
    }
}

/// Commits one batch and tells each waiting hook its result.
async fn commit(archive: &dyn ArchiveStore, jobs: Vec<Job>) {
    let mut appends = Vec::with_capacity(jobs.len());
    let mut waiting = Vec::with_capacity(jobs.len());
    let mut flushes = Vec::new();
    for job in jobs {
        match job {
            Job::Append { append, done, .. } => {
                appends.push(append);
                waiting.push(done);
            }
            Job::Flush(tx) => flushes.push(tx),
        }
    }
    if !appends.is_empty() {
        commit_appends(archive, appends, waiting).await;
    }
    for tx in flushes {
        let _ = tx.send(());
    }
}

/// Commits one batch of appends and tells each waiting hook its result.
async fn commit_appends(
    archive: &dyn ArchiveStore,
    appends: Vec<ArchiveAppend>,
    waiting: Vec<Done>,
) {
    let result = archive.append_batch(&appends).await;
    match result {
        Ok(ids) if ids.len() == appends.len() => {
            for (done, id) in waiting.into_iter().zip(ids) {
                done.send(Ok(id));
            }
        }
        Ok(ids) => {
            let e = StorageError::Corrupt(format!(
                "a batch of {} appends returned {} ids",
                appends.len(),
                ids.len()
            ));
            warn!(error = %e, "archive batch");
            for done in waiting {
                done.send(Err(StorageError::Corrupt(e.to_string())));
            }
        }
        Err(e) if appends.len() == 1 => {
            if let Some(done) = waiting.into_iter().next() {
                done.send(Err(e));
            }
        }
        Err(e) => {
            warn!(error = %e, n = appends.len(), "archive batch failed; retrying one by one");
            for (append, done) in appends.into_iter().zip(waiting) {
                let one = archive
                    .append_batch(std::slice::from_ref(&append))
                    .await
                    .and_then(|mut ids| {
                        ids.pop()
                            .ok_or_else(|| StorageError::Corrupt("no id returned".into()))
                    });
                done.send(one);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use xmppd_core::storage::NewArchiveRecord;

    use super::super::test_store::Recorder;
    use super::*;

    fn job(payload: &[u8]) -> ArchiveAppend {
        ArchiveAppend {
            host: "h".into(),
            user: "u".into(),
            store: "mam".into(),
            record: NewArchiveRecord {
                with: String::new(),
                timestamp_us: 0,
                payload: payload.to_vec(),
            },
            id: None,
            keep_last: None,
            expire_before_us: None,
            keep_bytes: None,
        }
    }

    /// Runs `payloads` as concurrent appends; their results in order.
    async fn concurrently(
        writer: &Arc<Writer>,
        payloads: &[&'static [u8]],
    ) -> Vec<Result<String, ArchiveError>> {
        let mut tasks = Vec::new();
        for p in payloads {
            let (w, p) = (writer.clone(), *p);
            tasks.push(tokio::spawn(async move { w.append(job(p)).await }));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.expect("task"));
        }
        results
    }

    #[tokio::test]
    async fn concurrent_appends_share_commits_and_each_gets_its_id() {
        let store = Arc::new(Recorder::default());
        let writer = Arc::new(Writer::spawn(store.clone(), 64).expect("runtime"));
        let results = concurrently(&writer, &[&b"a"[..]; 40]).await;
        let ids: std::collections::BTreeSet<String> =
            results.into_iter().map(|r| r.expect("committed")).collect();
        assert_eq!(ids.len(), 40);
        let batches = store.batches.lock().expect("lock").clone();
        assert_eq!(batches.iter().sum::<usize>(), 40);
        assert!(batches.len() < 40, "no batching happened: {batches:?}");
    }

    #[tokio::test]
    async fn a_lingering_writer_gathers_appends_that_come_apart() {
        let store = Arc::new(Recorder::default());
        let writer = Writer::spawn_lingering(store.clone(), 64, Duration::from_millis(200))
            .expect("runtime");
        let mut pending = Vec::new();
        for _ in 0..3 {
            pending.push(writer.submit(job(b"a")).await.expect("queued"));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for p in pending {
            p.committed().await.expect("committed");
        }
        assert_eq!(*store.batches.lock().expect("lock"), [3]);
        // Dropping the handle commits what is queued without waiting out the linger.
        let last = writer.submit(job(b"b")).await.expect("queued");
        drop(writer);
        last.committed().await.expect("committed");
        assert_eq!(*store.batches.lock().expect("lock"), [3, 1]);
    }

    #[tokio::test]
    async fn a_held_message_or_a_query_does_not_wait_out_the_linger() {
        let store = Arc::new(Recorder::default());
        let writer =
            Writer::spawn_lingering(store.clone(), 64, Duration::from_secs(600)).expect("runtime");
        let limit = Duration::from_secs(10);
        let first = writer.submit(job(b"a")).await.expect("queued");
        // A message held until its commit ends the lingering batch it joins.
        tokio::time::timeout(limit, writer.append(job(b"b")))
            .await
            .expect("the batch lingered")
            .expect("committed");
        first.committed().await.expect("committed");
        assert_eq!(*store.batches.lock().expect("lock"), [2]);
        // So does a query's flush.
        let second = writer.submit(job(b"c")).await.expect("queued");
        tokio::time::timeout(limit, writer.flush())
            .await
            .expect("the batch lingered");
        second.committed().await.expect("committed");
        assert_eq!(*store.batches.lock().expect("lock"), [2, 1]);
    }

    #[tokio::test]
    async fn reserved_ids_grow_are_never_handed_out_twice_and_name_their_records() {
        let store = Arc::new(Recorder::default());
        let writer = Arc::new(Writer::spawn(store.clone(), 64).expect("runtime"));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let w = writer.clone();
            tasks.push(tokio::spawn(async move { w.reserve_id().await }));
        }
        let mut ids = std::collections::BTreeSet::new();
        for t in tasks {
            let id: u64 = t
                .await
                .expect("task")
                .expect("reserved")
                .parse()
                .expect("number");
            ids.insert(id);
        }
        assert_eq!(ids.len(), 50);
        // One block served all fifty: the store's next id is past it, not fifty blocks on.
        let later: u64 = store.reserve_ids(1).await.expect("reserve")[0]
            .parse()
            .expect("number");
        assert_eq!(later, u64::from(RESERVE_BLOCK) + 1);
        // Taken in order, ids grow, and past the block the next one is reserved.
        let mut last = 0;
        for _ in 0..RESERVE_BLOCK {
            let id: u64 = writer
                .reserve_id()
                .await
                .expect("id")
                .parse()
                .expect("number");
            assert!(id > last, "{id} after {last}");
            last = id;
        }
        assert!(last > later);
        let mut append = job(b"named");
        append.id = Some("12345".into());
        assert_eq!(writer.append(append).await.expect("committed"), "12345");
        store.down.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut failed = 0;
        for _ in 0..RESERVE_BLOCK {
            failed += usize::from(writer.reserve_id().await.is_err());
        }
        assert!(failed > 0, "the store is down, yet every id was reserved");
    }

    #[tokio::test]
    async fn a_refused_record_fails_alone_and_an_outage_fails_everyone() {
        let store = Arc::new(Recorder::default());
        let writer = Arc::new(Writer::spawn(store.clone(), 64).expect("runtime"));
        // Let the first commit start, so that the next three land in one batch.
        let one: [&'static [u8]; 1] = [b"a"];
        let first = concurrently(&writer, &one);
        let (first, rest) = tokio::join!(first, async {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            concurrently(&writer, &[&b"b"[..], b"bad", b"c"]).await
        });
        assert!(first[0].is_ok());
        let ok: Vec<bool> = rest.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [true, false, true]);

        store.down.store(true, std::sync::atomic::Ordering::SeqCst);
        let failed = concurrently(&writer, &[&b"d"[..], b"e"]).await;
        assert!(
            failed
                .iter()
                .all(|r| matches!(r, Err(ArchiveError::Storage(_))))
        );
    }
}
