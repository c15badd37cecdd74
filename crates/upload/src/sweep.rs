//! The periodic sweep: files past `expire_days`, files whose record is gone (the account was
//! removed) and unfinished uploads a crash left behind are deleted, at most `sweep_batch`
//! files per round. A cursor walks the ids in order across rounds, so every file is looked
//! at within (files / batch) rounds and no round holds more than a batch of names.

use std::sync::Weak;
use std::time::Duration;

use jid::BareJid;
use tracing::{debug, warn};

use crate::{Uploads, now_secs, parts};

/// Starts the sweep; it ends when the module is dropped.
pub(crate) fn spawn(uploads: Weak<Uploads>) {
    let Some(interval) = uploads
        .upgrade()
        .map(|u| Duration::from_secs(u.settings.get().sweep_interval_secs))
    else {
        return;
    };
    tokio::spawn(async move {
        let mut cursor = String::new();
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(uploads) = uploads.upgrade() else {
                return;
            };
            match uploads.sweep_round(&cursor, now_secs()).await {
                Ok(next) => cursor = next,
                Err(e) => warn!(error = %e, "upload sweep failed"),
            }
        }
    });
}

impl Uploads {
    /// One round from `cursor`: returns where the next round starts (empty: from the
    /// beginning again).
    pub async fn sweep_round(&self, cursor: &str, now: u64) -> Result<String, String> {
        let batch = self.settings.get().sweep_batch;
        let ids = self
            .files
            .ids_after(cursor, batch)
            .await
            .map_err(|e| e.to_string())?;
        let mut removed = 0usize;
        for id in &ids {
            if !self.keeps(id, now).await? {
                self.files.remove(id).await.map_err(|e| e.to_string())?;
                removed += 1;
            }
        }
        // An upload in progress is younger than its slot; twice that (and an hour) is safe.
        let age = Duration::from_secs(self.settings.get().slot_ttl_secs.saturating_mul(2) + 3600);
        let stale = self
            .files
            .clean_tmp(age, batch)
            .await
            .map_err(|e| e.to_string())?;
        if removed > 0 || stale > 0 {
            debug!(removed, stale, "upload sweep");
        }
        Ok(if ids.len() < batch {
            String::new()
        } else {
            ids.last().cloned().unwrap_or_default()
        })
    }

    /// Whether file `id` stays; an expired one loses its record too.
    async fn keeps(&self, id: &str, now: u64) -> Result<bool, String> {
        let Some((meta, _)) = self.files.find(id).await.map_err(|e| e.to_string())? else {
            return Ok(false);
        };
        let Ok(owner) = BareJid::new(&format!("{}@{}", meta.user, meta.host)) else {
            return Ok(false);
        };
        if self.expired(meta.created, now) {
            let (host, user) = parts(&owner);
            self.storage
                .map
                .delete(host, user, crate::STORE, id)
                .await
                .map_err(|e| e.to_string())?;
            return Ok(false);
        }
        Ok(self
            .record(&owner, id)
            .await
            .map_err(|e| e.to_string())?
            .is_some())
    }
}
