//! RFC 6121 §2 roster get/set, roster pushes, and XEP-0237 versioning.
//!
//! A roster get marks the session as an "interested resource" (§2.1.6): from then on it
//! receives a push for every change, whichever session or contact caused it. The version is
//! a counter bumped with each pushed change; a get that names the current version gets an
//! empty result, any other version the whole roster (XEP-0237 §4 allows either), and every
//! push carries the version it produced.

use std::sync::Arc;

use async_trait::async_trait;
use jid::{BareJid, Jid};
use tracing::warn;
use xmppd_core::session::ResourceInfo;
use xmppd_core::storage::StorageError;
use xmppd_core::{IqHandler, IqRequest, Router};
use xmppd_proto::{DefinedCondition, StanzaError};
use xmppd_xml::Element;

use crate::roster::{self, RosterItem, RosterSet};
use crate::state::Effect;
use crate::{Im, presence, send_unavailable_of};

/// The roster iq handler.
pub(crate) struct RosterIq(pub(crate) Arc<Im>);

pub(crate) fn internal(e: StorageError) -> StanzaError {
    warn!(error = %e, "roster storage failed");
    StanzaError::new(DefinedCondition::InternalServerError).with_text("roster storage failed")
}

/// Marks, in a session's own slots, a resource that requested the roster: an "interested
/// resource" (RFC 6121 §2.1.6), which receives roster pushes and subscription approvals.
pub(crate) struct InterestedResource;

/// Keeps a session's interest in roster pushes across a restart of the server (a resumed
/// client does not ask for its roster again, XEP-0198 §5).
pub(crate) struct InterestSaved;

impl xmppd_core::SessionStateHook for InterestSaved {
    fn save(&self, ext: &xmppd_core::Extensions) -> Option<serde_json::Value> {
        ext.get::<InterestedResource>()
            .map(|_| serde_json::Value::Bool(true))
    }

    fn restore(&self, ext: &xmppd_core::Extensions, value: &serde_json::Value) {
        if value.as_bool() == Some(true) {
            ext.insert(InterestedResource);
        }
    }
}

/// Whether the resource requested the roster.
pub(crate) fn is_interested(resource: &ResourceInfo) -> bool {
    resource.ext().get::<InterestedResource>().is_some()
}

/// Sends a roster push with `item` to every interested resource of `user` (§2.1.6).
pub(crate) async fn push(router: &Router, user: &BareJid, ver: u64, item: Element) {
    let query = roster::query(Some(&ver.to_string()), [item]);
    xmppd_core::router::push(router, user, &query, is_interested).await;
}

#[async_trait]
impl IqHandler for RosterIq {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        let user = request.to;
        // §2.1.5: only the user may read or change its roster.
        if request.from.to_bare() != *user {
            return Err(StanzaError::new(DefinedCondition::Forbidden)
                .with_text("a roster belongs to its user"));
        }
        match request.stanza.type_attr() {
            Some("get") => self.get(&request).await,
            _ => self.set(&request).await.map(|()| None),
        }
    }
}

impl RosterIq {
    async fn get(&self, request: &IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        let im = &self.0;
        let user = request.to;
        if let Ok(full) = request.from.try_as_full()
            && let Some(session) = request.router.sessions().get(full)
        {
            session.ext().insert(InterestedResource);
        }
        let ver = im.roster.version(user).await.map_err(internal)?;
        let ver_s = ver.to_string();
        match request.payload.attr("ver") {
            Some(client) if client == ver_s => Ok(None),
            asked => {
                let items = im.roster.items(user).await.map_err(internal)?;
                let ver = asked.map(|_| ver_s.as_str());
                Ok(Some(roster::query(
                    ver,
                    items.iter().map(RosterItem::to_element),
                )))
            }
        }
    }

    async fn set(&self, request: &IqRequest<'_>) -> Result<(), StanzaError> {
        let im = &self.0;
        let user = request.to;
        let router = request.router;
        match roster::parse_set(request.payload)? {
            RosterSet::Update { jid, name, groups } => {
                let guard = im.lock(user).await;
                let existing = im.roster.item(user, &jid).await.map_err(internal)?;
                if existing.is_none() {
                    let count = im.roster.count(user).await.map_err(internal)?;
                    if count >= im.limits.max_roster_items {
                        return Err(StanzaError::new(DefinedCondition::NotAllowed)
                            .with_text(format!("the roster is full ({count} items)")));
                    }
                }
                let mut item = existing.unwrap_or_else(|| RosterItem::new(&jid));
                item.name = name;
                item.groups = groups;
                im.roster.put(user, &item).await.map_err(internal)?;
                let ver = im.roster.bump_version(user).await.map_err(internal)?;
                drop(guard);
                push(router, user, ver, item.to_element()).await;
            }
            RosterSet::Remove { jid } => {
                let guard = im.lock(user).await;
                let Some(item) = im.roster.item(user, &jid).await.map_err(internal)? else {
                    return Err(StanzaError::new(DefinedCondition::ItemNotFound)
                        .with_text("no such contact in the roster"));
                };
                let pending_in = im.roster.has_pending(user, &jid).await.map_err(internal)?;
                im.roster.remove(user, &jid).await.map_err(internal)?;
                im.roster
                    .clear_pending(user, &jid)
                    .await
                    .map_err(internal)?;
                let ver = im.roster.bump_version(user).await.map_err(internal)?;
                drop(guard);
                push(router, user, ver, RosterItem::removed_element(&jid)).await;
                end_subscriptions(router, user, &jid, &item, pending_in).await;
            }
        }
        Ok(())
    }
}

/// §2.5.2: the subscriptions between `user` and a contact leaving the roster end both ways,
/// and the contact hears of it (and no longer sees the user's presence).
pub(crate) async fn end_subscriptions(
    router: &Router,
    user: &BareJid,
    contact: &BareJid,
    item: &RosterItem,
    pending_in: bool,
) {
    let state = item.state(pending_in);
    let (from, to) = (Jid::from(user.clone()), Jid::from(contact.clone()));
    if state.sub.to() || state.pending_out {
        router
            .route(presence(Some("unsubscribe"), from.clone(), to.clone()))
            .await;
    }
    if state.sub.from() || state.pending_in {
        router
            .route(presence(Some("unsubscribed"), from, to.clone()))
            .await;
    }
    if state.sub.from() {
        apply_effect(router, Effect::SendUnavailable, user, &to).await;
    }
    let none = xmppd_core::Subscription::default();
    router
        .subscription_changed(user, contact, crate::subscription::view(&state), none)
        .await;
}

/// Carries out a transition's presence side effect from `user` to `contact`.
pub(crate) async fn apply_effect(router: &Router, effect: Effect, user: &BareJid, contact: &Jid) {
    match effect {
        Effect::None => {}
        Effect::SendPresence => crate::send_presence_of(router, user, contact).await,
        Effect::SendUnavailable => send_unavailable_of(router, user, contact).await,
    }
}
