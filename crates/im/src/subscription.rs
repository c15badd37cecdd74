//! RFC 6121 §3: presence subscriptions, applying the tables of `state.rs`.
//!
//! Outbound (the user's session sent it): the user's roster changes first, then the stanza is
//! stamped with the user's bare JID and routed to the contact if table A.2 says so.
//! Inbound (a contact sent it to a local user): the user's roster changes, then the stanza
//! is delivered to the user's available resources if table A.3 says so — a `subscribe` is
//! also kept until the user answers, and delivered again at each login — or the server
//! answers for the user (already subscribed, or pre-approved).
//!
//! A contact that is not in the roster is in state "None"; the item is created only when
//! something visible changes (a request sent, an approval, a pre-approval), never for a
//! request received (§3.1.3).

use async_trait::async_trait;
use jid::{BareJid, Jid};
use tracing::warn;
use xmppd_core::router::client_bytes;
use xmppd_core::storage::StorageResult;
use xmppd_core::{
    Flow, InboundHook, InboundPresenceKind, OutboundHook, Router, SessionRef, Subscription,
    SubscriptionKind,
};
use xmppd_proto::{DefinedCondition, Stanza, StanzaError, StanzaKind};

use crate::roster::RosterItem;
use crate::roster_iq::{apply_effect, is_interested, push};
use crate::state::{self, SubState, Transition};
use crate::{Im, presence, restamp};

/// Largest subscription request stored whole.
const MAX_STORED_REQUEST_BYTES: usize = 4096;

/// Why a transition was not applied.
enum Refused {
    /// A new item would exceed the roster size limit.
    RosterFull,
    /// A new request would exceed the pending-request limit.
    TooManyPending,
    /// Storage failed (already logged).
    Storage,
}

/// The outcome of applying a transition to storage.
struct Applied {
    /// The state before.
    old: SubState,
    t: Transition,
    /// The new roster version and item, when the change is pushed.
    push: Option<(u64, RosterItem)>,
}

/// The subscription of a state as the subscription hooks see it.
pub(crate) fn view(state: &SubState) -> Subscription {
    Subscription {
        from: state.sub.from(),
        to: state.sub.to(),
    }
}

/// Tells the subscription hooks of a stored change (nothing when `from`/`to` stayed).
async fn changed(router: &Router, user: &BareJid, contact: &BareJid, applied: &Applied) {
    router
        .subscription_changed(user, contact, view(&applied.old), view(&applied.t.new))
        .await;
}

impl Im {
    /// Reads the state of `contact` in `user`'s roster, runs `machine`, writes the result.
    async fn transition(
        &self,
        user: &BareJid,
        contact: &BareJid,
        kind: SubscriptionKind,
        machine: fn(SubState, SubscriptionKind) -> Transition,
        request: Option<&Stanza>,
    ) -> Result<Applied, Refused> {
        let _guard = self.lock(user).await;
        self.transition_locked(user, contact, kind, machine, request)
            .await
            .map_err(|e| {
                warn!(%user, %contact, error = %e, "subscription storage failed");
                Refused::Storage
            })?
    }

    async fn transition_locked(
        &self,
        user: &BareJid,
        contact: &BareJid,
        kind: SubscriptionKind,
        machine: fn(SubState, SubscriptionKind) -> Transition,
        request: Option<&Stanza>,
    ) -> StorageResult<Result<Applied, Refused>> {
        let item = self.roster.item(user, contact).await?;
        let pending_in = self.roster.has_pending(user, contact).await?;
        let old = item.as_ref().map_or(
            SubState {
                pending_in,
                ..SubState::NONE
            },
            |i| i.state(pending_in),
        );
        let t = machine(old, kind);
        let stores_request = !old.pending_in && t.new.pending_in && request.is_some();
        if stores_request
            && self.roster.count_pending(user).await? >= self.limits.max_pending_subscriptions
        {
            return Ok(Err(Refused::TooManyPending));
        }
        let mut pushed = None;
        if t.pushes(&old) {
            if item.is_none() && self.roster.count(user).await? >= self.limits.max_roster_items {
                return Ok(Err(Refused::RosterFull));
            }
            let mut item = item.unwrap_or_else(|| RosterItem::new(contact));
            item.set_state(&t.new);
            self.roster.put(user, &item).await?;
            let ver = self.roster.bump_version(user).await?;
            pushed = Some((ver, item));
        }
        match (old.pending_in, t.new.pending_in, request) {
            (false, true, Some(stanza)) => {
                // Kept whole (a status or nick the user will see at login) unless large:
                // then only the request itself, so a stored request stays small.
                let mut bytes = client_bytes(stanza);
                if bytes.len() > MAX_STORED_REQUEST_BYTES
                    && let (Some(from), Some(to)) = (stanza.from(), stanza.to())
                {
                    bytes = client_bytes(&presence(Some("subscribe"), from.clone(), to.clone()));
                }
                self.roster.set_pending(user, contact, &bytes).await?;
            }
            (true, false, _) => self.roster.clear_pending(user, contact).await?,
            _ => {}
        }
        Ok(Ok(Applied {
            old,
            t,
            push: pushed,
        }))
    }
}

#[async_trait]
impl OutboundHook for Im {
    /// A subscription stanza a session of the user sent: the user's server side of
    /// Appendix A.2. Everything else goes on.
    async fn outbound(&self, router: &Router, session: SessionRef<'_>, stanza: Stanza) -> Flow {
        match SubscriptionKind::from_type(stanza.type_attr()) {
            Some(kind) if stanza.kind() == StanzaKind::Presence => {
                let user = session.jid.to_bare();
                self.outbound_subscription(router, kind, stanza, &user)
                    .await;
                Flow::Stop(None)
            }
            _ => Flow::Continue(stanza),
        }
    }
}

impl Im {
    /// Updates the user's roster, then routes the stanza if the rules say so.
    pub(crate) async fn outbound_subscription(
        &self,
        router: &Router,
        kind: SubscriptionKind,
        stanza: Stanza,
        user: &BareJid,
    ) {
        let Some(contact) = stanza.to().map(Jid::to_bare) else {
            return;
        };
        let mut applied = match self
            .transition(user, &contact, kind, state::outbound, None)
            .await
        {
            Ok(a) => a,
            Err(refused) => {
                let err = match refused {
                    Refused::RosterFull => StanzaError::new(DefinedCondition::NotAllowed)
                        .with_text("the roster is full"),
                    Refused::TooManyPending => {
                        StanzaError::new(DefinedCondition::ResourceConstraint)
                    }
                    Refused::Storage => StanzaError::new(DefinedCondition::InternalServerError),
                };
                if let Some(bounce) = stanza.error_reply(&err) {
                    router.route(bounce).await;
                }
                return;
            }
        };
        if let Some((ver, item)) = applied.push.take() {
            push(router, user, ver, item.to_element()).await;
        }
        let (from, to) = (Jid::from(user.clone()), Jid::from(contact.clone()));
        if applied.t.forward {
            // §3.1.2: stamped with the user's bare JID, addressed to the contact's.
            router.route(restamp(&stanza, from, to.clone())).await;
        }
        apply_effect(router, applied.t.effect, user, &to).await;
        changed(router, user, &contact, &applied).await;
    }
}

#[async_trait]
impl InboundHook for Im {
    /// Subscriptions and probes are about the account, whichever resource they name
    /// (RFC 6121 §3.1.3, §4.3): handled here and consumed. Other presence goes on.
    async fn inbound(&self, router: &Router, stanza: Stanza, account: &BareJid) -> Flow {
        let Some(kind) = InboundPresenceKind::from_type(stanza.type_attr()) else {
            return Flow::Continue(stanza);
        };
        let Some(from) = stanza.from().cloned() else {
            return Flow::Stop(None);
        };
        match kind {
            InboundPresenceKind::Probe => self.probe(router, &from, account).await,
            InboundPresenceKind::Subscription(kind) => {
                self.inbound_subscription(router, kind, stanza, &from.to_bare(), account)
                    .await
            }
        }
        Flow::Stop(None)
    }
}

impl Im {
    async fn inbound_subscription(
        &self,
        router: &Router,
        kind: SubscriptionKind,
        stanza: Stanza,
        contact: &BareJid,
        user: &BareJid,
    ) {
        // XEP-0379: a contact invitation's token pre-approves the contact first.
        let invited = kind == SubscriptionKind::Subscribe
            && self
                .redeem_contact_token(router, &stanza, contact, user)
                .await;
        let (cj, uj) = (Jid::from(contact.clone()), Jid::from(user.clone()));
        // Delivered as coming from the contact's bare JID, to the user's (§3.1.3).
        let stanza = restamp(&stanza, cj.clone(), uj.clone());
        let mut applied = match self
            .transition(user, contact, kind, state::inbound, Some(&stanza))
            .await
        {
            Ok(a) => a,
            Err(Refused::TooManyPending) => {
                // The contact learns the request was not recorded.
                let err = StanzaError::new(DefinedCondition::ResourceConstraint)
                    .with_text("too many subscription requests are awaiting an answer");
                if let Some(bounce) = stanza.error_reply(&err) {
                    router.route(bounce).await;
                }
                return;
            }
            // Nothing changed; the contact's server will ask again.
            Err(_) => return,
        };
        if applied.t.forward {
            // §3.1.3: a request goes to every available resource. §3.1.6, §3.2.3, §3.3.3: an
            // approval or a cancellation goes to the interested resources, and before the
            // roster push, so that a client sees the approval before `subscription='to'`.
            match kind {
                SubscriptionKind::Subscribe => router.deliver_to_available(&stanza, user),
                _ => {
                    let interested: Vec<_> = router
                        .sessions()
                        .resources(user)
                        .into_iter()
                        .filter(is_interested)
                        .collect();
                    router.deliver_all(&stanza, &interested)
                }
            };
        }
        if let Some((ver, item)) = applied.push.take() {
            push(router, user, ver, item.to_element()).await;
        }
        if let Some(reply) = applied.t.reply {
            router
                .route(presence(Some(reply.as_str()), uj, cj.clone()))
                .await;
        }
        apply_effect(router, applied.t.effect, user, &cj).await;
        changed(router, user, contact, &applied).await;
        if invited {
            self.subscribe_back(router, contact, user).await;
        }
    }

    /// §4.3.2: a probe from `from` about `user`.
    async fn probe(&self, router: &Router, from: &Jid, user: &BareJid) {
        let prober = from.to_bare();
        let uj = Jid::from(user.clone());
        let subscribed = prober == *user
            || match self.roster.item(user, &prober).await {
                Ok(item) => item.is_some_and(|i| i.subscription.from()),
                Err(e) => {
                    warn!(%user, error = %e, "roster read failed while answering a probe");
                    return;
                }
            };
        if !subscribed {
            // Presence is not revealed; the prober's server learns its state is stale.
            router
                .route(presence(Some("unsubscribed"), uj, from.clone()))
                .await;
            return;
        }
        let available = router
            .sessions()
            .resources(user)
            .iter()
            .any(|r| r.last_presence.is_some());
        if available {
            crate::send_presence_of(router, user, from).await;
        } else {
            router
                .route(presence(Some("unavailable"), uj, from.clone()))
                .await;
        }
    }
}
