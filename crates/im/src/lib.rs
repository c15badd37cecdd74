//! RFC 6121: XMPP Instant Messaging and Presence — rosters, the subscription state machine,
//! presence broadcast and probes, and offline messages (XEP-0160, stamped per XEP-0203).
//!
//! The module plugs into routing only through the typed hooks of `xmppd_core::hooks` and the
//! roster iq handlers; all state is in storage (shapes Map, KeyVal, Archive) or in the session
//! registry, so a restart loses nothing but who is online.
//!
//! Concurrency: a user's roster is read, changed and written under a per-user lock (striped,
//! so memory stays bounded), which keeps the subscription state of a contact consistent when
//! the user's sessions and the contact act at the same time. The lock is never held while
//! routing: routing a subscription to a local contact takes the contact's lock, which may be
//! the same stripe.

mod invited;
mod offline;
mod presence;
pub mod roster;
mod roster_iq;
pub mod state;
mod store;
mod subscription;

use std::sync::Arc;

use jid::{BareJid, FullJid, Jid};
use tokio::sync::MutexGuard;
use xmppd_core::storage::{ArchiveQuota, Storage};
use xmppd_core::{Invites, IqTarget, IqType, KindMask, Module, Registry, Router, StripedLocks};
use xmppd_proto::{Stanza, StanzaKind, ns};
use xmppd_xml::Element;

pub use invited::befriend;
pub use offline::{OfflineMessages, parse_stored};
pub use store::RosterStore;

/// `urn:xmpp:features:pre-approval` (RFC 6121 §3.4).
pub const NS_PRE_APPROVAL: &str = "urn:xmpp:features:pre-approval";
/// `urn:xmpp:features:rosterver` (XEP-0237).
pub const NS_ROSTER_VER: &str = "urn:xmpp:features:rosterver";

/// Limits of the IM module (documented defaults in the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImLimits {
    /// Items per roster.
    pub max_roster_items: u64,
    /// Offline messages kept per user.
    pub max_offline_messages: u64,
    /// Bytes of offline messages kept per user, as stored (0: no byte limit): with the
    /// count alone, a user's offline store could hold the count times the largest stanza.
    pub max_offline_bytes: u64,
    /// Subscription requests awaiting a user's answer; beyond it new ones are refused, so
    /// contacts on other servers cannot fill the store with requests.
    pub max_pending_subscriptions: u64,
}

impl Default for ImLimits {
    fn default() -> Self {
        ImLimits {
            max_roster_items: 1000,
            max_offline_messages: 1000,
            max_offline_bytes: 4 * 1024 * 1024,
            max_pending_subscriptions: 1000,
        }
    }
}

const LOCK_STRIPES: usize = 64;

/// The IM module.
pub struct Im {
    limits: ImLimits,
    roster: RosterStore,
    offline: Arc<OfflineMessages>,
    locks: StripedLocks,
    /// Contact invitations (XEP-0379), redeemed by subscription requests.
    invites: Invites,
}

impl std::fmt::Debug for Im {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Im")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Im {
    /// The module over the server's storage.
    pub fn new(storage: &Storage, limits: ImLimits) -> Self {
        Im {
            limits,
            roster: RosterStore::new(storage.map.clone(), storage.keyval.clone()),
            offline: Arc::new(OfflineMessages::new(
                storage.archive.clone(),
                ArchiveQuota {
                    max_records: Some(limits.max_offline_messages),
                    max_bytes: (limits.max_offline_bytes > 0).then_some(limits.max_offline_bytes),
                },
            )),
            locks: StripedLocks::new(LOCK_STRIPES),
            invites: Invites::new(storage.map.clone()),
        }
    }

    /// Serialises changes to `user`'s roster.
    async fn lock(&self, user: &BareJid) -> MutexGuard<'_, ()> {
        self.locks.lock(user.as_str()).await
    }
}

/// Hook priorities: the IM module runs after filters (blocking, privacy) and archives that
/// want to see a stanza before it is consumed.
const PRIORITY: i32 = 0;

/// The store names the module keeps its data under.
pub const STORES: &[&str] = &[
    store::ROSTER,
    store::PENDING,
    store::VERSION,
    offline::STORE,
];

impl Module for Im {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        registry.session_state(Arc::new(roster_iq::InterestSaved));
        let roster = Arc::new(roster_iq::RosterIq(self.clone()));
        registry.iq(
            IqTarget::Account,
            IqType::Get,
            roster::NS_ROSTER,
            "query",
            roster.clone(),
        );
        registry.iq(
            IqTarget::Account,
            IqType::Set,
            roster::NS_ROSTER,
            "query",
            roster,
        );
        registry.inbound(PRIORITY, KindMask::PRESENCE, self.clone());
        registry.outbound(PRIORITY, KindMask::PRESENCE, self.clone());
        registry.session(PRIORITY, self.clone());
        registry.offline(PRIORITY, self.offline.clone());
        registry.stream_feature(Element::new("ver", NS_ROSTER_VER));
        registry.stream_feature(Element::new("sub", NS_PRE_APPROVAL));
        registry.server_feature(offline::NS_OFFLINE);
    }
}

/// Ends every presence subscription of an account that is being removed (XEP-0077 §3.2:
/// the server "SHOULD also cancel all existing presence subscriptions related to that
/// entity"), as removing each roster item would (RFC 6121 §2.5.2): contacts get
/// `unsubscribe` and `unsubscribed`, and those that saw the account's presence its
/// unavailable presence. The roster itself goes with the account's data.
pub async fn end_all_subscriptions(
    router: &Router,
    roster: &RosterStore,
    user: &BareJid,
) -> Result<(), xmppd_core::storage::StorageError> {
    for item in roster.items(user).await? {
        let Ok(contact) = BareJid::new(&item.jid) else {
            continue;
        };
        let pending_in = roster.has_pending(user, &contact).await?;
        roster_iq::end_subscriptions(router, user, &contact, &item, pending_in).await;
    }
    Ok(())
}

/// Removes an account as XEP-0077 §3.2 has it, for in-band removal and for an administrator
/// alike: its subscriptions end ([`end_all_subscriptions`]; a failure there is logged, the
/// removal goes on), everything stored for it is deleted, then its sessions end with
/// `not-authorized`. Returns how many sessions ended.
pub async fn remove_account(
    router: &Router,
    roster: &RosterStore,
    account: &BareJid,
) -> Result<usize, xmppd_core::AccountError> {
    if let Err(e) = end_all_subscriptions(router, roster, account).await {
        tracing::warn!(jid = %account, error = %e, "could not tell contacts of the removal");
    }
    router.accounts().delete(account).await?;
    let error = xmppd_proto::StreamError::with_text(
        xmppd_proto::StreamErrorCondition::NotAuthorized,
        "the account was removed",
    );
    Ok(router.sessions().end_account(account, &error))
}

/// A presence the server makes: `<presence type? from to/>`.
pub(crate) fn presence(kind: Option<&str>, from: Jid, to: Jid) -> Stanza {
    let mut el = Element::new("presence", ns::CLIENT)
        .with_attr("from", from.as_str())
        .with_attr("to", to.as_str());
    if let Some(kind) = kind {
        el.set_attr("type", kind);
    }
    Stanza::new_unchecked(StanzaKind::Presence, Some(from), Some(to), el)
}

/// A stanza re-addressed `from` → `to`, children kept (a client's subscription stanza stamped
/// with the user's bare JID, RFC 6121 §3.1.2).
pub(crate) fn restamp(stanza: &Stanza, from: Jid, to: Jid) -> Stanza {
    let mut el = stanza.element().clone();
    el.set_attr("from", from.as_str());
    el.set_attr("to", to.as_str());
    Stanza::new_unchecked(stanza.kind(), Some(from), Some(to), el)
}

/// Sends the current presence of each of `user`'s available resources to `contact`
/// (RFC 6121 §3.1.5, §4.3.2).
pub(crate) async fn send_presence_of(router: &Router, user: &BareJid, to: &Jid) {
    for r in router.sessions().resources(user) {
        if let Some(p) = &r.last_presence {
            router.route(xmppd_core::router::readdress(p, to)).await;
        }
    }
}

/// Sends unavailable presence from each of `user`'s available resources to `contact`
/// (RFC 6121 §3.2.2, §3.3.3).
pub(crate) async fn send_unavailable_of(router: &Router, user: &BareJid, to: &Jid) {
    for r in router.sessions().resources(user) {
        if r.priority.is_some() {
            let from: FullJid = r.jid.clone();
            router
                .route(presence(Some("unavailable"), Jid::from(from), to.clone()))
                .await;
        }
    }
}
