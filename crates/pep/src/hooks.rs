//! Where PEP listens: presence to an account and from its sessions (caps), subscription
//! changes (new subscribers), the answers to caps queries, and account disco#items.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use jid::{BareJid, FullJid, Jid};
use xmppd_core::{
    AccountItems, Flow, InboundHook, IqResponseHook, Router, SessionEvent, SessionHook, SessionRef,
    Subscription, SubscriptionHook,
};
use xmppd_proto::disco::DiscoItem;
use xmppd_proto::{Stanza, StanzaKind};

use crate::Pep;
use crate::access;
use crate::caps::Seen;
use crate::notify::Occasion;

/// The module's hooks.
pub(crate) struct PepHooks(pub(crate) Arc<Pep>);

impl PepHooks {
    /// A presence `owner` received from (or, for its own resources, sent as) `from`.
    async fn presence(&self, router: &Router, owner: &BareJid, from: &FullJid, stanza: &Stanza) {
        let host = owner.domain().as_str();
        let mut seen = self.0.caps.observe(owner, from, stanza, host);
        if seen == Seen::Full && self.make_room(owner, from).await {
            seen = self.0.caps.observe(owner, from, stanza, host);
        }
        match seen {
            Seen::Nothing | Seen::Waiting | Seen::Full => {}
            Seen::Available(interests) => {
                self.0
                    .send_last(router, owner, from, &interests, Occasion::Presence)
                    .await;
            }
            Seen::Query(query) => router.route(query).await,
        }
    }
}

impl PepHooks {
    /// The account keeps as many resources' caps as it may: if `from` is the owner's or a
    /// subscriber's, the resources of everyone else go (one roster read, only when full).
    async fn make_room(&self, owner: &BareJid, from: &FullJid) -> bool {
        let items = match self.0.roster.items(owner).await {
            Ok(items) => items,
            Err(e) => {
                tracing::warn!(%owner, error = %e, "roster unreadable: no room made for caps");
                return false;
            }
        };
        let subscribers: HashSet<String> = items
            .into_iter()
            .filter(|i| i.subscription.from())
            .map(|i| i.jid)
            .collect();
        let keep = |jid: &BareJid| jid == owner || subscribers.contains(jid.as_str());
        if !keep(&from.to_bare()) {
            tracing::debug!(%owner, %from, "caps not kept: too many resources");
            return false;
        }
        self.0.caps.retain(owner, keep);
        true
    }
}

/// Available or unavailable presence (not subscriptions, probes or errors).
fn is_availability(stanza: &Stanza) -> bool {
    stanza.kind() == StanzaKind::Presence
        && matches!(stanza.type_attr(), None | Some("unavailable"))
}

#[async_trait]
impl InboundHook for PepHooks {
    fn applies(&self, _router: &Router, stanza: &Stanza) -> bool {
        is_availability(stanza) && stanza.from().is_some_and(|f| f.resource().is_some())
    }

    /// Observes a contact's presence and lets it go on.
    async fn inbound(&self, router: &Router, stanza: Stanza, account: &BareJid) -> Flow {
        if let Some(Ok(from)) = stanza.from().map(Jid::try_as_full)
            && is_availability(&stanza)
            && from.to_bare() != *account
        {
            self.presence(router, account, from, &stanza).await;
        }
        Flow::Continue(stanza)
    }
}

#[async_trait]
impl SessionHook for PepHooks {
    fn wants(&self, event: &SessionEvent<'_>) -> bool {
        matches!(
            event,
            SessionEvent::Available { .. }
                | SessionEvent::Unavailable { .. }
                | SessionEvent::Closed
        )
    }

    /// The owner's own resources are notified too (XEP-0163 §4 rule 3).
    async fn session_event(
        &self,
        router: &Router,
        session: SessionRef<'_>,
        event: &SessionEvent<'_>,
    ) {
        let owner = session.jid.to_bare();
        match event {
            SessionEvent::Available { stanza, .. } => {
                self.presence(router, &owner, session.jid, stanza).await;
            }
            SessionEvent::Unavailable { .. } | SessionEvent::Closed => {
                self.0.caps.forget(&owner, session.jid);
            }
            SessionEvent::Bound | SessionEvent::Detached | SessionEvent::Resumed => {}
        }
    }
}

#[async_trait]
impl SubscriptionHook for PepHooks {
    /// A contact the owner now shares presence with is a new subscriber (XEP-0163 §4.3.4).
    async fn subscription_changed(
        &self,
        router: &Router,
        user: &BareJid,
        contact: &BareJid,
        old: Subscription,
        new: Subscription,
    ) {
        if !old.from && new.from {
            self.0.new_subscriber(router, user, contact).await;
        }
    }
}

#[async_trait]
impl IqResponseHook for PepHooks {
    fn claims(&self, stanza: &Stanza) -> bool {
        self.0.caps.claims(stanza)
    }

    /// A caps hash verified: the resources that waited for it are served.
    async fn iq_response(&self, router: &Router, stanza: &Stanza, _to: &BareJid) {
        for (owner, jid, interests) in self.0.caps.answer(stanza) {
            self.0
                .send_last(router, &owner, &jid, &interests, Occasion::Presence)
                .await;
        }
    }
}

#[async_trait]
impl AccountItems for PepHooks {
    /// The nodes `requester` may read (XEP-0163 §6.2).
    async fn items(&self, _router: &Router, account: &BareJid, requester: &Jid) -> Vec<DiscoItem> {
        let listed = async {
            let relation = self.0.relation(account, requester).await?;
            let nodes = self.0.store.nodes(account).await?;
            Ok::<_, crate::PepError>(
                nodes
                    .into_iter()
                    .filter(|(_, r)| access::check(&r.config, &relation).is_ok())
                    .map(|(name, _)| {
                        let mut item = DiscoItem::new(Jid::from(account.clone()));
                        item.node = Some(name);
                        item
                    })
                    .collect(),
            )
        };
        match listed.await {
            Ok(items) => items,
            Err(e) => {
                tracing::warn!(%account, error = %e, "PEP nodes not listed");
                Vec::new()
            }
        }
    }
}
