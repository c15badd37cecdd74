//! `[storage]`: the storage backend.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Validator};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStorage {
    backend: Spanned<String>,
    path: Option<PathBuf>,
    url: Option<Spanned<String>>,
}

/// Where data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageChoice {
    /// An SQLite file (relative paths are inside the data dir).
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

impl Validator<'_> {
    pub(super) fn storage(&self, raw: RawStorage) -> Result<StorageChoice, ConfigError> {
        match raw.backend.get_ref().as_str() {
            "sqlite" => Ok(StorageChoice::Sqlite(
                raw.path.unwrap_or_else(|| PathBuf::from("xmppd.db")),
            )),
            "postgres" | "postgresql" => match raw.url {
                Some(url) if url.get_ref().starts_with("postgres") => {
                    Ok(StorageChoice::Postgres(url.into_inner()))
                }
                Some(url) => Err(self.invalid(
                    url.span(),
                    "storage.url",
                    "expected postgres://user:pass@host/db",
                )),
                None => Err(self.invalid(
                    raw.backend.span(),
                    "storage.url",
                    "the postgres backend needs url = \"postgres://…\"",
                )),
            },
            other => Err(self.invalid(
                raw.backend.span(),
                "storage.backend",
                format!("unknown backend '{other}'; use \"sqlite\" or \"postgres\""),
            )),
        }
    }
}
