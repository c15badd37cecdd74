//! Checks of the Archive shape's running totals ([`ArchiveUsage`]) and of byte quotas: the
//! totals follow every path that adds or removes records, so a quota read from them is right.

use xmppd_core::storage::{
    ArchiveAppend, ArchiveQuota, ArchiveUsage, NewArchiveRecord, Storage, StorageError,
};

use super::{host, ok, rec};

fn usage(records: u64, bytes: u64) -> ArchiveUsage {
    ArchiveUsage { records, bytes }
}

fn bytes(max: u64) -> ArchiveQuota {
    ArchiveQuota {
        max_records: None,
        max_bytes: Some(max),
    }
}

/// A byte quota admits a record while the archive's payloads, the record's included, stay
/// within it, refuses it beyond (writing nothing), and counts per archive; a record
/// quota still applies beside it.
pub async fn archive_byte_quota(s: &Storage, ns: &str) {
    let h = host(ns);
    let a = &s.archive;
    let kib = vec![b'k'; 1024];
    for i in 0..3 {
        ok(
            a.append_within(&h, "alice", "offline", rec("", i, &kib), bytes(3 * 1024))
                .await,
            "append within the byte quota",
        );
    }
    match a
        .append_within(&h, "alice", "offline", rec("", 9, b"x"), bytes(3 * 1024))
        .await
    {
        Err(StorageError::QuotaExceeded(_)) => {}
        other => panic!("one byte over the quota: expected QuotaExceeded, got {other:?}"),
    }
    let big = vec![b'b'; 4096];
    match a
        .append_within(&h, "bob", "offline", rec("", 9, &big), bytes(4095))
        .await
    {
        Err(StorageError::QuotaExceeded(_)) => {}
        other => panic!("a record larger than the quota: expected QuotaExceeded, got {other:?}"),
    }
    let alice = ok(a.usage(&h, "alice", "offline").await, "usage");
    assert_eq!(alice, usage(3, 3 * 1024));
    assert_eq!(
        ok(a.usage(&h, "bob", "offline").await, "usage"),
        usage(0, 0)
    );
    // Both limits: the record count refuses first here.
    let both = ArchiveQuota {
        max_records: Some(3),
        max_bytes: Some(1 << 20),
    };
    assert!(matches!(
        a.append_within(&h, "alice", "offline", rec("", 9, b"x"), both)
            .await,
        Err(StorageError::QuotaExceeded(_))
    ));
    ok(
        a.append_within(&h, "alice", "mam", rec("", 1, &kib), bytes(1024))
            .await,
        "another store has its own total",
    );
}

/// The totals follow appends (one and batched), deletes, trims, retention, clearing and the
/// removal of the account.
pub async fn archive_usage_follows_every_write(s: &Storage, ns: &str) {
    let h = host(ns);
    // A store of its own: the expiry sweep below spans every host, and would take records
    // of other checks running at the same time (archive_quota_concurrent's, in "offline").
    let store = format!("usage-{ns}");
    let a = &s.archive;
    let mut ids = Vec::new();
    for (i, len) in [10usize, 20, 30, 40].into_iter().enumerate() {
        let record = rec("", i as i64, &vec![b'u'; len]);
        ids.push(ok(
            a.append(&h, "alice", &store, record, None).await,
            "append",
        ));
    }
    assert_eq!(
        ok(a.usage(&h, "alice", &store).await, "usage"),
        usage(4, 100)
    );
    ok(a.delete(&h, "alice", &store, &ids[..1]).await, "delete");
    assert_eq!(
        ok(a.usage(&h, "alice", &store).await, "usage"),
        usage(3, 90)
    );

    let batch = |payload: &[u8], keep_last, expire_before_us| ArchiveAppend {
        host: h.clone(),
        user: "alice".to_owned(),
        store: store.clone(),
        record: NewArchiveRecord {
            with: String::new(),
            timestamp_us: 100,
            payload: payload.to_vec(),
        },
        id: None,
        keep_last,
        expire_before_us,
        keep_bytes: None,
    };
    ok(
        a.append_batch(&[batch(&[b'v'; 5], None, None), batch(&[b'w'; 7], None, None)])
            .await,
        "append_batch",
    );
    assert_eq!(
        ok(a.usage(&h, "alice", &store).await, "usage"),
        usage(5, 102)
    );
    // Keeps the last 4: the 20- and 30-byte records go.
    ok(
        a.append_batch(&[batch(&[b'x'; 1], Some(4), None)]).await,
        "append_batch keep_last",
    );
    assert_eq!(
        ok(a.usage(&h, "alice", &store).await, "usage"),
        usage(4, 53)
    );
    // Retention: the record stamped 3 (40 bytes) goes; the batch's are stamped 100.
    ok(a.expire(&store, 50, 100).await, "expire");
    assert_eq!(
        ok(a.usage(&h, "alice", &store).await, "usage"),
        usage(3, 13)
    );
    ok(a.clear(&h, "alice", &store).await, "clear");
    assert_eq!(ok(a.usage(&h, "alice", &store).await, "usage"), usage(0, 0));
    ok(
        a.append(&h, "alice", &store, rec("", 1, b"again"), None)
            .await,
        "append after clear",
    );
    assert_eq!(ok(a.usage(&h, "alice", &store).await, "usage"), usage(1, 5));
    ok(s.users.delete_user(&h, "alice").await, "delete_user");
    assert_eq!(ok(a.usage(&h, "alice", &store).await, "usage"), usage(0, 0));
}

/// The payloads of alice's `mam` archive, oldest first.
async fn alices(s: &Storage, h: &str) -> Vec<Vec<u8>> {
    let all = xmppd_core::storage::ArchiveQuery::default();
    let records = ok(s.archive.query(h, "alice", "mam", &all).await, "query");
    records.into_iter().map(|r| r.payload).collect()
}

/// `keep_bytes` deletes the oldest records once the archive's payloads pass it, down to the
/// limit less a sixteenth, keeps the newest record even when it alone is larger, and leaves
/// other archives alone.
pub async fn archive_append_batch_keep_bytes(s: &Storage, ns: &str) {
    let h = host(ns);
    let a = &s.archive;
    let hundred = |i: u8| vec![b'0' + i; 100];
    for i in 0..9u8 {
        ok(
            a.append(&h, "alice", "mam", rec("", i64::from(i), &hundred(i)), None)
                .await,
            "append",
        );
    }
    ok(
        a.append(&h, "bob", "mam", rec("", 1, &[b'b'; 500]), None)
            .await,
        "append",
    );
    let append = |payload: Vec<u8>| ArchiveAppend {
        host: h.clone(),
        user: "alice".to_owned(),
        store: "mam".to_owned(),
        record: NewArchiveRecord {
            with: String::new(),
            timestamp_us: 100,
            payload,
        },
        id: None,
        keep_last: None,
        expire_before_us: None,
        keep_bytes: Some(1000),
    };
    // 1000 bytes: at the limit, nothing goes.
    ok(a.append_batch(&[append(hundred(9))]).await, "append_batch");
    assert_eq!(
        ok(a.usage(&h, "alice", "mam").await, "usage"),
        usage(10, 1000)
    );
    // 1100 bytes: down to at most 1000 - 62, so the two oldest go.
    ok(a.append_batch(&[append(hundred(10))]).await, "append_batch");
    assert_eq!(
        ok(a.usage(&h, "alice", "mam").await, "usage"),
        usage(9, 900)
    );
    let kept = alices(s, &h).await;
    let firsts: Vec<u8> = kept.iter().map(|p| p[0]).collect();
    assert_eq!(firsts, (2..=10).map(|i| b'0' + i).collect::<Vec<u8>>());
    // A record larger than the limit is kept, alone.
    ok(
        a.append_batch(&[append(vec![b'L'; 2000])]).await,
        "append_batch",
    );
    assert_eq!(
        ok(a.usage(&h, "alice", "mam").await, "usage"),
        usage(1, 2000)
    );
    let kept = alices(s, &h).await;
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0], vec![b'L'; 2000]);
    assert_eq!(
        ok(a.usage(&h, "bob", "mam").await, "usage"),
        usage(1, 500),
        "another archive is not trimmed"
    );
}

/// One batch over several archives trims each by its own running totals and limits, and a
/// byte limit counts what that archive's count limit left of it, not what it held before.
pub async fn archive_append_batch_trims_each_archive(s: &Storage, ns: &str) {
    let h = host(ns);
    let a = &s.archive;
    let hundred = vec![b'h'; 100];
    for (user, n) in [("alice", 5), ("bob", 2), ("dave", 4)] {
        for i in 0..n {
            ok(
                a.append(&h, user, "mam", rec("", i, &hundred), None).await,
                "append",
            );
        }
    }
    let append = |user: &str, keep_last: u64, keep_bytes: u64| ArchiveAppend {
        host: h.clone(),
        user: user.to_owned(),
        store: "mam".to_owned(),
        record: NewArchiveRecord {
            with: String::new(),
            timestamp_us: 100,
            payload: hundred.clone(),
        },
        id: None,
        keep_last: Some(keep_last),
        expire_before_us: None,
        keep_bytes: Some(keep_bytes),
    };
    let batch = [
        append("alice", 3, 1000),
        append("bob", 10, 250),
        append("carol", 1, 50),
        append("dave", 2, 250),
    ];
    ok(a.append_batch(&batch).await, "append_batch");
    let h = &h;
    let now = |user: &'static str| async move { ok(a.usage(h, user, "mam").await, user) };
    // 6 records: the count limit keeps 3, whose 300 bytes are within 1000.
    assert_eq!(now("alice").await, usage(3, 300));
    // 300 bytes over 250: down to 250 - 15, so the oldest goes.
    assert_eq!(now("bob").await, usage(2, 200));
    // A new archive's only record stays, larger than the limit.
    assert_eq!(now("carol").await, usage(1, 100));
    // 5 records: the count limit keeps 2, 200 bytes, within 250: nothing more goes.
    assert_eq!(now("dave").await, usage(2, 200));
}
