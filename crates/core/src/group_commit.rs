//! Group commit for writes of which many arrive at once and each waits for its commit.
//!
//! Every writer hands its item to one task and waits for the commit of the batch it lands
//! in. The task takes the first pending item, then everything else already queued (up to
//! `max_batch`), and commits them together; while it commits, new items queue up and form
//! the next batch. Alone, an item waits for exactly one commit, as it would have written
//! itself; when thousands arrive together (every session's logout record when a network
//! drops them all) they cost a few commits instead of one fsync each.

use std::future::Future;
use std::pin::Pin;

use tokio::sync::{mpsc, oneshot};

use crate::storage::{StorageError, StorageResult};

/// Items waiting for the task, at most; a writer beyond that waits for room.
const QUEUE: usize = 4096;

/// What commits a batch: all of it or none.
pub type CommitBatch<T> =
    Box<dyn Fn(Vec<T>) -> Pin<Box<dyn Future<Output = StorageResult<()>> + Send>> + Send + Sync>;

/// The handle writers submit through; the task ends, after committing what was queued, when
/// the handle is dropped.
pub struct GroupCommit<T> {
    jobs: mpsc::Sender<(T, oneshot::Sender<StorageResult<()>>)>,
}

impl<T: Send + 'static> GroupCommit<T> {
    /// Starts the task (inside the tokio runtime).
    pub fn spawn(max_batch: usize, commit: CommitBatch<T>) -> Result<Self, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| format!("a group commit needs the runtime: {e}"))?;
        let (jobs, rx) = mpsc::channel(QUEUE);
        runtime.spawn(run(rx, commit, max_batch.max(1)));
        Ok(GroupCommit { jobs })
    }

    /// Writes `item`; returns once the batch holding it is committed (or failed).
    pub async fn write(&self, item: T) -> StorageResult<()> {
        let (done, committed) = oneshot::channel();
        self.jobs.send((item, done)).await.map_err(|_| gone())?;
        committed.await.map_err(|_| gone())?
    }
}

fn gone() -> StorageError {
    StorageError::Backend("the writer task has stopped".to_owned())
}

async fn run<T>(
    mut rx: mpsc::Receiver<(T, oneshot::Sender<StorageResult<()>>)>,
    commit: CommitBatch<T>,
    max_batch: usize,
) {
    let mut items = Vec::with_capacity(max_batch);
    let mut waiting = Vec::with_capacity(max_batch);
    while let Some((item, done)) = rx.recv().await {
        items.push(item);
        waiting.push(done);
        while items.len() < max_batch {
            match rx.try_recv() {
                Ok((item, done)) => {
                    items.push(item);
                    waiting.push(done);
                }
                Err(_) => break,
            }
        }
        let result = commit(std::mem::take(&mut items)).await;
        for done in waiting.drain(..) {
            // A writer that stopped waiting (its task ended) needs no answer.
            let _ = done.send(result.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A commit that records its batches and fails any batch holding 0.
    fn recording(batches: Arc<Mutex<Vec<Vec<u32>>>>) -> CommitBatch<u32> {
        Box::new(move |items: Vec<u32>| {
            let batches = batches.clone();
            Box::pin(async move {
                // Long enough for the other writers to queue behind the first batch.
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                let failed = items.contains(&0);
                if let Ok(mut b) = batches.lock() {
                    b.push(items);
                }
                if failed {
                    Err(StorageError::Backend("refused".to_owned()))
                } else {
                    Ok(())
                }
            })
        })
    }

    #[tokio::test]
    async fn writers_that_arrive_together_share_commits() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::new(GroupCommit::spawn(64, recording(batches.clone())).unwrap());
        let mut tasks = Vec::new();
        for i in 1..=100u32 {
            let writer = writer.clone();
            tasks.push(tokio::spawn(async move { writer.write(i).await }));
        }
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        let batches = batches.lock().unwrap();
        let mut all: Vec<u32> = batches.iter().flatten().copied().collect();
        all.sort_unstable();
        assert_eq!(
            all,
            (1..=100).collect::<Vec<_>>(),
            "every item committed once"
        );
        assert!(
            batches.len() < 10,
            "{} commits for 100 writers",
            batches.len()
        );
        assert!(
            batches.iter().all(|b| b.len() <= 64),
            "a batch over max_batch"
        );
    }

    #[tokio::test]
    async fn a_failed_commit_fails_every_writer_of_its_batch_only() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let writer = GroupCommit::spawn(1, recording(batches)).unwrap();
        assert!(writer.write(0).await.is_err());
        writer.write(1).await.unwrap();
    }
}
