//! Modules and the registry they declare themselves in.
//!
//! A module's [`Module::register`] lists, in one place, every IQ handler, typed hook, disco
//! feature and stream feature it adds. Dispatch is by types — the target kind, the iq type,
//! the payload's namespace and name, the hook's trait — never by strings assembled at runtime.

use std::sync::Arc;

use async_trait::async_trait;
use jid::{BareJid, Jid};
use xmppd_proto::{Stanza, StanzaError};
use xmppd_xml::Element;

use crate::hooks::{
    InboundPresenceHandler, OfflineStore, OutboundSubscriptionHandler, SessionPresenceHook,
};
use crate::router::Router;

/// Whom an iq is addressed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IqTarget {
    /// The server itself (`to` is a hosted domain).
    Server,
    /// An account, answered by the server on the user's behalf (`to` is a bare JID, or
    /// absent: RFC 6120 §10.3.3).
    Account,
}

/// The request kinds of iq.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IqType {
    /// `type='get'`
    Get,
    /// `type='set'`
    Set,
}

/// An iq request handed to a handler.
#[derive(Debug)]
pub struct IqRequest<'a> {
    /// The whole stanza (with the `from` the server stamped).
    pub stanza: &'a Stanza,
    /// Its single payload element.
    pub payload: &'a Element,
    /// The requester.
    pub from: &'a Jid,
    /// The addressed server domain (as a bare JID) or account.
    pub to: &'a BareJid,
    /// The router, for handlers whose answer has side effects (roster pushes).
    pub router: &'a Router,
}

/// Answers one kind of iq.
#[async_trait]
pub trait IqHandler: Send + Sync + 'static {
    /// The payload of the result (`None`: an empty result), or the error to return.
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError>;
}

/// A feature of the server: registers its handlers.
pub trait Module: Send + Sync + 'static {
    /// A short name for logs.
    fn name(&self) -> &'static str;
    /// Declares everything the module adds.
    fn register(self: Arc<Self>, registry: &mut Registry);
}

struct IqRoute {
    target: IqTarget,
    iq_type: IqType,
    ns: &'static str,
    name: &'static str,
    handler: Arc<dyn IqHandler>,
}

/// Everything the modules registered.
#[derive(Default)]
pub struct Registry {
    iq: Vec<IqRoute>,
    server_features: Vec<&'static str>,
    server_items: Vec<String>,
    stream_features: Vec<Element>,
    modules: Vec<&'static str>,
    inbound_presence: Option<Arc<dyn InboundPresenceHandler>>,
    outbound_subscription: Option<Arc<dyn OutboundSubscriptionHandler>>,
    session_presence: Option<Arc<dyn SessionPresenceHook>>,
    offline: Option<Arc<dyn OfflineStore>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("modules", &self.modules)
            .field("server_features", &self.server_features)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a module.
    pub fn add_module(&mut self, module: Arc<dyn ModuleDyn>) {
        self.modules.push(module.module_name());
        module.register_dyn(self);
    }

    /// Routes iq of this kind and payload to `handler`.
    pub fn iq(
        &mut self,
        target: IqTarget,
        iq_type: IqType,
        ns: &'static str,
        name: &'static str,
        handler: Arc<dyn IqHandler>,
    ) {
        self.iq.push(IqRoute {
            target,
            iq_type,
            ns,
            name,
            handler,
        });
    }

    /// Advertises a disco#info feature of the server.
    pub fn server_feature(&mut self, var: &'static str) {
        if !self.server_features.contains(&var) {
            self.server_features.push(var);
        }
    }

    /// Advertises a service of the server (a component domain) in its disco#items.
    pub fn server_item(&mut self, jid: impl Into<String>) {
        let jid = jid.into();
        if !self.server_items.contains(&jid) {
            self.server_items.push(jid);
        }
    }

    /// The server's disco#items, sorted.
    pub fn server_items(&self) -> Vec<String> {
        let mut items = self.server_items.clone();
        items.sort();
        items
    }

    /// Advertises a stream feature to clients once they are authenticated (e.g. roster
    /// versioning, subscription pre-approval).
    pub fn stream_feature(&mut self, feature: Element) {
        self.stream_features.push(feature);
    }

    /// The stream features modules added.
    pub fn stream_features(&self) -> &[Element] {
        &self.stream_features
    }

    /// Handles subscription stanzas and probes to local accounts (one handler).
    pub fn inbound_presence(&mut self, handler: Arc<dyn InboundPresenceHandler>) {
        self.inbound_presence = Some(handler);
    }

    /// Handles subscription stanzas sent by local sessions (one handler).
    pub fn outbound_subscription(&mut self, handler: Arc<dyn OutboundSubscriptionHandler>) {
        self.outbound_subscription = Some(handler);
    }

    /// Follows sessions' broadcast presence (one hook).
    pub fn session_presence(&mut self, hook: Arc<dyn SessionPresenceHook>) {
        self.session_presence = Some(hook);
    }

    /// Stores messages for accounts without an available resource (one store).
    pub fn offline_store(&mut self, store: Arc<dyn OfflineStore>) {
        self.offline = Some(store);
    }

    /// The registered inbound presence handler.
    pub fn inbound_presence_handler(&self) -> Option<&Arc<dyn InboundPresenceHandler>> {
        self.inbound_presence.as_ref()
    }

    /// The registered outbound subscription handler.
    pub fn outbound_subscription_handler(&self) -> Option<&Arc<dyn OutboundSubscriptionHandler>> {
        self.outbound_subscription.as_ref()
    }

    /// The registered session presence hook.
    pub fn session_presence_hook(&self) -> Option<&Arc<dyn SessionPresenceHook>> {
        self.session_presence.as_ref()
    }

    /// The registered offline store.
    pub fn offline_store_handler(&self) -> Option<&Arc<dyn OfflineStore>> {
        self.offline.as_ref()
    }

    /// The server's disco#info features, sorted.
    pub fn server_features(&self) -> Vec<&'static str> {
        let mut f = self.server_features.clone();
        f.sort_unstable();
        f
    }

    /// The handler for an iq, if any module registered one.
    pub fn iq_handler(
        &self,
        target: IqTarget,
        iq_type: IqType,
        payload: &Element,
    ) -> Option<Arc<dyn IqHandler>> {
        self.iq
            .iter()
            .find(|r| {
                r.target == target
                    && r.iq_type == iq_type
                    && r.name == payload.name()
                    && r.ns == payload.ns()
            })
            .map(|r| r.handler.clone())
    }
}

/// Object-safe form of [`Module`], implemented for every module.
pub trait ModuleDyn: Send + Sync + 'static {
    /// See [`Module::name`].
    fn module_name(&self) -> &'static str;
    /// See [`Module::register`].
    fn register_dyn(self: Arc<Self>, registry: &mut Registry);
}

impl<M: Module> ModuleDyn for M {
    fn module_name(&self) -> &'static str {
        self.name()
    }
    fn register_dyn(self: Arc<Self>, registry: &mut Registry) {
        self.register(registry);
    }
}
