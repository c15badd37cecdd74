//! The heart of xmppd: routing, the session registry, modules and the storage shapes.
//!
//! Nothing here opens a socket; listeners (c2s, s2s, http) hand stanzas to the router and
//! receive stanzas for their sessions through bounded channels. They share one accept step
//! ([`listener::accept_next`]) on sockets they bound themselves.

pub mod accounts;
pub mod client;
pub mod completion;
pub mod component;
pub mod extensions;
pub mod group_commit;
pub mod hooks;
pub mod invites;
pub mod listener;
pub mod metrics;
pub mod module;
pub mod outbound;
pub mod per_address;
pub mod queue;
pub mod read_shaper;
pub mod router;
pub mod session;
pub mod storage;
pub mod striped;

pub use accounts::{AccountError, Accounts};
pub use client::{ClientSession, ClientStream, StreamAction};
pub use component::ComponentRegistry;
pub use extensions::Extensions;
pub use hooks::{
    BroadcastPresenceHook, DeliveredHook, Flow, InboundHook, InboundPresenceKind, IqResponseHook,
    KindMask, OfflineFlow, OfflineHook, OutboundHook, PreRouteFilter, Priority, SessionEvent,
    SessionHook, SessionRef, SessionStateHook, Subscription, SubscriptionHook, SubscriptionKind,
};
pub use invites::{Invite, InviteKind, Invites, NewInvite};
pub use module::{
    AccountItems, ConfigSource, Fixed, HostModules, HostServices, InBandRegistration, IqHandler,
    IqRequest, IqTarget, IqType, Live, Module, ModuleCtx, ModuleError, NoSettings, Reconfigure,
    Reconfigured, RegistrationRequest, Registry, RegistryBuilder, ReloadPlan, RestartKey,
    RouterHandle, ServerNodes, Service,
};
pub use outbound::Outbound;
pub use queue::{Next, QueueReceiver, QueueSender, QueueSignal, session_queue};
pub use router::{RemoteRoute, Router};
pub use session::{SessionControl, SessionOrigin, SessionRegistry};
pub use striped::StripedLocks;

/// The hasher of the maps and sets looked up for every routed stanza (served domains,
/// components, the session registry): foldhash, several times faster than std's SipHash on
/// short keys, and seeded per process so that keys chosen to collide (account names under open
/// registration) cannot be precomputed.
pub type FastHasher = foldhash::fast::RandomState;
