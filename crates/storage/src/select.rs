//! The archive query, built once for both backends.
//!
//! Only constant SQL fragments are pushed; every caller-supplied value is a bind parameter.
//! [`QueryBuilder`] writes each backend's placeholder syntax (`?` or `$n`). Building the
//! statement from the bounds actually present (instead of one statement with
//! `(? IS NULL OR …)` guards) lets the planner pick the `with` or timestamp index.

use sqlx::{Database, Encode, QueryBuilder, Type};
use xmppd_core::storage::ArchiveQuery;

use crate::parse_id;

/// Builds the `SELECT` for [`ArchiveStore::query`](xmppd_core::storage::ArchiveStore::query),
/// or `None` when a paging id cannot match any record (the result is empty).
///
/// Rows come back in descending id order when `query.reverse` is set; the caller restores
/// append order.
pub(crate) fn archive_select<'a, DB>(
    host: &'a str,
    user: &'a str,
    store: &'a str,
    query: &'a ArchiveQuery,
) -> Option<QueryBuilder<DB>>
where
    DB: Database,
    <DB as Database>::Arguments: Default,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let after = match &query.after_id {
        Some(id) => Some(parse_id(id)?),
        None => None,
    };
    let before = match &query.before_id {
        Some(id) => Some(parse_id(id)?),
        None => None,
    };

    let mut qb = QueryBuilder::<DB>::new(
        "SELECT id, with_jid, timestamp_us, payload FROM archive WHERE host = ",
    );
    qb.push_bind(host);
    qb.push(" AND username = ");
    qb.push_bind(user);
    qb.push(" AND store = ");
    qb.push_bind(store);
    if let Some(with) = &query.with {
        qb.push(" AND with_jid = ");
        qb.push_bind(with.as_str());
    }
    if let Some(start) = query.start_us {
        qb.push(" AND timestamp_us >= ");
        qb.push_bind(start);
    }
    if let Some(end) = query.end_us {
        qb.push(" AND timestamp_us <= ");
        qb.push_bind(end);
    }
    for (id, cmp) in [(after, " AND id > "), (before, " AND id < ")] {
        let Some(id) = id else { continue };
        qb.push(cmp);
        qb.push_bind(id);
        // The paging id must name a record of this very archive; otherwise nothing matches.
        qb.push(" AND EXISTS (SELECT 1 FROM archive AS anchor WHERE anchor.id = ");
        qb.push_bind(id);
        qb.push(" AND anchor.host = ");
        qb.push_bind(host);
        qb.push(" AND anchor.username = ");
        qb.push_bind(user);
        qb.push(" AND anchor.store = ");
        qb.push_bind(store);
        qb.push(")");
    }
    qb.push(if query.reverse {
        " ORDER BY id DESC"
    } else {
        " ORDER BY id ASC"
    });
    if let Some(limit) = query.limit {
        qb.push(" LIMIT ");
        qb.push_bind(i64::from(limit));
    }
    Some(qb)
}
