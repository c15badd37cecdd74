//! Typed, ordered, multi-subscriber hooks: the points where modules take part in routing.
//!
//! A module subscribes in its `register()` with a priority; subscribers of one point run in
//! descending priority (ties in registration order). The points:
//!
//! | point | when | may |
//! |---|---|---|
//! | [`PreRouteFilter`] | every stanza the router is given, before any routing decision, on the fast and the slow path alike | drop, bounce, rewrite |
//! | [`InboundHook`] | a message or presence addressed to an existing local account (bare or full JID), before delivery | consume (deliver, store, answer) or pass on |
//! | [`DeliveredHook`] | a message for a local account, once queued for its sessions (which ones are given) or stored offline | observe |
//! | [`OfflineHook`] | a `normal`/`chat` message for an account with no available resource | store or refuse |
//! | [`OutboundHook`] | a stanza a client session sent (its `from` stamped), before it is routed | consume or pass on |
//! | [`BroadcastPresenceHook`] | a session's broadcast available presence, before it is recorded and broadcast | rewrite |
//! | [`SessionHook`] | a session's lifecycle: bound, available, unavailable, resumed, closed | observe |
//! | [`IqResponseHook`] | an iq result/error to the server or an account's bare JID (the answer to an iq a module sent) | claim it by its id |
//! | [`SubscriptionHook`] | a stored change of a local account's subscription with a contact (`from`/`to`) | observe |
//!
//! A point nobody subscribes to costs one emptiness check: the router's one-to-one message path
//! stays what it was. Subscribers filter by stanza kind at registration ([`KindMask`]), so a
//! presence-only hook adds nothing to messages either.
//!
//! Hooks receive the [`Router`] so that everything they send goes through [`Router::route`],
//! the one delivery path; they must not hold locks across those calls, since routing may come
//! back into another hook (a subscription to a local contact is processed on both sides in
//! one pass).

mod points;
mod subscription;

pub use points::{
    BroadcastPresenceHook, DeliveredHook, Flow, InboundHook, IqResponseHook, KindMask, OfflineFlow,
    OfflineHook, OutboundHook, PreRouteFilter, SessionEvent, SessionHook, SessionRef,
    SessionStateHook, SubscriptionHook,
};
pub use subscription::{InboundPresenceKind, Subscription, SubscriptionKind};

use std::sync::Arc;

use crate::module::ModuleId;

/// Ordering of subscribers at one point: higher runs first.
pub type Priority = i32;

/// One subscriber of a hook point.
pub(crate) struct Subscriber<H: ?Sized> {
    pub(crate) priority: Priority,
    pub(crate) kinds: KindMask,
    pub(crate) module: ModuleId,
    pub(crate) hook: Arc<H>,
}

/// The subscribers of one point, kept sorted by priority (stable).
pub(crate) struct Point<H: ?Sized> {
    subscribers: Vec<Subscriber<H>>,
    /// Union of the subscribers' kinds: the emptiness check of the hot path.
    kinds: KindMask,
}

impl<H: ?Sized> Default for Point<H> {
    fn default() -> Self {
        Point {
            subscribers: Vec::new(),
            kinds: KindMask::NONE,
        }
    }
}

impl<H: ?Sized> Point<H> {
    pub(crate) fn add(&mut self, subscriber: Subscriber<H>) {
        self.kinds = self.kinds.union(subscriber.kinds);
        // After every subscriber of equal or higher priority: stable in registration order.
        let at = self
            .subscribers
            .iter()
            .position(|s| s.priority < subscriber.priority)
            .unwrap_or(self.subscribers.len());
        self.subscribers.insert(at, subscriber);
    }

    /// Whether anyone subscribed for stanzas of this kind.
    #[inline]
    pub(crate) fn wants(&self, kind: xmppd_proto::StanzaKind) -> bool {
        self.kinds.contains(kind)
    }

    /// Whether anyone subscribed at all.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.subscribers.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Subscriber<H>> {
        self.subscribers.iter()
    }

    /// The modules subscribed, in the order they run (for logs and tests).
    pub(crate) fn order(&self) -> Vec<ModuleId> {
        self.subscribers.iter().map(|s| s.module).collect()
    }
}

/// Every hook point with its subscribers.
#[derive(Default)]
pub struct Hooks {
    pub(crate) pre_route: Point<dyn PreRouteFilter>,
    pub(crate) inbound: Point<dyn InboundHook>,
    pub(crate) delivered: Point<dyn DeliveredHook>,
    pub(crate) offline: Point<dyn OfflineHook>,
    pub(crate) outbound: Point<dyn OutboundHook>,
    pub(crate) broadcast_presence: Point<dyn BroadcastPresenceHook>,
    pub(crate) session: Point<dyn SessionHook>,
    pub(crate) iq_response: Point<dyn IqResponseHook>,
    pub(crate) session_state: Point<dyn SessionStateHook>,
    pub(crate) subscription: Point<dyn SubscriptionHook>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("pre_route", &self.pre_route.order())
            .field("inbound", &self.inbound.order())
            .field("delivered", &self.delivered.order())
            .field("offline", &self.offline.order())
            .field("outbound", &self.outbound.order())
            .field("broadcast_presence", &self.broadcast_presence.order())
            .field("session", &self.session.order())
            .field("iq_response", &self.iq_response.order())
            .field("session_state", &self.session_state.order())
            .field("subscription", &self.subscription.order())
            .finish()
    }
}
