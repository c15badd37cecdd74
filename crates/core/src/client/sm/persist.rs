//! Resumable sessions survive a restart of the server.
//!
//! At shutdown every session that could be resumed — connected or waiting — is saved: its
//! SM-ID, full JID, counters, every stanza it sent or was about to send that the client did
//! not acknowledge, its presence and where it sent directed presence. Its contacts are not
//! told it went offline: for them nothing happened. At the next start the saved sessions are
//! bound again, with their presence, each waiting out what was left of its window; a client
//! that resumes gets everything it had not acknowledged, exactly once, as if the server had
//! never stopped. A session whose window passed while the server was down ends at start the
//! way it would have ended then (its messages go to offline storage).
//!
//! The items are host-wide (user "") in the `sm_sessions` Map store, keyed by SM-ID, so
//! sessions are saved concurrently without sharing a document, and each is deleted once it
//! was restored.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jid::{FullJid, Jid};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use xmppd_proto::{Stanza, ns};

use super::id::SmId;
use crate::outbound::Outbound;
use crate::router::{Router, client_bytes};
use crate::storage::StorageError;

/// The Map store of saved sessions.
pub const STORE: &str = "sm_sessions";

/// One saved session.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SavedSession {
    pub(crate) jid: String,
    pub(crate) window_secs: u64,
    /// Seconds since the Unix epoch when the window ends.
    pub(crate) expires_at: u64,
    pub(crate) handled: u32,
    pub(crate) acked: u32,
    /// Oldest first; stanzas that were never written come after those that were.
    pub(crate) unacked: Vec<SavedStanza>,
    /// Broadcast presence, when the session was available.
    pub(crate) presence: Option<SavedPresence>,
    pub(crate) directed: Vec<String>,
    /// The modules' state of the session, by module name.
    #[serde(default)]
    pub(crate) modules: std::collections::BTreeMap<String, serde_json::Value>,
}

/// A stanza in its `jabber:client` serialisation.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SavedStanza {
    pub(crate) xml: String,
    /// Whether it is routed again if the session ends without it acknowledged (replayed
    /// presence and direct answers are not).
    pub(crate) reroute: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SavedPresence {
    pub(crate) priority: i8,
    pub(crate) xml: String,
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl SavedStanza {
    pub(crate) fn from_outbound(outbound: &Outbound) -> Self {
        SavedStanza {
            xml: String::from_utf8_lossy(&outbound.bytes).into_owned(),
            reroute: outbound.reroute.is_some(),
        }
    }

    fn to_outbound(&self) -> Option<Outbound> {
        let stanza = parse_stanza(&self.xml)?;
        let bytes = client_bytes(&stanza);
        Some(Outbound {
            bytes,
            reroute: self.reroute.then(|| Arc::new(stanza)),
        })
    }
}

pub(crate) fn parse_stanza(xml: &str) -> Option<Stanza> {
    let el = xmppd_proto::stanza::parse_stored(xml.as_bytes())?;
    Stanza::parse(el, ns::CLIENT).ok()
}

/// A saved session read back, ready to be bound again.
pub(crate) struct Restored {
    pub(crate) id: SmId,
    pub(crate) jid: FullJid,
    pub(crate) window: Duration,
    pub(crate) remaining: Duration,
    pub(crate) handled: u32,
    pub(crate) acked: u32,
    pub(crate) unacked: VecDeque<Outbound>,
    pub(crate) presence: Option<(i8, Arc<Stanza>)>,
    pub(crate) directed: Vec<Jid>,
    pub(crate) modules: std::collections::BTreeMap<String, serde_json::Value>,
}

impl SavedSession {
    fn restore(self, id: &str) -> Option<Restored> {
        let jid = FullJid::new(&self.jid).ok()?;
        let presence = match self.presence {
            Some(p) => Some((p.priority, Arc::new(parse_stanza(&p.xml)?))),
            None => None,
        };
        let unacked = self
            .unacked
            .iter()
            .filter_map(SavedStanza::to_outbound)
            .collect();
        let directed = self
            .directed
            .iter()
            .filter_map(|j| Jid::new(j).ok())
            .collect();
        Some(Restored {
            id: SmId::parse(id)?,
            jid,
            window: Duration::from_secs(self.window_secs),
            remaining: Duration::from_secs(self.expires_at.saturating_sub(now_secs())),
            handled: self.handled,
            acked: self.acked,
            unacked,
            presence,
            directed,
            modules: self.modules,
        })
    }
}

/// Writes one session; the caller falls back to ending it when this fails.
pub(crate) async fn save(router: &Router, id: &str, saved: &SavedSession) -> bool {
    let Some(store) = router.stream_management().store() else {
        return false;
    };
    let Ok(host) = FullJid::new(&saved.jid).map(|j| j.domain().as_str().to_owned()) else {
        return false;
    };
    let bytes = match serde_json::to_vec(saved) {
        Ok(bytes) => bytes,
        Err(e) => {
            warn!(error = %e, "cannot serialise a resumable session");
            return false;
        }
    };
    match store.put(&host, "", STORE, id, &bytes).await {
        Ok(()) => true,
        Err(e) => {
            warn!(error = %e, "cannot save a resumable session");
            false
        }
    }
}

/// Binds again every session saved for `hosts` at the last shutdown; returns how many.
pub async fn restore_sessions(
    router: &Arc<Router>,
    hosts: &[String],
) -> Result<usize, StorageError> {
    let Some(store) = router.stream_management().store().cloned() else {
        return Ok(0);
    };
    let mut count = 0;
    for host in hosts {
        for (id, bytes) in store.list(host, "", STORE).await? {
            let restored = serde_json::from_slice::<SavedSession>(&bytes)
                .ok()
                .and_then(|saved| saved.restore(&id));
            match restored {
                Some(restored) => {
                    crate::client::ClientSession::restore(router, restored).await;
                    count += 1;
                }
                None => warn!(%id, "a saved resumable session cannot be read; dropped"),
            }
            store.delete(host, "", STORE, &id).await?;
        }
    }
    if count > 0 {
        info!(count, "resumable sessions restored");
    }
    Ok(count)
}
