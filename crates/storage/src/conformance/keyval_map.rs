//! Checks of the KeyVal and Map shapes.

use xmppd_core::storage::{KeyValDoc, Storage};

use super::{host, ok, other_host};

/// Absent documents read as `None`; deleting one reports `false`.
pub async fn keyval_missing(s: &Storage, ns: &str) {
    let h = host(ns);
    assert_eq!(ok(s.keyval.get(&h, "alice", "vcard").await, "get"), None);
    assert!(!ok(s.keyval.delete(&h, "alice", "vcard").await, "delete"));
    assert!(ok(s.keyval.users(&h, "vcard").await, "users").is_empty());
}

/// `put` creates, then replaces.
pub async fn keyval_put_get_replace(s: &Storage, ns: &str) {
    let h = host(ns);
    ok(s.keyval.put(&h, "alice", "vcard", b"one").await, "put");
    assert_eq!(
        ok(s.keyval.get(&h, "alice", "vcard").await, "get"),
        Some(b"one".to_vec())
    );
    ok(s.keyval.put(&h, "alice", "vcard", b"two").await, "put");
    assert_eq!(
        ok(s.keyval.get(&h, "alice", "vcard").await, "get"),
        Some(b"two".to_vec())
    );
    ok(s.keyval.put(&h, "alice", "vcard", b"").await, "put empty");
    assert_eq!(
        ok(s.keyval.get(&h, "alice", "vcard").await, "get"),
        Some(Vec::new())
    );
}

/// `put_many` creates and replaces the documents of several users (of several hosts) in one
/// store, and touches no other store.
pub async fn keyval_put_many(s: &Storage, ns: &str) {
    let (h, o) = (host(ns), other_host(ns));
    ok(s.keyval.put(&h, "alice", "last", b"old").await, "put");
    ok(s.keyval.put(&h, "alice", "vcard", b"card").await, "put");
    let docs = [
        KeyValDoc {
            host: &h,
            user: "alice",
            value: b"new",
        },
        KeyValDoc {
            host: &h,
            user: "bob",
            value: b"bob's",
        },
        KeyValDoc {
            host: &o,
            user: "alice",
            value: b"elsewhere",
        },
    ];
    ok(s.keyval.put_many("last", &docs).await, "put_many");
    let get = |host: &str, user: &str, store: &str| {
        let (host, user, store) = (host.to_owned(), user.to_owned(), store.to_owned());
        async move { ok(s.keyval.get(&host, &user, &store).await, "get") }
    };
    assert_eq!(get(&h, "alice", "last").await, Some(b"new".to_vec()));
    assert_eq!(get(&h, "bob", "last").await, Some(b"bob's".to_vec()));
    assert_eq!(get(&o, "alice", "last").await, Some(b"elsewhere".to_vec()));
    assert_eq!(get(&h, "alice", "vcard").await, Some(b"card".to_vec()));
    ok(s.keyval.put_many("last", &[]).await, "put_many of nothing");
}

/// `insert_new` writes only when absent and never overwrites.
pub async fn keyval_insert_new(s: &Storage, ns: &str) {
    let h = host(ns);
    assert!(ok(
        s.keyval.insert_new(&h, "alice", "accounts", b"first").await,
        "insert_new"
    ));
    assert!(!ok(
        s.keyval
            .insert_new(&h, "alice", "accounts", b"second")
            .await,
        "insert_new"
    ));
    assert_eq!(
        ok(s.keyval.get(&h, "alice", "accounts").await, "get"),
        Some(b"first".to_vec())
    );
    ok(s.keyval.delete(&h, "alice", "accounts").await, "delete");
    assert!(ok(
        s.keyval.insert_new(&h, "alice", "accounts", b"third").await,
        "insert_new"
    ));
}

/// `delete` removes the document and reports whether there was one.
pub async fn keyval_delete(s: &Storage, ns: &str) {
    let h = host(ns);
    ok(s.keyval.put(&h, "alice", "vcard", b"v").await, "put");
    ok(s.keyval.put(&h, "alice", "private", b"p").await, "put");
    assert!(ok(s.keyval.delete(&h, "alice", "vcard").await, "delete"));
    assert_eq!(ok(s.keyval.get(&h, "alice", "vcard").await, "get"), None);
    assert!(!ok(
        s.keyval.delete(&h, "alice", "vcard").await,
        "delete again"
    ));
    assert_eq!(
        ok(s.keyval.get(&h, "alice", "private").await, "get"),
        Some(b"p".to_vec())
    );
}

/// `users` lists, sorted, the users of one host with a document in one store.
pub async fn keyval_users(s: &Storage, ns: &str) {
    let (h, o) = (host(ns), other_host(ns));
    for user in ["carol", "alice", "bob", ""] {
        ok(s.keyval.put(&h, user, "accounts", b"x").await, "put");
    }
    ok(s.keyval.put(&h, "dave", "vcard", b"x").await, "put");
    ok(s.keyval.put(&o, "eve", "accounts", b"x").await, "put");
    assert_eq!(
        ok(s.keyval.users(&h, "accounts").await, "users"),
        vec!["", "alice", "bob", "carol"]
    );
    assert_eq!(ok(s.keyval.users(&h, "vcard").await, "users"), vec!["dave"]);
    assert_eq!(
        ok(s.keyval.users(&o, "accounts").await, "users"),
        vec!["eve"]
    );
}

/// Documents differing in host, user or store are independent.
pub async fn keyval_scoping(s: &Storage, ns: &str) {
    let (h, o) = (host(ns), other_host(ns));
    ok(s.keyval.put(&h, "alice", "vcard", b"1").await, "put");
    ok(s.keyval.put(&h, "bob", "vcard", b"2").await, "put");
    ok(s.keyval.put(&h, "alice", "private", b"3").await, "put");
    ok(s.keyval.put(&o, "alice", "vcard", b"4").await, "put");
    assert_eq!(
        ok(s.keyval.get(&h, "alice", "vcard").await, "get"),
        Some(b"1".to_vec())
    );
    assert_eq!(
        ok(s.keyval.get(&h, "bob", "vcard").await, "get"),
        Some(b"2".to_vec())
    );
    assert_eq!(
        ok(s.keyval.get(&h, "alice", "private").await, "get"),
        Some(b"3".to_vec())
    );
    assert_eq!(
        ok(s.keyval.get(&o, "alice", "vcard").await, "get"),
        Some(b"4".to_vec())
    );
}

/// Map `put` creates and replaces one item; `get` of another key is `None`.
pub async fn map_put_get_replace(s: &Storage, ns: &str) {
    let h = host(ns);
    assert_eq!(
        ok(s.map.get(&h, "alice", "roster", "bob@x").await, "get"),
        None
    );
    ok(
        s.map.put(&h, "alice", "roster", "bob@x", b"one").await,
        "put",
    );
    ok(
        s.map.put(&h, "alice", "roster", "bob@x", b"two").await,
        "put",
    );
    assert_eq!(
        ok(s.map.get(&h, "alice", "roster", "bob@x").await, "get"),
        Some(b"two".to_vec())
    );
    assert_eq!(
        ok(s.map.get(&h, "alice", "roster", "carol@x").await, "get"),
        None
    );
    assert_eq!(
        ok(s.map.get(&h, "bob", "roster", "bob@x").await, "get"),
        None
    );
    assert_eq!(ok(s.map.count(&h, "alice", "roster").await, "count"), 1);
}

/// Map `delete` removes one item and reports whether it existed.
pub async fn map_delete(s: &Storage, ns: &str) {
    let h = host(ns);
    ok(s.map.put(&h, "alice", "roster", "bob@x", b"b").await, "put");
    ok(
        s.map.put(&h, "alice", "roster", "carol@x", b"c").await,
        "put",
    );
    assert!(ok(
        s.map.delete(&h, "alice", "roster", "bob@x").await,
        "delete"
    ));
    assert!(!ok(
        s.map.delete(&h, "alice", "roster", "bob@x").await,
        "delete again"
    ));
    assert_eq!(
        ok(s.map.get(&h, "alice", "roster", "bob@x").await, "get"),
        None
    );
    assert_eq!(
        ok(s.map.list(&h, "alice", "roster").await, "list"),
        vec![("carol@x".to_owned(), b"c".to_vec())]
    );
}

/// `list` returns the items of one store sorted by key; `count` counts them.
pub async fn map_list_sorted_and_count(s: &Storage, ns: &str) {
    let h = host(ns);
    for key in ["m", "b", "Z", "a", "aa", "10", "9"] {
        ok(
            s.map.put(&h, "alice", "roster", key, key.as_bytes()).await,
            "put",
        );
    }
    ok(s.map.put(&h, "alice", "other", "x", b"x").await, "put");
    ok(s.map.put(&h, "bob", "roster", "y", b"y").await, "put");
    let list = ok(s.map.list(&h, "alice", "roster").await, "list");
    let keys: Vec<&str> = list.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["10", "9", "Z", "a", "aa", "b", "m"]);
    assert!(list.iter().all(|(k, v)| k.as_bytes() == v.as_slice()));
    assert_eq!(ok(s.map.count(&h, "alice", "roster").await, "count"), 7);
    assert_eq!(ok(s.map.count(&h, "alice", "none").await, "count"), 0);
    assert!(ok(s.map.list(&h, "alice", "none").await, "list").is_empty());
}

/// `list_stores` gives each named store's items as `list` would, in the order asked, one
/// user's only; an unknown store gives an empty list.
pub async fn map_list_stores(s: &Storage, ns: &str) {
    let h = host(ns);
    for (store, key) in [
        ("roster", "b"),
        ("roster", "a"),
        ("pending", "z"),
        ("other", "x"),
    ] {
        ok(
            s.map.put(&h, "alice", store, key, key.as_bytes()).await,
            "put",
        );
    }
    ok(s.map.put(&h, "bob", "roster", "y", b"y").await, "put");
    let lists = ok(
        s.map
            .list_stores(&h, "alice", &["pending", "roster", "none"])
            .await,
        "list_stores",
    );
    assert_eq!(
        lists,
        vec![
            ok(s.map.list(&h, "alice", "pending").await, "list"),
            ok(s.map.list(&h, "alice", "roster").await, "list"),
            Vec::new(),
        ]
    );
    assert_eq!(
        lists[1],
        vec![
            ("a".to_owned(), b"a".to_vec()),
            ("b".to_owned(), b"b".to_vec())
        ]
    );
    assert!(ok(s.map.list_stores(&h, "alice", &[]).await, "list_stores").is_empty());
    let twice = ok(
        s.map.list_stores(&h, "alice", &["roster", "roster"]).await,
        "list_stores",
    );
    assert_eq!(twice, vec![lists[1].clone(), lists[1].clone()]);
}

/// `clear` deletes every item of one store only and returns how many.
pub async fn map_clear(s: &Storage, ns: &str) {
    let (h, o) = (host(ns), other_host(ns));
    for key in ["a", "b", "c"] {
        ok(s.map.put(&h, "alice", "roster", key, b"v").await, "put");
    }
    ok(s.map.put(&h, "alice", "bookmarks", "a", b"v").await, "put");
    ok(s.map.put(&h, "bob", "roster", "a", b"v").await, "put");
    ok(s.map.put(&o, "alice", "roster", "a", b"v").await, "put");
    assert_eq!(ok(s.map.clear(&h, "alice", "roster").await, "clear"), 3);
    assert_eq!(ok(s.map.count(&h, "alice", "roster").await, "count"), 0);
    assert_eq!(
        ok(s.map.clear(&h, "alice", "roster").await, "clear again"),
        0
    );
    assert_eq!(ok(s.map.count(&h, "alice", "bookmarks").await, "count"), 1);
    assert_eq!(ok(s.map.count(&h, "bob", "roster").await, "count"), 1);
    assert_eq!(ok(s.map.count(&o, "alice", "roster").await, "count"), 1);
}
