//! The storage shapes, timed: each call's latency goes to `xmppd_storage_seconds` by shape
//! and operation. The server wraps its storage once, before modules get their handles, so
//! every caller is measured without knowing it.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::Metrics;
use crate::storage::{
    ArchiveAppend, ArchiveQuery, ArchiveQuota, ArchiveRecord, ArchiveStore, ArchiveUsage, KeyVal,
    KeyValDoc, MapChange, MapStore, MapUsage, NewArchiveRecord, Storage, StorageResult, UserData,
};

/// `storage` with every call timed into `metrics`.
pub fn timed(storage: Storage, metrics: &Arc<Metrics>) -> Storage {
    Storage {
        keyval: Arc::new(Timed::new("keyval", metrics, storage.keyval)),
        map: Arc::new(Timed::new("map", metrics, storage.map)),
        archive: Arc::new(Timed::new("archive", metrics, storage.archive)),
        users: Arc::new(Timed::new("users", metrics, storage.users)),
    }
}

struct Timed<T> {
    shape: &'static str,
    metrics: Arc<Metrics>,
    inner: T,
}

impl<T> Timed<T> {
    fn new(shape: &'static str, metrics: &Arc<Metrics>, inner: T) -> Self {
        Timed {
            shape,
            metrics: metrics.clone(),
            inner,
        }
    }

    async fn time<R>(&self, operation: &'static str, call: impl Future<Output = R>) -> R {
        let started = Instant::now();
        let result = call.await;
        let seconds = started.elapsed().as_secs_f64();
        self.metrics.storage_call(self.shape, operation, seconds);
        result
    }
}

#[async_trait]
impl KeyVal for Timed<Arc<dyn KeyVal>> {
    async fn get(&self, host: &str, user: &str, store: &str) -> StorageResult<Option<Vec<u8>>> {
        self.time("get", self.inner.get(host, user, store)).await
    }
    async fn put(&self, host: &str, user: &str, store: &str, value: &[u8]) -> StorageResult<()> {
        self.time("put", self.inner.put(host, user, store, value))
            .await
    }
    async fn put_many(&self, store: &str, docs: &[KeyValDoc<'_>]) -> StorageResult<()> {
        self.time("put_many", self.inner.put_many(store, docs))
            .await
    }
    async fn insert_new(
        &self,
        host: &str,
        user: &str,
        store: &str,
        value: &[u8],
    ) -> StorageResult<bool> {
        let call = self.inner.insert_new(host, user, store, value);
        self.time("insert_new", call).await
    }
    async fn delete(&self, host: &str, user: &str, store: &str) -> StorageResult<bool> {
        self.time("delete", self.inner.delete(host, user, store))
            .await
    }
    async fn users(&self, host: &str, store: &str) -> StorageResult<Vec<String>> {
        self.time("users", self.inner.users(host, store)).await
    }
}

#[async_trait]
impl MapStore for Timed<Arc<dyn MapStore>> {
    async fn get(
        &self,
        host: &str,
        user: &str,
        store: &str,
        key: &str,
    ) -> StorageResult<Option<Vec<u8>>> {
        self.time("get", self.inner.get(host, user, store, key))
            .await
    }
    async fn put(
        &self,
        host: &str,
        user: &str,
        store: &str,
        key: &str,
        value: &[u8],
    ) -> StorageResult<()> {
        let call = self.inner.put(host, user, store, key, value);
        self.time("put", call).await
    }
    async fn delete(&self, host: &str, user: &str, store: &str, key: &str) -> StorageResult<bool> {
        let call = self.inner.delete(host, user, store, key);
        self.time("delete", call).await
    }
    async fn list(
        &self,
        host: &str,
        user: &str,
        store: &str,
    ) -> StorageResult<Vec<(String, Vec<u8>)>> {
        self.time("list", self.inner.list(host, user, store)).await
    }
    async fn list_stores(
        &self,
        host: &str,
        user: &str,
        stores: &[&str],
    ) -> StorageResult<Vec<Vec<(String, Vec<u8>)>>> {
        let call = self.inner.list_stores(host, user, stores);
        self.time("list_stores", call).await
    }
    async fn count(&self, host: &str, user: &str, store: &str) -> StorageResult<u64> {
        self.time("count", self.inner.count(host, user, store))
            .await
    }
    async fn clear(&self, host: &str, user: &str, store: &str) -> StorageResult<u64> {
        self.time("clear", self.inner.clear(host, user, store))
            .await
    }
    async fn usage(&self, host: &str, user: &str, store: &str) -> StorageResult<MapUsage> {
        self.time("usage", self.inner.usage(host, user, store))
            .await
    }
    async fn apply_within(
        &self,
        host: &str,
        user: &str,
        store: &str,
        changes: &[MapChange<'_>],
        max_bytes: Option<u64>,
    ) -> StorageResult<MapUsage> {
        let call = self
            .inner
            .apply_within(host, user, store, changes, max_bytes);
        self.time("apply_within", call).await
    }
}

#[async_trait]
impl ArchiveStore for Timed<Arc<dyn ArchiveStore>> {
    async fn append_within(
        &self,
        host: &str,
        user: &str,
        store: &str,
        record: NewArchiveRecord,
        quota: ArchiveQuota,
    ) -> StorageResult<String> {
        let call = self.inner.append_within(host, user, store, record, quota);
        self.time("append", call).await
    }
    async fn usage(&self, host: &str, user: &str, store: &str) -> StorageResult<ArchiveUsage> {
        self.time("usage", self.inner.usage(host, user, store))
            .await
    }
    async fn append_batch(&self, batch: &[ArchiveAppend]) -> StorageResult<Vec<String>> {
        self.time("append_batch", self.inner.append_batch(batch))
            .await
    }
    async fn reserve_ids(&self, n: u32) -> StorageResult<Vec<String>> {
        self.time("reserve_ids", self.inner.reserve_ids(n)).await
    }
    async fn query(
        &self,
        host: &str,
        user: &str,
        store: &str,
        query: &ArchiveQuery,
    ) -> StorageResult<Vec<ArchiveRecord>> {
        let call = self.inner.query(host, user, store, query);
        self.time("query", call).await
    }
    async fn count(&self, host: &str, user: &str, store: &str) -> StorageResult<u64> {
        self.time("count", self.inner.count(host, user, store))
            .await
    }
    async fn count_matching(
        &self,
        host: &str,
        user: &str,
        store: &str,
        query: &ArchiveQuery,
    ) -> StorageResult<u64> {
        let call = self.inner.count_matching(host, user, store, query);
        self.time("count_matching", call).await
    }
    async fn delete(
        &self,
        host: &str,
        user: &str,
        store: &str,
        ids: &[String],
    ) -> StorageResult<u64> {
        let call = self.inner.delete(host, user, store, ids);
        self.time("delete", call).await
    }
    async fn clear(&self, host: &str, user: &str, store: &str) -> StorageResult<u64> {
        self.time("clear", self.inner.clear(host, user, store))
            .await
    }
    async fn expire(&self, store: &str, before_us: i64, limit: u32) -> StorageResult<u64> {
        let call = self.inner.expire(store, before_us, limit);
        self.time("expire", call).await
    }
    async fn count_by_store(&self) -> StorageResult<Vec<(String, u64)>> {
        self.time("count_by_store", self.inner.count_by_store())
            .await
    }
}

#[async_trait]
impl UserData for Timed<Arc<dyn UserData>> {
    async fn delete_user(&self, host: &str, user: &str) -> StorageResult<()> {
        self.time("delete_user", self.inner.delete_user(host, user))
            .await
    }
}
