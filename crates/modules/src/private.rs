//! XEP-0049: Private XML Storage.
//!
//! A user keeps XML fragments on the server, one per (namespace, element name): a set of
//! `<query xmlns='jabber:iq:private'>` stores each child it holds (several at once, §3),
//! replacing the fragment of the same name and namespace; a get names a fragment by an empty
//! element and gets back the stored one, or that same empty element when nothing is stored
//! (the common practice of Prosody and ejabberd: a client cannot tell "never stored" from
//! "stored empty", and need not). Storing an empty element (no attributes but its namespace,
//! no content) removes the fragment instead, which frees its place in the quota.
//!
//! **Who** (§3, §5): only the user, with no `to` or with `to` its own bare JID; any other
//! `to` is `forbidden` (the XEP prefers it to `service-unavailable`).
//!
//! **What is refused**: a query without a child, or with a child in a reserved namespace (or
//! without a namespace of its own): `not-acceptable` (§3, see
//! [`xmppd_proto::private`]). A fragment larger than `[modules.private] max_item_size` bytes
//! (serialised) and a set that would leave the user more than `max_items` fragments are
//! `not-acceptable` too, and so is a set that would leave the user's fragments taking more
//! than `max_bytes` (as stored, keys included: a running total the storage keeps per user, so
//! the check reads one row and stays right across restarts; replacing a fragment counts its
//! new size less the old one, removing one frees its bytes). A get naming more than
//! `max_items` fragments is `bad-request`. A set is checked whole, and written in one
//! transaction: all of it or nothing.
//!
//! **Storage**: the Map shape, store `private`, keyed `{namespace}name`; account removal
//! deletes it with everything else the user owns.
//!
//! **For other modules**: [`PrivateStore`] reads and writes fragments, and a
//! [`PrivateInterceptor`] added to the [`PrivateInterceptors`] wired in takes over one
//! (namespace, name): XEP-0048 bookmarks (`storage:bookmarks`) kept in sync with XEP-0402
//! PEP bookmarks are meant to be built that way.

use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use jid::BareJid;
use serde::Deserialize;
use xmppd_core::storage::{MapChange, MapStore, Storage, StorageError};
use xmppd_core::{
    IqHandler, IqRequest, IqTarget, IqType, Live, Module, Reconfigure, Registry, Router,
};
use xmppd_proto::private::{PrivateQuery, key};
use xmppd_proto::stanza::parse_stored;
use xmppd_proto::{DefinedCondition, StanzaError, ns};
use xmppd_xml::Element;

/// The Map store of users' fragments.
pub const STORE: &str = "private";

/// `[modules.private]`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivateSettings {
    /// Largest fragment accepted, in bytes as serialised (default 64 KiB).
    pub max_item_size: usize,
    /// Most fragments one user may keep (default 100).
    pub max_items: usize,
    /// Bytes of fragments one user may keep, as stored (fragment and key; default 1 MiB;
    /// 0: no limit).
    pub max_bytes: u64,
}

impl Default for PrivateSettings {
    fn default() -> Self {
        PrivateSettings {
            max_item_size: 64 * 1024,
            max_items: 100,
            max_bytes: 1024 * 1024,
        }
    }
}

/// Why a private XML request failed.
#[derive(Debug, thiserror::Error)]
pub enum PrivateError {
    /// The request is about someone else's data (§3).
    #[error("only the user may read or write their private XML")]
    Forbidden,
    /// A fragment is larger than `max_item_size`.
    #[error("the fragment {key} is {size} bytes; at most {max} are accepted")]
    TooLarge {
        /// The fragment's key.
        key: String,
        /// Its serialised size.
        size: usize,
        /// `max_item_size`.
        max: usize,
    },
    /// The user would keep more than `max_items` fragments.
    #[error("at most {0} private XML fragments per user")]
    TooMany(usize),
    /// The user's fragments would take more than `max_bytes`.
    #[error("private XML fragments may take at most {0} bytes per user")]
    QuotaExceeded(u64),
    /// A get names more fragments than a user can have.
    #[error("a get may name at most {0} fragments")]
    TooManyNamed(usize),
    /// Storage failed or holds an undecodable fragment.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<PrivateError> for StanzaError {
    fn from(e: PrivateError) -> Self {
        match e {
            PrivateError::Forbidden => StanzaError::new(DefinedCondition::Forbidden),
            // XEP-0049 names `not-acceptable` (§3) as the refusal of what a set stores, and
            // a quota refuses the set as sent; `modify`, its default type, tells the client
            // that storing less (or removing a fragment first) works, where waiting would not
            // (which `resource-constraint`, type `wait`, would suggest).
            PrivateError::TooLarge { .. }
            | PrivateError::TooMany(_)
            | PrivateError::QuotaExceeded(_) => {
                StanzaError::new(DefinedCondition::NotAcceptable).with_text(e.to_string())
            }
            PrivateError::TooManyNamed(_) => StanzaError::bad_request(e.to_string()),
            PrivateError::Storage(_) => StanzaError::new(DefinedCondition::InternalServerError),
        }
    }
}

/// `(host, user)` of an account's items.
fn owner(user: &BareJid) -> (&str, &str) {
    (
        user.domain().as_str(),
        user.node().map_or("", |n| n.as_str()),
    )
}

/// Whether storing `fragment` removes what is stored instead (an element with no content and
/// no attribute but its namespace).
fn is_empty_fragment(fragment: &Element) -> bool {
    fragment.nodes().is_empty() && fragment.attrs().all(|(name, _)| name == "xmlns")
}

/// `fragment` serialised, or `Err` when that is larger than `max_item_size`.
fn encode(settings: &PrivateSettings, fragment: &Element) -> Result<Vec<u8>, PrivateError> {
    let bytes = fragment.to_bytes();
    if bytes.len() > settings.max_item_size {
        return Err(PrivateError::TooLarge {
            key: key(fragment),
            size: bytes.len(),
            max: settings.max_item_size,
        });
    }
    Ok(bytes)
}

/// Users' fragments in the Map store [`STORE`], with the configured limits.
#[derive(Clone)]
pub struct PrivateStore {
    map: Arc<dyn MapStore>,
    /// Replaced by a reload (shared by the clones of this store); one put reads it once.
    settings: Arc<Live<PrivateSettings>>,
}

impl std::fmt::Debug for PrivateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivateStore")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl PrivateStore {
    /// Over `storage`'s Map shape.
    pub fn new(storage: &Storage, settings: PrivateSettings) -> Self {
        PrivateStore {
            map: storage.map.clone(),
            settings: Arc::new(Live::new(settings)),
        }
    }

    /// `fragment` serialised, or `Err` when that is larger than `max_item_size`.
    fn encode(&self, fragment: &Element) -> Result<Vec<u8>, PrivateError> {
        encode(&self.settings.get(), fragment)
    }

    /// The fragment `<name xmlns=namespace>` of `owner`, if stored.
    pub async fn get(
        &self,
        owner_jid: &BareJid,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Element>, PrivateError> {
        let (host, user) = owner(owner_jid);
        let key = format!("{{{namespace}}}{name}");
        let Some(bytes) = self.map.get(host, user, STORE, &key).await? else {
            return Ok(None);
        };
        parse_stored(&bytes)
            .filter(|el| el.is(name, namespace))
            .map(Some)
            .ok_or_else(|| {
                StorageError::Corrupt(format!("private XML {key} of {owner_jid}")).into()
            })
    }

    /// Stores `fragments` for `owner`, each replacing the stored one of its name and
    /// namespace (an empty one removes it), after checking all of them against the limits.
    pub async fn put(
        &self,
        owner_jid: &BareJid,
        fragments: &[Element],
    ) -> Result<(), PrivateError> {
        let (host, user) = owner(owner_jid);
        let settings = self.settings.get();
        let mut writes = Vec::with_capacity(fragments.len());
        for fragment in fragments {
            let bytes = if is_empty_fragment(fragment) {
                None
            } else {
                Some(encode(&settings, fragment)?)
            };
            writes.push((key(fragment), bytes));
        }
        let mut new_keys: Vec<&str> = Vec::new();
        for (key, bytes) in &writes {
            if bytes.is_some()
                && !new_keys.contains(&key.as_str())
                && self.map.get(host, user, STORE, key).await?.is_none()
            {
                new_keys.push(key);
            }
        }
        if !new_keys.is_empty() {
            let count = self.map.count(host, user, STORE).await?;
            let after = usize::try_from(count)
                .unwrap_or(usize::MAX)
                .saturating_add(new_keys.len());
            if after > settings.max_items {
                return Err(PrivateError::TooMany(settings.max_items));
            }
        }
        // One write for the whole set: under the byte quota all of it or none.
        let changes: Vec<MapChange<'_>> = writes
            .iter()
            .map(|(key, bytes)| match bytes {
                Some(value) => MapChange::Put { key, value },
                None => MapChange::Delete { key },
            })
            .collect();
        let max_bytes = settings.max_bytes;
        match self
            .map
            .apply_within(
                host,
                user,
                STORE,
                &changes,
                (max_bytes > 0).then_some(max_bytes),
            )
            .await
        {
            Err(StorageError::QuotaExceeded(_)) => Err(PrivateError::QuotaExceeded(max_bytes)),
            other => other.map(drop).map_err(PrivateError::from),
        }
    }
}

/// What an interceptor did with a set of its fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intercepted {
    /// Taken care of; the fragment is not stored here.
    Handled,
    /// Store it here as well.
    Store,
}

/// Takes over one (namespace, name) of private XML: answers its gets and sees its sets
/// before they are stored. For compatibility layers such as XEP-0048 bookmarks through
/// private XML, kept in sync with XEP-0402 PEP bookmarks.
#[async_trait]
pub trait PrivateInterceptor: Send + Sync + 'static {
    /// A get of the fragment by its owner: `Some` is the answer; `None` lets the stored
    /// fragment (or the empty element) answer.
    async fn get(
        &self,
        router: &Router,
        owner: &BareJid,
        store: &PrivateStore,
    ) -> Result<Option<Element>, StanzaError>;

    /// A set of the fragment by its owner, already checked against the limits. An error
    /// fails the whole set; fragments stored before it in the same set stay stored.
    async fn set(
        &self,
        router: &Router,
        owner: &BareJid,
        fragment: &Element,
        store: &PrivateStore,
    ) -> Result<Intercepted, StanzaError>;
}

/// One interceptor and the fragment it takes over.
struct Interception {
    namespace: String,
    name: String,
    interceptor: Arc<dyn PrivateInterceptor>,
}

/// The interceptors of private XML, shared between the private module and the modules that
/// add one while the server's modules are built (before any request is served).
#[derive(Clone, Default)]
pub struct PrivateInterceptors(Arc<RwLock<Vec<Interception>>>);

impl std::fmt::Debug for PrivateInterceptors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivateInterceptors")
    }
}

impl PrivateInterceptors {
    /// Lets `interceptor` take over `<name xmlns=namespace>`; a later one for the same
    /// fragment replaces it.
    pub fn add(&self, namespace: &str, name: &str, interceptor: Arc<dyn PrivateInterceptor>) {
        let mut all = self.0.write().unwrap_or_else(PoisonError::into_inner);
        all.retain(|i| !(i.namespace == namespace && i.name == name));
        all.push(Interception {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            interceptor,
        });
    }

    /// The interceptor of `fragment`'s name and namespace, if any.
    fn of(&self, fragment: &Element) -> Option<Arc<dyn PrivateInterceptor>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .find(|i| fragment.is(&i.name, &i.namespace))
            .map(|i| i.interceptor.clone())
    }
}

/// The private XML storage module.
#[derive(Debug)]
pub struct PrivateXml {
    store: PrivateStore,
    interceptors: PrivateInterceptors,
}

impl PrivateXml {
    /// The module over `storage` (claimed as [`STORE`]), consulting `interceptors`.
    pub fn new(
        storage: &Storage,
        settings: PrivateSettings,
        interceptors: PrivateInterceptors,
    ) -> Self {
        PrivateXml {
            store: PrivateStore::new(storage, settings),
            interceptors,
        }
    }

    /// The store, for modules built on it.
    pub fn store(&self) -> &PrivateStore {
        &self.store
    }

    async fn get(
        &self,
        router: &Router,
        user: &BareJid,
        query: PrivateQuery,
    ) -> Result<Element, StanzaError> {
        let max = self.store.settings.get().max_items;
        if query.items.len() > max {
            return Err(PrivateError::TooManyNamed(max).into());
        }
        let mut answer = Vec::with_capacity(query.items.len());
        for named in query.items {
            let intercepted = match self.interceptors.of(&named) {
                Some(i) => i.get(router, user, &self.store).await?,
                None => None,
            };
            let found = match intercepted {
                Some(el) => Some(el),
                None => self.store.get(user, named.ns(), named.name()).await?,
            };
            answer.push(found.unwrap_or_else(|| Element::new(named.name(), named.ns())));
        }
        Ok(PrivateQuery::new(answer).to_element())
    }

    async fn set(
        &self,
        router: &Router,
        user: &BareJid,
        query: PrivateQuery,
    ) -> Result<(), StanzaError> {
        let mut to_store = Vec::with_capacity(query.items.len());
        for fragment in query.items {
            if let Some(i) = self.interceptors.of(&fragment) {
                // The limits apply to what an interceptor takes too.
                self.store.encode(&fragment)?;
                if i.set(router, user, &fragment, &self.store).await? == Intercepted::Handled {
                    continue;
                }
            }
            to_store.push(fragment);
        }
        Ok(self.store.put(user, &to_store).await?)
    }
}

impl Reconfigure for PrivateXml {
    type Settings = PrivateSettings;

    /// Fragments stored beyond lowered limits stay; only the next set is measured.
    fn reconfigure(&self, new: PrivateSettings) {
        self.store.settings.set(new);
    }
}

impl Module for PrivateXml {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        for iq_type in [IqType::Get, IqType::Set] {
            registry.iq(
                IqTarget::Account,
                iq_type,
                ns::PRIVATE,
                "query",
                self.clone(),
            );
        }
        registry.server_feature(ns::PRIVATE);
    }
}

#[async_trait]
impl IqHandler for PrivateXml {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        let user = request.to;
        if request.from.to_bare() != *user {
            return Err(PrivateError::Forbidden.into());
        }
        let query = PrivateQuery::try_from(request.payload)?;
        query.validate()?;
        let answer = match request.stanza.type_attr() {
            Some("set") => self.set(request.router, user, query).await.map(|()| None),
            _ => self.get(request.router, user, query).await.map(Some),
        };
        if let Err(e) = &answer
            && e.condition == DefinedCondition::InternalServerError
        {
            tracing::warn!(%user, "private XML storage failed");
        }
        answer
    }
}

#[cfg(test)]
mod tests;
