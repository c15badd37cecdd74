//! Stanzas for the local domains: the server itself and its accounts (RFC 6121 §8.5).

use std::sync::Arc;

use jid::{BareJid, FullJid, Jid};
use tracing::{debug, warn};
use xmppd_proto::{DefinedCondition, Stanza, StanzaError, StanzaKind};

use super::{Router, SessionDelivery, client_bytes};
use crate::hooks::{Flow, OfflineFlow};
use crate::module::{IqRequest, IqTarget, IqType};
use crate::outbound::Outbound;
use crate::session::ResourceInfo;

fn message_type(stanza: &Stanza) -> &str {
    stanza.type_attr().unwrap_or("normal")
}

impl Router {
    async fn handle_iq(&self, stanza: &Stanza, target: IqTarget, to: &BareJid) -> Option<Stanza> {
        let iq_type = match stanza.type_attr() {
            Some("get") => IqType::Get,
            Some("set") => IqType::Set,
            // A result or error for the server or an account: the answer to an iq a module
            // sent, if one claims it; otherwise nothing is waiting for it.
            _ => {
                self.run_iq_response(stanza, to).await;
                return None;
            }
        };
        let (Some(payload), Some(from)) = (stanza.iq_payload(), stanza.from()) else {
            return stanza.error_reply(&StanzaError::bad_request("an iq needs one payload"));
        };
        let host = to.domain().as_str();
        let Some(handler) = self.registry.iq_handler(host, target, iq_type, payload) else {
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

    pub(super) async fn to_server(&self, stanza: &Stanza, domain: &BareJid) -> Option<Stanza> {
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

    /// A stanza for a local account, addressed to its bare JID or to one of its resources.
    pub(super) async fn to_account(&self, mut stanza: Stanza, to: &Jid) -> Option<Stanza> {
        let bare = to.to_bare();
        let full = to.try_as_full().ok();
        let hooked = stanza.kind() != StanzaKind::Iq && self.inbound_hooks_apply(&stanza);
        // Whether delivery to a bound resource was tried here already.
        let tried = full.is_some() && !hooked;
        if let (true, Some(full)) = (tried, full) {
            // A bound resource proves the account: no storage read.
            stanza = match self.deliver_to_bound_session(stanza) {
                SessionDelivery::Delivered(stanza) => {
                    self.run_delivered(&stanza, &bare, std::slice::from_ref(full))
                        .await;
                    return None;
                }
                SessionDelivery::Handled(bounce) => return bounce,
                SessionDelivery::NotBound(stanza) => stanza,
            };
        }
        // RFC 6121 §8.5.3.2.1 and §8.5.1: available or unavailable presence to a resource
        // that is not bound is ignored, whether the account exists or not, so neither a
        // storage read nor the hooks are needed to decide. It matters when a large room
        // empties at once: each departure is announced to every occupant already gone.
        if let Some(full) = full
            && stanza.kind() == StanzaKind::Presence
            && matches!(stanza.type_attr(), None | Some("unavailable"))
            && (tried || self.sessions.get(full).is_none())
        {
            return None;
        }
        if !self.account_exists(&bare).await {
            // RFC 6121 §8.5.1: no account. Presence is dropped so existence does not leak.
            return match stanza.kind() {
                StanzaKind::Presence => None,
                StanzaKind::Iq | StanzaKind::Message => {
                    stanza.error_reply(&StanzaError::service_unavailable())
                }
            };
        }
        if stanza.kind() == StanzaKind::Iq {
            return match full {
                // §8.5.3.2.1: no such resource (a bound one took the direct path above).
                Some(_) => stanza.error_reply(&StanzaError::service_unavailable()),
                None => self.handle_iq(&stanza, IqTarget::Account, &bare).await,
            };
        }
        if hooked {
            stanza = match self.run_inbound(stanza, &bare).await {
                Flow::Continue(stanza) => stanza,
                Flow::Stop(bounce) => return bounce,
            };
        }
        match full {
            Some(full) if !tried => self.to_resource(stanza, full, &bare).await,
            Some(full) => self.no_such_resource(stanza, full, &bare).await,
            None => self.to_bare(stanza, &bare).await,
        }
    }

    /// A stanza a session took and will never write (it ended), routed again. It already
    /// passed the pre-route filters and the inbound hooks on its way to that session (it was
    /// archived, carbon-copied, checked against block lists), so it goes straight to what
    /// RFC 6121 §8.5.3.2 says of a resource that is gone: another resource of the account,
    /// or offline storage, or an error for the sender.
    pub async fn reroute(&self, stanza: Stanza) {
        let local = stanza
            .to()
            .filter(|to| to.node().is_some() && self.is_local_domain(to.domain().as_str()))
            .cloned();
        let Some(to) = local else {
            return self.route(stanza).await;
        };
        let bare = to.to_bare();
        let bounce = match to.try_as_full() {
            Ok(full) => self.to_resource(stanza, full, &bare).await,
            Err(_) => self.to_bare(stanza, &bare).await,
        };
        if let Some(bounce) = bounce {
            self.route_owed(bounce).await;
        }
    }

    /// RFC 6121 §8.5.2: a message or presence to an account's bare JID, after the hooks.
    async fn to_bare(&self, stanza: Stanza, bare: &BareJid) -> Option<Stanza> {
        match stanza.kind() {
            StanzaKind::Message => self.message_to_bare(stanza, bare).await,
            // §8.5.2.1.2 / §8.5.2.2.2: to every available resource, else nowhere.
            _ => {
                self.deliver_to_available(&stanza, bare);
                None
            }
        }
    }

    /// RFC 6121 §8.5.3: a message or presence to a full JID, after the hooks.
    async fn to_resource(&self, stanza: Stanza, full: &FullJid, bare: &BareJid) -> Option<Stanza> {
        match self.deliver_to_bound_session(stanza) {
            SessionDelivery::Delivered(stanza) => {
                self.run_delivered(&stanza, bare, std::slice::from_ref(full))
                    .await;
                None
            }
            SessionDelivery::Handled(bounce) => bounce,
            SessionDelivery::NotBound(stanza) => self.no_such_resource(stanza, full, bare).await,
        }
    }

    /// RFC 6121 §8.5.3.2: a message or presence to a resource that is not bound.
    async fn no_such_resource(
        &self,
        stanza: Stanza,
        full: &FullJid,
        bare: &BareJid,
    ) -> Option<Stanza> {
        debug!(to = %full, "no such resource");
        match stanza.kind() {
            StanzaKind::Iq => stanza.error_reply(&StanzaError::service_unavailable()),
            StanzaKind::Message => match message_type(&stanza) {
                "groupchat" => stanza.error_reply(&StanzaError::service_unavailable()),
                "headline" | "error" => None,
                _ => self.message_to_bare(stanza, bare).await,
            },
            StanzaKind::Presence => match stanza.type_attr() {
                Some("subscribe" | "subscribed" | "unsubscribe" | "unsubscribed") => {
                    self.deliver_to_available(&stanza, bare);
                    None
                }
                _ => None,
            },
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
                let mut targets = non_negative;
                let stanza = Arc::new(stanza);
                self.deliver_retaining(stanza.clone(), &mut targets);
                self.delivered_to_sessions(&stanza, bare, &targets).await;
                None
            }
            _ => {
                // normal/chat (and unknown types, treated as normal): the resources with the
                // highest non-negative priority, all of them when tied.
                let top = non_negative.iter().filter_map(|r| r.priority).max();
                let mut targets: Vec<_> = non_negative
                    .into_iter()
                    .filter(|r| r.priority == top)
                    .collect();
                if targets.is_empty() {
                    let bounce = self.offline(&stanza, bare).await;
                    if bounce.is_none() {
                        self.run_delivered(&stanza, bare, &[]).await;
                    }
                    return bounce;
                }
                let stanza = Arc::new(stanza);
                self.deliver_retaining(stanza.clone(), &mut targets);
                if targets.is_empty() {
                    return stanza
                        .error_reply(&StanzaError::new(DefinedCondition::RecipientUnavailable));
                }
                self.delivered_to_sessions(&stanza, bare, &targets).await;
                None
            }
        }
    }

    /// §8.5.2.2.1: offline storage (XEP-0160), committed before the stanza counts as
    /// handled; without it, or when it refuses, the sender learns the message was not
    /// delivered instead of losing it silently.
    async fn offline(&self, stanza: &Stanza, bare: &BareJid) -> Option<Stanza> {
        let host = bare.domain().as_str();
        for sub in self.registry.hooks.offline.iter() {
            if !self.registry.enabled(host, sub.module) {
                continue;
            }
            match sub.hook.offline(self, stanza, bare).await {
                OfflineFlow::Pass => continue,
                OfflineFlow::Stored | OfflineFlow::Discarded => return None,
                OfflineFlow::Refused(err) => return stanza.error_reply(&err),
            }
        }
        let err = StanzaError::service_unavailable()
            .with_text("the recipient is offline and offline storage is off");
        stanza.error_reply(&err)
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
    pub fn deliver_all(&self, stanza: &Stanza, sessions: &[ResourceInfo]) -> usize {
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
        let outbound = shared_outbound(stanza);
        sessions.iter().filter(|s| offer(s, &outbound)).count()
    }

    /// Delivers a stanza the router owns to each of `sessions`, serialising once, and keeps
    /// in `sessions` only those that accepted it (for the delivered hooks).
    fn deliver_retaining(&self, stanza: Arc<Stanza>, sessions: &mut Vec<ResourceInfo>) {
        if sessions.is_empty() {
            return;
        }
        let outbound = shared_outbound(stanza);
        sessions.retain(|s| offer(s, &outbound));
    }
}

/// The queue entry of a stanza shared by several sessions.
fn shared_outbound(stanza: Arc<Stanza>) -> Outbound {
    Outbound {
        bytes: client_bytes(&stanza),
        reroute: Some(stanza),
    }
}

/// Queues `outbound` for `session`; whether it was accepted.
fn offer(session: &ResourceInfo, outbound: &Outbound) -> bool {
    match session.deliver(outbound.clone()) {
        Ok(()) => true,
        Err(e) => {
            debug!(to = %session.jid, error = %e, "delivery failed");
            false
        }
    }
}
