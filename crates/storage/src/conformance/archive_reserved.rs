//! Checks of reserved archive ids: a record named before its commit (a room's message goes
//! out with its stanza-id while the commit runs) takes the id reserved for it.

use xmppd_core::storage::{ArchiveAppend, ArchiveQuery, ROOM_ARCHIVE, Storage};

use super::{host, ok, rec};

/// One append of a batch to `user`'s archive `store` on `h`, with the reserved `id`.
fn with_id(h: &str, user: &str, store: &str, payload: &[u8], id: Option<&str>) -> ArchiveAppend {
    ArchiveAppend {
        host: h.to_owned(),
        user: user.to_owned(),
        store: store.to_owned(),
        record: rec("", 1, payload),
        id: id.map(str::to_owned),
        keep_last: None,
        expire_before_us: None,
        keep_bytes: None,
    }
}

fn numbers(ids: &[String]) -> Vec<u64> {
    ids.iter()
        .map(|id| {
            id.parse()
                .unwrap_or_else(|_| panic!("id not decimal: {id:?}"))
        })
        .collect()
}

/// Reserved ids grow, are never given to another record, and are the ids of the records
/// appended with them, in the shared table and in rooms', alone or in a mixed batch.
pub async fn archive_reserved_ids(s: &Storage, ns: &str) {
    let h = host(ns);
    assert!(ok(s.archive.reserve_ids(0).await, "reserve 0").is_empty());
    let reserved = ok(s.archive.reserve_ids(4).await, "reserve");
    let r = numbers(&reserved);
    assert_eq!(r.len(), 4);
    assert!(r.windows(2).all(|w| w[0] < w[1]), "{reserved:?}");

    // A record appended after the reservation gets an id above every reserved one.
    let plain = ok(
        s.archive
            .append_batch(&[with_id(&h, "alice", "mam", b"plain", None)])
            .await,
        "plain append",
    );
    assert!(numbers(&plain)[0] > r[3], "{plain:?} after {reserved:?}");

    // Rooms alone (one statement list on SQLite), then both tables in one batch.
    let rooms = [
        with_id(&h, "room", ROOM_ARCHIVE, b"m0", Some(&reserved[0])),
        with_id(&h, "room", ROOM_ARCHIVE, b"m1", Some(&reserved[1])),
    ];
    assert_eq!(
        ok(s.archive.append_batch(&rooms).await, "rooms"),
        reserved[..2]
    );
    let mixed = [
        with_id(&h, "alice", "mam", b"a1", Some(&reserved[2])),
        with_id(&h, "room", ROOM_ARCHIVE, b"m2", None),
        with_id(&h, "room", ROOM_ARCHIVE, b"m3", Some(&reserved[3])),
    ];
    let ids = ok(s.archive.append_batch(&mixed).await, "mixed");
    assert_eq!(ids[0], reserved[2]);
    assert_eq!(ids[2], reserved[3]);
    assert!(numbers(&ids)[1] > numbers(&plain)[0], "{ids:?}");

    let room = ok(
        s.archive
            .query(&h, "room", ROOM_ARCHIVE, &ArchiveQuery::default())
            .await,
        "query room",
    );
    let got: Vec<(&str, &[u8])> = room
        .iter()
        .map(|r| (r.id.as_str(), r.payload.as_slice()))
        .collect();
    let mut want = vec![
        (reserved[0].as_str(), &b"m0"[..]),
        (reserved[1].as_str(), &b"m1"[..]),
        (ids[1].as_str(), &b"m2"[..]),
        (reserved[3].as_str(), &b"m3"[..]),
    ];
    // Append order is id order: the record without a reserved id came after m3's id.
    want.sort();
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, want);
    let alice = ok(
        s.archive
            .query(&h, "alice", "mam", &ArchiveQuery::default())
            .await,
        "query alice",
    );
    let alice: Vec<&[u8]> = alice.iter().map(|r| r.payload.as_slice()).collect();
    assert_eq!(alice, [&b"a1"[..], b"plain"]);

    // The next reservation is above everything given out so far.
    let next = numbers(&ok(s.archive.reserve_ids(1).await, "reserve again"))[0];
    assert!(next > numbers(&ids)[1], "{next} after {ids:?}");

    // An id that is not one of ours is refused, and the batch stores nothing.
    let bad = [
        with_id(&h, "bob", "mam", b"b", None),
        with_id(&h, "bob", "mam", b"b", Some("x1")),
    ];
    assert!(s.archive.append_batch(&bad).await.is_err());
    assert_eq!(ok(s.archive.count(&h, "bob", "mam").await, "count bob"), 0);
}
