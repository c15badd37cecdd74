//! The storage conformance suite: one check per behaviour of the shapes' contract.
//!
//! Every backend runs every check (see [`for_each_check!`](crate::for_each_check)), so a
//! behaviour the features rely on cannot silently differ between SQLite and PostgreSQL. A
//! check panics with a message naming the failed expectation.
//!
//! Each check takes the [`Storage`] under test and a namespace `ns`; it only touches hosts
//! named after `ns`, so checks can share one database (PostgreSQL) when each gets its own
//! namespace.

use xmppd_core::storage::{ArchiveQuery, NewArchiveRecord, Storage, StorageResult};

mod archive;
mod archive_batch;
mod archive_reserved;
mod archive_usage;
mod keyval_map;
mod map_usage;
mod users;

pub use archive::*;
pub use archive_batch::*;
pub use archive_reserved::*;
pub use archive_usage::*;
pub use keyval_map::*;
pub use map_usage::*;
pub use users::*;

/// Calls `$callback! { check, check, … }` with the name of every check in this module.
///
/// Test suites use it to instantiate one test per check, so a new check runs on every
/// backend without touching the suites.
#[macro_export]
macro_rules! for_each_check {
    ($callback:ident) => {
        $callback! {
            keyval_missing,
            keyval_put_get_replace,
            keyval_insert_new,
            keyval_put_many,
            keyval_delete,
            keyval_users,
            keyval_scoping,
            map_put_get_replace,
            map_delete,
            map_list_sorted_and_count,
            map_list_stores,
            map_clear,
            archive_append_and_order,
            archive_ids_unique_across_archives,
            archive_query_with,
            archive_query_time_range,
            archive_query_after_before,
            archive_query_limit,
            archive_query_reverse_limit,
            archive_query_combined,
            archive_query_unknown_ids,
            archive_delete,
            archive_clear,
            archive_quota,
            archive_quota_concurrent,
            archive_concurrent_appends,
            archive_query_ids,
            archive_query_offset,
            archive_count_matching,
            archive_append_batch,
            archive_append_batch_keep_last,
            archive_append_batch_expire,
            archive_append_batch_concurrent,
            archive_query_with_resources,
            archive_expire,
            archive_count_by_store,
            archive_reserved_ids,
            archive_byte_quota,
            archive_usage_follows_every_write,
            archive_append_batch_keep_bytes,
            archive_append_batch_trims_each_archive,
            map_usage_follows_every_write,
            map_byte_quota,
            map_byte_quota_concurrent,
            delete_user_wipes_all_shapes,
            binary_values,
            unicode_names,
        }
    };
}

/// Unwraps a storage result or panics naming the call.
fn ok<T>(result: StorageResult<T>, call: &str) -> T {
    match result {
        Ok(value) => value,
        Err(err) => panic!("{call} failed: {err}"),
    }
}

/// The main host of a check's namespace.
fn host(ns: &str) -> String {
    format!("{ns}.example")
}

/// A second host, to prove isolation between hosts.
fn other_host(ns: &str) -> String {
    format!("{ns}.example.net")
}

/// A record with payload `payload`.
fn rec(with: &str, timestamp_us: i64, payload: &[u8]) -> NewArchiveRecord {
    NewArchiveRecord {
        with: with.to_owned(),
        timestamp_us,
        payload: payload.to_vec(),
    }
}

/// Appends without quota and returns the id.
async fn append(s: &Storage, host: &str, user: &str, store: &str, r: NewArchiveRecord) -> String {
    ok(
        s.archive.append(host, user, store, r, None).await,
        "archive.append",
    )
}

/// Runs a query and returns the payloads (as strings) of the result.
async fn payloads(s: &Storage, host: &str, q: ArchiveQuery) -> Vec<String> {
    let records = ok(
        s.archive.query(host, "alice", "mam", &q).await,
        "archive.query",
    );
    records
        .into_iter()
        .map(|r| String::from_utf8_lossy(&r.payload).into_owned())
        .collect()
}

/// Appends ten records `m0`…`m9` to alice's `mam` archive: `with` alternates between
/// bob and carol, timestamps are 1000, 1010, … 1090. Returns the ids.
async fn ten(s: &Storage, host: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..10i64 {
        let with = if i % 2 == 0 { "bob@x" } else { "carol@x" };
        let payload = format!("m{i}");
        ids.push(
            append(
                s,
                host,
                "alice",
                "mam",
                rec(with, 1000 + 10 * i, payload.as_bytes()),
            )
            .await,
        );
    }
    ids
}

/// `m{i}` for each i.
fn names(range: impl IntoIterator<Item = usize>) -> Vec<String> {
    range.into_iter().map(|i| format!("m{i}")).collect()
}
