//! Typed hooks through which a presence/roster module (RFC 6121, `xmppd-im`) takes part in
//! routing, without the router knowing which module that is.
//!
//! Each hook is a trait with one slot in the [`crate::Registry`]; with nothing registered the
//! router keeps its plain behaviour (presence to own resources only, no offline storage). The
//! hooks receive the [`Router`] so that everything they send goes through [`Router::route`],
//! the one delivery path; they must not hold locks across those calls, since routing may come
//! back into another hook (a subscription to a local contact is processed on both sides in
//! one pass).

use async_trait::async_trait;
use jid::{BareJid, FullJid, Jid};
use xmppd_proto::{Stanza, StanzaError};

use crate::router::Router;

/// The four subscription-related presence types (RFC 6121 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscriptionKind {
    /// `subscribe`: a request to see the other's presence.
    Subscribe,
    /// `subscribed`: approval of a request (or a pre-approval).
    Subscribed,
    /// `unsubscribe`: cancelling one's own subscription.
    Unsubscribe,
    /// `unsubscribed`: denying or revoking the other's subscription.
    Unsubscribed,
}

impl SubscriptionKind {
    /// The kind named by a presence `type`, if it is one of the four.
    pub fn from_type(t: Option<&str>) -> Option<Self> {
        match t? {
            "subscribe" => Some(Self::Subscribe),
            "subscribed" => Some(Self::Subscribed),
            "unsubscribe" => Some(Self::Unsubscribe),
            "unsubscribed" => Some(Self::Unsubscribed),
            _ => None,
        }
    }

    /// The presence `type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subscribe => "subscribe",
            Self::Subscribed => "subscribed",
            Self::Unsubscribe => "unsubscribe",
            Self::Unsubscribed => "unsubscribed",
        }
    }
}

/// Presence addressed to a local account that the account's server answers itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboundPresenceKind {
    /// A subscription stanza from a contact (RFC 6121 Appendix A.3).
    Subscription(SubscriptionKind),
    /// A presence probe (§4.3).
    Probe,
}

impl InboundPresenceKind {
    /// The kind of a presence `type`, if the account's server handles it.
    pub fn from_type(t: Option<&str>) -> Option<Self> {
        match t {
            Some("probe") => Some(Self::Probe),
            other => SubscriptionKind::from_type(other).map(Self::Subscription),
        }
    }
}

/// Handles subscription stanzas and probes addressed to an existing local account (the
/// contact's server side of RFC 6121 §3 and §4.3).
#[async_trait]
pub trait InboundPresenceHandler: Send + Sync + 'static {
    /// `stanza` was routed to `to` (a full JID was reduced to the bare JID first); its `from`
    /// is set. The handler delivers, stores, answers and pushes as the rules require.
    async fn inbound_presence(
        &self,
        router: &Router,
        kind: InboundPresenceKind,
        stanza: Stanza,
        to: &BareJid,
    );
}

/// Handles a subscription stanza a local user's session sends (the user's server side,
/// RFC 6121 Appendix A.2): updates the user's roster, then routes it if the rules say so.
#[async_trait]
pub trait OutboundSubscriptionHandler: Send + Sync + 'static {
    /// `stanza` carries `to`, and `from` = `user` as stamped by the session.
    async fn outbound_subscription(
        &self,
        router: &Router,
        kind: SubscriptionKind,
        stanza: Stanza,
        user: &FullJid,
    );
}

/// A change of a session's broadcast presence, reported by the client listener after the
/// session registry records it.
#[derive(Debug)]
pub enum SessionPresence<'a> {
    /// Available presence without `to` (§4.2, §4.4).
    Available {
        /// The session.
        jid: &'a FullJid,
        /// The presence, `from` stamped.
        stanza: &'a Stanza,
        /// Whether it is the session's first (initial presence).
        initial: bool,
        /// Its priority (§4.7.2.3).
        priority: i8,
    },
    /// The session became unavailable: explicit unavailable presence, stream end, lost socket
    /// or replacement (§4.5).
    Unavailable {
        /// The session.
        jid: &'a FullJid,
        /// The unavailable presence, `from` stamped.
        stanza: &'a Stanza,
        /// Entities the session sent directed available presence to (§4.6.3), which must
        /// learn it is gone.
        directed: &'a [Jid],
    },
}

/// Follows a session's broadcast presence to contacts: broadcast to subscribers, probes,
/// offline messages and pending requests on initial presence.
#[async_trait]
pub trait SessionPresenceHook: Send + Sync + 'static {
    /// Called after the router has told the account's own resources.
    async fn session_presence(&self, router: &Router, event: &SessionPresence<'_>);
}

/// What became of a message handed to the offline store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OfflineOutcome {
    /// Committed to storage; it will be delivered at the next login.
    Stored,
    /// Not worth keeping (e.g. only a chat state notification); dropped on purpose.
    Discarded,
}

/// Keeps messages for accounts with no resource to deliver them to (XEP-0160).
#[async_trait]
pub trait OfflineStore: Send + Sync + 'static {
    /// Stores a `normal`/`chat` message for `to`. The write is committed before this returns
    /// `Stored`; an error (storage failure, quota) is bounced to the sender.
    async fn store(&self, stanza: &Stanza, to: &BareJid) -> Result<OfflineOutcome, StanzaError>;
}
