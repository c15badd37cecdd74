//! XEP-0030: Service Discovery, for the server itself and, on their behalf, its accounts;
//! with XEP-0115 (Entity Capabilities) for the server's own answer.
//!
//! **The server** (`to` a host): disco#info lists the server identity (`server/im`, §3.1 and
//! the Registrar's category list) and the features the modules enabled on the addressed host
//! registered; disco#items lists the services of that host (external components, in-process
//! services). A `node` is answered by the module that registered it
//! ([`xmppd_core::ServerNodes`]: XEP-0050's command list and commands); one nobody knows, or
//! that is hidden from the requester, is `item-not-found` (§3.1, §4.1).
//!
//! **An account** (`to` a user's bare JID; RFC 6120 §10.5.3.1 and XEP-0030 §3.1: the server
//! answers on the account's behalf). disco#info gives the identity `account/registered` and
//! the account features the modules registered with
//! [`xmppd_core::Registry::account_feature`] (archives, push), which is how XEP-0313 and
//! XEP-0357 clients find them. §8 guards against directory harvesting: only the user and the
//! entities allowed to see the user's presence (a roster subscription `from` or `both`) get an
//! answer; everybody else gets `service-unavailable`, exactly what a missing account gets from
//! the router (RFC 6121 §8.5.1), so the answer tells a stranger nothing. Modules add
//! identities beside `account/registered` ([`xmppd_core::Registry::account_identity`]: a PEP
//! service's `pubsub/pep`, XEP-0163 §6.1). disco#items lists what the modules'
//! [`xmppd_core::AccountItems`] give the requester, each applying its own access rules
//! (XEP-0163 §6.2: the PEP nodes the requester may retrieve, which for a stranger are the open
//! ones, so §8 rule 2 holds); available resources are not listed, as Prosody and ejabberd do
//! not either.
//!
//! **Capabilities** (XEP-0115 §6.3): [`caps`] hashes the server's disco#info answer for a host
//! (§5.1); the server computes it once at start and offers it in the stream features after
//! authentication, so a client need not ask disco#info at every login. The answer and the hash
//! come from one function, [`server_info`], so they cannot disagree; the query clients send
//! to check a hash, to the node `node#ver` (§6.2), gets that same answer.

use std::sync::Arc;

use async_trait::async_trait;
use jid::{BareJid, Jid};
use xmppd_core::storage::Storage;
use xmppd_core::{IqHandler, IqRequest, IqTarget, IqType, Module, Registry};
use xmppd_im::RosterStore;
use xmppd_proto::caps::Caps;
use xmppd_proto::disco::{DiscoInfoQuery, DiscoInfoResult, DiscoItem, DiscoItemsQuery, Identity};
use xmppd_proto::{DefinedCondition, StanzaError, ns};
use xmppd_xml::Element;

/// The `node` of the server's capabilities: a URI naming the software (XEP-0115 §4), the
/// project's repository.
pub const CAPS_NODE: &str = env!("CARGO_PKG_REPOSITORY");

/// The service discovery module.
pub struct Disco {
    accounts: Arc<AccountInfo>,
}

impl std::fmt::Debug for Disco {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Disco")
    }
}

impl Disco {
    /// The module; `storage` is read for rosters (who may discover an account), never
    /// written.
    pub fn new(storage: &Storage) -> Self {
        Disco {
            accounts: Arc::new(AccountInfo {
                roster: RosterStore::new(storage.map.clone(), storage.keyval.clone()),
            }),
        }
    }
}

/// The server's disco#info answer for `host` (without a node): its identity, the features
/// of the modules enabled there and the forms they added.
pub fn server_info(registry: &Registry, host: &str) -> DiscoInfoResult {
    let mut info = DiscoInfoResult::default();
    info.identities
        .push(Identity::new("server", "im").with_name("xmppd"));
    info.features = registry
        .server_features(host)
        .into_iter()
        .map(str::to_owned)
        .collect();
    // XEP-0128 forms (XEP-0157 contact addresses …), hashed into the caps as well.
    info.extensions = registry.server_forms(host);
    info
}

/// The server's capabilities on `host` (XEP-0115), hashed from [`server_info`]; `None` where
/// this module does not run, since then nobody answers the disco#info the hash stands for.
pub fn caps(registry: &Registry, host: &str) -> Option<Caps> {
    let info = server_info(registry, host);
    info.has_feature(ns::CAPS)
        .then(|| Caps::sha1(CAPS_NODE, &info))
}

struct Info;
struct Items;

/// Only the entity itself is described: a `node` we do not know is `item-not-found` (§3.1).
fn reject_node(node: Option<&String>) -> Result<(), StanzaError> {
    match node {
        None => Ok(()),
        Some(node) => Err(StanzaError::new(DefinedCondition::ItemNotFound)
            .with_text(format!("no such node: {node}"))),
    }
}

#[async_trait]
impl IqHandler for Info {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        let query = DiscoInfoQuery::try_from(request.payload)?;
        let host = request.to.domain().as_str();
        let registry = request.router.registry();
        // XEP-0115 §6.2: whoever saw our caps asks for `node#ver`, and gets the same answer.
        if let Some(node) = &query.node
            && query.node != caps(registry, host).map(|c| c.node_ver())
        {
            for provider in registry.server_node_providers(host) {
                let found = provider
                    .info(request.router, request.to, node, request.from)
                    .await;
                if let Some(mut info) = found {
                    info.node = Some(node.clone());
                    return Ok(Some(info.to_element()));
                }
            }
            reject_node(query.node.as_ref())?;
        }
        let mut result = server_info(registry, host);
        result.node = query.node;
        Ok(Some(result.to_element()))
    }
}

#[async_trait]
impl IqHandler for Items {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        let query = DiscoItemsQuery::try_from(request.payload)?;
        let host = request.to.domain().as_str();
        let mut result = query.reply();
        if let Some(node) = &query.node {
            for provider in request.router.registry().server_node_providers(host) {
                let found = provider
                    .items(request.router, request.to, node, request.from)
                    .await;
                if let Some(items) = found {
                    result.items = items;
                    return Ok(Some(result.to_element()));
                }
            }
            reject_node(query.node.as_ref())?;
        }
        for jid in request.router.registry().server_items(host) {
            match Jid::new(&jid) {
                Ok(jid) => result.items.push(DiscoItem::new(jid)),
                Err(e) => tracing::warn!(%jid, error = %e, "a service domain is not a JID"),
            }
        }
        Ok(Some(result.to_element()))
    }
}

/// Answers disco#info and disco#items to accounts' bare JIDs.
struct AccountInfo {
    roster: RosterStore,
}

impl AccountInfo {
    /// §8: whether `requester` may discover `user`: the user, or an entity the user's roster
    /// lets see the user's presence. A roster that cannot be read denies (and is logged):
    /// failing open would hand out what §8 protects.
    async fn may_discover(&self, requester: &Jid, user: &BareJid) -> bool {
        let requester = requester.to_bare();
        if requester == *user {
            return true;
        }
        match self.roster.item(user, &requester).await {
            Ok(item) => item.is_some_and(|i| i.subscription.from()),
            Err(e) => {
                tracing::warn!(%user, error = %e, "roster unreadable for account discovery");
                false
            }
        }
    }
}

/// The query's payload is one of the account handlers'.
#[derive(Clone, Copy)]
enum AccountQuery {
    Info,
    Items,
}

/// The account discovery handler of one query kind.
struct Account(Arc<AccountInfo>, AccountQuery);

#[async_trait]
impl IqHandler for Account {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        let Account(accounts, kind) = self;
        let allowed = accounts.may_discover(request.from, request.to).await;
        match kind {
            AccountQuery::Info => {
                let query = DiscoInfoQuery::try_from(request.payload)?;
                if !allowed {
                    return Err(StanzaError::service_unavailable());
                }
                reject_node(query.node.as_ref())?;
                let mut result = query.reply();
                result
                    .identities
                    .push(Identity::new("account", "registered"));
                let host = request.to.domain().as_str();
                let registry = request.router.registry();
                for (category, kind) in registry.account_identities(host) {
                    result.identities.push(Identity::new(category, kind));
                }
                result.features = [ns::DISCO_INFO, ns::DISCO_ITEMS]
                    .into_iter()
                    .chain(registry.account_features(host))
                    .map(str::to_owned)
                    .collect();
                Ok(Some(result.to_element()))
            }
            AccountQuery::Items => {
                let query = DiscoItemsQuery::try_from(request.payload)?;
                let mut result = query.reply();
                if query.node.is_some() {
                    if allowed {
                        reject_node(query.node.as_ref())?;
                    }
                    return Ok(Some(result.to_element()));
                }
                let host = request.to.domain().as_str();
                for provider in request.router.registry().account_item_providers(host) {
                    let items = provider
                        .items(request.router, request.to, request.from)
                        .await;
                    result.items.extend(items);
                }
                Ok(Some(result.to_element()))
            }
        }
    }
}

impl Module for Disco {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        registry.iq(
            IqTarget::Server,
            IqType::Get,
            ns::DISCO_INFO,
            "query",
            Arc::new(Info),
        );
        registry.iq(
            IqTarget::Server,
            IqType::Get,
            ns::DISCO_ITEMS,
            "query",
            Arc::new(Items),
        );
        for (kind, namespace) in [
            (AccountQuery::Info, ns::DISCO_INFO),
            (AccountQuery::Items, ns::DISCO_ITEMS),
        ] {
            let handler = Arc::new(Account(self.accounts.clone(), kind));
            registry.iq(IqTarget::Account, IqType::Get, namespace, "query", handler);
        }
        registry.server_feature(ns::DISCO_INFO);
        registry.server_feature(ns::DISCO_ITEMS);
        // XEP-0115 §7: the server's caps are in its stream features.
        registry.server_feature(ns::CAPS);
    }
}
