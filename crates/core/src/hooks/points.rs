//! The hook points' traits and the values they exchange with the router.

use async_trait::async_trait;
use jid::{BareJid, FullJid, Jid};
use xmppd_proto::{Stanza, StanzaError, StanzaKind};

use crate::extensions::Extensions;
use crate::hooks::Subscription;
use crate::router::Router;

/// Which stanza kinds a subscriber wants to see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KindMask(u8);

impl KindMask {
    /// No stanza.
    pub const NONE: KindMask = KindMask(0);
    /// `<message/>`.
    pub const MESSAGE: KindMask = KindMask(1);
    /// `<presence/>`.
    pub const PRESENCE: KindMask = KindMask(2);
    /// `<iq/>`.
    pub const IQ: KindMask = KindMask(4);
    /// Every stanza.
    pub const ALL: KindMask = KindMask(7);

    /// Both masks' kinds.
    pub const fn union(self, other: KindMask) -> KindMask {
        KindMask(self.0 | other.0)
    }

    /// Whether stanzas of `kind` are included.
    #[inline]
    pub fn contains(self, kind: StanzaKind) -> bool {
        let bit = match kind {
            StanzaKind::Message => 1,
            StanzaKind::Presence => 2,
            StanzaKind::Iq => 4,
        };
        self.0 & bit != 0
    }
}

impl std::ops::BitOr for KindMask {
    type Output = KindMask;
    fn bitor(self, rhs: KindMask) -> KindMask {
        self.union(rhs)
    }
}

/// What a subscriber decided about the stanza it was given.
#[derive(Debug)]
pub enum Flow {
    /// Go on with this stanza (the same one, or a rewritten one): the next subscriber, then
    /// the router's own handling.
    Continue(Stanza),
    /// The subscriber took care of it: delivered, stored, answered or dropped on purpose.
    /// `Some` is a stanza to route next, typically the error bounce for the sender.
    Stop(Option<Stanza>),
}

impl Flow {
    /// Stops with the error `error` for the sender (nothing, if `stanza` is itself an error).
    pub fn bounce(stanza: &Stanza, error: &StanzaError) -> Flow {
        Flow::Stop(stanza.error_reply(error))
    }

    /// Stops without a trace (blocking, spam rules: the sender must not learn of it).
    pub fn drop_silently() -> Flow {
        Flow::Stop(None)
    }
}

/// What an offline subscriber did with a message.
#[derive(Debug)]
pub enum OfflineFlow {
    /// Not this subscriber's business: the next one is asked.
    Pass,
    /// Committed to storage; it will be delivered at the next login.
    Stored,
    /// Not worth keeping (e.g. only a chat state notification); dropped on purpose.
    Discarded,
    /// Refused (storage failure, quota): this error goes back to the sender.
    Refused(StanzaError),
}

/// Runs before any routing decision, for every stanza given to [`Router::route`]: the place
/// for rules about who may talk to whom (blocking, privacy lists, spam filters).
///
/// Every routed stanza passes here, so a filter first answers [`PreRouteFilter::applies`]
/// without waiting (e.g. from a cache of the block lists of online accounts); only when one
/// applies does the router build the asynchronous call. Two online users without block lists
/// then cost a lookup, not a boxed future per message.
#[async_trait]
pub trait PreRouteFilter: Send + Sync + 'static {
    /// Whether [`PreRouteFilter::pre_route`] may do anything with this stanza. `false` lets it
    /// through untouched; when unsure, `true`.
    fn applies(&self, _router: &Router, _stanza: &Stanza) -> bool {
        true
    }

    /// `stanza` has its `from` set by the server (a local session, a component, a verified
    /// remote domain, or the server itself).
    async fn pre_route(&self, router: &Router, stanza: Stanza) -> Flow;
}

/// A message or presence for an existing local account, before it is delivered (carbons,
/// archive, subscriptions and probes).
#[async_trait]
pub trait InboundHook: Send + Sync + 'static {
    /// Whether [`InboundHook::inbound`] may do anything with this stanza, answered without
    /// waiting: when no subscriber applies, a message to a bound full JID keeps the direct
    /// path. When unsure, `true`.
    fn applies(&self, _router: &Router, _stanza: &Stanza) -> bool {
        true
    }

    /// `stanza.to()` is the addressed JID (bare, or full whether or not that resource is
    /// bound); `account` is its bare JID.
    async fn inbound(&self, router: &Router, stanza: Stanza, account: &BareJid) -> Flow;
}

/// A message for an existing local account after the router has taken it: queued for the
/// account's sessions, or committed by an offline hook. The one place that knows which
/// sessions received the original under RFC 6121 §8.5 (a bare JID reaches the resources of
/// highest priority; a full JID its session, or the bare JID's resources when it is not
/// bound), so features that complement delivery subscribe here: carbons (XEP-0280 §6: copies
/// for the resources that did *not* get it), push notifications.
///
/// Not called for a message that was bounced, consumed by an inbound hook, or dropped by the
/// rules (an error or headline nobody could take), nor for iq and presence.
#[async_trait]
pub trait DeliveredHook: Send + Sync + 'static {
    /// Whether [`DeliveredHook::delivered`] may do anything with this message, answered
    /// without waiting: every message between local users passes here, and most need nothing
    /// (e.g. carbons skip a groupchat message without an asynchronous call). When unsure,
    /// `true`.
    fn applies(&self, _router: &Router, _stanza: &Stanza) -> bool {
        true
    }

    /// `stanza` is the message as delivered (after the inbound hooks); `account` its
    /// recipient's bare JID; `recipients` the sessions it was queued for, empty when an
    /// offline hook stored (or discarded) it instead. An observer: it cannot stop or change
    /// the delivery, which has happened.
    async fn delivered(
        &self,
        router: &Router,
        stanza: &Stanza,
        account: &BareJid,
        recipients: &[FullJid],
    );
}

/// A `normal` or `chat` message for an account with no available resource (RFC 6121
/// §8.5.2.2.1): offline storage (XEP-0160). Without a subscriber that stores it, the sender
/// gets `service-unavailable`.
#[async_trait]
pub trait OfflineHook: Send + Sync + 'static {
    /// The write is committed before this returns [`OfflineFlow::Stored`].
    async fn offline(&self, router: &Router, stanza: &Stanza, to: &BareJid) -> OfflineFlow;
}

/// An iq `result` or `error` addressed to the server or to an account's bare JID: the answer
/// to an iq a module sent on its own behalf (a publish to a push service). Without a
/// subscriber that claims it, such an answer is dropped (nothing else waits for it).
#[async_trait]
pub trait IqResponseHook: Send + Sync + 'static {
    /// Whether this is an answer the subscriber waits for, decided without waiting (usually
    /// from the `id` it chose); the first subscriber that claims it gets it.
    fn claims(&self, stanza: &Stanza) -> bool;

    /// The answer; `to` is the bare JID it was addressed to (a domain served here, or an
    /// account).
    async fn iq_response(&self, router: &Router, stanza: &Stanza, to: &BareJid);
}

/// A module's state of one client session that is saved with the session when the server
/// stops and put back when it is restored at the next start (XEP-0198 resumption across a
/// restart): carbons enabled, interest in roster pushes. Without it a resumed client would
/// find the server had forgotten what it asked for.
pub trait SessionStateHook: Send + Sync + 'static {
    /// The module's state of this session, if it has any worth keeping.
    fn save(&self, ext: &Extensions) -> Option<serde_json::Value>;

    /// Puts state that [`SessionStateHook::save`] gave back into a restored session. A value
    /// this version cannot read is ignored (the session then starts without it).
    fn restore(&self, ext: &Extensions, value: &serde_json::Value);
}

/// A bound client session as hooks see it.
#[derive(Clone, Copy, Debug)]
pub struct SessionRef<'a> {
    /// The session's full JID.
    pub jid: &'a FullJid,
    /// Its per-module state.
    pub ext: &'a Extensions,
}

/// A stanza a client session sent, its `from` stamped, before it is routed (sent carbons,
/// archive, subscription requests the user's server processes first).
#[async_trait]
pub trait OutboundHook: Send + Sync + 'static {
    /// Called for stanzas with a `to` and for iq without one (presence without `to` is the
    /// session's broadcast presence: see [`SessionEvent::Available`]).
    async fn outbound(&self, router: &Router, session: SessionRef<'_>, stanza: Stanza) -> Flow;
}

/// A session's broadcast available presence (no `to`: RFC 6121 §4.2, §4.4), before it is
/// recorded and sent anywhere. What a subscriber returns is what every recipient sees: the
/// account's own resources, its contacts, and whoever probes it later (the registry keeps it
/// as the session's last presence). The place for what the server adds to a user's presence
/// on the user's behalf, e.g. the XEP-0153 avatar hash (as ejabberd's `mod_vcard_xupdate`
/// does).
///
/// A subscriber that changes the presence builds a new stanza from the one it owns; it never
/// changes one that is shared (an `Arc` already handed to a queue).
#[async_trait]
pub trait BroadcastPresenceHook: Send + Sync + 'static {
    /// The presence to record and broadcast: `stanza` itself, or a rewritten one with the same
    /// `from` and no `to`.
    async fn broadcast_presence(
        &self,
        router: &Router,
        session: SessionRef<'_>,
        stanza: Stanza,
    ) -> Stanza;
}

/// A moment in a client session's life.
#[derive(Debug)]
pub enum SessionEvent<'a> {
    /// A resource was bound; nothing has been sent yet.
    Bound,
    /// Available presence without `to` (RFC 6121 §4.2, §4.4); the account's own resources
    /// already have it.
    Available {
        /// The presence, `from` stamped.
        stanza: &'a Stanza,
        /// Whether it is the session's first (initial presence).
        initial: bool,
        /// Its priority (§4.7.2.3).
        priority: i8,
    },
    /// The session became unavailable: explicit unavailable presence, stream end, lost socket
    /// or replacement (§4.5); the account's other resources already know.
    Unavailable {
        /// The unavailable presence, `from` stamped.
        stanza: &'a Stanza,
        /// Entities the session sent directed available presence to (§4.6.3), which must
        /// learn it is gone.
        directed: &'a [Jid],
    },
    /// The session's transport is gone but the session waits to be resumed (XEP-0198): it
    /// stays bound, keeps its presence and queues what is routed to it.
    Detached,
    /// The session was moved to a new transport (stream management resumption).
    Resumed,
    /// The session ended and is no longer bound.
    Closed,
}

/// Follows client sessions' lifecycles.
#[async_trait]
pub trait SessionHook: Send + Sync + 'static {
    /// Whether the hook has anything to do with this event, answered without waiting: every
    /// login and logout passes here, and a hook that only cares about one event should not
    /// cost the others an asynchronous call.
    fn wants(&self, _event: &SessionEvent<'_>) -> bool {
        true
    }

    /// Called in priority order; an observer, it cannot stop the event.
    async fn session_event(
        &self,
        router: &Router,
        session: SessionRef<'_>,
        event: &SessionEvent<'_>,
    );
}

/// The subscription between a local account and a contact changed, and the roster holds the
/// new state: a contact approved by the user now sees the user's presence, and with it
/// whatever else presence grants (XEP-0163 §4.3.4: the last published items go to a new
/// subscriber, §4.1 auto-subscribe). Told for either end that is a local account, once per
/// stored change, after the roster push and the presence the change sends.
#[async_trait]
pub trait SubscriptionHook: Send + Sync + 'static {
    /// `user`'s roster item for `contact` went from `old` to `new` (they differ).
    async fn subscription_changed(
        &self,
        router: &Router,
        user: &BareJid,
        contact: &BareJid,
        old: Subscription,
        new: Subscription,
    );
}
