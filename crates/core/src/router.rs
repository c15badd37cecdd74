//! The router: where every stanza goes (RFC 6120 §10, RFC 6121 §8). `docs/routing.md` is the
//! table of these rules.
//!
//! A stanza is serialised once when it is delivered and the bytes are shared by every
//! recipient. Errors are answered by bouncing an error stanza back through the router, never
//! in reply to an `error` (or an iq `result`), so bounces cannot loop.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use jid::{BareJid, FullJid, Jid};
use tracing::{debug, warn};
use xmppd_proto::{DefinedCondition, Stanza, StanzaError, StanzaKind, ns};

use crate::accounts::Accounts;
use crate::module::{IqRequest, IqTarget, IqType, Registry};
use crate::session::{DeliveryError, Outbound, ResourceInfo, SessionRegistry};

/// Routes stanzas between local sessions, the server's own handlers and (later) remote
/// domains.
pub struct Router {
    hosts: HashSet<String>,
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

/// Serialises a stanza for a client stream (default namespace `jabber:client`).
pub fn client_bytes(stanza: &Stanza) -> Bytes {
    let mut out = Vec::with_capacity(256);
    stanza.element().write_to(&mut out, ns::CLIENT);
    Bytes::from(out)
}

fn message_type(stanza: &Stanza) -> &str {
    stanza.type_attr().unwrap_or("normal")
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
            hosts,
            sessions,
            accounts,
            registry,
        }
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
            pending = self.route_once(stanza).await;
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
        if !self.is_local_domain(to.domain().as_str()) {
            // Federation is not wired in yet: every remote domain is unreachable.
            let err = StanzaError::new(DefinedCondition::RemoteServerNotFound)
                .with_text(format!("{} is not reachable from this server", to.domain()));
            return stanza.error_reply(&err);
        }
        if to.node().is_none() {
            return self.to_server(&stanza, &to.to_bare()).await;
        }
        match to.try_as_full() {
            Ok(full) => self.to_full(stanza, full).await,
            Err(bare) => self.to_bare(stanza, bare).await,
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
            StanzaKind::Message => self.message_to_bare(stanza, bare),
            StanzaKind::Presence => {
                // §8.5.2.1.2 / §8.5.2.2.2: to every available resource, else nowhere.
                let available: Vec<_> = self
                    .sessions
                    .resources(bare)
                    .into_iter()
                    .filter(|r| r.priority.is_some())
                    .collect();
                self.deliver_all(&stanza, &available);
                None
            }
        }
    }

    /// RFC 6121 §8.5.2: a message to a bare JID.
    fn message_to_bare(&self, stanza: Stanza, bare: &BareJid) -> Option<Stanza> {
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
                    // No offline storage is wired in yet: the sender learns the message
                    // was not delivered instead of losing it silently.
                    let err = StanzaError::service_unavailable()
                        .with_text("the recipient is offline and offline storage is off");
                    return stanza.error_reply(&err);
                }
                let delivered = self.deliver_all(&stanza, &targets);
                if delivered == 0 {
                    return stanza
                        .error_reply(&StanzaError::new(DefinedCondition::RecipientUnavailable));
                }
                None
            }
        }
    }

    async fn to_full(&self, stanza: Stanza, full: &FullJid) -> Option<Stanza> {
        if let Some(session) = self.sessions.get(full) {
            // §8.5.3.1: a connected resource gets it, whatever its presence. The queued copy
            // for rerouting is the stanza itself, shared, not a deep copy.
            let stanza = Arc::new(stanza);
            return match self.deliver(stanza.clone(), &session) {
                Ok(()) => None,
                Err(DeliveryError::NoSession | DeliveryError::QueueFull) => {
                    stanza.error_reply(&StanzaError::new(DefinedCondition::RecipientUnavailable))
                }
            };
        }
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
                _ => self.message_to_bare(stanza, &bare),
            },
            StanzaKind::Presence => match stanza.type_attr() {
                Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed") => {
                    Box::pin(self.to_bare(stanza, &bare)).await
                }
                _ => None,
            },
        }
    }

    fn deliver(&self, stanza: Arc<Stanza>, session: &ResourceInfo) -> Result<(), DeliveryError> {
        session.deliver(Outbound {
            bytes: client_bytes(&stanza),
            reroute: Some(stanza),
        })
    }

    /// Delivers to each session, serialising once; returns how many accepted it.
    fn deliver_all(&self, stanza: &Stanza, sessions: &[ResourceInfo]) -> usize {
        if sessions.is_empty() {
            return 0;
        }
        let outbound = Outbound {
            bytes: client_bytes(stanza),
            reroute: Some(Arc::new(stanza.clone())),
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
        if initial && !unavailable {
            if let Some(me) = resources.iter().find(|r| &r.jid == from) {
                for other in resources.iter().filter(|r| &r.jid != from) {
                    if let Some(bytes) = &other.presence {
                        let _ = me.deliver(Outbound {
                            bytes: bytes.clone(),
                            reroute: None,
                        });
                    }
                }
            }
        }
    }
}
