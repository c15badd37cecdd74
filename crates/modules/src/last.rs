//! XEP-0012: Last Activity.
//!
//! Two of the three meanings of §2 are the server's to answer:
//!
//! - **The server** (§5): how long it has been running. The module is built while the server
//!   starts, so its birth is the server's start to within the startup time.
//! - **An account's bare JID** (§3), answered by the user's server on the user's behalf:
//!   `seconds='0'` while the account has a connected or available resource; otherwise the
//!   seconds since the user last logged out and, as character data, the status of that last
//!   unavailable presence.
//!
//! The third, a full JID (§4), is the client's own business and is routed to it.
//!
//! **Who may ask** (§3, §8): the answer reveals the user's network availability, so only the
//! user and entities allowed to see the user's presence get it, i.e. contacts the user's
//! roster gives a subscription `from` (or `both`); everybody else gets `forbidden`, whether the
//! user is online or not.
//!
//! **What is recorded**: when a session becomes unavailable and the account has no other
//! available resource left, the time (Unix seconds) and the status text go to the KeyVal
//! store `last`. A resource that closes while another stays available is no logout.
//!
//! **Never logged out**: §3 says nothing of an account with no recorded logout (never used,
//! or used before this module ran). There is no time to report, so the answer is an error,
//! `item-not-found` (RFC 6120 §8.3.3.7: the item requested, the logout, cannot be found).

use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use jid::BareJid;
use xmppd_core::group_commit::GroupCommit;
use xmppd_core::storage::{KeyVal, KeyValDoc, Storage, StorageError};
use xmppd_core::{
    IqHandler, IqRequest, IqTarget, IqType, Module, Registry, Router, SessionEvent, SessionHook,
    SessionRef,
};
use xmppd_im::RosterStore;
use xmppd_proto::{DefinedCondition, StanzaError, ns};
use xmppd_xml::Element;

/// `jabber:iq:last`.
pub const NS_LAST: &str = "jabber:iq:last";

/// The KeyVal store of the last logout of each user.
pub const STORE: &str = "last";

/// Logouts committed together at most. When a network drops thousands of sessions at once,
/// each would otherwise wait for a commit (an fsync) of its own, one after the other, and the
/// sessions would stay in memory until theirs came.
const LOGOUT_BATCH: usize = 256;

/// Where the session hook runs among others: after presence handling, which does not depend
/// on it.
const PRIORITY: i32 = -10;

/// Why a last activity query about an account is not answered.
#[derive(Debug, thiserror::Error)]
pub enum LastError {
    /// The requester may not see the user's presence (§3, §8).
    #[error("not allowed to see the user's presence")]
    Forbidden,
    /// No logout of the user is recorded.
    #[error("no logout of the user is recorded")]
    NoLogout,
    /// Storage failed or holds an undecodable record.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<LastError> for StanzaError {
    fn from(e: LastError) -> Self {
        match e {
            LastError::Forbidden => StanzaError::new(DefinedCondition::Forbidden),
            LastError::NoLogout => StanzaError::new(DefinedCondition::ItemNotFound),
            LastError::Storage(_) => StanzaError::new(DefinedCondition::InternalServerError),
        }
    }
}

/// A user's last logout, as stored (JSON).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Logout {
    /// Unix seconds.
    at: u64,
    /// The `<status/>` of the unavailable presence, if it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    status: Option<String>,
}

impl Logout {
    fn encode(&self) -> Result<Vec<u8>, StorageError> {
        serde_json::to_vec(self).map_err(|e| StorageError::Corrupt(format!("last logout: {e}")))
    }

    fn decode(bytes: &[u8]) -> Result<Self, StorageError> {
        serde_json::from_slice(bytes)
            .map_err(|e| StorageError::Corrupt(format!("last logout: {e}")))
    }
}

/// Unix seconds now (0 if the clock is before 1970).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The `<query/>` of a result.
fn query(seconds: u64, text: Option<&str>) -> Element {
    let q = Element::new("query", NS_LAST).with_attr("seconds", seconds.to_string());
    match text {
        Some(t) if !t.is_empty() => q.with_text(t),
        _ => q,
    }
}

/// `(host, user)` of an account's KeyVal document.
fn owner(user: &BareJid) -> (&str, &str) {
    (
        user.domain().as_str(),
        user.node().map_or("", |n| n.as_str()),
    )
}

/// The last activity module.
#[derive(Debug)]
pub struct LastActivity {
    uptime: Arc<Uptime>,
    accounts: Arc<Accounts>,
}

impl LastActivity {
    /// The module over `storage` (claimed as [`STORE`]); the server's uptime counts from now.
    pub fn new(storage: &Storage) -> Self {
        LastActivity {
            uptime: Arc::new(Uptime {
                started: Instant::now(),
            }),
            accounts: Arc::new(Accounts {
                roster: RosterStore::new(storage.map.clone(), storage.keyval.clone()),
                keyval: storage.keyval.clone(),
                logouts: OnceLock::new(),
            }),
        }
    }
}

impl Module for LastActivity {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        registry.iq(
            IqTarget::Server,
            IqType::Get,
            NS_LAST,
            "query",
            self.uptime.clone(),
        );
        registry.iq(
            IqTarget::Account,
            IqType::Get,
            NS_LAST,
            "query",
            self.accounts.clone(),
        );
        registry.session(PRIORITY, self.accounts.clone());
        registry.server_feature(NS_LAST);
    }
}

/// Answers for the server (§5).
#[derive(Debug)]
struct Uptime {
    started: Instant,
}

#[async_trait]
impl IqHandler for Uptime {
    async fn handle(&self, _request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        // §5: no character data.
        Ok(Some(query(self.started.elapsed().as_secs(), None)))
    }
}

/// Answers for accounts (§3) and records their logouts.
struct Accounts {
    roster: RosterStore,
    keyval: Arc<dyn KeyVal>,
    /// The group commit of logouts, started by the first (inside the runtime).
    logouts: OnceLock<Option<GroupCommit<LogoutRecord>>>,
}

/// A logout on its way to the store.
struct LogoutRecord {
    host: String,
    user: String,
    value: Vec<u8>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Accounts")
    }
}

impl Accounts {
    /// The answer about `user` for `requester` (a bare JID).
    async fn answer(
        &self,
        router: &Router,
        requester: &BareJid,
        user: &BareJid,
    ) -> Result<Element, LastError> {
        if requester != user {
            let item = self.roster.item(user, requester).await?;
            if !item.is_some_and(|i| i.subscription.from()) {
                return Err(LastError::Forbidden);
            }
        }
        // §3: "at least one connected or available resource" answers 0.
        if !router.sessions().resources(user).is_empty() {
            return Ok(query(0, None));
        }
        let (host, node) = owner(user);
        let bytes = self
            .keyval
            .get(host, node, STORE)
            .await?
            .ok_or(LastError::NoLogout)?;
        let logout = Logout::decode(&bytes)?;
        let seconds = unix_now().saturating_sub(logout.at);
        Ok(query(seconds, logout.status.as_deref()))
    }

    /// Records a logout of `user` with the status of `presence`.
    async fn record(&self, user: &BareJid, presence: &Element) -> Result<(), StorageError> {
        let status = presence
            .child("status", ns::CLIENT)
            .map(|s| bounded_status(s.text()))
            .filter(|s| !s.is_empty());
        let logout = Logout {
            at: unix_now(),
            status,
        };
        let (host, node) = owner(user);
        let value = logout.encode()?;
        match self.logouts() {
            Some(logouts) => {
                let record = LogoutRecord {
                    host: host.to_owned(),
                    user: node.to_owned(),
                    value,
                };
                logouts.write(record).await
            }
            None => self.keyval.put(host, node, STORE, &value).await,
        }
    }

    fn logouts(&self) -> Option<&GroupCommit<LogoutRecord>> {
        self.logouts
            .get_or_init(|| {
                let keyval = self.keyval.clone();
                let commit = move |batch: Vec<LogoutRecord>| {
                    let keyval = keyval.clone();
                    Box::pin(async move {
                        let docs: Vec<KeyValDoc<'_>> = batch
                            .iter()
                            .map(|r| KeyValDoc {
                                host: &r.host,
                                user: &r.user,
                                value: &r.value,
                            })
                            .collect();
                        keyval.put_many(STORE, &docs).await
                    }) as _
                };
                GroupCommit::spawn(LOGOUT_BATCH, Box::new(commit)).ok()
            })
            .as_ref()
    }
}

/// Longest status kept with a logout, in bytes: a stanza may carry 256 KiB, and every logout
/// writes this record.
const MAX_STATUS_BYTES: usize = 1024;

/// `status` cut to [`MAX_STATUS_BYTES`] at a character boundary.
fn bounded_status(mut status: String) -> String {
    if status.len() > MAX_STATUS_BYTES {
        let mut end = MAX_STATUS_BYTES;
        while !status.is_char_boundary(end) {
            end -= 1;
        }
        status.truncate(end);
    }
    status
}

#[async_trait]
impl IqHandler for Accounts {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        let requester = request.from.to_bare();
        Ok(Some(
            self.answer(request.router, &requester, request.to).await?,
        ))
    }
}

#[async_trait]
impl SessionHook for Accounts {
    fn wants(&self, event: &SessionEvent<'_>) -> bool {
        matches!(event, SessionEvent::Unavailable { .. })
    }

    async fn session_event(
        &self,
        router: &Router,
        session: SessionRef<'_>,
        event: &SessionEvent<'_>,
    ) {
        let SessionEvent::Unavailable { stanza, .. } = event else {
            return;
        };
        let user = session.jid.to_bare();
        // The registry already records this session as unavailable.
        let others = router.sessions().resources(&user);
        if others.iter().any(|r| r.priority.is_some()) {
            return;
        }
        if let Err(e) = self.record(&user, stanza.element()).await {
            tracing::warn!(%user, error = %e, "could not record the last logout");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_carries_seconds_and_only_a_non_empty_text() {
        let q = query(903, Some("Heading Home"));
        assert!(q.is("query", NS_LAST));
        assert_eq!(q.attr("seconds"), Some("903"));
        assert_eq!(q.text(), "Heading Home");
        assert_eq!(query(0, Some("")).nodes().len(), 0);
        assert_eq!(query(5, None).nodes().len(), 0);
    }

    #[test]
    fn a_long_status_is_cut_at_a_character_boundary() {
        assert_eq!(bounded_status("Heading Home".into()), "Heading Home");
        let long = "é".repeat(MAX_STATUS_BYTES);
        let cut = bounded_status(long);
        assert!(cut.len() <= MAX_STATUS_BYTES && cut.len() >= MAX_STATUS_BYTES - 1);
        assert!(cut.chars().all(|c| c == 'é'));
    }

    #[test]
    fn logout_round_trips_and_corruption_is_reported() {
        for logout in [
            Logout {
                at: 1_700_000_000,
                status: Some("Heading Home".into()),
            },
            Logout {
                at: 0,
                status: None,
            },
        ] {
            let bytes = logout.encode().expect("encodes");
            assert_eq!(Logout::decode(&bytes).expect("decodes"), logout);
        }
        // Unknown fields of a later format are ignored; a missing time is corruption.
        let later = Logout::decode(br#"{"at":7,"status":"x","client":"y"}"#).expect("lenient");
        assert_eq!(later.at, 7);
        assert!(matches!(
            Logout::decode(br#"{"status":"x"}"#),
            Err(StorageError::Corrupt(_))
        ));
    }

    #[test]
    fn errors_map_to_stanza_conditions() {
        let cases = [
            (LastError::Forbidden, DefinedCondition::Forbidden),
            (LastError::NoLogout, DefinedCondition::ItemNotFound),
            (
                LastError::Storage(StorageError::Backend("down".into())),
                DefinedCondition::InternalServerError,
            ),
        ];
        for (error, condition) in cases {
            assert_eq!(StanzaError::from(error).condition, condition);
        }
    }
}
