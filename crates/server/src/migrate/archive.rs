//! XEP-0227 §archive: an account's XEP-0313 message archive, as `<result/>` elements in
//! `<archive xmlns='urn:xmpp:pie:0#mam'/>`, "in chronological order (from oldest to newest)".
//!
//! Each result becomes a record of the MAM module's archive (the store `mam`): the
//! forwarded `<message/>` as stored, its `<delay/>` stamp as the record's time, and the
//! other party (the `to` of a message the owner sent, else the `from`) as the record's
//! `with`, which is what the module itself records for outgoing and incoming messages.
//! `<stanza-id/>` elements claiming to be by the account are removed from the message, as
//! the module removes them from every incoming message (XEP-0359 §3 rule 2): the archive's
//! own id is given with each result, and a stale one would name another message here.
//!
//! **Archive ids are kept.** Each result's `id` is the id its owner's clients know the
//! message by: the last one they saw is where their next query pages from (XEP-0313 `after-id`,
//! RSM `<after/>`). The MAM module keeps it beside the record and answers queries with it
//! (`xmppd_modules::mam::keep_imported_ids`); an id listed twice, or longer than
//! [`xmppd_modules::mam::MAX_IMPORTED_ID`], is kept for its first record only and the others get ids of this
//! server, so that no id names two messages. The export writes the kept ids, so a second
//! import keeps them again.
//!
//! The module's limits hold as they would have on the old server's messages: messages older
//! than `retention_days` are left out, and past `max_messages` or `max_bytes` the oldest give
//! way (§3.2 lets a server discard old messages), each reported with a count. Records are
//! written in transactions of [`BATCH`] (one commit each), not one per message.

use std::time::{SystemTime, UNIX_EPOCH};

use super::ImportError;
use jid::{BareJid, Jid};
use xmppd_core::storage::{ArchiveAppend, ArchiveQuery, NewArchiveRecord, Storage};
use xmppd_modules::mam::{IdKeys, MamSettings, STORE, imported_id, keep_imported_ids};
use xmppd_proto::forwarded::Forwarded;
use xmppd_proto::mam::ArchivedResult;
use xmppd_proto::stanza::parse_stored;
use xmppd_proto::stanza_id::StanzaId;
use xmppd_proto::{delay::Delay, ns};

/// Records committed in one transaction.
pub const BATCH: usize = 500;

fn micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// One archived message of the file.
#[derive(Debug)]
pub struct Archived {
    /// Its id on the old server (may be empty).
    pub id: String,
    /// The record it becomes.
    pub record: NewArchiveRecord,
}

/// One serialised `<result/>` (the `n`-th, from 1) as a record of `owner`'s archive.
pub fn record(bytes: &[u8], owner: &BareJid, n: usize) -> Result<Archived, String> {
    let what = || format!("archived message {n}");
    let el = parse_stored(bytes).ok_or_else(|| format!("{}: unreadable", what()))?;
    // Exporters of the older XEP-0313 namespaces write the same shape.
    if el.name() != "result" || !el.ns().starts_with("urn:xmpp:mam:") {
        return Err(format!(
            "{}: <{} xmlns='{}'> in <archive/>; expected <result xmlns='urn:xmpp:mam:2'/>",
            what(),
            el.name(),
            el.ns()
        ));
    }
    let forwarded = el
        .child("forwarded", ns::FORWARD)
        .ok_or_else(|| format!("{}: a <result/> without <forwarded/>", what()))?;
    let Forwarded { delay, stanza } =
        Forwarded::try_from(forwarded).map_err(|e| format!("{}: {e}", what()))?;
    let stamp = delay
        .map(|d| d.stamp)
        .ok_or_else(|| format!("{}: no <delay/> stamp, so no time to file it under", what()))?;
    if stanza.name() != "message" {
        return Err(format!("{}: a <{}/>, not a message", what(), stanza.name()));
    }
    let mut message = stanza;
    message.rename_ns(ns::SERVER, ns::CLIENT);
    StanzaId::remove_by(&mut message, &Jid::from(owner.clone()));
    let from = message.attr("from").and_then(|f| Jid::new(f).ok());
    let outgoing = from.as_ref().is_none_or(|f| f.to_bare() == *owner);
    let with = if outgoing {
        message.attr("to")
    } else {
        message.attr("from")
    };
    let mut payload = Vec::new();
    message.write_to(&mut payload, ns::CLIENT);
    Ok(Archived {
        id: el.attr("id").unwrap_or_default().to_owned(),
        record: NewArchiveRecord {
            with: with.unwrap_or_default().to_owned(),
            timestamp_us: micros(stamp),
            payload,
        },
    })
}

/// Applies the module's limits to an account's records (oldest first): what is left, and
/// notes on what was left out.
pub fn within_limits(
    mut records: Vec<Archived>,
    settings: &MamSettings,
    notes: &mut Vec<String>,
) -> Vec<Archived> {
    // The file's order is the archive's order (§archive says oldest first); an exporter that
    // wrote another order has its records put in time order, so that queries by time and by
    // position agree.
    if !records.is_sorted_by_key(|r| r.record.timestamp_us) {
        records.sort_by_key(|r| r.record.timestamp_us);
    }
    if settings.retention_days > 0 {
        let before = micros(SystemTime::now())
            .saturating_sub(i64::from(settings.retention_days) * 86_400_000_000);
        let expired = records.partition_point(|r| r.record.timestamp_us < before);
        if expired > 0 {
            records.drain(..expired);
            notes.push(format!(
                "{expired} archived messages older than retention_days ({}) not kept",
                settings.retention_days
            ));
        }
    }
    let mut keep = records.len();
    if settings.max_messages > 0 {
        keep = keep.min(usize::try_from(settings.max_messages).unwrap_or(usize::MAX));
    }
    if settings.max_bytes > 0 {
        let mut bytes = 0u64;
        let fit = records
            .iter()
            .rev()
            .take_while(|r| {
                bytes += r.record.payload.len() as u64;
                bytes <= settings.max_bytes
            })
            .count();
        keep = keep.min(fit);
    }
    let dropped = records.len() - keep;
    if dropped > 0 {
        records.drain(..dropped);
        notes.push(format!(
            "{dropped} oldest archived messages past [modules.mam] max_messages ({}) or \
             max_bytes ({}) not kept",
            settings.max_messages, settings.max_bytes
        ));
    }
    records
}

/// Appends the records to the account's archive, [`BATCH`] per transaction, each batch's
/// old ids kept in one more.
pub async fn write(storage: &Storage, jid: &BareJid, records: &[Archived]) -> Result<(), String> {
    let host = jid.domain().as_str();
    let user = jid.node().map_or("", |n| n.as_str());
    for chunk in records.chunks(BATCH) {
        let batch: Vec<ArchiveAppend> = chunk
            .iter()
            .map(|archived| ArchiveAppend {
                host: host.to_owned(),
                user: user.to_owned(),
                store: STORE.to_owned(),
                record: archived.record.clone(),
                id: None,
                keep_last: None,
                keep_bytes: None,
                expire_before_us: None,
            })
            .collect();
        let ids = storage
            .archive
            .append_batch(&batch)
            .await
            .map_err(|e| format!("message archive: {e}"))?;
        let pairs: Vec<(String, String)> = chunk.iter().map(|a| a.id.clone()).zip(ids).collect();
        keep_imported_ids(&*storage.map, host, user, &pairs)
            .await
            .map_err(|e| format!("message archive ids: {e}"))?;
    }
    Ok(())
}

/// Writes the account's archive as the `<result/>` elements of §archive, oldest first, read
/// [`BATCH`] records at a time; `emit` gets each one serialised in `parent_ns`. Returns how
/// many there were. The ids are the ones clients of this server see (reading them creates the
/// host's id key if no message was ever given an id yet).
pub async fn export(
    storage: &Storage,
    jid: &BareJid,
    parent_ns: &str,
    mut emit: impl FnMut(&[u8]) -> Result<(), ImportError>,
) -> Result<usize, ImportError> {
    let host = jid.domain().as_str();
    let user = jid.node().map_or("", |n| n.as_str());
    let failed = |e: xmppd_core::storage::StorageError| {
        ImportError::Storage(format!("message archive of {jid}: {e}"))
    };
    let mut query = ArchiveQuery {
        limit: Some(BATCH as u32),
        ..ArchiveQuery::default()
    };
    let mut cipher = None;
    let mut written = 0;
    let kept = storage.map.count(host, user, STORE).await.map_err(failed)? > 0;
    loop {
        let page = storage
            .archive
            .query(host, user, STORE, &query)
            .await
            .map_err(failed)?;
        let Some(last) = page.last() else {
            return Ok(written);
        };
        query.after_id = Some(last.id.clone());
        let cipher = match &cipher {
            Some(c) => c,
            None => cipher.insert(
                IdKeys::new(storage.keyval.clone())
                    .cipher(host)
                    .await
                    .map_err(failed)?,
            ),
        };
        for record in &page {
            let Some(message) = parse_stored(&record.payload) else {
                continue;
            };
            let stamp = UNIX_EPOCH
                + std::time::Duration::from_micros(u64::try_from(record.timestamp_us).unwrap_or(0));
            let kept_id = match kept {
                true => imported_id(&*storage.map, host, user, &record.id)
                    .await
                    .map_err(failed)?,
                false => None,
            };
            let result = ArchivedResult {
                queryid: None,
                id: kept_id.unwrap_or_else(|| cipher.encode(&record.id)),
                forwarded: Forwarded::new(message).with_delay(Delay::new(stamp)),
            };
            let mut bytes = Vec::new();
            result.to_element().write_to(&mut bytes, parent_ns);
            emit(&bytes)?;
            written += 1;
        }
    }
}
