//! Checks across shapes: whole-user deletion, binary values, Unicode names.

use xmppd_core::storage::{ArchiveQuery, Storage};

use super::{append, host, ok, other_host, rec};

/// `delete_user` removes every document, item and record of one user, and nothing of
/// other users or of the same user on another host.
pub async fn delete_user_wipes_all_shapes(s: &Storage, ns: &str) {
    let (h, o) = (host(ns), other_host(ns));
    for (hh, user) in [(&h, "alice"), (&h, "bob"), (&o, "alice")] {
        for store in ["one", "two"] {
            ok(s.keyval.put(hh, user, store, b"d").await, "put");
            ok(s.map.put(hh, user, store, "k1", b"i").await, "map put");
            ok(s.map.put(hh, user, store, "k2", b"i").await, "map put");
            append(s, hh, user, store, rec("", 1, b"r")).await;
        }
    }
    ok(s.users.delete_user(&h, "alice").await, "delete_user");
    for store in ["one", "two"] {
        assert_eq!(ok(s.keyval.get(&h, "alice", store).await, "get"), None);
        assert_eq!(ok(s.map.count(&h, "alice", store).await, "count"), 0);
        assert_eq!(ok(s.archive.count(&h, "alice", store).await, "count"), 0);
        for (hh, user) in [(&h, "bob"), (&o, "alice")] {
            assert!(ok(s.keyval.get(hh, user, store).await, "get").is_some());
            assert_eq!(ok(s.map.count(hh, user, store).await, "count"), 2);
            assert_eq!(ok(s.archive.count(hh, user, store).await, "count"), 1);
        }
    }
    assert_eq!(ok(s.keyval.users(&h, "one").await, "users"), vec!["bob"]);
    ok(
        s.users.delete_user(&h, "nobody").await,
        "delete_user of nobody",
    );
}

/// Values and payloads are opaque bytes: every byte value survives, as does emptiness.
pub async fn binary_values(s: &Storage, ns: &str) {
    let h = host(ns);
    let all: Vec<u8> = (0..=255u8).collect();
    let reversed: Vec<u8> = all.iter().rev().copied().collect();
    ok(s.keyval.put(&h, "alice", "blob", &all).await, "put");
    assert_eq!(
        ok(s.keyval.get(&h, "alice", "blob").await, "get"),
        Some(all.clone())
    );
    ok(s.map.put(&h, "alice", "blob", "fwd", &all).await, "map put");
    ok(
        s.map.put(&h, "alice", "blob", "rev", &reversed).await,
        "map put",
    );
    ok(
        s.map.put(&h, "alice", "blob", "empty", b"").await,
        "map put",
    );
    assert_eq!(
        ok(s.map.list(&h, "alice", "blob").await, "list"),
        vec![
            ("empty".to_owned(), Vec::new()),
            ("fwd".to_owned(), all.clone()),
            ("rev".to_owned(), reversed.clone()),
        ]
    );
    for payload in [&all, &reversed] {
        append(s, &h, "alice", "blob", rec("", 1, payload)).await;
    }
    let records = ok(
        s.archive
            .query(&h, "alice", "blob", &ArchiveQuery::default())
            .await,
        "q",
    );
    let got: Vec<Vec<u8>> = records.into_iter().map(|r| r.payload).collect();
    assert_eq!(got, vec![all, reversed]);
}

/// Hosts, users, stores, keys and `with` are Unicode strings; keys sort by code point.
pub async fn unicode_names(s: &Storage, ns: &str) {
    let h = format!("{ns}.例え.テスト");
    let user = "джон.доу";
    let store = "störe-🗄";
    ok(s.keyval.put(&h, user, store, "ü".as_bytes()).await, "put");
    assert_eq!(
        ok(s.keyval.get(&h, user, store).await, "get"),
        Some("ü".as_bytes().to_vec())
    );
    assert_eq!(ok(s.keyval.users(&h, store).await, "users"), vec![user]);
    // Code point order: ASCII < Latin-1 < CJK < astral (also UTF-8 byte order).
    let keys = ["😀", "中", "é", "z", "a", "e\u{301}"];
    for key in keys {
        ok(
            s.map.put(&h, user, store, key, key.as_bytes()).await,
            "map put",
        );
    }
    let listed: Vec<String> = ok(s.map.list(&h, user, store).await, "list")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(listed, ["a", "e\u{301}", "z", "é", "中", "😀"]);
    assert_eq!(
        ok(s.map.get(&h, user, store, "é").await, "get"),
        Some("é".as_bytes().to_vec())
    );
    assert_eq!(
        ok(s.map.get(&h, user, store, "e\u{301}").await, "get"),
        Some("e\u{301}".as_bytes().to_vec())
    );
    let with = "ромео@монтекки.example";
    append(s, &h, user, store, rec(with, 1, b"x")).await;
    let q = ArchiveQuery {
        with: Some(with.to_owned()),
        ..ArchiveQuery::default()
    };
    let found = ok(s.archive.query(&h, user, store, &q).await, "query");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].with, with);
    ok(s.users.delete_user(&h, user).await, "delete_user");
    assert_eq!(ok(s.map.count(&h, user, store).await, "count"), 0);
}
