//! Checks of the Archive shape.

use std::collections::BTreeSet;

use xmppd_core::storage::{ArchiveQuery, ArchiveRecord, Storage, StorageError};

use super::{append, host, names, ok, other_host, payloads, rec, ten};

/// Appended records come back unchanged, in append order, with strictly increasing
/// decimal ids.
pub async fn archive_append_and_order(s: &Storage, ns: &str) {
    let h = host(ns);
    let input = [
        rec("bob@x", 5_000, b"first"),
        rec("", -7, b"second"),
        rec("carol@x", i64::MAX, b"third"),
        rec("bob@x", 0, b""),
    ];
    let mut ids = Vec::new();
    for r in &input {
        ids.push(append(s, &h, "alice", "mam", r.clone()).await);
    }
    let numbers: Vec<u64> = ids
        .iter()
        .map(|id| {
            id.parse()
                .unwrap_or_else(|_| panic!("id {id:?} is not decimal"))
        })
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "ids not increasing: {ids:?}"
    );
    let all = ok(
        s.archive
            .query(&h, "alice", "mam", &ArchiveQuery::default())
            .await,
        "query",
    );
    let expected: Vec<ArchiveRecord> = input
        .iter()
        .zip(&ids)
        .map(|(r, id)| ArchiveRecord {
            id: id.clone(),
            with: r.with.clone(),
            timestamp_us: r.timestamp_us,
            payload: r.payload.clone(),
        })
        .collect();
    assert_eq!(all, expected);
    assert_eq!(ok(s.archive.count(&h, "alice", "mam").await, "count"), 4);
    assert_eq!(
        ok(s.archive.count(&h, "alice", "offline").await, "count"),
        0
    );
}

/// Ids are unique across archives, and each archive sees only its own records.
pub async fn archive_ids_unique_across_archives(s: &Storage, ns: &str) {
    let (h, o) = (host(ns), other_host(ns));
    let mut ids = BTreeSet::new();
    for (hh, user, store) in [
        (&h, "alice", "mam"),
        (&h, "bob", "mam"),
        (&h, "alice", "offline"),
    ]
    .into_iter()
    .chain([(&o, "alice", "mam")])
    {
        for i in 0..3 {
            let id = append(s, hh, user, store, rec("", i, store.as_bytes())).await;
            assert!(ids.insert(id.clone()), "id {id} handed out twice");
        }
    }
    let q = ArchiveQuery::default();
    let bob = ok(s.archive.query(&h, "bob", "mam", &q).await, "query");
    assert_eq!(bob.len(), 3);
    let offline = ok(s.archive.query(&h, "alice", "offline", &q).await, "query");
    assert!(offline.iter().all(|r| r.payload == b"offline"));
    assert_eq!(ok(s.archive.count(&o, "alice", "mam").await, "count"), 3);
}

/// `with` selects the records exchanged with one party.
pub async fn archive_query_with(s: &Storage, ns: &str) {
    let h = host(ns);
    ten(s, &h).await;
    let q = |with: &str| ArchiveQuery {
        with: Some(with.to_owned()),
        ..ArchiveQuery::default()
    };
    assert_eq!(payloads(s, &h, q("bob@x")).await, names([0, 2, 4, 6, 8]));
    assert_eq!(payloads(s, &h, q("carol@x")).await, names([1, 3, 5, 7, 9]));
    assert!(payloads(s, &h, q("dave@x")).await.is_empty());
}

/// `start` and `end` are inclusive timestamp bounds.
pub async fn archive_query_time_range(s: &Storage, ns: &str) {
    let h = host(ns);
    ten(s, &h).await;
    let q = |start, end| ArchiveQuery {
        start_us: start,
        end_us: end,
        ..ArchiveQuery::default()
    };
    assert_eq!(payloads(s, &h, q(Some(1030), None)).await, names(3..10));
    assert_eq!(payloads(s, &h, q(None, Some(1030))).await, names(0..4));
    assert_eq!(
        payloads(s, &h, q(Some(1020), Some(1050))).await,
        names(2..6)
    );
    assert_eq!(payloads(s, &h, q(Some(1025), Some(1035))).await, names([3]));
    assert!(payloads(s, &h, q(Some(1091), None)).await.is_empty());
}

/// `after_id` and `before_id` are exclusive bounds in append order.
pub async fn archive_query_after_before(s: &Storage, ns: &str) {
    let h = host(ns);
    let ids = ten(s, &h).await;
    let q = |after: Option<usize>, before: Option<usize>| ArchiveQuery {
        after_id: after.map(|i| ids[i].clone()),
        before_id: before.map(|i| ids[i].clone()),
        ..ArchiveQuery::default()
    };
    assert_eq!(payloads(s, &h, q(Some(6), None)).await, names(7..10));
    assert_eq!(payloads(s, &h, q(None, Some(3))).await, names(0..3));
    assert_eq!(payloads(s, &h, q(Some(2), Some(6))).await, names(3..6));
    assert!(payloads(s, &h, q(Some(9), None)).await.is_empty());
    assert!(payloads(s, &h, q(Some(4), Some(5))).await.is_empty());
}

/// `limit` without `reverse` selects the first records.
pub async fn archive_query_limit(s: &Storage, ns: &str) {
    let h = host(ns);
    ten(s, &h).await;
    let q = |limit| ArchiveQuery {
        limit: Some(limit),
        ..ArchiveQuery::default()
    };
    assert_eq!(payloads(s, &h, q(3)).await, names(0..3));
    assert_eq!(payloads(s, &h, q(100)).await, names(0..10));
    assert!(payloads(s, &h, q(0)).await.is_empty());
}

/// `reverse` + `limit` selects the last records, returned in append order.
pub async fn archive_query_reverse_limit(s: &Storage, ns: &str) {
    let h = host(ns);
    ten(s, &h).await;
    let q = |limit| ArchiveQuery {
        limit,
        reverse: true,
        ..ArchiveQuery::default()
    };
    assert_eq!(payloads(s, &h, q(Some(3))).await, names(7..10));
    assert_eq!(payloads(s, &h, q(Some(100))).await, names(0..10));
    assert_eq!(payloads(s, &h, q(None)).await, names(0..10));
}

/// All bounds combine with AND, the way MAM pages backwards through a conversation.
pub async fn archive_query_combined(s: &Storage, ns: &str) {
    let h = host(ns);
    let ids = ten(s, &h).await;
    let page = ArchiveQuery {
        with: Some("bob@x".to_owned()),
        start_us: Some(1010),
        end_us: Some(1080),
        before_id: Some(ids[8].clone()),
        limit: Some(2),
        reverse: true,
        ..ArchiveQuery::default()
    };
    assert_eq!(payloads(s, &h, page).await, names([4, 6]));
    let page = ArchiveQuery {
        with: Some("carol@x".to_owned()),
        after_id: Some(ids[1].clone()),
        limit: Some(2),
        ..ArchiveQuery::default()
    };
    assert_eq!(payloads(s, &h, page).await, names([3, 5]));
}

/// A paging id that does not parse, or names no record of this archive, selects nothing.
pub async fn archive_query_unknown_ids(s: &Storage, ns: &str) {
    let h = host(ns);
    let ids = ten(s, &h).await;
    let foreign = append(s, &h, "bob", "mam", rec("", 1, b"bob's")).await;
    let gone = ids[5].clone();
    assert_eq!(
        ok(
            s.archive
                .delete(&h, "alice", "mam", std::slice::from_ref(&gone))
                .await,
            "delete"
        ),
        1
    );
    let last: u64 = foreign
        .parse()
        .unwrap_or_else(|_| panic!("id {foreign:?} not decimal"));
    let never = (last + 1_000_000).to_string();
    for bad in [
        "",
        "abc",
        "-1",
        "0",
        " 1",
        "1.0",
        "99999999999999999999999",
        &never,
        &foreign,
        &gone,
    ] {
        for (after, before) in [(Some(bad), None), (None, Some(bad))] {
            let q = ArchiveQuery {
                after_id: after.map(str::to_owned),
                before_id: before.map(str::to_owned),
                ..ArchiveQuery::default()
            };
            assert!(
                payloads(s, &h, q).await.is_empty(),
                "after={after:?} before={before:?} should select nothing"
            );
        }
    }
    assert_eq!(ok(s.archive.count(&h, "alice", "mam").await, "count"), 9);
}

/// `delete` removes the named records of this archive only; unknown ids are ignored.
pub async fn archive_delete(s: &Storage, ns: &str) {
    let h = host(ns);
    let ids = ten(s, &h).await;
    let foreign = append(s, &h, "bob", "mam", rec("", 1, b"bob's")).await;
    let victims = vec![
        ids[1].clone(),
        ids[4].clone(),
        ids[4].clone(),
        foreign.clone(),
        "nonsense".to_owned(),
    ];
    assert_eq!(
        ok(
            s.archive.delete(&h, "alice", "mam", &victims).await,
            "delete"
        ),
        2
    );
    assert_eq!(
        ok(
            s.archive.delete(&h, "alice", "mam", &[]).await,
            "delete none"
        ),
        0
    );
    assert_eq!(
        payloads(s, &h, ArchiveQuery::default()).await,
        names([0, 2, 3, 5, 6, 7, 8, 9])
    );
    assert_eq!(ok(s.archive.count(&h, "bob", "mam").await, "count"), 1);
    // A new record gets a fresh id, never a deleted one.
    let newest = append(s, &h, "alice", "mam", rec("", 1, b"new")).await;
    assert!(!ids.contains(&newest));
}

/// `clear` empties one archive and returns how many records it held.
pub async fn archive_clear(s: &Storage, ns: &str) {
    let h = host(ns);
    let ids = ten(s, &h).await;
    append(s, &h, "alice", "offline", rec("", 1, b"o")).await;
    assert_eq!(ok(s.archive.clear(&h, "alice", "mam").await, "clear"), 10);
    assert_eq!(ok(s.archive.count(&h, "alice", "mam").await, "count"), 0);
    assert_eq!(
        ok(s.archive.clear(&h, "alice", "mam").await, "clear again"),
        0
    );
    assert_eq!(
        ok(s.archive.count(&h, "alice", "offline").await, "count"),
        1
    );
    let newest = append(s, &h, "alice", "mam", rec("", 1, b"new")).await;
    let newest: u64 = newest
        .parse()
        .unwrap_or_else(|_| panic!("id {newest:?} not decimal"));
    let last: u64 = ids[9].parse().unwrap_or_else(|_| panic!("id not decimal"));
    assert!(newest > last, "ids must keep increasing after clear");
}

/// A full archive rejects appends with `QuotaExceeded` and writes nothing; the quota is per
/// archive.
pub async fn archive_quota(s: &Storage, ns: &str) {
    let h = host(ns);
    let a = &s.archive;
    for i in 0..3 {
        ok(
            a.append(&h, "alice", "offline", rec("", i, b"m"), Some(3))
                .await,
            "append",
        );
    }
    match a
        .append(&h, "alice", "offline", rec("", 9, b"over"), Some(3))
        .await
    {
        Err(StorageError::QuotaExceeded(_)) => {}
        other => panic!("4th append with quota 3: expected QuotaExceeded, got {other:?}"),
    }
    assert_eq!(ok(a.count(&h, "alice", "offline").await, "count"), 3);
    match a
        .append(&h, "bob", "offline", rec("", 9, b"zero"), Some(0))
        .await
    {
        Err(StorageError::QuotaExceeded(_)) => {}
        other => panic!("append with quota 0: expected QuotaExceeded, got {other:?}"),
    }
    // Other users and stores have their own count; a larger quota or none still admits.
    ok(
        a.append(&h, "bob", "offline", rec("", 1, b"m"), Some(3))
            .await,
        "other user",
    );
    ok(
        a.append(&h, "alice", "mam", rec("", 1, b"m"), Some(3))
            .await,
        "other store",
    );
    ok(
        a.append(&h, "alice", "offline", rec("", 1, b"m"), Some(4))
            .await,
        "larger quota",
    );
    ok(
        a.append(&h, "alice", "offline", rec("", 1, b"m"), None)
            .await,
        "no quota",
    );
    assert_eq!(ok(a.count(&h, "alice", "offline").await, "count"), 5);
    let q = ArchiveQuery::default();
    let held = ok(a.query(&h, "alice", "offline", &q).await, "query");
    assert!(held.iter().all(|r| r.payload != b"over"));
}

/// Runs concurrent reads first, so that a pooled backend has its connections open and the
/// appends that follow really overlap instead of queueing for a new connection.
async fn warm_up(s: &Storage, h: &str) {
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (s, h) = (s.clone(), h.to_owned());
        tasks.spawn(async move { s.archive.count(&h, "alice", "offline").await });
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(result) => {
                ok(result, "warm-up count");
            }
            Err(err) => panic!("warm-up task failed: {err}"),
        }
    }
}

/// Fifty concurrent appends against a quota of twenty: exactly twenty succeed.
pub async fn archive_quota_concurrent(s: &Storage, ns: &str) {
    let h = host(ns);
    warm_up(s, &h).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let (s, h) = (s.clone(), h.clone());
        tasks.spawn(async move {
            let r = rec("", i, format!("m{i}").as_bytes());
            s.archive.append(&h, "alice", "offline", r, Some(20)).await
        });
    }
    let (mut stored, mut refused) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(_)) => stored += 1,
            Ok(Err(StorageError::QuotaExceeded(_))) => refused += 1,
            Ok(Err(err)) => panic!("concurrent append failed: {err}"),
            Err(err) => panic!("append task failed: {err}"),
        }
    }
    assert_eq!((stored, refused), (20, 30));
    assert_eq!(
        ok(s.archive.count(&h, "alice", "offline").await, "count"),
        20
    );
}

/// Concurrent appends all land, with distinct ids, and a query returns them in id order.
pub async fn archive_concurrent_appends(s: &Storage, ns: &str) {
    let h = host(ns);
    warm_up(s, &h).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let (s, h) = (s.clone(), h.clone());
        tasks.spawn(async move {
            s.archive
                .append(&h, "alice", "mam", rec("", i, b"c"), None)
                .await
        });
    }
    let mut ids = BTreeSet::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(id)) => assert!(ids.insert(id.clone()), "id {id} handed out twice"),
            Ok(Err(err)) => panic!("concurrent append failed: {err}"),
            Err(err) => panic!("append task failed: {err}"),
        }
    }
    let all = ok(
        s.archive
            .query(&h, "alice", "mam", &ArchiveQuery::default())
            .await,
        "query",
    );
    let numbers: Vec<u64> = all.iter().filter_map(|r| r.id.parse().ok()).collect();
    assert_eq!(numbers.len(), 50);
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "query not in append order"
    );
    let returned: BTreeSet<String> = all.into_iter().map(|r| r.id).collect();
    assert_eq!(returned, ids);
}
