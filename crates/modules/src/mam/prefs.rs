//! XEP-0441 preferences: stored per user, answered and changed by iq, applied to each message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use async_trait::async_trait;
use jid::{BareJid, Jid};
use tracing::warn;
use xmppd_core::storage::{KeyVal, Storage, StorageError, StorageResult};
use xmppd_core::{IqHandler, IqRequest, IqType, Live};
use xmppd_im::RosterStore;
use xmppd_proto::mam::{DefaultPolicy, Prefs};
use xmppd_proto::{DefinedCondition, StanzaError};
use xmppd_xml::Element;

use super::{Inner, PREFS_STORE, owner};

/// Most JIDs in the `always` and `never` lists together: each message checks them.
const MAX_JIDS: usize = 1000;

/// The stored form (JSON).
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored {
    default: String,
    #[serde(default)]
    always: Vec<String>,
    #[serde(default)]
    never: Vec<String>,
}

fn corrupt(e: impl std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("archive preferences: {e}"))
}

fn encode(prefs: &Prefs) -> StorageResult<Vec<u8>> {
    let jids = |l: &[Jid]| l.iter().map(|j| j.as_str().to_owned()).collect();
    serde_json::to_vec(&Stored {
        default: prefs.default.as_str().to_owned(),
        always: jids(&prefs.always),
        never: jids(&prefs.never),
    })
    .map_err(corrupt)
}

fn decode(bytes: &[u8]) -> StorageResult<Prefs> {
    let s: Stored = serde_json::from_slice(bytes).map_err(corrupt)?;
    let jids = |l: Vec<String>| -> StorageResult<Vec<Jid>> {
        l.iter().map(|j| Jid::new(j).map_err(corrupt)).collect()
    };
    Ok(Prefs {
        default: DefaultPolicy::from_name(&s.default)
            .ok_or_else(|| corrupt(format!("default '{}'", s.default)))?,
        always: jids(s.always)?,
        never: jids(s.never)?,
    })
}

/// Whether `target` matches the listed JID `listed` (XEP-0441 §3.1: a full JID as is, a bare
/// JID against the target's bare JID).
fn matches(listed: &Jid, target: &Jid) -> bool {
    if listed.resource().is_some() {
        listed == target
    } else {
        listed.node() == target.node() && listed.domain() == target.domain()
    }
}

/// How long a user's preferences are trusted from memory. Every archived message asks for
/// them twice (sender and recipient): read from storage each time, that was two database
/// reads per message. A change made on this node replaces the entry at once; one made
/// through another node (a cluster sharing the database) is seen within this time.
const CACHE_TTL: Duration = Duration::from_secs(60);

/// Cached preferences, at most; beyond it the cache starts again empty.
const CACHE_MAX: usize = 100_000;

/// The preferences of every user, with the server's default for those who set none.
pub(crate) struct PrefsStore {
    keyval: Arc<dyn KeyVal>,
    roster: RosterStore,
    /// The server's default, replaced by a reload.
    default: Live<DefaultPolicy>,
    cache: DashMap<BareJid, (Instant, Arc<Prefs>), xmppd_core::FastHasher>,
}

impl PrefsStore {
    pub(crate) fn new(storage: &Storage, default: DefaultPolicy) -> Self {
        PrefsStore {
            keyval: storage.keyval.clone(),
            roster: RosterStore::new(storage.map.clone(), storage.keyval.clone()),
            default: Live::new(default),
            cache: DashMap::default(),
        }
    }

    /// A new server default; the cache, which holds the old one for users who set none, is
    /// emptied.
    pub(crate) fn set_default(&self, default: DefaultPolicy) {
        self.default.set(default);
        self.cache.clear();
    }

    /// The user's preferences.
    pub(crate) async fn get(&self, user: &BareJid) -> StorageResult<Arc<Prefs>> {
        if let Some(entry) = self.cache.get(user)
            && entry.0.elapsed() < CACHE_TTL
        {
            return Ok(entry.1.clone());
        }
        let (host, node) = owner(user);
        let prefs = Arc::new(match self.keyval.get(host, node, PREFS_STORE).await? {
            Some(bytes) => decode(&bytes)?,
            None => Prefs {
                default: *self.default.get(),
                ..Prefs::default()
            },
        });
        self.remember(user, prefs.clone());
        Ok(prefs)
    }

    fn remember(&self, user: &BareJid, prefs: Arc<Prefs>) {
        if self.cache.len() >= CACHE_MAX {
            self.cache.clear();
        }
        self.cache.insert(user.clone(), (Instant::now(), prefs));
    }

    async fn put(&self, user: &BareJid, prefs: &Prefs) -> StorageResult<()> {
        let (host, node) = owner(user);
        let stored = self
            .keyval
            .put(host, node, PREFS_STORE, &encode(prefs)?)
            .await;
        // Whatever the write did, the next read goes to storage.
        self.cache.remove(user);
        stored
    }

    /// Whether a message between `user` and `peer` is archived (XEP-0441 §2.2, §3): `never`
    /// first (a JID in both lists is not archived: the safer reading), then `always`, then
    /// the default; `roster` asks whether the peer's bare JID is in the user's roster.
    pub(crate) async fn allows(&self, user: &BareJid, peer: &Jid) -> StorageResult<bool> {
        let prefs = self.get(user).await?;
        if prefs.never.iter().any(|j| matches(j, peer)) {
            return Ok(false);
        }
        if prefs.always.iter().any(|j| matches(j, peer)) {
            return Ok(true);
        }
        Ok(match prefs.default {
            DefaultPolicy::Always => true,
            DefaultPolicy::Never => false,
            DefaultPolicy::Roster => self.roster.item(user, &peer.to_bare()).await?.is_some(),
        })
    }
}

/// Answers `<prefs/>` get and set for the account itself.
pub(crate) struct PrefsHandler(pub(crate) Arc<Inner>);

fn internal(e: StorageError) -> StanzaError {
    warn!(error = %e, "archive preferences storage failed");
    StanzaError::new(DefinedCondition::InternalServerError)
}

#[async_trait]
impl IqHandler for PrefsHandler {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        let user = request.to;
        if request.from.to_bare() != *user {
            return Err(StanzaError::new(DefinedCondition::Forbidden));
        }
        let store = &self.0.prefs;
        let iq_type = match request.stanza.type_attr() {
            Some("set") => IqType::Set,
            _ => IqType::Get,
        };
        if iq_type == IqType::Get {
            return Ok(Some(store.get(user).await.map_err(internal)?.to_element()));
        }
        let prefs = Prefs::try_from(request.payload).map_err(StanzaError::from)?;
        if prefs.always.len() + prefs.never.len() > MAX_JIDS {
            return Err(StanzaError::new(DefinedCondition::NotAllowed)
                .with_text(format!("at most {MAX_JIDS} JIDs in the lists")));
        }
        store.put(user, &prefs).await.map_err(internal)?;
        // §2.1: the reply carries the preferences as applied.
        Ok(Some(prefs.to_element()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jid(s: &str) -> Jid {
        Jid::new(s).expect("valid JID")
    }

    #[test]
    fn listed_jids_match_as_xep_0441_says() {
        assert!(matches(&jid("romeo@m.lit"), &jid("romeo@m.lit/orchard")));
        assert!(matches(&jid("romeo@m.lit"), &jid("romeo@m.lit")));
        assert!(matches(
            &jid("romeo@m.lit/orchard"),
            &jid("romeo@m.lit/orchard")
        ));
        assert!(!matches(
            &jid("romeo@m.lit/orchard"),
            &jid("romeo@m.lit/balcony")
        ));
        assert!(!matches(&jid("romeo@m.lit/orchard"), &jid("romeo@m.lit")));
        assert!(!matches(&jid("m.lit"), &jid("romeo@m.lit")));
        assert!(matches(&jid("m.lit"), &jid("m.lit/x")));
    }

    #[test]
    fn stored_prefs_round_trip_and_corruption_is_reported() {
        let prefs = Prefs {
            default: DefaultPolicy::Roster,
            always: vec![jid("a@b")],
            never: vec![jid("c@d/e")],
        };
        assert_eq!(
            decode(&encode(&prefs).expect("encodes")).expect("decodes"),
            prefs
        );
        for bad in [
            &br#"{"default":"sometimes"}"#[..],
            br#"{"default":"always","never":["@@"]}"#,
            b"not json",
        ] {
            assert!(matches!(decode(bad), Err(StorageError::Corrupt(_))));
        }
    }
}
