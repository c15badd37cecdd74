//! XEP-0191: Blocking Command.
//!
//! A user's block list is a set of JIDs kept in the `blocklist` map store (one item per
//! blocked JID, the key its normalised string). Three iq payloads manage it (§3.2 get,
//! §3.3 block, §3.4/§3.5 unblock); every change is pushed to the user's resources that
//! requested the list, which this module records in the session's
//! [`xmppd_core::Extensions`].
//!
//! # Enforcement
//!
//! A [`PreRouteFilter`] sees every routed stanza. JIDs match as §6 (after XEP-0016 §2.1)
//! orders it: full JID, bare JID, domain/resource, domain. A user never blocks its own
//! resources (§5, note).
//!
//! - From a blocked JID to the user (§3.3, "inbound"): presence is dropped without an answer,
//!   a message or an iq get/set gets `service-unavailable` (so the user appears offline),
//!   errors and iq results are dropped.
//! - From the user to a blocked JID ("outbound"): a message or iq get/set is not routed and
//!   the sender's session gets `not-acceptable` with `<blocked/>` (§3.3). That error is
//!   queued for the session directly: routed, it would come *from* the blocked JID and be
//!   dropped here as inbound. Presence is dropped, except unavailable presence, which only
//!   confirms what blocking shows (the §3.3 notice itself is one). Errors pass: they can
//!   only answer the contact, and the inbound `service-unavailable` above is one of them.
//!
//! # The cache, and failure
//!
//! The filter runs for every stanza. It first asks the index of accounts that block anyone
//! (`index.rs`): when nobody on the server does, a stanza costs two atomic loads, and a stanza
//! between two accounts outside the index costs two set lookups. The lists of indexed
//! accounts with a bound session are kept in memory (`cache.rs`): loaded by the first stanza
//! that needs one (not at login, which would cost every login a storage read), replaced after
//! each change, dropped when the account's last session closes.
//! [`PreRouteFilter::applies`] decides from the index and that cache without waiting; an
//! indexed account without a session (offline messages, probes) is read from the store for
//! that stanza.
//!
//! A list that cannot be read fails open for that stanza only, with a warning: failing
//! closed would cut the account off from everyone (its contacts, its server) for as long as
//! storage is down, and a block list is a courtesy filter, not an access control. Nothing
//! unreadable is cached, so the next stanza reads the store again.
//!
//! # Presence on block and unblock
//!
//! §3.3 sends unavailable presence, and §3.4 the current presence, to the JID "only if the
//! JID is allowed to receive presence notifications": a contact the user's roster gives a
//! subscription `from` or `both` (read, never written: the roster is the IM module's). Only items naming an account
//! (`user@domain`, with or without resource) are notified; a blocked domain is not expanded
//! to the contacts at that domain.

mod cache;
mod index;

use std::sync::Arc;

use async_trait::async_trait;
use jid::{BareJid, Jid};
use serde::Deserialize;
use tokio::sync::MutexGuard;
use tracing::warn;
use xmppd_core::router::{client_bytes, readdress};
use xmppd_core::session::ResourceInfo;
use xmppd_core::storage::{MapStore, Storage, StorageError, StorageResult};
use xmppd_core::{
    Flow, IqHandler, IqRequest, IqTarget, IqType, Module, Outbound, PreRouteFilter, Registry,
    Router, SessionEvent, SessionHook, SessionRef,
};
use xmppd_core::{Live, Reconfigure, StripedLocks};
use xmppd_im::RosterStore;
use xmppd_proto::blocking::{BlockingCommand, BlockingKind, blocked_error};

use cache::ListCache;
use index::BlockerIndex;
pub use index::INDEX_STORE;
use xmppd_proto::{DefinedCondition, Stanza, StanzaError, StanzaKind, ns};
use xmppd_xml::Element;

use xmppd_proto::ns::BLOCKING as NS;
/// The map store the lists are kept in.
pub const STORE: &str = "blocklist";

/// Hook priority: before the IM module and archives, so a blocked stanza reaches neither.
const PRIORITY: i32 = 100;
const LOCK_STRIPES: usize = 16;

/// `[modules.blocking]`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlockingSettings {
    /// Most JIDs one account may block (default 1000); a block beyond it is `not-allowed`.
    pub max_items: usize,
}

impl Default for BlockingSettings {
    fn default() -> Self {
        BlockingSettings { max_items: 1000 }
    }
}

/// One account's blocked JIDs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlockList {
    items: std::collections::BTreeSet<String>,
    /// Whether an item has the `domain/resource` form, the one match that needs a string
    /// built per stanza.
    domain_resource: bool,
}

impl BlockList {
    /// The list of these normalised JIDs.
    pub fn new(items: impl IntoIterator<Item = String>) -> Self {
        let items: std::collections::BTreeSet<String> = items.into_iter().collect();
        let domain_resource = items.iter().any(|i| !i.contains('@') && i.contains('/'));
        BlockList {
            items,
            domain_resource,
        }
    }

    /// Whether `jid` is blocked (§6): its full JID, bare JID, domain/resource or domain is
    /// an item.
    pub fn matches(&self, jid: &Jid) -> bool {
        if self.items.is_empty() {
            return false;
        }
        if self.items.contains(jid.as_str()) {
            return true;
        }
        if let (Some(resource), Some(_)) = (jid.resource(), jid.node()) {
            if self.items.contains(bare_str(jid)) {
                return true;
            }
            if self.domain_resource
                && self
                    .items
                    .contains(&format!("{}/{}", jid.domain().as_str(), resource.as_str()))
            {
                return true;
            }
        }
        self.items.contains(jid.domain().as_str())
    }

    fn contains(&self, item: &str) -> bool {
        self.items.contains(item)
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// The bare part of a JID's string, without allocating.
fn bare_str(jid: &Jid) -> &str {
    xmppd_core::session::bare_text(jid.as_str())
}

/// Marks a session that requested the block list: it receives pushes (§3.3, §3.4).
struct RequestedBlocklist;

/// The blocking module.
pub struct Blocking {
    store: Arc<dyn MapStore>,
    /// Replaced by a reload; a block reads it once.
    settings: Live<BlockingSettings>,
    /// Who sees the user's presence (§3.3, §3.4 notify only them).
    roster: RosterStore,
    /// The lists of accounts with a bound session, by bare JID string: read without awaiting
    /// by the filter. Replaced under the account's stripe of `locks` (after a change), loaded
    /// by the first stanza that needs one, dropped after the account's last session.
    cache: ListCache,
    /// The accounts that block anyone: asked first.
    index: BlockerIndex,
    /// Serialise changes to one account's list: read, check, write, cache.
    locks: StripedLocks,
}

impl std::fmt::Debug for Blocking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blocking")
            .field("settings", &self.settings)
            .field("cached", &self.cache.len())
            .finish_non_exhaustive()
    }
}

fn internal(e: StorageError) -> StanzaError {
    warn!(error = %e, "block list storage failed");
    StanzaError::new(DefinedCondition::InternalServerError).with_text("block list storage failed")
}

/// `(host, user)` of an account.
fn owner(account: &Jid) -> (&str, &str) {
    (
        account.domain().as_str(),
        account.node().map_or("", |n| n.as_str()),
    )
}

/// The items of a block or unblock payload, as the normalised strings the store keys by.
fn parse_items(payload: &Element) -> Result<Vec<String>, StanzaError> {
    let command = BlockingCommand::try_from(payload)?;
    Ok(command
        .items
        .iter()
        .map(|j| j.as_str().to_owned())
        .collect())
}

/// A payload of `kind` listing `items` (normalised JID strings).
fn element(kind: BlockingKind, items: &[String]) -> Element {
    let jids = items.iter().filter_map(|i| Jid::new(i).ok());
    BlockingCommand::new(kind, jids).to_element()
}

impl Blocking {
    /// The module over `storage` (the `blocklist` map store and the `blockers` index; the
    /// roster is read only), for the accounts of `hosts`.
    pub fn new(storage: &Storage, settings: BlockingSettings, hosts: Vec<String>) -> Self {
        Blocking {
            index: BlockerIndex::new(storage.keyval.clone(), hosts),
            store: storage.map.clone(),
            settings: Live::new(settings),
            roster: RosterStore::new(storage.map.clone(), storage.keyval.clone()),
            cache: ListCache::new(),
            locks: StripedLocks::new(LOCK_STRIPES),
        }
    }

    async fn lock(&self, account: &str) -> MutexGuard<'_, ()> {
        self.locks.lock(account).await
    }

    async fn load(&self, account: &Jid) -> StorageResult<BlockList> {
        let (host, user) = owner(account);
        let rows = self.store.list(host, user, STORE).await?;
        Ok(BlockList::new(rows.into_iter().map(|(k, _)| k)))
    }

    /// `account`'s list: cached, or read (and cached while the account has a session);
    /// `None` if it cannot be read.
    async fn list_of(&self, router: &Router, account: &Jid) -> Option<Arc<BlockList>> {
        let key = bare_str(account);
        let cached = self.cache.get(key);
        if cached.is_some() {
            return cached;
        }
        match self.load(account).await {
            Ok(list) => {
                let bare = account.to_bare();
                if router.sessions().resources(&bare).is_empty() {
                    return Some(Arc::new(list));
                }
                // A change made meanwhile cached a newer list: keep that one.
                let list = self.cache.insert_if_absent(key, Arc::new(list));
                // The last session may have closed while the list was read.
                if router.sessions().resources(&bare).is_empty() {
                    self.cache.remove(key);
                }
                Some(list)
            }
            Err(e) => {
                // Fail open for this stanza (see the module docs).
                warn!(account = key, error = %e, "block list unreadable, not applied");
                None
            }
        }
    }

    /// Whether `account` (a local account) blocks `other`.
    async fn blocks(&self, router: &Router, account: &Jid, other: &Jid) -> bool {
        if !self.index.may_block(bare_str(account)) {
            return false;
        }
        self.list_of(router, account)
            .await
            .is_some_and(|l| l.matches(other))
    }

    /// Caches `list` as `user`'s if the account has a session; the caller holds the lock.
    fn cache_list(&self, router: &Router, user: &BareJid, list: BlockList) {
        let bound = !router.sessions().resources(user).is_empty();
        if bound {
            self.cache.insert(user.as_str(), Arc::new(list));
        }
    }

    async fn get(&self, request: &IqRequest<'_>) -> Result<Element, StanzaError> {
        if let Ok(full) = request.from.try_as_full()
            && let Some(session) = request.router.sessions().get(full)
        {
            session.ext().insert(RequestedBlocklist);
        }
        let user = Jid::from(request.to.clone());
        let list = self.load(&user).await.map_err(internal)?;
        let items: Vec<String> = list.items.into_iter().collect();
        Ok(element(BlockingKind::Blocklist, &items))
    }

    async fn block(&self, request: &IqRequest<'_>) -> Result<(), StanzaError> {
        let items = parse_items(request.payload)?;
        if items.is_empty() {
            return Err(StanzaError::bad_request("block needs at least one item"));
        }
        let user = request.to;
        let account = Jid::from(user.clone());
        let (host, node) = owner(&account);
        let guard = self.lock(user.as_str()).await;
        let list = self.load(&account).await.map_err(internal)?;
        let added: Vec<&String> = items.iter().filter(|i| !list.contains(i)).collect();
        let max_items = self.settings.get().max_items;
        if list.len() + added.len() > max_items {
            return Err(StanzaError::new(DefinedCondition::NotAllowed)
                .with_text(format!("the block list is full ({max_items} items)")));
        }
        if !added.is_empty() {
            // Into the index before the first item, so the filter never misses a blocker.
            self.index.add(user).await.map_err(internal)?;
        }
        for item in &added {
            self.store
                .put(host, node, STORE, item, b"")
                .await
                .map_err(internal)?;
        }
        let router = request.router;
        let new = BlockList::new(list.items.into_iter().chain(items.iter().cloned()));
        self.cache_list(router, user, new);
        // Routing below may come back to this module; the lock is not held across it.
        drop(guard);
        // §3.3: unavailable presence to the newly blocked (it passes the filter either way).
        for item in &added {
            self.notify(router, user, item, |_| None).await;
        }
        push(router, user, element(BlockingKind::Block, &items)).await;
        Ok(())
    }

    async fn unblock(&self, request: &IqRequest<'_>) -> Result<(), StanzaError> {
        let items = parse_items(request.payload)?;
        let user = request.to;
        let account = Jid::from(user.clone());
        let (host, node) = owner(&account);
        let router = request.router;
        let guard = self.lock(user.as_str()).await;
        let list = self.load(&account).await.map_err(internal)?;
        // §3.5: no item unblocks everything.
        let removed: Vec<String> = if items.is_empty() {
            self.store
                .clear(host, node, STORE)
                .await
                .map_err(internal)?;
            list.items.iter().cloned().collect()
        } else {
            let mut removed = Vec::new();
            for item in items.iter().filter(|i| list.contains(i)) {
                self.store
                    .delete(host, node, STORE, item)
                    .await
                    .map_err(internal)?;
                removed.push(item.clone());
            }
            removed
        };
        let new = BlockList::new(list.items.into_iter().filter(|i| !removed.contains(i)));
        if new.is_empty() {
            // Out of the index after the last item.
            self.index.remove(user).await.map_err(internal)?;
        }
        self.cache_list(router, user, new);
        drop(guard);
        // §3.4: the current presence, now that the filter lets it through.
        for item in &removed {
            self.notify(router, user, item, |p| p.map(|p| Stanza::clone(p)))
                .await;
        }
        push(router, user, element(BlockingKind::Unblock, &items)).await;
        Ok(())
    }

    /// Sends presence of each of `user`'s available resources to `item`, if it names an
    /// account allowed to see it: unavailable presence, or what `current` makes of the
    /// resource's last presence.
    async fn notify(
        &self,
        router: &Router,
        user: &BareJid,
        item: &str,
        current: impl Fn(Option<&Arc<Stanza>>) -> Option<Stanza>,
    ) {
        let Ok(to) = Jid::new(item) else { return };
        if to.node().is_none() || !self.receives_presence(user, &to.to_bare()).await {
            return;
        }
        for r in router.sessions().resources(user) {
            if r.priority.is_none() {
                continue;
            }
            let presence = current(r.last_presence.as_ref()).unwrap_or_else(|| {
                let from = Jid::from(r.jid.clone());
                let el = Element::new("presence", ns::CLIENT)
                    .with_attr("from", from.as_str())
                    .with_attr("to", to.as_str())
                    .with_attr("type", "unavailable");
                Stanza::new_unchecked(StanzaKind::Presence, Some(from), Some(to.clone()), el)
            });
            router.route(readdress(&presence, &to)).await;
        }
    }

    /// Whether `contact` may see `user`'s presence: a roster subscription `from` or `both`.
    async fn receives_presence(&self, user: &BareJid, contact: &BareJid) -> bool {
        matches!(self.roster.item(user, contact).await, Ok(Some(item)) if item.subscription.from())
    }

    /// Whether `account`'s list may block `other`, from the cache alone: `true` when the
    /// list is cached and matches, or, for a local account, is not cached (it must be read).
    fn may_block(&self, router: &Router, account: &Jid, other: &Jid) -> bool {
        if !self.index.may_block(bare_str(account)) {
            return false;
        }
        self.cache
            .check(bare_str(account), |list| list.matches(other))
            .unwrap_or_else(|| local_account(router, account))
    }

    /// A stanza from the local account `from` to a JID it blocks (§3.3).
    fn outbound(router: &Router, stanza: Stanza) -> Option<Flow> {
        match stanza.kind() {
            _ if stanza.is_error() => None,
            StanzaKind::Presence if stanza.type_attr() == Some("unavailable") => None,
            StanzaKind::Presence => Some(Flow::drop_silently()),
            StanzaKind::Iq if stanza.type_attr() == Some("result") => Some(Flow::drop_silently()),
            _ => {
                if let Some(bounce) = stanza.error_reply(&blocked_error())
                    && let Some(Ok(full)) = stanza.from().map(Jid::try_as_full)
                {
                    let bytes = client_bytes(&bounce);
                    let _ = router.sessions().deliver_to(full, || Outbound {
                        bytes,
                        reroute: None,
                    });
                }
                Some(Flow::drop_silently())
            }
        }
    }

    /// A stanza to the user from a JID it blocks (§3.3).
    fn inbound(stanza: &Stanza) -> Flow {
        match stanza.kind() {
            StanzaKind::Presence => Flow::drop_silently(),
            // Errors and iq results have no error reply: dropped.
            _ => Flow::bounce(stanza, &StanzaError::service_unavailable()),
        }
    }
}

/// Whether `jid` is a local account.
fn local_account(router: &Router, jid: &Jid) -> bool {
    jid.node().is_some() && router.is_local_domain(jid.domain().as_str())
}

/// Sends `payload` to every resource of `user` that requested the list (§3.3, §3.4).
async fn push(router: &Router, user: &BareJid, payload: Element) {
    let requested = |r: &ResourceInfo| r.ext().get::<RequestedBlocklist>().is_some();
    xmppd_core::router::push(router, user, &payload, requested).await;
}

#[async_trait]
impl IqHandler for Blocking {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        // The list is the user's own: §3 has the client send these without a `to`.
        if request.from.node() != request.to.node() || request.from.domain() != request.to.domain()
        {
            return Err(StanzaError::new(DefinedCondition::Forbidden)
                .with_text("a block list belongs to its user"));
        }
        match request.payload.name() {
            "blocklist" => self.get(&request).await.map(Some),
            "block" => self.block(&request).await.map(|()| None),
            _ => self.unblock(&request).await.map(|()| None),
        }
    }
}

#[async_trait]
impl PreRouteFilter for Blocking {
    fn applies(&self, router: &Router, stanza: &Stanza) -> bool {
        if self.index.nobody_blocks() {
            return false;
        }
        let (Some(from), Some(to)) = (stanza.from(), stanza.to()) else {
            return false;
        };
        if from.node() == to.node() && from.domain() == to.domain() {
            return false;
        }
        self.may_block(router, from, to) || self.may_block(router, to, from)
    }

    async fn pre_route(&self, router: &Router, stanza: Stanza) -> Flow {
        if let Err(e) = self.index.ensure_loaded().await {
            // Fail open for this stanza (see the module docs); the next one tries again.
            warn!(error = %e, "block list index unreadable, not applied");
            return Flow::Continue(stanza);
        }
        let (Some(from), Some(to)) = (stanza.from(), stanza.to()) else {
            return Flow::Continue(stanza);
        };
        // §5, note: never between one user's own resources.
        if from.node() == to.node() && from.domain() == to.domain() {
            return Flow::Continue(stanza);
        }
        if local_account(router, from)
            && self.blocks(router, from, to).await
            && let Some(flow) = Self::outbound(router, stanza.clone())
        {
            return flow;
        }
        if local_account(router, to) && self.blocks(router, to, from).await {
            return Self::inbound(&stanza);
        }
        Flow::Continue(stanza)
    }
}

#[async_trait]
impl SessionHook for Blocking {
    fn wants(&self, event: &SessionEvent<'_>) -> bool {
        matches!(event, SessionEvent::Closed)
    }

    async fn session_event(
        &self,
        router: &Router,
        session: SessionRef<'_>,
        event: &SessionEvent<'_>,
    ) {
        if !matches!(event, SessionEvent::Closed) {
            return;
        }
        let user = session.jid.to_bare();
        let _guard = self.lock(user.as_str()).await;
        if router.sessions().resources(&user).is_empty() {
            self.cache.remove(user.as_str());
        }
    }
}

impl Reconfigure for Blocking {
    type Settings = BlockingSettings;

    /// Lists longer than a lowered `max_items` stay; they only take no more blocks.
    fn reconfigure(&self, new: BlockingSettings) {
        self.settings.set(new);
    }
}

impl Module for Blocking {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        let account = IqTarget::Account;
        registry.iq(account, IqType::Get, NS, "blocklist", self.clone());
        registry.iq(account, IqType::Set, NS, "block", self.clone());
        registry.iq(account, IqType::Set, NS, "unblock", self.clone());
        registry.pre_route(PRIORITY, self.clone());
        registry.session(PRIORITY, self);
        registry.server_feature(NS);
    }
}

#[cfg(test)]
mod tests;
