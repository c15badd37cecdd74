//! The router: where every stanza goes (RFC 6120 §10, RFC 6121 §8). `docs/routing.md` is the
//! table of these rules.
//!
//! A stanza is serialised once when it is delivered and the bytes are shared by every
//! recipient. Errors are answered by bouncing an error stanza back through the router, never
//! in reply to an `error` (or an iq `result`), so bounces cannot loop.

use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use jid::{BareJid, FullJid, Jid};
use tracing::{debug, warn};
use xmppd_proto::{DefinedCondition, Stanza, StanzaError, StanzaKind, ns};

use crate::accounts::Accounts;
use crate::component::ComponentRegistry;
use crate::hooks::{InboundPresenceKind, OfflineOutcome, SessionPresence, SubscriptionKind};
use crate::module::{IqRequest, IqTarget, IqType, Registry};
use crate::session::{DeliveryError, Outbound, ResourceInfo, SessionRegistry};

/// The way out to other servers (federation). The router knows it only through this trait,
/// so core names no transport.
pub trait RemoteRoute: Send + Sync {
    /// Queues `stanza` (whose `from` is at a local domain or component) for the remote domain
    /// of its `to`. When it is refused at once, the error bounce for the sender comes back to
    /// be routed (as [`Stanza::error_reply`] makes it); failures found later (the domain
    /// cannot be reached) are bounced by the implementation through the router.
    fn send_remote(&self, stanza: Stanza, from_domain: &str, to_domain: &str) -> Option<Stanza>;
}

/// Routes stanzas between local sessions, the server's own handlers and remote domains.
pub struct Router {
    hosts: HashSet<String, crate::FastHasher>,
    components: Arc<ComponentRegistry>,
    remote: OnceLock<Arc<dyn RemoteRoute>>,
    sessions: Arc<SessionRegistry>,
    accounts: Accounts,
    registry: Registry,
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

/// Serialises a stanza for a client stream (default namespace `jabber:client`).
pub fn client_bytes(stanza: &Stanza) -> Bytes {
    let mut out = Vec::with_capacity(256);
    stanza.element().write_to(&mut out, ns::CLIENT);
    Bytes::from(out)
}

fn message_type(stanza: &Stanza) -> &str {
    stanza.type_attr().unwrap_or("normal")
}

/// What became of a stanza offered to the session bound to its `to`.
enum SessionDelivery {
    /// Delivered (`None`), or refused with this bounce for the sender.
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
            components: Arc::new(ComponentRegistry::default()),
            remote: OnceLock::new(),
            sessions,
            accounts,
            registry,
        }
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

    /// Whether `domain` is served here: a host or a component.
    pub fn is_served_domain(&self, domain: &str) -> bool {
        self.is_local_domain(domain) || self.components.is_component(domain)
    }

    /// The external components.
    pub fn components(&self) -> &Arc<ComponentRegistry> {
        &self.components
    }

    /// Whether `domain` is served here.
    pub fn is_local_domain(&self, domain: &str) -> bool {
        self.hosts.contains(domain)
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
        let mut pending = Some(stanza);
        // Bounces are routed iteratively; an error is never bounced, so this ends after at
        // most two rounds.
        for _ in 0..2 {
            let Some(stanza) = pending.take() else { return };
            pending = match self.route_to_bound_session(stanza) {
                SessionDelivery::Handled(bounce) => bounce,
                // Boxed: the general path's future is large (storage, modules, offline), and
                // inline it would be built and moved for every stanza, most of which never
                // take it.
                SessionDelivery::NotBound(stanza) => Box::pin(self.route_once(stanza)).await,
            };
        }
    }

    /// The common case, decided without waiting: a stanza to the full JID of a local account
    /// whose session is bound here (a chat message between two online users). Anything else
    /// comes back for [`Router::route_once`]; what is handled here takes exactly the path
    /// `route_once` would.
    fn route_to_bound_session(&self, stanza: Stanza) -> SessionDelivery {
        let direct = match stanza.to().map(Jid::try_as_full) {
            Some(Ok(full)) => {
                let domain = full.domain().as_str();
                full.node().is_some()
                    && !self.components.is_component(domain)
                    && self.is_local_domain(domain)
                    && !self.is_about_the_account(&stanza)
            }
            _ => false,
        };
        if !direct {
            return SessionDelivery::NotBound(stanza);
        }
        self.deliver_to_bound_session(stanza)
    }

    /// Subscriptions and probes are about accounts, not resources (RFC 6121 §3.1.3), when a
    /// module handles them.
    fn is_about_the_account(&self, stanza: &Stanza) -> bool {
        stanza.kind() == StanzaKind::Presence
            && self.registry.inbound_presence_handler().is_some()
            && InboundPresenceKind::from_type(stanza.type_attr()).is_some()
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
            Some(Ok(())) => SessionDelivery::Handled(None),
            Some(Err(DeliveryError::NoSession | DeliveryError::QueueFull)) => {
                SessionDelivery::Handled(
                    stanza.error_reply(&StanzaError::new(DefinedCondition::RecipientUnavailable)),
                )
            }
            None => SessionDelivery::NotBound(Arc::unwrap_or_clone(stanza)),
        }
    }

    /// Routes one stanza; returns the error bounce to route next, if any.
    async fn route_once(&self, stanza: Stanza) -> Option<Stanza> {
        let to = match stanza.to() {
            Some(to) => to.clone(),
            // No 'to': handled on behalf of the sender's account (RFC 6120 §10.3).
            None => match stanza.from() {
                Some(from) => Jid::from(from.to_bare()),
                None => return None,
            },
        };
        if self.components.is_component(to.domain().as_str()) {
            return self.to_component(stanza, to.domain().as_str());
        }
        if !self.is_local_domain(to.domain().as_str()) {
            return self.to_remote(stanza, to.domain().as_str());
        }
        if to.node().is_none() {
            return self.to_server(&stanza, &to.to_bare()).await;
        }
        match to.try_as_full() {
            Ok(full) => self.to_full(stanza, full).await,
            Err(bare) => self.to_bare(stanza, bare).await,
        }
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
        remote.send_remote(stanza, &from_domain, to_domain)
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
            Ok(()) => None,
            Err(_) => {
                let err = StanzaError::new(DefinedCondition::RecipientUnavailable)
                    .with_text(format!("the component {domain} is not accepting stanzas"));
                stanza.error_reply(&err)
            }
        }
    }

    async fn handle_iq(&self, stanza: &Stanza, target: IqTarget, to: &BareJid) -> Option<Stanza> {
        let iq_type = match stanza.type_attr() {
            Some("get") => IqType::Get,
            Some("set") => IqType::Set,
            // A result or error for the server or an account: nothing is waiting for it.
            _ => return None,
        };
        let (Some(payload), Some(from)) = (stanza.iq_payload(), stanza.from()) else {
            return stanza.error_reply(&StanzaError::bad_request("an iq needs one payload"));
        };
        let Some(handler) = self.registry.iq_handler(target, iq_type, payload) else {
            return stanza.error_reply(&StanzaError::service_unavailable());
        };
        let request = IqRequest {
            stanza,
            payload,
            from,
            to,
            router: self,
        };
        match handler.handle(request).await {
            Ok(result) => Some(stanza.iq_result(result)),
            Err(err) => stanza.error_reply(&err),
        }
    }

    async fn to_server(&self, stanza: &Stanza, domain: &BareJid) -> Option<Stanza> {
        match stanza.kind() {
            StanzaKind::Iq => self.handle_iq(stanza, IqTarget::Server, domain).await,
            StanzaKind::Message => match message_type(stanza) {
                "error" | "headline" | "groupchat" => None,
                _ => stanza.error_reply(&StanzaError::service_unavailable()),
            },
            // Presence to the server itself means nothing here (probes and directed presence
            // to the domain are ignored).
            StanzaKind::Presence => None,
        }
    }

    /// Whether the account exists (a bound session proves it without a storage read).
    async fn account_exists(&self, bare: &BareJid) -> bool {
        if !self.sessions.resources(bare).is_empty() {
            return true;
        }
        let (Some(node), domain) = (bare.node(), bare.domain()) else {
            return false;
        };
        match self.accounts.exists(domain.as_str(), node.as_str()).await {
            Ok(exists) => exists,
            Err(e) => {
                warn!(%bare, error = %e, "account lookup failed while routing");
                false
            }
        }
    }

    async fn to_bare(&self, stanza: Stanza, bare: &BareJid) -> Option<Stanza> {
        if !self.account_exists(bare).await {
            // RFC 6121 §8.5.1: no account. Presence is dropped so existence does not leak.
            return match stanza.kind() {
                StanzaKind::Presence => None,
                StanzaKind::Iq | StanzaKind::Message => {
                    stanza.error_reply(&StanzaError::service_unavailable())
                }
            };
        }
        match stanza.kind() {
            StanzaKind::Iq => self.handle_iq(&stanza, IqTarget::Account, bare).await,
            StanzaKind::Message => self.message_to_bare(stanza, bare).await,
            StanzaKind::Presence => {
                if let (Some(kind), Some(handler)) = (
                    InboundPresenceKind::from_type(stanza.type_attr()),
                    self.registry.inbound_presence_handler(),
                ) {
                    // Subscriptions and probes are the account's server's business
                    // (RFC 6121 §3, §4.3).
                    handler.inbound_presence(self, kind, stanza, bare).await;
                    return None;
                }
                // §8.5.2.1.2 / §8.5.2.2.2: to every available resource, else nowhere.
                self.deliver_to_available(&stanza, bare);
                None
            }
        }
    }

    /// RFC 6121 §8.5.2: a message to a bare JID.
    async fn message_to_bare(&self, stanza: Stanza, bare: &BareJid) -> Option<Stanza> {
        let resources = self.sessions.resources(bare);
        let non_negative: Vec<_> = resources
            .into_iter()
            .filter(|r| r.priority.is_some_and(|p| p >= 0))
            .collect();
        match message_type(&stanza) {
            "error" => None,
            "groupchat" => stanza.error_reply(&StanzaError::service_unavailable()),
            "headline" => {
                self.deliver_all(&stanza, &non_negative);
                None
            }
            _ => {
                // normal/chat (and unknown types, treated as normal): the resources with the
                // highest non-negative priority, all of them when tied.
                let top = non_negative.iter().filter_map(|r| r.priority).max();
                let targets: Vec<_> = non_negative
                    .into_iter()
                    .filter(|r| r.priority == top)
                    .collect();
                if targets.is_empty() {
                    // §8.5.2.2.1: offline storage (XEP-0160), committed before the stanza
                    // counts as handled; without it, or when it refuses, the sender learns
                    // the message was not delivered instead of losing it silently.
                    let Some(store) = self.registry.offline_store_handler() else {
                        let err = StanzaError::service_unavailable()
                            .with_text("the recipient is offline and offline storage is off");
                        return stanza.error_reply(&err);
                    };
                    return match store.store(&stanza, bare).await {
                        Ok(OfflineOutcome::Stored | OfflineOutcome::Discarded) => None,
                        Err(err) => stanza.error_reply(&err),
                    };
                }
                let stanza = Arc::new(stanza);
                let delivered = self.deliver_shared(stanza.clone(), &targets);
                if delivered == 0 {
                    return stanza
                        .error_reply(&StanzaError::new(DefinedCondition::RecipientUnavailable));
                }
                None
            }
        }
    }

    async fn to_full(&self, stanza: Stanza, full: &FullJid) -> Option<Stanza> {
        if self.is_about_the_account(&stanza) {
            return Box::pin(self.to_bare(stanza, &full.to_bare())).await;
        }
        let stanza = match self.deliver_to_bound_session(stanza) {
            SessionDelivery::Handled(bounce) => return bounce,
            SessionDelivery::NotBound(stanza) => stanza,
        };
        let bare = full.to_bare();
        if !self.account_exists(&bare).await {
            return match stanza.kind() {
                StanzaKind::Presence => None,
                _ => stanza.error_reply(&StanzaError::service_unavailable()),
            };
        }
        // §8.5.3.2: no such resource.
        match stanza.kind() {
            StanzaKind::Iq => stanza.error_reply(&StanzaError::service_unavailable()),
            StanzaKind::Message => match message_type(&stanza) {
                "groupchat" => stanza.error_reply(&StanzaError::service_unavailable()),
                "headline" | "error" => None,
                _ => self.message_to_bare(stanza, &bare).await,
            },
            StanzaKind::Presence => match stanza.type_attr() {
                Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed") => {
                    Box::pin(self.to_bare(stanza, &bare)).await
                }
                _ => None,
            },
        }
    }

    /// Hands a stanza to every available resource of a local account as it is, with no
    /// further processing (RFC 6121 §8.5.2.1.2); returns how many accepted it. For the
    /// account's own server, e.g. delivering a contact's subscription request.
    pub fn deliver_to_available(&self, stanza: &Stanza, bare: &BareJid) -> usize {
        let available: Vec<_> = self
            .sessions
            .resources(bare)
            .into_iter()
            .filter(|r| r.priority.is_some())
            .collect();
        self.deliver_all(stanza, &available)
    }

    /// Hands a stanza to one bound session as it is; whether it was queued.
    pub fn deliver_to_session(&self, stanza: &Stanza, full: &FullJid) -> bool {
        let outbound = || Outbound {
            bytes: client_bytes(stanza),
            reroute: Some(Arc::new(stanza.clone())),
        };
        matches!(self.sessions.deliver_to(full, outbound), Some(Ok(())))
    }

    /// Delivers to each session, serialising once; returns how many accepted it.
    fn deliver_all(&self, stanza: &Stanza, sessions: &[ResourceInfo]) -> usize {
        if sessions.is_empty() {
            return 0;
        }
        self.deliver_shared(Arc::new(stanza.clone()), sessions)
    }

    /// [`Router::deliver_all`] for a stanza the router owns: shared, not copied.
    fn deliver_shared(&self, stanza: Arc<Stanza>, sessions: &[ResourceInfo]) -> usize {
        if sessions.is_empty() {
            return 0;
        }
        let outbound = Outbound {
            bytes: client_bytes(&stanza),
            reroute: Some(stanza),
        };
        let mut delivered = 0;
        for session in sessions {
            match session.deliver(outbound.clone()) {
                Ok(()) => delivered += 1,
                Err(e) => debug!(to = %session.jid, error = %e, "delivery failed"),
            }
        }
        delivered
    }

    /// A session's broadcast presence changed (the registry already records it): the
    /// account's own resources are told, then the session presence hook (contacts, probes,
    /// offline messages). Without a hook, the entities the session sent directed presence to
    /// still learn it became unavailable (RFC 6121 §4.6.3).
    pub async fn session_presence(&self, event: SessionPresence<'_>) {
        match &event {
            SessionPresence::Available {
                jid,
                stanza,
                initial,
                ..
            } => self.broadcast_own_presence(jid, stanza, *initial),
            SessionPresence::Unavailable { jid, stanza, .. } => {
                self.broadcast_own_presence(jid, stanza, false)
            }
        }
        match self.registry.session_presence_hook() {
            Some(hook) => hook.session_presence(self, &event).await,
            None => {
                if let SessionPresence::Unavailable {
                    stanza, directed, ..
                } = &event
                {
                    for to in directed.iter() {
                        self.route(readdress(stanza, to)).await;
                    }
                }
            }
        }
    }

    /// A subscription stanza from a local session (RFC 6121 §3): the outbound subscription
    /// handler updates the user's roster and routes it; without one it is simply routed.
    pub async fn outbound_subscription(
        &self,
        kind: SubscriptionKind,
        stanza: Stanza,
        user: &FullJid,
    ) {
        match self.registry.outbound_subscription_handler() {
            Some(handler) => {
                handler
                    .outbound_subscription(self, kind, stanza, user)
                    .await
            }
            None => self.route(stanza).await,
        }
    }

    /// A session's broadcast presence (no `to`), for the user's own resources (RFC 6121
    /// §4.2.2, §4.5.2). Available presence goes to every available resource of the account,
    /// including the sender; on its initial presence the sender also receives the current
    /// presence of the account's other available resources. Unavailable presence goes to the
    /// other available resources. The caller has already recorded the new state with
    /// [`SessionRegistry::set_presence`].
    pub fn broadcast_own_presence(&self, from: &FullJid, stanza: &Stanza, initial: bool) {
        let resources = self.sessions.resources(&from.to_bare());
        let unavailable = stanza.type_attr() == Some("unavailable");
        let targets: Vec<_> = resources
            .iter()
            .filter(|r| r.priority.is_some() && !(unavailable && &r.jid == from))
            .cloned()
            .collect();
        self.deliver_all(stanza, &targets);
        if initial
            && !unavailable
            && let Some(me) = resources.iter().find(|r| &r.jid == from)
        {
            for other in resources.iter().filter(|r| &r.jid != from) {
                if let Some(presence) = &other.last_presence {
                    let _ = me.deliver(Outbound {
                        bytes: client_bytes(presence),
                        reroute: None,
                    });
                }
            }
        }
    }
}
