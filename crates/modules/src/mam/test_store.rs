//! An archive store for unit tests: counts the batches it is given, refuses a batch holding
//! the payload `bad`, every batch while `refusing`, and every write while `down`.

use std::sync::Mutex;

use async_trait::async_trait;
use xmppd_core::storage::{
    ArchiveAppend, ArchiveQuery, ArchiveQuota, ArchiveRecord, ArchiveStore, ArchiveUsage,
    NewArchiveRecord, StorageError, StorageResult,
};

/// Records the batches it is given; fails a batch holding a payload `bad`, and every batch
/// while `down`.
#[derive(Default)]
pub(crate) struct Recorder {
    pub(crate) batches: Mutex<Vec<usize>>,
    pub(crate) down: std::sync::atomic::AtomicBool,
    /// Batches fail, ids are still reserved.
    pub(crate) refusing: std::sync::atomic::AtomicBool,
    next: std::sync::atomic::AtomicU64,
}

#[async_trait]
impl ArchiveStore for Recorder {
    async fn append_within(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: NewArchiveRecord,
        _: ArchiveQuota,
    ) -> StorageResult<String> {
        Err(StorageError::Backend("not used".into()))
    }
    async fn usage(&self, _: &str, _: &str, _: &str) -> StorageResult<ArchiveUsage> {
        Err(StorageError::Backend("not used".into()))
    }
    async fn append_batch(&self, batch: &[ArchiveAppend]) -> StorageResult<Vec<String>> {
        // Let concurrent appends queue up behind this commit.
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        self.batches.lock().expect("lock").push(batch.len());
        if self.down.load(std::sync::atomic::Ordering::SeqCst)
            || self.refusing.load(std::sync::atomic::Ordering::SeqCst)
            || batch.iter().any(|a| a.record.payload == b"bad")
        {
            return Err(StorageError::Backend("refused".into()));
        }
        Ok(batch
            .iter()
            .map(|a| {
                a.id.clone().unwrap_or_else(|| {
                    let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    (n + 1).to_string()
                })
            })
            .collect())
    }
    async fn reserve_ids(&self, n: u32) -> StorageResult<Vec<String>> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(StorageError::Backend("refused".into()));
        }
        let first = self
            .next
            .fetch_add(u64::from(n), std::sync::atomic::Ordering::SeqCst);
        Ok((first + 1..=first + u64::from(n))
            .map(|id| id.to_string())
            .collect())
    }
    async fn query(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &ArchiveQuery,
    ) -> StorageResult<Vec<ArchiveRecord>> {
        Ok(Vec::new())
    }
    async fn count(&self, _: &str, _: &str, _: &str) -> StorageResult<u64> {
        Ok(0)
    }
    async fn count_matching(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: &ArchiveQuery,
    ) -> StorageResult<u64> {
        Ok(0)
    }
    async fn delete(&self, _: &str, _: &str, _: &str, _: &[String]) -> StorageResult<u64> {
        Ok(0)
    }
    async fn clear(&self, _: &str, _: &str, _: &str) -> StorageResult<u64> {
        Ok(0)
    }
    async fn expire(&self, _: &str, _: i64, _: u32) -> StorageResult<u64> {
        Ok(0)
    }
    async fn count_by_store(&self) -> StorageResult<Vec<(String, u64)>> {
        Err(StorageError::Backend("not used".into()))
    }
}

impl Recorder {
    /// A store whose every write fails.
    pub(crate) fn down() -> Self {
        let r = Recorder::default();
        r.down.store(true, std::sync::atomic::Ordering::SeqCst);
        r
    }
}
