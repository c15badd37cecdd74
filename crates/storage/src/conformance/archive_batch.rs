//! Checks of the Archive shape's batch append and of the filters MAM paging needs (`ids`,
//! offsets, counting what matches).

use std::collections::BTreeSet;

use xmppd_core::storage::{ArchiveAppend, ArchiveQuery, NewArchiveRecord, Storage};

use super::{host, names, ok, other_host, payloads, rec, ten};

/// One append of a batch to `user`'s `mam` archive on `h`.
fn to(h: &str, user: &str, record: NewArchiveRecord) -> ArchiveAppend {
    ArchiveAppend {
        host: h.to_owned(),
        user: user.to_owned(),
        store: "mam".to_owned(),
        record,
        id: None,
        keep_last: None,
        expire_before_us: None,
        keep_bytes: None,
    }
}

/// `ids` selects exactly the records named, of this archive only; unknown, foreign and
/// malformed ids match nothing, and an empty list selects nothing.
pub async fn archive_query_ids(s: &Storage, ns: &str) {
    let h = host(ns);
    let ids = ten(s, &h).await;
    let foreign = ok(
        s.archive
            .append(&h, "bob", "mam", rec("", 1, b"b"), None)
            .await,
        "append",
    );
    let q = |ids: Vec<String>| ArchiveQuery {
        ids: Some(ids),
        ..ArchiveQuery::default()
    };
    let picked = vec![ids[7].clone(), ids[2].clone(), ids[4].clone()];
    assert_eq!(payloads(s, &h, q(picked)).await, names([2, 4, 7]));
    let mixed = vec![
        ids[1].clone(),
        foreign,
        "x1".into(),
        "0".into(),
        "999999999".into(),
    ];
    assert_eq!(payloads(s, &h, q(mixed)).await, names([1]));
    assert_eq!(payloads(s, &h, q(Vec::new())).await, names([]));
    // Combined with other filters (AND).
    let with_bob = ArchiveQuery {
        with: Some("bob@x".into()),
        ids: Some(ids[..4].to_vec()),
        ..ArchiveQuery::default()
    };
    assert_eq!(payloads(s, &h, with_bob).await, names([0, 2]));
}

/// `offset` skips matching records from the selected end, before `limit`.
pub async fn archive_query_offset(s: &Storage, ns: &str) {
    let h = host(ns);
    ten(s, &h).await;
    let q = |offset, limit, reverse| ArchiveQuery {
        offset: Some(offset),
        limit,
        reverse,
        ..ArchiveQuery::default()
    };
    assert_eq!(payloads(s, &h, q(3, Some(2), false)).await, names([3, 4]));
    assert_eq!(payloads(s, &h, q(8, None, false)).await, names([8, 9]));
    assert_eq!(payloads(s, &h, q(2, Some(3), true)).await, names([5, 6, 7]));
    assert_eq!(payloads(s, &h, q(10, Some(3), false)).await, names([]));
    let odd_from_second = ArchiveQuery {
        with: Some("carol@x".into()),
        offset: Some(1),
        limit: Some(2),
        ..ArchiveQuery::default()
    };
    assert_eq!(payloads(s, &h, odd_from_second).await, names([3, 5]));
}

/// `count_matching` counts what the filters select, ignoring limit, offset and direction.
pub async fn archive_count_matching(s: &Storage, ns: &str) {
    let h = host(ns);
    let ids = ten(s, &h).await;
    let count = |q: ArchiveQuery| {
        let h = h.clone();
        async move {
            ok(
                s.archive.count_matching(&h, "alice", "mam", &q).await,
                "count_matching",
            )
        }
    };
    assert_eq!(count(ArchiveQuery::default()).await, 10);
    let paged = ArchiveQuery {
        with: Some("bob@x".into()),
        after_id: Some(ids[1].clone()),
        limit: Some(1),
        offset: Some(1),
        reverse: true,
        ..ArchiveQuery::default()
    };
    assert_eq!(count(paged).await, 4);
    let window = ArchiveQuery {
        start_us: Some(1020),
        end_us: Some(1050),
        before_id: Some(ids[5].clone()),
        ..ArchiveQuery::default()
    };
    assert_eq!(count(window).await, 3);
    let unknown = ArchiveQuery {
        after_id: Some("nope".into()),
        ..ArchiveQuery::default()
    };
    assert_eq!(count(unknown).await, 0);
    let by_ids = ArchiveQuery {
        ids: Some(vec![ids[0].clone(), ids[9].clone(), "12x".into()]),
        ..ArchiveQuery::default()
    };
    assert_eq!(count(by_ids).await, 2);
    assert_eq!(
        ok(
            s.archive
                .count_matching(&other_host(ns), "alice", "mam", &ArchiveQuery::default())
                .await,
            "count_matching"
        ),
        0
    );
}

/// A batch lands in several archives at once; ids come back in batch order, increasing, and
/// each archive holds its records in batch order.
pub async fn archive_append_batch(s: &Storage, ns: &str) {
    let h = host(ns);
    assert!(ok(s.archive.append_batch(&[]).await, "empty batch").is_empty());
    let batch = vec![
        to(&h, "alice", rec("bob@x", 1, b"a1")),
        to(&h, "bob", rec("alice@x", 1, b"b1")),
        to(&h, "alice", rec("bob@x", 2, b"a2")),
        to(&other_host(ns), "alice", rec("", 3, b"o1")),
    ];
    let ids = ok(s.archive.append_batch(&batch).await, "append_batch");
    assert_eq!(ids.len(), 4);
    let numbers: Vec<u64> = ids.iter().filter_map(|id| id.parse().ok()).collect();
    assert_eq!(numbers.len(), 4, "ids not decimal: {ids:?}");
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    let alice = ok(
        s.archive
            .query(&h, "alice", "mam", &ArchiveQuery::default())
            .await,
        "query",
    );
    let got: Vec<(&str, &[u8])> = alice
        .iter()
        .map(|r| (r.id.as_str(), r.payload.as_slice()))
        .collect();
    assert_eq!(
        got,
        vec![(ids[0].as_str(), &b"a1"[..]), (ids[2].as_str(), &b"a2"[..])]
    );
    assert_eq!(ok(s.archive.count(&h, "bob", "mam").await, "count"), 1);
    assert_eq!(
        ok(
            s.archive.count(&other_host(ns), "alice", "mam").await,
            "count"
        ),
        1
    );
}

/// `keep_last` trims the oldest records beyond the limit, after the batch's inserts, and
/// only in the archive it names.
pub async fn archive_append_batch_keep_last(s: &Storage, ns: &str) {
    let h = host(ns);
    ten(s, &h).await;
    ok(
        s.archive
            .append(&h, "bob", "mam", rec("", 1, b"b"), None)
            .await,
        "append",
    );
    let mut a = to(&h, "alice", rec("", 2000, b"m10"));
    a.keep_last = Some(4);
    let mut b = to(&h, "alice", rec("", 2001, b"m11"));
    b.keep_last = Some(4);
    ok(s.archive.append_batch(&[a, b]).await, "append_batch");
    let all = payloads(s, &h, ArchiveQuery::default()).await;
    assert_eq!(all, names([8, 9, 10, 11]));
    assert_eq!(ok(s.archive.count(&h, "bob", "mam").await, "count"), 1);
    // At the boundary: one over the limit loses exactly the oldest; at the limit, nothing.
    let mut c = to(&h, "alice", rec("", 2002, b"m12"));
    c.keep_last = Some(4);
    ok(s.archive.append_batch(&[c]).await, "append_batch");
    let all = payloads(s, &h, ArchiveQuery::default()).await;
    assert_eq!(all, names([9, 10, 11, 12]));
    let mut d = to(&h, "alice", rec("", 2003, b"m13"));
    d.keep_last = Some(5);
    ok(s.archive.append_batch(&[d]).await, "append_batch");
    let all = payloads(s, &h, ArchiveQuery::default()).await;
    assert_eq!(all, names([9, 10, 11, 12, 13]));
}

/// `expire_before_us` removes the records older than the bound, as a prefix of the archive.
pub async fn archive_append_batch_expire(s: &Storage, ns: &str) {
    let h = host(ns);
    ten(s, &h).await;
    let mut a = to(&h, "alice", rec("", 5000, b"new"));
    a.expire_before_us = Some(1045);
    ok(s.archive.append_batch(&[a]).await, "append_batch");
    let mut expected = names([5, 6, 7, 8, 9]);
    expected.push("new".into());
    assert_eq!(payloads(s, &h, ArchiveQuery::default()).await, expected);
}

/// Concurrent batches to the same archives all land with distinct ids, in id order.
pub async fn archive_append_batch_concurrent(s: &Storage, ns: &str) {
    let h = host(ns);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20i64 {
        let (s, h) = (s.clone(), h.clone());
        tasks.spawn(async move {
            let batch = vec![
                to(&h, "alice", rec("", i, b"x")),
                to(&h, "bob", rec("", i, b"y")),
                to(&h, "alice", rec("", i, b"z")),
            ];
            s.archive.append_batch(&batch).await
        });
    }
    let mut ids = BTreeSet::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(batch)) => {
                for id in batch {
                    assert!(ids.insert(id.clone()), "id {id} handed out twice");
                }
            }
            Ok(Err(err)) => panic!("concurrent batch failed: {err}"),
            Err(err) => panic!("batch task failed: {err}"),
        }
    }
    assert_eq!(ids.len(), 60);
    for (user, n) in [("alice", 40), ("bob", 20)] {
        let all = ok(
            s.archive
                .query(&h, user, "mam", &ArchiveQuery::default())
                .await,
            "query",
        );
        let numbers: Vec<u64> = all.iter().filter_map(|r| r.id.parse().ok()).collect();
        assert_eq!(numbers.len(), n);
        assert!(numbers.windows(2).all(|w| w[0] < w[1]), "not in id order");
    }
}

/// `with_resources` widens a bare `with` to its full JIDs, and to nothing else (not a longer
/// domain or localpart sharing the prefix).
pub async fn archive_query_with_resources(s: &Storage, ns: &str) {
    let h = host(ns);
    for (i, with) in [
        "bob@x",
        "bob@x/phone",
        "bob@x.y",
        "bob@x0",
        "bob@x/laptop",
        "bobby@x/a",
        "",
    ]
    .into_iter()
    .enumerate()
    {
        let payload = format!("m{i}");
        ok(
            s.archive
                .append(&h, "alice", "mam", rec(with, 1, payload.as_bytes()), None)
                .await,
            "append",
        );
    }
    let q = |with: &str, with_resources| ArchiveQuery {
        with: Some(with.to_owned()),
        with_resources,
        ..ArchiveQuery::default()
    };
    assert_eq!(payloads(s, &h, q("bob@x", true)).await, names([0, 1, 4]));
    assert_eq!(payloads(s, &h, q("bob@x", false)).await, names([0]));
    assert_eq!(payloads(s, &h, q("bob@x/phone", false)).await, names([1]));
    let n = ok(
        s.archive
            .count_matching(&h, "alice", "mam", &q("bob@x", true))
            .await,
        "count_matching",
    );
    assert_eq!(n, 3);
}

/// `expire` removes the records of one store older than the bound across hosts and users,
/// at most `limit` per call, and nothing of other stores.
pub async fn archive_expire(s: &Storage, ns: &str) {
    let (h, o) = (host(ns), other_host(ns));
    // This check shares the store name with none other: the sweep spans every host.
    let store = format!("expire-{ns}");
    for (hh, user) in [(&h, "alice"), (&h, "bob"), (&o, "alice")] {
        for t in [10, 20, 30] {
            ok(
                s.archive
                    .append(hh, user, &store, rec("", t, b"x"), None)
                    .await,
                "append",
            );
        }
    }
    ok(
        s.archive
            .append(&h, "alice", "mam", rec("", 1, b"y"), None)
            .await,
        "append",
    );
    assert_eq!(ok(s.archive.expire(&store, 25, 4).await, "expire"), 4);
    assert_eq!(ok(s.archive.expire(&store, 25, 4).await, "expire"), 2);
    assert_eq!(ok(s.archive.expire(&store, 25, 4).await, "expire"), 0);
    for (hh, user) in [(&h, "alice"), (&h, "bob"), (&o, "alice")] {
        let left = ok(
            s.archive
                .query(hh, user, &store, &ArchiveQuery::default())
                .await,
            "query",
        );
        let times: Vec<i64> = left.iter().map(|r| r.timestamp_us).collect();
        assert_eq!(times, [30], "{hh} {user}");
    }
    assert_eq!(ok(s.archive.count(&h, "alice", "mam").await, "count"), 1);
}

/// Every store's size over all hosts and users, each store once, sorted.
pub async fn archive_count_by_store(s: &Storage, ns: &str) {
    let (h, o) = (host(ns), other_host(ns));
    // Store names of this check only: the count spans every host.
    let (first, second) = (format!("count-a-{ns}"), format!("count-b-{ns}"));
    for (hh, user, store, n) in [
        (&h, "alice", &first, 3),
        (&h, "bob", &first, 2),
        (&o, "alice", &first, 1),
        (&h, "alice", &second, 4),
    ] {
        for t in 0..n {
            ok(
                s.archive
                    .append(hh, user, store, rec("", t, b"x"), None)
                    .await,
                "append",
            );
        }
    }
    let counts = ok(s.archive.count_by_store().await, "count_by_store");
    let mine: Vec<(&str, u64)> = counts
        .iter()
        .filter(|(store, _)| store.ends_with(ns) && store.starts_with("count-"))
        .map(|(store, n)| (store.as_str(), *n))
        .collect();
    assert_eq!(mine, [(first.as_str(), 6), (second.as_str(), 4)]);
    let mut sorted = counts.clone();
    sorted.sort();
    assert_eq!(counts, sorted, "sorted by store");
}
