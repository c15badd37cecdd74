//! XEP-0227 Portable Import/Export: `xmppd import FILE` and `xmppd export FILE`, the accounts of
//! the configured hosts with their SCRAM credentials as stored (§3.2.1: no plaintext password
//! is ever needed or written), rosters, vCards, private XML, offline messages, PEP nodes with
//! their items (§pep, `pep.rs`) and message archives (§archive, `archive.rs`).
//!
//! An import is all-or-nothing per account: an account that already exists is left exactly as
//! it is, and a new one is written whole or not at all (its data first, its credentials last,
//! everything removed again if a write fails), so a failed or interrupted import never leaves
//! an account half made, nor changes one that was there.

mod account;
mod archive;
mod export;
mod pep;
mod read;

pub use account::{ImportedAccount, validate};
pub use export::export;
pub use read::{ReadLimits, UserElement, read_users};

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use xmppd_core::storage::{ArchiveQuota, Storage};
use xmppd_modules::MamSettings;
use xmppd_pep::PepSettings;

/// `urn:xmpp:pie:0`, the namespace of XEP-0227 documents.
pub const NS_PIE: &str = "urn:xmpp:pie:0";
/// `urn:xmpp:pie:0#scram`, SCRAM credentials of an account (XEP-0227 §2.2).
pub const NS_PIE_SCRAM: &str = "urn:xmpp:pie:0#scram";
/// `urn:xmpp:pie:0#mam`, an account's message archive (XEP-0227 §archive).
pub const NS_PIE_MAM: &str = "urn:xmpp:pie:0#mam";

/// The limits an import keeps to: the ones the server applies to the same data when clients
/// make it.
#[derive(Clone, Debug, Default)]
pub struct ImportSettings {
    /// Offline messages per account (`[im]`); past it the account is refused.
    pub offline_quota: ArchiveQuota,
    /// `[modules.pep]`: nodes, item sizes, the account's PEP bytes.
    pub pep: PepSettings,
    /// `[modules.mam]`: messages, bytes and days an archive keeps.
    pub mam: MamSettings,
}

impl ImportSettings {
    /// The limits of `config`: `[im]`'s offline quota and the `[modules.pep]` and
    /// `[modules.mam]` sections (their defaults when absent).
    pub fn from_config(config: &crate::Config) -> Result<Self, xmppd_core::ModuleError> {
        let im = &config.im;
        let offline_quota = ArchiveQuota {
            max_records: Some(im.max_offline_messages),
            max_bytes: (im.max_offline_bytes > 0).then_some(im.max_offline_bytes),
        };
        let mut settings = ImportSettings {
            offline_quota,
            ..ImportSettings::default()
        };
        if let (Some(path), Some(text)) = (&config.source, &config.text) {
            let source = xmppd_core::ConfigSource::new(path.clone(), text.clone());
            if let Some(pep) = source.section::<PepSettings>("pep")? {
                settings.pep = pep;
            }
            if let Some(mam) = source.section::<MamSettings>("mam")? {
                settings.mam = mam;
            }
        }
        Ok(settings)
    }
}

/// Why an import or export stopped.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a XEP-0227 document this server accepts.
    #[error("{path}:{line}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// Where.
        line: u64,
        /// What is wrong, and what to do.
        message: String,
    },
    /// The storage failed.
    #[error("storage: {0}")]
    Storage(String),
}

/// What happened to each account of an import.
#[derive(Debug, Default)]
pub struct ImportReport {
    /// Accounts created, `user@host`.
    pub imported: Vec<String>,
    /// Accounts that existed already and were left unchanged.
    pub existing: Vec<String>,
    /// Accounts not imported: `user@host` (or the line) and why.
    pub refused: Vec<(String, String)>,
    /// Parts of accounts this server does not import (privacy lists …), by name.
    pub skipped_parts: Vec<String>,
    /// Imported accounts with data left out: `user@host` and what (limits, options).
    pub notes: Vec<(String, String)>,
}

impl ImportReport {
    /// Adds another file's report to this one.
    pub fn merge(&mut self, other: ImportReport) {
        self.imported.extend(other.imported);
        self.existing.extend(other.existing);
        self.refused.extend(other.refused);
        self.notes.extend(other.notes);
        for part in other.skipped_parts {
            if !self.skipped_parts.contains(&part) {
                self.skipped_parts.push(part);
            }
        }
    }
}

/// Imports every account of `path` for the hosts in `hosts`; accounts of other hosts are
/// refused. Returns the report even when the file breaks off: what came before stands.
pub async fn import(
    path: &Path,
    storage: &Storage,
    hosts: &[String],
    settings: &ImportSettings,
) -> (ImportReport, Result<(), ImportError>) {
    // One account queued: with one being read and one being written, at most three are in
    // memory, each at most `ReadLimits::max_user_bytes` of the file.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<UserElement>(1);
    let reader_path = path.to_owned();
    // The file is read on a blocking thread, an account at a time, while the accounts read
    // are written here: the channel bounds what is held in between.
    let reading = tokio::task::spawn_blocking(move || {
        read_users(&reader_path, ReadLimits::default(), |user| {
            tx.blocking_send(user)
                .map_err(|_| ImportError::Storage("import stopped".into()))
        })
    });
    let mut report = ImportReport::default();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    while let Some(element) = rx.recv().await {
        let line = element.line;
        let named = element.user.attr("name").map_or_else(
            || format!("line {line}"),
            |n| format!("{n}@{}", element.host),
        );
        let account = match validate(element, hosts, settings) {
            Ok(account) => account,
            Err(why) => {
                report.refused.push((named, format!("line {line}: {why}")));
                continue;
            }
        };
        let who = account.jid.to_string();
        for part in &account.skipped {
            if !report.skipped_parts.contains(part) {
                report.skipped_parts.push(part.clone());
            }
        }
        let key = (account.host().to_owned(), account.user().to_owned());
        if !seen.insert(key) {
            report.refused.push((
                who,
                format!("line {line}: the account appears twice in the file; only the first was imported"),
            ));
            continue;
        }
        match account.write(storage, settings).await {
            Ok(true) => {
                for note in &account.notes {
                    report.notes.push((who.clone(), note.clone()));
                }
                report.imported.push(who);
            }
            Ok(false) => report.existing.push(who),
            Err(e) => report.refused.push((who, format!("line {line}: {e}"))),
        }
    }
    let read = match reading.await {
        Ok(result) => result,
        Err(e) => Err(ImportError::Storage(format!("the reader stopped: {e}"))),
    };
    (report, read)
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;

#[cfg(test)]
mod tests_pep_mam;
