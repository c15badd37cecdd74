//! Runs the conformance suite on both backends, plus backend-specific tests.
//!
//! PostgreSQL tests need `XMPPD_TEST_POSTGRES_URL` (see `.ci/start-postgres`); without it
//! they print a skip notice and pass, unless `XMPPD_REQUIRE_POSTGRES=1` makes them fail.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use xmppd_core::storage::{ArchiveQuery, NewArchiveRecord, Storage};

use crate::{OpenError, StorageConfig, open, parse_id, redact_url};

/// A namespace no earlier run or parallel test uses, for tests sharing one database.
fn unique_ns(test: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{}-{nanos}", test.replace('_', "-"), std::process::id())
}

/// A fresh SQLite store in a temporary directory (kept alive by the returned guard).
async fn sqlite() -> (tempfile::TempDir, Storage) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = StorageConfig::Sqlite {
        path: dir.path().join("nested").join("xmppd.db"),
    };
    let storage = open(&config).await.expect("open SQLite");
    (dir, storage)
}

/// The PostgreSQL store under test, or `None` (after a notice) when none is configured.
async fn postgres(test: &str) -> Option<Storage> {
    let url = std::env::var("XMPPD_TEST_POSTGRES_URL").unwrap_or_default();
    if url.is_empty() {
        if std::env::var("XMPPD_REQUIRE_POSTGRES").as_deref() == Ok("1") {
            panic!("XMPPD_REQUIRE_POSTGRES=1 but XMPPD_TEST_POSTGRES_URL is not set");
        }
        // Once per run, and straight to stderr so that the harness does not capture it.
        static NOTICE: std::sync::Once = std::sync::Once::new();
        NOTICE.call_once(|| {
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED PostgreSQL tests ({test} and the others): XMPPD_TEST_POSTGRES_URL is \
                 not set; run `eval \"$(.ci/start-postgres)\"` first"
            );
        });
        return None;
    }
    Some(
        open(&StorageConfig::Postgres { url })
            .await
            .expect("open PostgreSQL"),
    )
}

mod sqlite_conformance {
    macro_rules! sqlite_checks {
        ($($check:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let (_dir, storage) = super::sqlite().await;
                crate::conformance::$check(&storage, stringify!($check)).await;
            }
        )*};
    }
    crate::for_each_check!(sqlite_checks);
}

mod postgres_conformance {
    macro_rules! postgres_checks {
        ($($check:ident),* $(,)?) => {$(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                let name = concat!("postgres_conformance::", stringify!($check));
                let Some(storage) = super::postgres(name).await else { return };
                let ns = super::unique_ns(stringify!($check));
                crate::conformance::$check(&storage, &ns).await;
            }
        )*};
    }
    crate::for_each_check!(postgres_checks);
}

/// What was committed survives closing and reopening the database file.
#[tokio::test]
async fn sqlite_data_survives_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = StorageConfig::Sqlite {
        path: dir.path().join("xmppd.db"),
    };
    let record = NewArchiveRecord {
        with: "bob@x".to_owned(),
        timestamp_us: 42,
        payload: b"hello".to_vec(),
    };
    let id = {
        let s = open(&config).await.expect("open");
        s.keyval
            .put("h", "alice", "vcard", b"card")
            .await
            .expect("put");
        s.map
            .put("h", "alice", "roster", "bob@x", b"item")
            .await
            .expect("map put");
        s.archive
            .append("h", "alice", "offline", record.clone(), Some(10))
            .await
            .expect("append")
        // Dropped without an explicit close, as on a crash of the owning task.
    };
    let s = open(&config).await.expect("reopen");
    assert_eq!(
        s.keyval.get("h", "alice", "vcard").await.expect("get"),
        Some(b"card".to_vec())
    );
    assert_eq!(
        s.map
            .get("h", "alice", "roster", "bob@x")
            .await
            .expect("map get"),
        Some(b"item".to_vec())
    );
    let records = s
        .archive
        .query("h", "alice", "offline", &ArchiveQuery::default())
        .await
        .expect("query");
    assert_eq!(records.len(), 1);
    assert_eq!(
        (records[0].id.as_str(), &records[0].payload),
        (id.as_str(), &record.payload)
    );
    let next = s
        .archive
        .append("h", "alice", "offline", record, None)
        .await
        .expect("append");
    assert!(
        parse_id(&next) > parse_id(&id),
        "ids keep increasing across reopen"
    );
}

/// The file is in WAL mode with full sync, as the durability contract needs, and the writer's
/// page cache is bounded.
#[tokio::test]
async fn sqlite_runs_wal_with_full_sync() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = crate::SqliteStore::open(dir.path().join("x.db"))
        .await
        .expect("open");
    let mut lent = store.writer_for_tests().await;
    let conn = lent.parts().0;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *conn)
        .await
        .expect("journal_mode");
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&mut *conn)
        .await
        .expect("synchronous");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&mut *conn)
        .await
        .expect("foreign_keys");
    let cache: i64 = sqlx::query_scalar("PRAGMA cache_size")
        .fetch_one(&mut *conn)
        .await
        .expect("cache_size");
    let autocheckpoint: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(&mut *conn)
        .await
        .expect("wal_autocheckpoint");
    assert_eq!((mode.as_str(), sync, fk), ("wal", 2, 1));
    // Checkpoints are the checkpoint task's; the writer's own is a distant backstop.
    assert_eq!(
        autocheckpoint,
        i64::from(crate::sqlite_checkpoint::WRITER_AUTOCHECKPOINT_PAGES)
    );
    // The writer's cache is bounded too: every logout writes a record.
    assert_eq!(
        cache,
        -i64::from(crate::sqlite_connections::WRITER_CACHE_KIB)
    );
    drop(lent);
    store.close().await;
}

/// The checkpoint task copies committed pages into the database file by itself, without a
/// commit reaching the writer's (distant) automatic threshold.
#[tokio::test]
async fn sqlite_checkpoints_in_the_background() {
    use xmppd_core::storage::KeyVal as _;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("x.db");
    let store = crate::SqliteStore::open(&path).await.expect("open");
    let file_len = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    // A quiet moment first: whatever the migrations wrote is copied.
    tokio::time::sleep(crate::sqlite_checkpoint::CHECKPOINT_EVERY * 3).await;
    let before = file_len();
    // 200 documents of 8 KiB: well over a hundred new pages, far below the backstop.
    for i in 0..200 {
        store
            .put("h", &format!("u{i}"), "s", &[7u8; 8192])
            .await
            .expect("put");
    }
    let mut grown = false;
    for _ in 0..50 {
        if file_len() > before + 100 * 4096 {
            grown = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(grown, "database file {} bytes, was {before}", file_len());
    store.close().await;
}

/// Read connections are read-only and keep a small page cache, so a login peak does not leave
/// megabytes of cached account rows behind.
#[tokio::test]
async fn sqlite_readers_are_read_only_with_a_small_cache() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = crate::SqliteStore::open(dir.path().join("x.db"))
        .await
        .expect("open");
    let mut lent = store.reader_for_tests().await;
    let conn = lent.parts().0;
    let cache: i64 = sqlx::query_scalar("PRAGMA cache_size")
        .fetch_one(&mut *conn)
        .await
        .expect("cache_size");
    let query_only: i64 = sqlx::query_scalar("PRAGMA query_only")
        .fetch_one(&mut *conn)
        .await
        .expect("query_only");
    assert_eq!(
        (cache, query_only),
        (-i64::from(crate::sqlite_connections::READER_CACHE_KIB), 1)
    );
    drop(lent);
    store.close().await;
}

/// A path whose parent is a regular file cannot hold a database, and the error says where.
#[tokio::test]
async fn sqlite_open_error_names_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a directory").expect("write");
    let config = StorageConfig::Sqlite {
        path: file.join("xmppd.db"),
    };
    let err = open(&config).await.expect_err("must fail");
    assert!(matches!(err, OpenError::CreateDir { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&file.display().to_string()), "{msg}");

    let config = StorageConfig::Sqlite {
        path: dir.path().to_path_buf(),
    };
    let err = open(&config).await.expect_err("a directory is no database");
    let msg = err.to_string();
    assert!(msg.starts_with("cannot open SQLite database at "), "{msg}");
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
}

/// A file that is not a database is refused with SQLite's reason.
#[tokio::test]
async fn sqlite_refuses_a_foreign_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, vec![b'x'; 8192]).expect("write");
    let err = open(&StorageConfig::Sqlite { path: path.clone() })
        .await
        .expect_err("must fail");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
}

/// Connection failures name the server but never the password.
#[tokio::test]
async fn postgres_open_error_hides_the_password() {
    let url = "postgres://xmppd:s3cret@127.0.0.1:1/xmppd".to_owned();
    let err = open(&StorageConfig::Postgres { url })
        .await
        .expect_err("port 1 is closed");
    let msg = err.to_string();
    assert!(msg.starts_with("cannot connect to PostgreSQL at postgres://xmppd:***@127.0.0.1:1/"));
    assert!(!msg.contains("s3cret"), "{msg}");

    let url = "mysql://nope".to_owned();
    let err = open(&StorageConfig::Postgres { url })
        .await
        .expect_err("not postgres");
    assert!(matches!(err, OpenError::PostgresUrl { .. }), "{err:?}");
}

/// Schema migrations are idempotent: opening an up-to-date PostgreSQL database again works.
#[tokio::test]
async fn postgres_reopen_keeps_data() {
    let Some(s) = postgres("postgres_reopen_keeps_data").await else {
        return;
    };
    let ns = unique_ns("reopen");
    s.keyval
        .put(&ns, "alice", "vcard", b"card")
        .await
        .expect("put");
    drop(s);
    let Some(s) = postgres("postgres_reopen_keeps_data").await else {
        return;
    };
    assert_eq!(
        s.keyval.get(&ns, "alice", "vcard").await.expect("get"),
        Some(b"card".to_vec())
    );
}

#[test]
fn ids_parse_only_in_canonical_form() {
    assert_eq!(parse_id("1"), Some(1));
    assert_eq!(parse_id("9223372036854775807"), Some(i64::MAX));
    for bad in [
        "",
        "0",
        "01",
        "-1",
        "+1",
        " 1",
        "1 ",
        "1e3",
        "9223372036854775808",
        "x",
    ] {
        assert_eq!(parse_id(bad), None, "{bad:?}");
    }
}

#[test]
fn urls_are_redacted() {
    assert_eq!(redact_url("postgres://u:p@h:5/d"), "postgres://u:***@h:5/d");
    assert_eq!(
        redact_url("postgres://u:p:q@h/d?x=@"),
        "postgres://u:***@h/d?x=@"
    );
    assert_eq!(redact_url("postgres://u@h/d"), "postgres://u@h/d");
    assert_eq!(redact_url("postgres://h/d"), "postgres://h/d");
    assert_eq!(
        redact_url("postgres:///d?host=/tmp"),
        "postgres:///d?host=/tmp"
    );
}

/// Two stores on one file (as the daemon and the admin CLI are) still share the quota: the
/// write lock taken by `BEGIN IMMEDIATE` serialises their check-and-insert, and the busy
/// timeout makes the loser wait instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_two_writers_share_the_quota() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = StorageConfig::Sqlite {
        path: dir.path().join("xmppd.db"),
    };
    let stores = [
        open(&config).await.expect("open"),
        open(&config).await.expect("open twice"),
    ];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let s = stores[i % 2].clone();
        tasks.spawn(async move {
            let r = NewArchiveRecord {
                with: String::new(),
                timestamp_us: 0,
                payload: vec![1],
            };
            s.archive.append("h", "alice", "offline", r, Some(15)).await
        });
    }
    let (mut stored, mut refused) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.expect("task") {
            Ok(_) => stored += 1,
            Err(xmppd_core::storage::StorageError::QuotaExceeded(_)) => refused += 1,
            Err(err) => panic!("append failed: {err}"),
        }
    }
    assert_eq!((stored, refused), (15, 25));
    assert_eq!(
        stores[1]
            .archive
            .count("h", "alice", "offline")
            .await
            .expect("count"),
        15
    );
}
