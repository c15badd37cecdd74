//! Room archives on SQLite (`room_archive`): the whole conformance suite again with the
//! archive checks' store `mam` kept as [`ROOM_ARCHIVE`], and the migration that moved them.

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::Connection as _;
use xmppd_core::storage::{
    ArchiveAppend, ArchiveQuery, ArchiveQuota, ArchiveRecord, ArchiveStore, ArchiveUsage,
    NewArchiveRecord, ROOM_ARCHIVE, Storage, StorageResult,
};

use crate::{StorageConfig, open};

/// The store of the conformance checks that goes to the room table instead.
const CHECKED: &str = "mam";

/// An archive store that keeps [`CHECKED`] as [`ROOM_ARCHIVE`], so that every archive check
/// runs on the room table (beside its other stores, which stay in `archive`).
struct AsRooms(Arc<dyn ArchiveStore>);

fn as_room(store: &str) -> &str {
    if store == CHECKED {
        ROOM_ARCHIVE
    } else {
        store
    }
}

#[async_trait]
impl ArchiveStore for AsRooms {
    async fn append_within(
        &self,
        host: &str,
        user: &str,
        store: &str,
        record: NewArchiveRecord,
        quota: ArchiveQuota,
    ) -> StorageResult<String> {
        self.0
            .append_within(host, user, as_room(store), record, quota)
            .await
    }
    async fn usage(&self, host: &str, user: &str, store: &str) -> StorageResult<ArchiveUsage> {
        self.0.usage(host, user, as_room(store)).await
    }
    async fn append_batch(&self, batch: &[ArchiveAppend]) -> StorageResult<Vec<String>> {
        let batch: Vec<ArchiveAppend> = batch
            .iter()
            .cloned()
            .map(|mut a| {
                a.store = as_room(&a.store).to_owned();
                a
            })
            .collect();
        self.0.append_batch(&batch).await
    }
    async fn reserve_ids(&self, n: u32) -> StorageResult<Vec<String>> {
        self.0.reserve_ids(n).await
    }
    async fn query(
        &self,
        host: &str,
        user: &str,
        store: &str,
        query: &ArchiveQuery,
    ) -> StorageResult<Vec<ArchiveRecord>> {
        self.0.query(host, user, as_room(store), query).await
    }
    async fn count(&self, host: &str, user: &str, store: &str) -> StorageResult<u64> {
        self.0.count(host, user, as_room(store)).await
    }
    async fn count_matching(
        &self,
        host: &str,
        user: &str,
        store: &str,
        query: &ArchiveQuery,
    ) -> StorageResult<u64> {
        self.0
            .count_matching(host, user, as_room(store), query)
            .await
    }
    async fn delete(
        &self,
        host: &str,
        user: &str,
        store: &str,
        ids: &[String],
    ) -> StorageResult<u64> {
        self.0.delete(host, user, as_room(store), ids).await
    }
    async fn clear(&self, host: &str, user: &str, store: &str) -> StorageResult<u64> {
        self.0.clear(host, user, as_room(store)).await
    }
    async fn expire(&self, store: &str, before_us: i64, limit: u32) -> StorageResult<u64> {
        self.0.expire(as_room(store), before_us, limit).await
    }
    async fn count_by_store(&self) -> StorageResult<Vec<(String, u64)>> {
        let mut counts: Vec<(String, u64)> = self
            .0
            .count_by_store()
            .await?
            .into_iter()
            .map(|(store, n)| match store.as_str() {
                ROOM_ARCHIVE => (CHECKED.to_owned(), n),
                _ => (store, n),
            })
            .collect();
        counts.sort();
        Ok(counts)
    }
}

/// A fresh SQLite store whose checked archive store is the room table.
async fn sqlite_rooms() -> (tempfile::TempDir, Storage) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = StorageConfig::Sqlite {
        path: dir.path().join("xmppd.db"),
    };
    let mut storage = open(&config).await.expect("open SQLite");
    storage.archive = Arc::new(AsRooms(storage.archive.clone()));
    (dir, storage)
}

mod sqlite_room_conformance {
    macro_rules! room_checks {
        ($($check:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let (_dir, storage) = super::sqlite_rooms().await;
                crate::conformance::$check(&storage, stringify!($check)).await;
            }
        )*};
    }
    crate::for_each_check!(room_checks);
}

fn record(with: &str, t: i64, payload: &[u8]) -> NewArchiveRecord {
    NewArchiveRecord {
        with: with.to_owned(),
        timestamp_us: t,
        payload: payload.to_vec(),
    }
}

/// Room archives written before the room table existed are carried over by its migration:
/// same ids (clients hold them as stanza-ids), same order and content, the same totals, and
/// the next ids above every earlier one.
#[tokio::test]
async fn the_migration_moves_room_archives_with_their_ids() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("xmppd.db");
    let config = StorageConfig::Sqlite { path: path.clone() };
    {
        // The database as it was before migration 4: room records in `archive`.
        let s = open(&config).await.expect("open");
        s.archive
            .append("h", "alice", "mam", record("bob@x", 1, b"user's"), None)
            .await
            .expect("user record");
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
            .await
            .expect("connect");
        for statement in [
            "DROP TRIGGER room_archive_usage_delete",
            "DROP TABLE room_archive",
            "DELETE FROM _sqlx_migrations WHERE version = 4",
            "INSERT INTO archive (host, username, store, with_jid, timestamp_us, payload) VALUES \
             ('conf.h', 'room', 'muc_archive', 'room@conf.h/a', 10, x'6f6e65'), \
             ('conf.h', 'room', 'muc_archive', 'room@conf.h/b', 20, x'74776f'), \
             ('conf.h', 'other', 'muc_archive', 'other@conf.h/a', 30, x'6f74686572')",
        ] {
            sqlx::query(statement)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
        }
        conn.close().await.expect("close");
    }
    let s = open(&config).await.expect("reopen runs the migration");
    let room = s
        .archive
        .query("conf.h", "room", ROOM_ARCHIVE, &ArchiveQuery::default())
        .await
        .expect("query");
    let payloads: Vec<&[u8]> = room.iter().map(|r| r.payload.as_slice()).collect();
    assert_eq!(payloads, [b"one".as_slice(), b"two".as_slice()]);
    assert_eq!(room[0].with, "room@conf.h/a");
    assert_eq!(room[1].timestamp_us, 20);
    let old_ids: Vec<i64> = room.iter().map(|r| r.id.parse().expect("id")).collect();
    assert!(old_ids[0] > 1 && old_ids[1] > old_ids[0], "{old_ids:?}");
    let usage = s
        .archive
        .usage("conf.h", "room", ROOM_ARCHIVE)
        .await
        .expect("usage");
    assert_eq!(
        usage,
        ArchiveUsage {
            records: 2,
            bytes: 6
        }
    );
    assert_eq!(
        s.archive
            .count("conf.h", "other", ROOM_ARCHIVE)
            .await
            .expect("count"),
        1
    );
    // Paging by a carried-over id still finds its archive.
    let after = ArchiveQuery {
        after_id: Some(room[0].id.clone()),
        ..ArchiveQuery::default()
    };
    let page = s
        .archive
        .query("conf.h", "room", ROOM_ARCHIVE, &after)
        .await
        .expect("page");
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].id, room[1].id);
    // New records of both tables get ids above all of them.
    let next_room: i64 = s
        .archive
        .append("conf.h", "room", ROOM_ARCHIVE, record("", 40, b"new"), None)
        .await
        .expect("append room")
        .parse()
        .expect("id");
    let next_user: i64 = s
        .archive
        .append("h", "alice", "mam", record("", 50, b"new"), None)
        .await
        .expect("append user")
        .parse()
        .expect("id");
    assert!(next_room > old_ids[1] + 1, "{next_room} after {old_ids:?}");
    assert!(next_user > next_room, "{next_user} after {next_room}");
    let user = s
        .archive
        .query("h", "alice", "mam", &ArchiveQuery::default())
        .await
        .expect("user archive");
    assert_eq!(user.len(), 2, "the user archive stays where it was");
}

fn room_append(with: &str, t: i64) -> ArchiveAppend {
    ArchiveAppend {
        host: "conf.h".into(),
        user: "room".into(),
        store: ROOM_ARCHIVE.into(),
        record: record(with, t, b"message"),
        id: None,
        keep_last: Some(100),
        expire_before_us: Some(1),
        keep_bytes: None,
    }
}

/// A batch of room records is begun, written and committed in one call to the connection's
/// thread; when one of its statements fails, the transaction it began is not left open on a
/// connection the next batch gets: the failed batch leaves nothing, and the next one commits.
#[tokio::test]
async fn a_failed_room_batch_leaves_nothing_and_the_next_commits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("xmppd.db");
    let s = open(&StorageConfig::Sqlite { path: path.clone() })
        .await
        .expect("open");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .expect("connect");
    sqlx::query(
        "CREATE TRIGGER refuse BEFORE INSERT ON room_archive WHEN NEW.with_jid = 'refused' \
         BEGIN SELECT RAISE(ABORT, 'refused'); END",
    )
    .execute(&mut conn)
    .await
    .expect("trigger");
    drop(conn);
    let failed = [room_append("a", 10), room_append("refused", 11)];
    assert!(s.archive.append_batch(&failed).await.is_err());
    let ids = s
        .archive
        .append_batch(&[room_append("b", 12), room_append("c", 13)])
        .await
        .expect("the next batch commits");
    assert_eq!(ids.len(), 2);
    let records = s
        .archive
        .query("conf.h", "room", ROOM_ARCHIVE, &ArchiveQuery::default())
        .await
        .expect("query");
    let with: Vec<&str> = records.iter().map(|r| r.with.as_str()).collect();
    assert_eq!(with, ["b", "c"]);
    let ids_read: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids_read, ids.iter().map(String::as_str).collect::<Vec<_>>());
    let usage = s
        .archive
        .usage("conf.h", "room", ROOM_ARCHIVE)
        .await
        .expect("usage");
    assert_eq!(usage.records, 2);
}
