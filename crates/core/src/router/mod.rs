//! The router: where every stanza goes (RFC 6120 §10, RFC 6121 §8). `docs/routing.md` is the
//! table of these rules.
//!
//! A stanza is serialised once when it is delivered and the bytes are shared by every
//! recipient. Errors are answered by bouncing an error stanza back through the router, never
//! in reply to an `error` (or an iq `result`), so bounces cannot loop.
//!
//! Every stanza passes the pre-route filters first, in [`Router::route`], whether it then takes
//! the direct path to a bound session or the general one; the hooks for local accounts run in
//! one place of the general path ([`Router::run_inbound`]), and the direct path is taken only
//! when no inbound hook wants the stanza's kind. With no subscribers, the direct path is what it
//! always was: one registry lookup and a queue push.

mod copies;
mod hooks;
mod local;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use jid::{BareJid, Jid};
use tracing::debug;
use xmppd_proto::{DefinedCondition, Stanza, StanzaError, StanzaKind, ns};
use xmppd_xml::Element;

use crate::accounts::Accounts;
use crate::client::sm::{SmConfig, StreamManagement};
use crate::completion::Completion;
use crate::component::ComponentRegistry;
use crate::hooks::Flow;
use crate::metrics::{Metrics, Peer};
use crate::module::{Registry, Routed};
use crate::outbound::Outbound;
use crate::per_address::AuthThrottle;
use crate::session::{DeliveryError, ResourceInfo, SessionRegistry};

/// The way out to other servers (federation). The router knows it only through this trait,
/// so core names no transport.
pub trait RemoteRoute: Send + Sync {
    /// Queues `stanza` (whose `from` is at a local domain or component) for the remote domain
    /// of its `to`. When it is refused at once, the error bounce for the sender comes back to
    /// be routed (as [`Stanza::error_reply`] makes it); failures found later (the domain
    /// cannot be reached) are bounced by the implementation through the router.
    fn send_remote(&self, stanza: Stanza, from_domain: &str, to_domain: &str) -> Option<Stanza>;

    /// Stanzas queued for remote domains and not yet written (for the metrics).
    fn queued(&self) -> usize;
}

/// Routes stanzas between local sessions, the server's own handlers and remote domains.
pub struct Router {
    hosts: HashSet<String, crate::FastHasher>,
    /// Hosts a reload added. Apart from [`Router::hosts`] so that the check every stanza
    /// makes stays a plain set lookup until a host is added (then one flag and a snapshot).
    /// A host a reload removes stays routed until the restart, so the sessions it still has
    /// keep working; new connections to it are refused by the listeners' policy.
    added_hosts: crate::Live<HashSet<String>>,
    any_added: std::sync::atomic::AtomicBool,
    components: Arc<ComponentRegistry>,
    remote: OnceLock<Arc<dyn RemoteRoute>>,
    sessions: Arc<SessionRegistry>,
    accounts: Accounts,
    registry: Registry,
    stream_management: Arc<StreamManagement>,
    auth_throttle: Arc<AuthThrottle>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

/// A copy of `stanza` addressed to `to` (same `from`, same children), e.g. a broadcast
/// presence sent on to one contact.
pub fn readdress(stanza: &Stanza, to: &Jid) -> Stanza {
    let mut el = stanza.element().clone();
    el.set_attr("to", to.as_str());
    Stanza::new_unchecked(stanza.kind(), stanza.from().cloned(), Some(to.clone()), el)
}

/// The defined condition of an error bounce (RFC 6120 §8.3.3), as its element is named;
/// `undefined-condition` when it names none we know.
fn bounce_condition(bounce: &Stanza) -> &'static str {
    bounce
        .element()
        .child("error", bounce.element().ns())
        .and_then(|error| {
            error
                .children()
                .find(|c| c.ns() == ns::STANZAS)
                .and_then(|c| DefinedCondition::from_name(c.name()))
        })
        .map_or("undefined-condition", DefinedCondition::as_str)
}

/// Serialises a stanza for a client stream (default namespace `jabber:client`).
pub fn client_bytes(stanza: &Stanza) -> Bytes {
    let mut out = Vec::with_capacity(256);
    stanza.element().write_to(&mut out, ns::CLIENT);
    Bytes::from(out)
}

static PUSH_ID: AtomicU64 = AtomicU64::new(1);

/// Sends `payload` in an iq set from `user`'s bare JID to each of its resources that `select`
/// picks: the server's pushes (roster, block list), each with its own id, answers ignored.
pub async fn push(
    router: &Router,
    user: &BareJid,
    payload: &Element,
    select: impl Fn(&ResourceInfo) -> bool,
) {
    for r in router.sessions().resources(user) {
        if !select(&r) {
            continue;
        }
        let id = format!("push{}", PUSH_ID.fetch_add(1, Ordering::Relaxed));
        let from = Jid::from(user.clone());
        let to = Jid::from(r.jid.clone());
        let el = Element::new("iq", ns::CLIENT)
            .with_attr("type", "set")
            .with_attr("id", id)
            .with_attr("from", from.as_str())
            .with_attr("to", to.as_str())
            .with_child(payload.clone());
        router
            .route(Stanza::new_unchecked(
                StanzaKind::Iq,
                Some(from),
                Some(to),
                el,
            ))
            .await;
    }
}

/// How long [`Router::route_owed`] waits for room in a session's queue: a client that has
/// not read half its queue in this time is not reading.
pub const OWED_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// What became of a stanza offered to the session bound to its `to`.
enum SessionDelivery {
    /// Queued for the session (the stanza, shared with the queue, for the delivered hooks).
    Delivered(Arc<Stanza>),
    /// Refused, with this bounce for the sender.
    Handled(Option<Stanza>),
    /// Not for a session bound here: routing goes on with the stanza.
    NotBound(Stanza),
}

impl Router {
    /// A router serving `hosts`.
    pub fn new(
        hosts: HashSet<String>,
        sessions: Arc<SessionRegistry>,
        accounts: Accounts,
        registry: Registry,
    ) -> Self {
        Router {
            hosts: hosts.into_iter().collect(),
            added_hosts: crate::Live::default(),
            any_added: std::sync::atomic::AtomicBool::new(false),
            components: Arc::new(ComponentRegistry::default()),
            remote: OnceLock::new(),
            sessions,
            accounts,
            registry,
            stream_management: Arc::default(),
            auth_throttle: Arc::default(),
            metrics: Arc::default(),
        }
    }

    /// Counts into `metrics` (which the storage and the listeners share) instead of a
    /// registry of its own.
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Stanzas waiting for streams to other servers to open.
    pub fn remote_queue(&self) -> usize {
        self.remote.get().map_or(0, |remote| remote.queued())
    }

    /// Stream management (XEP-0198) with these settings instead of the defaults.
    pub fn with_stream_management(mut self, config: SmConfig) -> Self {
        self.stream_management = Arc::new(StreamManagement::new(config));
        self
    }

    /// Stream management: resumable sessions and their settings.
    pub fn stream_management(&self) -> &Arc<StreamManagement> {
        &self.stream_management
    }

    /// Failed authentications slow their address down with these settings instead of the
    /// defaults (XEP-0205 §4.3).
    pub fn with_auth_throttle(mut self, throttle: Arc<AuthThrottle>) -> Self {
        self.auth_throttle = throttle;
        self
    }

    /// The failed authentications of every client address, shared by every way in (client
    /// streams on any transport, component handshakes).
    pub fn auth_throttle(&self) -> &Arc<AuthThrottle> {
        &self.auth_throttle
    }

    /// Routes the domains of `components` to their external components (XEP-0114).
    pub fn with_components(mut self, components: Arc<ComponentRegistry>) -> Self {
        self.components = components;
        self
    }

    /// Connects the router to federation; stanzas to other domains go there from now on.
    /// Only the first call counts (the route out is fixed for the router's life).
    pub fn set_remote(&self, remote: Arc<dyn RemoteRoute>) {
        let _ = self.remote.set(remote);
    }

    /// Whether `domain` is served here: a host, a component or an in-process service.
    pub fn is_served_domain(&self, domain: &str) -> bool {
        self.is_local_domain(domain)
            || self.components.is_component(domain)
            || self.registry.service_of(domain).is_some()
    }

    /// Whether `jid` speaks for this server: a host's own domain, or any address at one of
    /// its services or components (a room). Its accounts speak for themselves.
    pub fn is_server_owned(&self, jid: &Jid) -> bool {
        let domain = jid.domain().as_str();
        if self.is_local_domain(domain) {
            return jid.node().is_none();
        }
        self.is_served_domain(domain)
    }

    /// The external components.
    pub fn components(&self) -> &Arc<ComponentRegistry> {
        &self.components
    }

    /// The hosts served here, sorted.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = self.hosts.iter().cloned().collect();
        hosts.extend(self.added_hosts.get().iter().cloned());
        hosts.sort();
        hosts
    }

    /// Whether `domain` is one of the hosts served here.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.hosts.contains(domain)
            || (self.any_added.load(std::sync::atomic::Ordering::Acquire)
                && self.added_hosts.get().contains(domain))
    }

    /// Serves `hosts` too from now on (a reload that adds hosts); returns those that were
    /// not served before.
    pub fn add_hosts(&self, hosts: &[String]) -> Vec<String> {
        let mut added = HashSet::clone(&self.added_hosts.get());
        let new: Vec<String> = hosts
            .iter()
            .filter(|h| !self.hosts.contains(h.as_str()) && added.insert((*h).clone()))
            .cloned()
            .collect();
        if !new.is_empty() {
            self.added_hosts.set(added);
            self.any_added
                .store(true, std::sync::atomic::Ordering::Release);
        }
        new
    }

    /// The session registry.
    pub fn sessions(&self) -> &Arc<SessionRegistry> {
        &self.sessions
    }

    /// The accounts.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// The module registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Routes a stanza whose `from` the server vouches for.
    pub async fn route(&self, stanza: Stanza) {
        if let Some(completion) = self.route_with(stanza, false).await {
            completion.done().await;
        }
    }

    /// Routes a stanza and hands its error bounce, if any, back instead of routing it: for a
    /// sender that the bounce would reach while it is busy routing (a room sending under its
    /// own lock, whose occupant's error comes back to it).
    pub async fn route_keeping_bounce(&self, stanza: Stanza) -> Option<Stanza> {
        match self.route_round(stanza, false).await {
            Routed::Done(bounce) => bounce,
            Routed::Later(completion) => {
                completion.done().await;
                None
            }
        }
    }

    /// Routes a stanza a client session sent: a service may finish handling it later, and
    /// then the session is given the [`Completion`] to count it by.
    pub(super) async fn route_with(
        &self,
        stanza: Stanza,
        may_complete_later: bool,
    ) -> Option<Completion> {
        // A bounce is routed once more; an error is never bounced, so that ends it.
        let bounce = match self.route_round(stanza, may_complete_later).await {
            Routed::Done(bounce) => bounce?,
            Routed::Later(completion) => return Some(completion),
        };
        if let Routed::Later(completion) = self.route_round(bounce, false).await {
            completion.done().await;
        }
        None
    }

    /// Routes one stanza: the pre-route filters, then a bound session or the general path.
    async fn route_round(&self, stanza: Stanza, may_complete_later: bool) -> Routed {
        let mut stanza = stanza;
        if !self.registry.hooks.pre_route.is_empty() && self.pre_route_applies(&stanza) {
            match Box::pin(self.run_pre_route(stanza)).await {
                Flow::Continue(s) => stanza = s,
                Flow::Stop(bounce) => return Routed::Done(bounce),
            }
        }
        let routed = match self.route_to_bound_session(stanza) {
            SessionDelivery::Delivered(_) => Routed::Done(None),
            SessionDelivery::Handled(bounce) => Routed::Done(bounce),
            // Boxed: the general path's future is large (storage, modules, offline), and
            // inline it would be built and moved for every stanza, most of which never take
            // it.
            SessionDelivery::NotBound(stanza) => {
                Box::pin(self.route_once(stanza, may_complete_later)).await
            }
        };
        if let Routed::Done(Some(bounce)) = &routed {
            self.metrics.routing_error(bounce_condition(bounce));
        }
        routed
    }

    /// Routes an error owed to the sender of a stanza that could not be delivered, from a task
    /// other than the sender's session (a session that ended with stanzas queued, a failed
    /// federation link): when the sender's session is bound here and its queue is more than
    /// half full, this waits — up to [`OWED_WAIT`] — until it has written enough, so that a
    /// burst of such errors is not lost to a queue that is full for a moment while its client
    /// reads. A session that still has no room after that is closed as a slow consumer, as
    /// any delivery to a full queue does. Never call it from the task of the session the
    /// bounce is for: that task is what empties the queue.
    pub async fn route_owed(&self, bounce: Stanza) {
        let session = bounce
            .to()
            .and_then(|to| to.try_as_full().ok())
            .filter(|full| self.is_local_domain(full.domain().as_str()))
            .and_then(|full| self.sessions.get(full));
        if let Some(session) = session
            && tokio::time::timeout(OWED_WAIT, session.room_for_owed())
                .await
                .is_err()
        {
            debug!(to = %session.jid, "no room for an owed error; delivering anyway");
        }
        self.route(bounce).await;
    }

    /// Whether a hook for local accounts (inbound, delivered) applies to the stanza (it is
    /// subscribed for its kind and its `applies()` says so): then it takes the general path,
    /// where those hooks run.
    fn account_hooks_want(&self, stanza: &Stanza) -> bool {
        let kind = stanza.kind();
        let delivered = &self.registry.hooks.delivered;
        self.inbound_hooks_apply(stanza)
            || (delivered.wants(kind)
                && delivered
                    .iter()
                    .any(|sub| sub.kinds.contains(kind) && sub.hook.applies(self, stanza)))
    }

    /// Whether an inbound hook subscribed for the stanza's kind says it applies to it.
    pub(super) fn inbound_hooks_apply(&self, stanza: &Stanza) -> bool {
        let kind = stanza.kind();
        let hooks = &self.registry.hooks.inbound;
        hooks.wants(kind)
            && hooks
                .iter()
                .any(|sub| sub.kinds.contains(kind) && sub.hook.applies(self, stanza))
    }

    /// The common case, decided without waiting: a stanza to the full JID of a local account
    /// whose session is bound here (a chat message between two online users), when no inbound
    /// or delivered hook wants to see it. Anything else comes back for
    /// [`Router::route_once`]; what is handled here takes exactly the path `route_once` would.
    fn route_to_bound_session(&self, stanza: Stanza) -> SessionDelivery {
        let direct = match stanza.to().map(Jid::try_as_full) {
            Some(Ok(full)) => {
                let domain = full.domain().as_str();
                full.node().is_some()
                    && !self.account_hooks_want(&stanza)
                    && self.is_local_domain(domain)
            }
            _ => false,
        };
        if !direct {
            return SessionDelivery::NotBound(stanza);
        }
        self.deliver_to_bound_session(stanza)
    }

    /// RFC 6121 §8.5.3.1: a connected resource gets it, whatever its presence. The stanza
    /// comes back when no session is bound to its `to` (a full JID).
    fn deliver_to_bound_session(&self, stanza: Stanza) -> SessionDelivery {
        // The copy kept for rerouting is the stanza itself, shared, not a deep copy.
        let stanza = Arc::new(stanza);
        let Some(Ok(full)) = stanza.to().map(Jid::try_as_full) else {
            return SessionDelivery::NotBound(Arc::unwrap_or_clone(stanza));
        };
        let outbound = || Outbound {
            bytes: client_bytes(&stanza),
            reroute: Some(stanza.clone()),
        };
        match self.sessions.deliver_to(full, outbound) {
            Some(Ok(())) => SessionDelivery::Delivered(stanza),
            Some(Err(DeliveryError::NoSession | DeliveryError::QueueFull)) => {
                SessionDelivery::Handled(
                    stanza.error_reply(&StanzaError::new(DefinedCondition::RecipientUnavailable)),
                )
            }
            None => SessionDelivery::NotBound(Arc::unwrap_or_clone(stanza)),
        }
    }

    /// Routes one stanza; returns the error bounce to route next, if any, or the completion
    /// of a service that finishes it later (only when `may_complete_later`).
    async fn route_once(&self, stanza: Stanza, may_complete_later: bool) -> Routed {
        let to = match stanza.to() {
            Some(to) => to.clone(),
            // No 'to': handled on behalf of the sender's account (RFC 6120 §10.3).
            None => match stanza.from() {
                Some(from) => Jid::from(from.to_bare()),
                None => return Routed::Done(None),
            },
        };
        let domain = to.domain().as_str();
        if self.components.is_component(domain) {
            return Routed::Done(self.to_component(stanza, domain));
        }
        if let Some(service) = self.registry.service_of(domain) {
            if may_complete_later {
                return service.handle_from_session(self, stanza).await;
            }
            return Routed::Done(service.handle(self, stanza).await);
        }
        if !self.is_local_domain(domain) {
            return Routed::Done(self.to_remote(stanza, domain));
        }
        if to.node().is_none() {
            return Routed::Done(self.to_server(&stanza, &to.to_bare()).await);
        }
        Routed::Done(self.to_account(stanza, &to).await)
    }

    /// A remote domain: through federation, for stanzas from our own domains only (the server
    /// relays for no one else).
    fn to_remote(&self, stanza: Stanza, to_domain: &str) -> Option<Stanza> {
        let from_domain = match stanza.from() {
            Some(from) if self.is_served_domain(from.domain().as_str()) => {
                from.domain().as_str().to_owned()
            }
            _ => {
                debug!(
                    to = to_domain,
                    "not relaying a stanza from a foreign domain"
                );
                return None;
            }
        };
        let Some(remote) = self.remote.get() else {
            let err = StanzaError::new(DefinedCondition::RemoteServerNotFound)
                .with_text(format!("{to_domain} is not reachable: federation is off"));
            return stanza.error_reply(&err);
        };
        let kind = stanza.kind();
        let refused = remote.send_remote(stanza, &from_domain, to_domain);
        if refused.is_none() {
            self.metrics.sent(Peer::Server, kind);
        }
        refused
    }

    /// XEP-0114 §3: everything addressed to a component's domain (any JID at it) goes to the
    /// component, re-serialised in the component namespace.
    fn to_component(&self, stanza: Stanza, domain: &str) -> Option<Stanza> {
        let Some(link) = self.components.link(domain) else {
            let err = StanzaError::service_unavailable()
                .with_text(format!("the component {domain} is not connected"));
            return stanza.error_reply(&err);
        };
        let mut element = stanza.element().clone();
        element.rename_ns(ns::CLIENT, ns::COMPONENT_ACCEPT);
        let mut bytes = Vec::with_capacity(256);
        element.write_to(&mut bytes, ns::COMPONENT_ACCEPT);
        let outbound = Outbound {
            bytes: Bytes::from(bytes),
            reroute: Some(Arc::new(stanza.clone())),
        };
        match link.tx.try_send(outbound) {
            Ok(()) => {
                self.metrics.sent(Peer::Component, stanza.kind());
                None
            }
            Err(_) => {
                let err = StanzaError::new(DefinedCondition::RecipientUnavailable)
                    .with_text(format!("the component {domain} is not accepting stanzas"));
                stanza.error_reply(&err)
            }
        }
    }
}
