//! Checks of the Map shape's running totals ([`MapUsage`]) and of its byte quota
//! ([`MapStore::apply_within`](xmppd_core::storage::MapStore::apply_within)): the totals
//! follow every path that changes items, so a quota read from them is right.

use xmppd_core::storage::{MapChange, MapUsage, Storage, StorageError};

use super::{host, ok, other_host};

fn usage(items: u64, bytes: u64) -> MapUsage {
    MapUsage { items, bytes }
}

fn put<'a>(key: &'a str, value: &'a [u8]) -> MapChange<'a> {
    MapChange::Put { key, value }
}

/// The totals count keys (in UTF-8 bytes) and values, and follow puts, replacements,
/// deletes, batched changes, clearing and the removal of the account; other stores, users
/// and hosts have their own.
pub async fn map_usage_follows_every_write(s: &Storage, ns: &str) {
    let (h, o) = (host(ns), other_host(ns));
    let m = &s.map;
    assert_eq!(ok(m.usage(&h, "alice", "pep").await, "usage"), usage(0, 0));
    ok(m.put(&h, "alice", "pep", "k1", &[b'v'; 10]).await, "put");
    ok(m.put(&h, "alice", "pep", "é", &[b'v'; 20]).await, "put");
    assert_eq!(ok(m.usage(&h, "alice", "pep").await, "usage"), usage(2, 34));
    ok(m.put(&h, "alice", "pep", "k1", &[b'w'; 3]).await, "replace");
    assert_eq!(ok(m.usage(&h, "alice", "pep").await, "usage"), usage(2, 27));
    assert!(ok(m.delete(&h, "alice", "pep", "é").await, "delete"));
    assert!(!ok(m.delete(&h, "alice", "pep", "é").await, "delete again"));
    assert_eq!(ok(m.usage(&h, "alice", "pep").await, "usage"), usage(1, 5));
    let after = ok(
        m.apply_within(
            &h,
            "alice",
            "pep",
            &[
                put("k2", b"xx"),
                MapChange::Delete { key: "k1" },
                put("k3", b"yyy"),
                MapChange::Delete { key: "absent" },
            ],
            None,
        )
        .await,
        "apply_within",
    );
    assert_eq!(after, usage(2, 9));
    assert_eq!(ok(m.usage(&h, "alice", "pep").await, "usage"), usage(2, 9));
    for (hh, user, store) in [
        (&h, "alice", "other"),
        (&h, "bob", "pep"),
        (&o, "alice", "pep"),
    ] {
        ok(m.put(hh, user, store, "k", b"z").await, "put elsewhere");
        assert_eq!(ok(m.usage(hh, user, store).await, "usage"), usage(1, 2));
    }
    assert_eq!(ok(m.usage(&h, "alice", "pep").await, "usage"), usage(2, 9));
    assert_eq!(ok(m.clear(&h, "alice", "other").await, "clear"), 1);
    assert_eq!(
        ok(m.usage(&h, "alice", "other").await, "usage"),
        usage(0, 0)
    );
    ok(
        m.put(&h, "alice", "other", "k", b"again").await,
        "put after clear",
    );
    ok(s.users.delete_user(&h, "alice").await, "delete_user");
    for store in ["pep", "other"] {
        assert_eq!(ok(m.usage(&h, "alice", store).await, "usage"), usage(0, 0));
    }
    assert_eq!(ok(m.usage(&h, "bob", "pep").await, "usage"), usage(1, 2));
    assert_eq!(ok(m.usage(&o, "alice", "pep").await, "usage"), usage(1, 2));
    ok(
        m.put(&h, "alice", "pep", "k", b"new").await,
        "put after removal",
    );
    assert_eq!(ok(m.usage(&h, "alice", "pep").await, "usage"), usage(1, 4));
}

/// `apply_within` admits changes that keep the store within its byte quota, refuses (writing
/// nothing) those that pass it, counts a replacement as its new size less the old one and a
/// deletion in the same call as freed, and lets a store already over its quota shrink.
pub async fn map_byte_quota(s: &Storage, ns: &str) {
    let h = host(ns);
    let m = &s.map;
    let quota = Some(100);
    let v40 = [b'a'; 38]; // 40 bytes with a 2-byte key
    ok(
        m.apply_within(
            &h,
            "alice",
            "pep",
            &[put("k1", &v40), put("k2", &v40)],
            quota,
        )
        .await,
        "within the quota",
    );
    match m
        .apply_within(&h, "alice", "pep", &[put("k3", &v40)], quota)
        .await
    {
        Err(StorageError::QuotaExceeded(_)) => {}
        other => panic!("120 bytes of 100: expected QuotaExceeded, got {other:?}"),
    }
    // A refused call writes none of its changes, not even those before the one that passed.
    match m
        .apply_within(
            &h,
            "alice",
            "pep",
            &[MapChange::Delete { key: "k1" }, put("k3", &[b'b'; 98])],
            quota,
        )
        .await
    {
        Err(StorageError::QuotaExceeded(_)) => {}
        other => panic!("140 bytes of 100: expected QuotaExceeded, got {other:?}"),
    }
    assert_eq!(ok(m.usage(&h, "alice", "pep").await, "usage"), usage(2, 80));
    assert_eq!(
        ok(m.get(&h, "alice", "pep", "k1").await, "get"),
        Some(v40.to_vec())
    );
    assert_eq!(ok(m.get(&h, "alice", "pep", "k3").await, "get"), None);
    // Replacing counts the difference: 40 → 60 makes 100, at the quota.
    ok(
        m.apply_within(&h, "alice", "pep", &[put("k2", &[b'c'; 58])], quota)
            .await,
        "a replacement within the quota",
    );
    // A deletion in the same call frees its bytes first.
    let after = ok(
        m.apply_within(
            &h,
            "alice",
            "pep",
            &[put("k3", &[b'd'; 38]), MapChange::Delete { key: "k1" }],
            quota,
        )
        .await,
        "a put with a deletion",
    );
    assert_eq!(after, usage(2, 100));
    // Over a lowered quota: growing is refused, shrinking goes through.
    assert!(matches!(
        m.apply_within(&h, "alice", "pep", &[put("k4", b"")], Some(50))
            .await,
        Err(StorageError::QuotaExceeded(_))
    ));
    let after = ok(
        m.apply_within(&h, "alice", "pep", &[put("k3", &[b'e'; 8])], Some(50))
            .await,
        "shrinking over the quota",
    );
    assert_eq!(after, usage(2, 70));
    // Per user and per store.
    ok(
        m.apply_within(&h, "bob", "pep", &[put("k1", &[b'f'; 98])], quota)
            .await,
        "another user",
    );
    ok(
        m.apply_within(&h, "alice", "private", &[put("k1", &[b'f'; 98])], quota)
            .await,
        "another store",
    );
}

/// Concurrent calls cannot pass the quota together: of ten 100-byte puts against 500 bytes,
/// exactly five are stored.
pub async fn map_byte_quota_concurrent(s: &Storage, ns: &str) {
    let h = host(ns);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let (s, h) = (s.clone(), h.clone());
        tasks.spawn(async move {
            let key = format!("k{i}");
            s.map
                .apply_within(&h, "alice", "pep", &[put(&key, &[b'v'; 98])], Some(500))
                .await
        });
    }
    let (mut stored, mut refused) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(_)) => stored += 1,
            Ok(Err(StorageError::QuotaExceeded(_))) => refused += 1,
            Ok(Err(e)) => panic!("concurrent apply_within failed: {e}"),
            Err(e) => panic!("task failed: {e}"),
        }
    }
    assert_eq!((stored, refused), (5, 5));
    assert_eq!(
        ok(s.map.usage(&h, "alice", "pep").await, "usage"),
        usage(5, 500)
    );
    assert_eq!(ok(s.map.count(&h, "alice", "pep").await, "count"), 5);
}
