//! XEP-0357: Push Notifications — the user's server's side.
//!
//! **Registrations** (§5, §6): a client enables push with `<enable jid='SERVICE' node='NODE'/>`
//! (optionally a `publish-options` form, typically the app server's credentials) in an iq set
//! to its own bare JID, and disables one node or every node of a service with `<disable/>`.
//! Only the account itself may do either (anyone else: `forbidden`). The registrations live
//! in the KeyVal store `push`, one JSON document per account. Enabling a (service, node) pair
//! again replaces its publish options (§5); a new pair beyond `max_registrations` is refused
//! with `not-acceptable` — a limit of this server's policy (RFC 6120 §8.3.3.9), not a lack of
//! resources that waiting would cure (`resource-constraint`, of type `wait`). An `<enable/>`
//! without `jid` or `node` is a `bad-request`, a `jid` that is no JID `jid-malformed`.
//!
//! **When to notify**: a `normal` or `chat` message with a non-empty `<body/>` (what §7 calls
//! "important" here; chat states and receipts alone wake no device) for an account that has
//! no connected session: each of its sessions is waiting for XEP-0198 resumption (a slot of
//! this module's, set on [`SessionEvent::Detached`] and cleared on `Resumed`), or it has none.
//! Two hooks see those messages, and never both for one message:
//!
//! - the **inbound hook** when the message will be queued in a waiting session (some session
//!   has a non-negative priority, or the message names one by its full JID);
//! - the **offline hook** when it goes to offline storage. It runs before the IM module's
//!   (priority 10 against 0) and passes, so the notification leaves as the message is stored;
//!   a message the store then refuses (quota) has been announced all the same.
//!
//! **What is sent** (§7): an iq set from the user's bare JID to the service, publishing one
//! `<notification/>` with the `urn:xmpp:push:summary` form — `message-count` (messages since
//! the user was last connected: counted in memory per account, reset when a session binds or
//! resumes; a restart starts again from one; a message announced already — one a waiting
//! session held, stored offline when its window ended — is not announced again),
//! `last-message-sender`, and
//! `last-message-body` only with `include_body` (§9: the body goes through third parties) —
//! and the stored publish options. It is routed like any stanza: to a component, an
//! in-process service or over federation.
//!
//! **Answers** (§7): an error answer disables that (service, node) pair. The answer is
//! addressed to the user's bare JID; the router offers iq results and errors to the server or
//! an account to the [`IqResponseHook`]s, and this module claims those with the ids it chose
//! (remembered until answered; at most [`MAX_PENDING`], the oldest forgotten first, so a
//! service that never answers costs bounded memory). An answer must come from the service the
//! publish went to. A bounce of the server's own (the service unreachable) counts as an error.
//!
//! **Discovery** (§4): [`FEATURES`] are registered as account features, which the disco
//! module lists in the disco#info of the account's bare JID.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;
use dashmap::DashMap;
use jid::{BareJid, Jid};
use serde::Deserialize;
use xmppd_core::storage::{KeyVal, Storage, StorageError};
use xmppd_core::{
    Flow, InboundHook, IqHandler, IqRequest, IqResponseHook, IqTarget, IqType, KindMask, Live,
    Module, OfflineFlow, OfflineHook, Reconfigure, Registry, Router, SessionEvent, SessionHook,
    SessionRef, StripedLocks,
};
use xmppd_proto::push::{self, Disable, Enable, NS_PUSH, Summary};
use xmppd_proto::{DefinedCondition, Stanza, StanzaError, StanzaKind, ns};
use xmppd_xml::Element;

mod store;

use store::{Registration, Registrations};

/// The KeyVal store of each account's registrations.
pub const STORE: &str = "push";

/// The disco#info features of an account whose server publishes notifications (§4).
pub const FEATURES: &[&str] = &[NS_PUSH];

/// Hook priority: the offline hook runs before the IM module's storage (0).
const PRIORITY: i32 = 10;
/// Publishes awaiting an answer, at most.
pub const MAX_PENDING: usize = 4096;
const ID_PREFIX: &str = "push-";
const LOCK_STRIPES: usize = 16;

/// `[modules.push]`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushSettings {
    /// Whether notifications carry the last message's body (default false: the body would
    /// pass through the app server and the platform's push service, §9).
    pub include_body: bool,
    /// Most (service, node) pairs one account may enable (default 5); one more is
    /// `not-acceptable`.
    pub max_registrations: usize,
}

impl Default for PushSettings {
    fn default() -> Self {
        PushSettings {
            include_body: false,
            max_registrations: 5,
        }
    }
}

/// Why an enable or disable failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// Someone other than the account asked.
    #[error("only the account itself may enable or disable its notifications")]
    Forbidden,
    /// The account has as many registrations as allowed.
    #[error("at most {0} push registrations per account")]
    TooMany(usize),
    /// Storage failed or holds an undecodable record.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<PushError> for StanzaError {
    fn from(e: PushError) -> Self {
        match e {
            PushError::Forbidden => StanzaError::new(DefinedCondition::Forbidden),
            PushError::TooMany(_) => {
                StanzaError::new(DefinedCondition::NotAcceptable).with_text(e.to_string())
            }
            PushError::Storage(_) => StanzaError::new(DefinedCondition::InternalServerError),
        }
    }
}

/// The per-session slot: the session's transport is gone, it waits to be resumed.
#[derive(Debug)]
struct Detached;

/// A publish awaiting its answer.
#[derive(Debug)]
struct Pending {
    account: BareJid,
    service: Jid,
    node: String,
}

/// The push notifications module.
pub struct Push {
    /// Replaced by a reload; one enable or notification reads it once.
    settings: Live<PushSettings>,
    keyval: Arc<dyn KeyVal>,
    locks: StripedLocks,
    /// What was announced since each account was last connected (only accounts with
    /// registrations).
    since: DashMap<BareJid, Announced>,
    /// Publishes sent and not answered, by id.
    pending: DashMap<String, Pending>,
    next_id: AtomicU64,
    /// Sessions of this node waiting for resumption (at most: see [`Push::applies`]).
    waiting: AtomicUsize,
}

impl std::fmt::Debug for Push {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Push")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Reconfigure for Push {
    type Settings = PushSettings;

    /// Registrations beyond a lowered `max_registrations` stay; only new ones are refused.
    fn reconfigure(&self, new: PushSettings) {
        self.settings.set(new);
    }
}

impl Module for Push {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        for name in ["enable", "disable"] {
            registry.iq(IqTarget::Account, IqType::Set, NS_PUSH, name, self.clone());
        }
        registry.inbound(PRIORITY, KindMask::MESSAGE, self.clone());
        registry.offline(PRIORITY, self.clone());
        registry.session(PRIORITY, self.clone());
        registry.iq_response(PRIORITY, self);
        for feature in FEATURES {
            registry.account_feature(feature);
        }
    }
}

/// The text of a message's body, when it is one to wake a device for.
fn notifiable(stanza: &Stanza) -> Option<String> {
    if stanza.kind() != StanzaKind::Message
        || matches!(stanza.type_attr(), Some("error" | "groupchat" | "headline"))
    {
        return None;
    }
    let body = stanza.element().child("body", ns::CLIENT)?.text();
    (!body.trim().is_empty()).then_some(body)
}

/// Messages remembered per account to recognise one announced already.
const RECENT: usize = 32;

/// What was announced to an account's push services since it was last connected.
#[derive(Debug, Default)]
struct Announced {
    /// Messages announced.
    count: u64,
    /// The keys of the last [`RECENT`] of them ([`message_key`]).
    recent: VecDeque<u64>,
}

impl Announced {
    /// Counts the message with `key`, returning the new count; `None` if it was counted
    /// already (the same message routed a second time).
    fn count(&mut self, key: u64) -> Option<u64> {
        if self.recent.contains(&key) {
            return None;
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(key);
        self.count += 1;
        Some(self.count)
    }
}

/// What tells one message from another: its sender, id and body.
fn message_key(stanza: &Stanza, body: &str) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    (stanza.from().map(Jid::as_str), stanza.id(), body).hash(&mut h);
    h.finish()
}

/// `(host, user)` of an account's KeyVal document.
fn owner(user: &BareJid) -> (&str, &str) {
    (
        user.domain().as_str(),
        user.node().map_or("", |n| n.as_str()),
    )
}

impl Push {
    /// The session no longer waits for resumption (resumed, or ended while waiting).
    fn stop_waiting(&self, ext: &xmppd_core::Extensions) {
        if ext.remove::<Detached>().is_some() {
            let _ = self
                .waiting
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }

    /// The module over `storage` (claimed as [`STORE`]).
    pub fn new(storage: &Storage, settings: PushSettings) -> Self {
        Push {
            settings: Live::new(settings),
            keyval: storage.keyval.clone(),
            locks: StripedLocks::new(LOCK_STRIPES),
            since: DashMap::new(),
            pending: DashMap::new(),
            next_id: AtomicU64::new(1),
            waiting: AtomicUsize::new(0),
        }
    }

    async fn load(&self, user: &BareJid) -> Result<Registrations, StorageError> {
        let (host, node) = owner(user);
        match self.keyval.get(host, node, STORE).await? {
            Some(bytes) => Registrations::decode(&bytes),
            None => Ok(Registrations::default()),
        }
    }

    async fn save(&self, user: &BareJid, regs: &Registrations) -> Result<(), StorageError> {
        let (host, node) = owner(user);
        if regs.is_empty() {
            self.keyval.delete(host, node, STORE).await.map(|_| ())
        } else {
            self.keyval.put(host, node, STORE, &regs.encode()?).await
        }
    }

    /// §5: adds or replaces a registration.
    async fn enable(&self, user: &BareJid, enable: Enable) -> Result<(), PushError> {
        let _guard = self.locks.lock(user).await;
        let mut regs = self.load(user).await?;
        let max = self.settings.get().max_registrations;
        if !regs.upsert(Registration::from(enable), max) {
            return Err(PushError::TooMany(max));
        }
        Ok(self.save(user, &regs).await?)
    }

    /// §6 (and an error answer, §7): removes the service's registrations, or one node's.
    async fn disable(
        &self,
        user: &BareJid,
        service: &Jid,
        node: Option<&str>,
    ) -> Result<(), StorageError> {
        let _guard = self.locks.lock(user).await;
        let mut regs = self.load(user).await?;
        if regs.remove(service, node) {
            self.save(user, &regs).await?;
        }
        Ok(())
    }

    /// Whether the account has no connected session: all waiting for resumption, or none.
    fn nobody_connected(router: &Router, account: &BareJid) -> bool {
        router
            .sessions()
            .resources(account)
            .iter()
            .all(|r| r.ext().get::<Detached>().is_some())
    }

    /// Publishes a notification of `stanza` to every registration of `account`.
    async fn notify(&self, router: &Router, account: &BareJid, stanza: &Stanza, body: String) {
        let regs = match self.load(account).await {
            Ok(regs) if regs.is_empty() => return,
            Ok(regs) => regs,
            Err(e) => {
                tracing::warn!(%account, error = %e, "could not read the push registrations");
                return;
            }
        };
        let Some(count) = self
            .since
            .entry(account.clone())
            .or_default()
            .count(message_key(stanza, &body))
        else {
            // Announced already: a message a waiting session held, stored offline when its
            // resumption window ended.
            return;
        };
        let summary = Summary {
            message_count: count,
            last_sender: stanza.from().cloned(),
            last_body: self.settings.get().include_body.then_some(body),
        };
        for reg in regs.iter() {
            let Ok(service) = Jid::new(&reg.jid) else {
                continue;
            };
            let id = format!(
                "{ID_PREFIX}{}",
                self.next_id.fetch_add(1, Ordering::Relaxed)
            );
            let options = (!reg.options.is_empty()).then(|| push::publish_options(&reg.options));
            let el = Element::new("iq", ns::CLIENT)
                .with_attr("type", "set")
                .with_attr("id", id.as_str())
                .with_attr("from", account.as_str())
                .with_attr("to", service.as_str())
                .with_child(push::publish(&reg.node, &summary, options.as_ref()));
            self.remember(
                id,
                Pending {
                    account: account.clone(),
                    service: service.clone(),
                    node: reg.node.clone(),
                },
            );
            let iq = Stanza::new_unchecked(
                StanzaKind::Iq,
                Some(Jid::from(account.clone())),
                Some(service),
                el,
            );
            router.route(iq).await;
        }
    }

    /// Remembers a publish until its answer, forgetting the oldest beyond [`MAX_PENDING`].
    fn remember(&self, id: String, pending: Pending) {
        if self.pending.len() >= MAX_PENDING {
            let oldest = self
                .pending
                .iter()
                .filter_map(|e| {
                    let n: u64 = e.key().strip_prefix(ID_PREFIX)?.parse().ok()?;
                    Some(n)
                })
                .min();
            if let Some(n) = oldest {
                self.pending.remove(&format!("{ID_PREFIX}{n}"));
            }
        }
        self.pending.insert(id, pending);
    }
}

#[async_trait]
impl IqHandler for Push {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        let user = request.to;
        if request.from.to_bare() != *user {
            return Err(PushError::Forbidden.into());
        }
        if request.payload.name() == "enable" {
            self.enable(user, Enable::try_from(request.payload)?)
                .await?;
        } else {
            let disable = Disable::try_from(request.payload)?;
            self.disable(user, &disable.jid, disable.node.as_deref())
                .await
                .map_err(PushError::from)?;
        }
        Ok(None)
    }
}

#[async_trait]
impl InboundHook for Push {
    /// Only a message with a body, and only while some session of this node waits for
    /// resumption: every other message to a bound session keeps the router's direct path.
    fn applies(&self, _router: &Router, stanza: &Stanza) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0 && notifiable(stanza).is_some()
    }

    async fn inbound(&self, router: &Router, stanza: Stanza, account: &BareJid) -> Flow {
        let Some(body) = notifiable(&stanza) else {
            return Flow::Continue(stanza);
        };
        let resources = router.sessions().resources(account);
        let all_waiting = !resources.is_empty()
            && resources
                .iter()
                .all(|r| r.ext().get::<Detached>().is_some());
        // Queued in a waiting session (not stored offline: the offline hook's case).
        let queued = resources.iter().any(|r| {
            r.priority.is_some_and(|p| p >= 0)
                || stanza.to().is_some_and(|to| to.as_str() == r.jid.as_str())
        });
        if all_waiting && queued {
            self.notify(router, account, &stanza, body).await;
        }
        Flow::Continue(stanza)
    }
}

#[async_trait]
impl OfflineHook for Push {
    async fn offline(&self, router: &Router, stanza: &Stanza, to: &BareJid) -> OfflineFlow {
        if let Some(body) = notifiable(stanza)
            && Self::nobody_connected(router, to)
        {
            self.notify(router, to, stanza, body).await;
        }
        OfflineFlow::Pass
    }
}

#[async_trait]
impl SessionHook for Push {
    fn wants(&self, event: &SessionEvent<'_>) -> bool {
        matches!(
            event,
            SessionEvent::Bound
                | SessionEvent::Detached
                | SessionEvent::Resumed
                | SessionEvent::Closed
        )
    }

    async fn session_event(
        &self,
        _router: &Router,
        session: SessionRef<'_>,
        event: &SessionEvent<'_>,
    ) {
        match event {
            SessionEvent::Detached if session.ext.insert(Detached).is_none() => {
                self.waiting.fetch_add(1, Ordering::Relaxed);
            }
            SessionEvent::Bound | SessionEvent::Resumed => {
                self.stop_waiting(session.ext);
                self.since.remove(&session.jid.to_bare());
            }
            SessionEvent::Closed => self.stop_waiting(session.ext),
            _ => {}
        }
    }
}

#[async_trait]
impl IqResponseHook for Push {
    fn claims(&self, stanza: &Stanza) -> bool {
        stanza
            .id()
            .is_some_and(|id| id.starts_with(ID_PREFIX) && self.pending.contains_key(id))
    }

    async fn iq_response(&self, _router: &Router, stanza: &Stanza, to: &BareJid) {
        let Some(id) = stanza.id() else { return };
        // Only the service the publish went to, answering the account it came from.
        let matches = |p: &Pending| &p.account == to && stanza.from() == Some(&p.service);
        let Some((_, pending)) = self.pending.remove_if(id, |_, p| matches(p)) else {
            return;
        };
        if !stanza.is_error() {
            return;
        }
        tracing::info!(
            account = %pending.account,
            service = %pending.service,
            node = %pending.node,
            "the push service answered with an error: registration disabled"
        );
        if let Err(e) = self
            .disable(&pending.account, &pending.service, Some(&pending.node))
            .await
        {
            tracing::warn!(account = %pending.account, error = %e, "could not disable a push registration");
        }
    }
}

#[cfg(test)]
mod tests;
