//! XEP-0163: Personal Eventing Protocol — every account a pubsub service (XEP-0060, the
//! subset PEP needs), on which OMEMO (XEP-0384), avatars (XEP-0084), bookmarks (XEP-0402),
//! nicknames and moods ride.
//!
//! - **Nodes** live at the account's bare JID and are created by the first publish (§3
//!   "auto-create"), with the default configuration or the publish-options (XEP-0223);
//!   publish-options on an existing node are preconditions (XEP-0060 §7.1.5). Only the owner
//!   publishes, retracts, configures, deletes and purges (`forbidden` for anyone else).
//!   Storage: [`store`] (Map shape, per user).
//! - **Quota**: an account's items, over all its nodes, take at most `max_bytes` as stored.
//!   A publish past it is `resource-constraint` (type `cancel`; XEP-0060 §7.1.3 lists no
//!   error for a full service) and stores nothing; the item and the items it pushes out of
//!   its node are one write, so a new avatar replacing the old one counts the difference.
//! - **Reading** is checked on every request by the node's access model ([`access`]).
//! - **Notifications** (§4.3) go, as `headline` messages from the owner's bare JID, to each
//!   available resource — the owner's own and those of contacts subscribed to the owner's
//!   presence whom the access model admits — that advertised `NODE+notify` in its XEP-0115
//!   caps ([`caps`]). The event is serialised once and each copy differs only in `to`
//!   ([`xmppd_core::Router::route_copies`]); the roster is read once per publish, the caps
//!   are in memory, and no storage is touched per recipient.
//! - **The last item** (§4.3.4, `send_last_published_item` `on_sub_and_presence`) goes to a
//!   resource when its caps presence first arrives (once its hash is verified) and to the
//!   resources of a contact when the owner approves its subscription (the subscription hook),
//!   including resources whose presence came before the subscription existed.
//! - **Discovery** (§6.1): the account gets the identity `pubsub/pep` and the features of
//!   [`FEATURES`]; disco#items on the account lists the nodes the requester may read (§6.2).
//!   The server's own disco#info lists none of them: XEP-0163 discovers PEP on the account,
//!   which is where clients look.
//!
//! Other modules use the same rules through [`PepHandle`] (bookmarks conversion, avatar
//! conversion).
//!
//! Not implemented: explicit subscriptions (`subscribe`, `unsubscribe`, which PEP replaces by
//! presence), affiliations (so the whitelist holds the owner alone), collection nodes, item
//! expiry, batch publishing; those requests are `feature-not-implemented` with
//! `<unsupported feature='…'/>` (XEP-0060 §5.4 and the error tables).

pub mod access;
pub mod bookmarks;
pub mod caps;
pub mod config;
mod handle;
mod hooks;
mod iq;
mod notify;
mod observe;
pub mod store;
pub mod vcard_conversion;

use std::sync::Arc;

use serde::Deserialize;
use xmppd_core::storage::{Storage, StorageError};
use xmppd_core::{
    Fixed, IqTarget, IqType, KindMask, Live, Module, Reconfigure, Registry, StripedLocks,
};
use xmppd_im::RosterStore;
use xmppd_proto::pubsub::{NS_OWNER, NS_PUBSUB, PubSubCondition};
use xmppd_proto::{DefinedCondition, ErrorType, StanzaError};

pub use access::{Denied, Relation};
pub use config::{AccessModel, MaxItems, NodeConfig};
pub use handle::PepHandle;
pub use observe::{NodeChange, PepObserver, PepObservers};

use caps::CapsTracker;
use store::PepStore;

/// The stores the module keeps its data under.
pub const STORES: &[&str] = &[store::NODES, store::ITEMS];

/// The XEP-0060 features of the service (XEP-0163 §6.1), listed on every account.
pub const FEATURES: &[&str] = &[
    "http://jabber.org/protocol/pubsub",
    "http://jabber.org/protocol/pubsub#access-open",
    "http://jabber.org/protocol/pubsub#access-presence",
    "http://jabber.org/protocol/pubsub#access-roster",
    "http://jabber.org/protocol/pubsub#access-whitelist",
    "http://jabber.org/protocol/pubsub#auto-create",
    "http://jabber.org/protocol/pubsub#auto-subscribe",
    "http://jabber.org/protocol/pubsub#config-node",
    "http://jabber.org/protocol/pubsub#delete-items",
    "http://jabber.org/protocol/pubsub#delete-nodes",
    "http://jabber.org/protocol/pubsub#filtered-notifications",
    "http://jabber.org/protocol/pubsub#item-ids",
    "http://jabber.org/protocol/pubsub#last-published",
    "http://jabber.org/protocol/pubsub#persistent-items",
    "http://jabber.org/protocol/pubsub#presence-notifications",
    "http://jabber.org/protocol/pubsub#publish",
    "http://jabber.org/protocol/pubsub#publish-options",
    "http://jabber.org/protocol/pubsub#purge-nodes",
    "http://jabber.org/protocol/pubsub#retract-items",
    "http://jabber.org/protocol/pubsub#retrieve-items",
];

/// `[modules.pep]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PepSettings {
    /// Nodes one account may have (default 256); one more is `not-allowed`.
    pub max_nodes: u64,
    /// Items one node keeps at most, and what `pubsub#max_items` `max` means (default 1000).
    pub max_items: u32,
    /// Largest item, serialised (default 131072 bytes, half the c2s stanza limit); larger is
    /// `not-acceptable` + `payload-too-big`.
    pub max_item_bytes: usize,
    /// Bytes of items one account may keep over all its nodes, as stored (item and key;
    /// default 8 MiB: OMEMO bundles, bookmarks and some avatars of 50–200 KB with room to
    /// spare; 0: no limit). A publish that would pass it is `resource-constraint`.
    pub max_bytes: u64,
    /// Longest node name or item id (default 1024 bytes); longer is `not-acceptable`.
    pub max_name_bytes: usize,
    /// Access model of a node created without one (default `presence`, XEP-0163 §5).
    pub default_access_model: AccessModel,
    /// `pubsub#max_items` of a node created without one (default 1).
    pub default_max_items: u32,
    /// Verified caps hashes remembered (default 10000).
    pub caps_cache_size: usize,
    /// Resources whose caps are kept per account (default 1000).
    pub max_caps_per_account: usize,
}

impl Default for PepSettings {
    fn default() -> Self {
        PepSettings {
            max_nodes: 256,
            max_items: 1000,
            max_item_bytes: 131_072,
            max_bytes: 8 * 1024 * 1024,
            max_name_bytes: 1024,
            default_access_model: AccessModel::Presence,
            default_max_items: 1,
            caps_cache_size: 10_000,
            max_caps_per_account: 1000,
        }
    }
}

/// Why a PEP request failed.
#[derive(Debug, thiserror::Error)]
pub enum PepError {
    /// Only the owner may do this.
    #[error("only the owner may do this")]
    Forbidden,
    /// No such node or item.
    #[error("{0}")]
    NotFound(String),
    /// The access model refuses the requester.
    #[error("access denied: {0:?}")]
    Denied(Denied),
    /// The account has as many nodes as allowed.
    #[error("at most {0} nodes per account")]
    TooManyNodes(u64),
    /// The item is larger than allowed.
    #[error("the item is {0} bytes, more than the {1} allowed")]
    PayloadTooBig(usize, usize),
    /// The account's items would take more bytes than its quota.
    #[error("the account's items would take more than the {0} bytes allowed; retract some")]
    QuotaExceeded(u64),
    /// A node name or item id longer than allowed.
    #[error("a node name or item id is longer than {0} bytes")]
    NameTooLong(usize),
    /// A publish-options precondition differs from the node's configuration.
    #[error("the node's configuration does not match the publish options")]
    PreconditionNotMet,
    /// A configuration or option the service refuses (an error for the sender as it is).
    #[error("{0:?}")]
    Refused(StanzaError),
    /// Storage failed or holds an undecodable record.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<PepError> for StanzaError {
    fn from(e: PepError) -> Self {
        let text = e.to_string();
        match e {
            PepError::Forbidden => StanzaError::new(DefinedCondition::Forbidden).with_text(text),
            PepError::NotFound(_) => {
                StanzaError::new(DefinedCondition::ItemNotFound).with_text(text)
            }
            PepError::Denied(d) => d.into(),
            PepError::TooManyNodes(_) => {
                StanzaError::new(DefinedCondition::NotAllowed).with_text(text)
            }
            PepError::PayloadTooBig(..) => PubSubCondition::PayloadTooBig
                .error(DefinedCondition::NotAcceptable)
                .with_text(text),
            // XEP-0060 names no error for a full service; RFC 6120 §8.3.3.18's
            // resource-constraint says the service lacks room for the request. Type `cancel`:
            // waiting frees nothing, only the owner's retractions do.
            PepError::QuotaExceeded(_) => {
                let mut error =
                    StanzaError::new(DefinedCondition::ResourceConstraint).with_text(text);
                error.error_type = ErrorType::Cancel;
                error
            }
            PepError::NameTooLong(_) => {
                StanzaError::new(DefinedCondition::NotAcceptable).with_text(text)
            }
            PepError::PreconditionNotMet => {
                PubSubCondition::PreconditionNotMet.error(DefinedCondition::Conflict)
            }
            PepError::Refused(e) => e,
            PepError::Storage(e) => {
                tracing::warn!(error = %e, "PEP storage failed");
                StanzaError::new(DefinedCondition::InternalServerError)
            }
        }
    }
}

/// What the module's parts share.
struct Pep {
    /// Replaced by a reload (all but the caps tracker's sizes); one publish reads it once.
    settings: Live<PepSettings>,
    store: PepStore,
    roster: RosterStore,
    caps: CapsTracker,
    /// Serialise changes to one account's nodes.
    locks: StripedLocks,
    /// Modules told of the changes clients make.
    observers: PepObservers,
}

/// The PEP module.
pub struct PepModule {
    handle: PepHandle,
}

impl std::fmt::Debug for PepModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PepModule")
    }
}

impl PepModule {
    /// The module over the server's storage (its own stores, and rosters read-only).
    pub fn new(storage: &Storage, settings: PepSettings) -> Self {
        let caps = CapsTracker::new(settings.caps_cache_size, settings.max_caps_per_account);
        let pep = Pep {
            store: PepStore::new(storage.map.clone()),
            roster: RosterStore::new(storage.map.clone(), storage.keyval.clone()),
            caps,
            locks: StripedLocks::new(64),
            observers: PepObservers::default(),
            settings: Live::new(settings),
        };
        PepModule {
            handle: PepHandle(Arc::new(pep)),
        }
    }

    /// The in-process API, for modules built on PEP.
    pub fn handle(&self) -> PepHandle {
        self.handle.clone()
    }

    /// Where modules built on PEP subscribe to the changes clients make.
    pub fn observers(&self) -> PepObservers {
        self.handle.0.observers.clone()
    }
}

/// Hook priority: after filters, before nothing in particular (an observer of presence).
const PRIORITY: i32 = 0;

impl Reconfigure for PepModule {
    type Settings = PepSettings;

    /// The caps tracker was sized at startup.
    fn check(&self, new: &mut PepSettings) -> Result<Vec<&'static str>, String> {
        let running = self.handle.0.settings.get();
        Ok(Fixed::default()
            .key(
                "caps_cache_size",
                &running.caps_cache_size,
                &new.caps_cache_size,
            )
            .key(
                "max_caps_per_account",
                &running.max_caps_per_account,
                &new.max_caps_per_account,
            )
            .into_keys())
    }

    /// Nodes and items over lowered limits stay until their owners publish again; a node's
    /// own `pubsub#max_items` is held to the new `max_items` from its next publish.
    fn reconfigure(&self, mut new: PepSettings) {
        let running = self.handle.0.settings.get();
        new.caps_cache_size = running.caps_cache_size;
        new.max_caps_per_account = running.max_caps_per_account;
        self.handle.0.settings.set(new);
    }
}

impl Module for PepModule {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        let pep = self.handle.0.clone();
        for iq_type in [IqType::Get, IqType::Set] {
            registry.iq(
                IqTarget::Account,
                iq_type,
                NS_PUBSUB,
                "pubsub",
                Arc::new(iq::PubSubIq(pep.clone())),
            );
            registry.iq(
                IqTarget::Account,
                iq_type,
                NS_OWNER,
                "pubsub",
                Arc::new(iq::OwnerIq(pep.clone())),
            );
        }
        let hooks = Arc::new(hooks::PepHooks(pep.clone()));
        registry.inbound(PRIORITY, KindMask::PRESENCE, hooks.clone());
        registry.session(PRIORITY, hooks.clone());
        registry.subscription(PRIORITY, hooks.clone());
        registry.iq_response(PRIORITY, hooks.clone());
        registry.account_items(hooks);
        registry.account_identity("pubsub", "pep");
        for feature in FEATURES {
            registry.account_feature(feature);
        }
    }
}
