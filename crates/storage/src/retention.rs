//! The retention of a batched append, once for both backends: after the inserts, in the
//! batch's transaction, each archive of the shared table is trimmed once, by the limits of
//! its first append in the batch.

use sqlx::{Database, Encode, Executor, FromRow, IntoArguments, Type};
use xmppd_core::storage::{ArchiveAppend, StorageError};

use crate::select::{archive_byte_trim, archive_trims, usage_of, usage_select};

/// Records a statement removed, which each backend's result reports by a method of its own.
pub(crate) trait Removed {
    /// The number of rows the statement affected.
    fn removed(&self) -> u64;
}

impl Removed for sqlx::sqlite::SqliteQueryResult {
    fn removed(&self) -> u64 {
        self.rows_affected()
    }
}

impl Removed for sqlx::postgres::PgQueryResult {
    fn removed(&self) -> u64 {
        self.rows_affected()
    }
}

/// A row of [`usage_select`].
type UsageRow = (String, String, String, i64, i64);

/// Trims `archives` (each once, of the shared table) on `conn`, inside the caller's
/// transaction. Every delete removes a prefix of an archive (every id up to a bound), so no
/// hole is ever made. The running totals of all limited archives are read in one statement
/// and spare the walks to the bounds while the archives are within their limits; an
/// archive's bytes are read again only when its count or age trim removed records.
/// `failed` maps a backend error (the SQLite backend notes a crashed connection there).
pub(crate) async fn trim_shared<'a, DB>(
    conn: &mut DB::Connection,
    archives: &[&'a ArchiveAppend],
    failed: impl Fn(sqlx::Error) -> StorageError + Send + Sync,
) -> Result<(), StorageError>
where
    DB: Database,
    <DB as Database>::Arguments: Default + IntoArguments<DB>,
    DB::QueryResult: Removed,
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
    UsageRow: for<'r> FromRow<'r, DB::Row>,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let limited: Vec<&ArchiveAppend> = archives
        .iter()
        .copied()
        .filter(|a| a.keep_last.is_some() || a.keep_bytes.is_some())
        .collect();
    let rows: Vec<UsageRow> = match usage_select::<DB>(&limited) {
        Some(mut select) => select
            .build_query_as()
            .fetch_all(&mut *conn)
            .await
            .map_err(&failed)?,
        None => Vec::new(),
    };
    let usage = usage_of(archives, rows)?;
    for (&a, now) in archives.iter().zip(usage) {
        let mut removed = 0;
        for mut trim in archive_trims::<DB>(a, now.records) {
            removed += trim
                .build()
                .execute(&mut *conn)
                .await
                .map_err(&failed)?
                .removed();
        }
        if a.keep_bytes.is_none() {
            continue;
        }
        let bytes = if removed == 0 {
            now.bytes
        } else {
            let mut select = usage_select::<DB>(&[a])
                .ok_or_else(|| StorageError::Backend("archive.usage: no archive".into()))?;
            let rows: Vec<UsageRow> = select
                .build_query_as()
                .fetch_all(&mut *conn)
                .await
                .map_err(&failed)?;
            usage_of(&[a], rows)?.first().map_or(0, |u| u.bytes)
        };
        if let Some(mut trim) = archive_byte_trim::<DB>(a, bytes) {
            trim.build().execute(&mut *conn).await.map_err(&failed)?;
        }
    }
    Ok(())
}
