//! Modules and the registry they declare themselves in.
//!
//! A module's [`Module::register`] lists, in one place, every IQ handler, hook, service, disco
//! feature and stream feature it adds. Dispatch is by types — the target kind, the iq type,
//! the payload's namespace and name, the hook's trait — never by strings assembled at runtime.
//! Everything registered is tagged with the module that registered it, so that a module
//! disabled on one host is invisible there ([`Registry::enabled`]).
//!
//! Modules are built by a [`RegistryBuilder`], which hands each a [`ModuleCtx`]: its own
//! configuration section, the hosts it runs on, the storage names it claims and a handle to
//! the router that will exist once wiring is complete.

mod account;
mod added;
mod builder;
mod iq;
mod node;
mod registration;
mod reload;
mod service;

pub use account::AccountItems;
pub use added::HostServices;

pub use builder::{
    ConfigSource, HostModules, ModuleCtx, ModuleError, NoSettings, RegistryBuilder, RouterHandle,
};
pub use iq::{IqHandler, IqRequest, IqTarget, IqType};
pub use node::ServerNodes;
pub use registration::{InBandRegistration, RegistrationRequest};
pub use reload::{Fixed, Live, Reconfigure, Reconfigured, ReloadPlan, RestartKey};
pub use service::{Routed, Service};

use std::collections::HashMap;
use std::sync::Arc;

use xmppd_proto::data_form::DataForm;
use xmppd_xml::Element;

use crate::hooks::{
    BroadcastPresenceHook, DeliveredHook, Hooks, InboundHook, IqResponseHook, KindMask,
    OfflineHook, OutboundHook, PreRouteFilter, Priority, SessionHook, SessionStateHook, Subscriber,
    SubscriptionHook,
};

/// A feature of the server: declares what it adds.
pub trait Module: Send + Sync + 'static {
    /// Declares everything the module adds.
    fn register(self: Arc<Self>, registry: &mut Registry);
}

/// The index of a module in its registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModuleId(u8);

/// A set of modules (those enabled on one host).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModuleSet(u64);

/// Modules one registry can hold (the width of [`ModuleSet`]).
pub const MAX_MODULES: usize = 64;

impl ModuleSet {
    /// Whether `module` is in the set.
    #[inline]
    pub fn contains(self, module: ModuleId) -> bool {
        self.0 & (1u64 << module.0) != 0
    }

    fn insert(&mut self, module: ModuleId) {
        self.0 |= 1u64 << module.0;
    }
}

struct IqRoute {
    target: IqTarget,
    iq_type: IqType,
    ns: &'static str,
    name: &'static str,
    module: ModuleId,
    handler: Arc<dyn IqHandler>,
}

/// An in-process service's domain and the host it belongs to.
pub(crate) struct ServiceRoute {
    pub(crate) host: String,
    pub(crate) module: ModuleId,
    pub(crate) service: Arc<dyn Service>,
}

/// Everything the modules registered.
#[derive(Default)]
pub struct Registry {
    modules: Vec<&'static str>,
    /// The module whose `register` is running.
    current: Option<ModuleId>,
    iq: Vec<IqRoute>,
    server_features: Vec<(ModuleId, &'static str)>,
    account_features: Vec<(ModuleId, &'static str)>,
    /// Identities of every account besides `account/registered` (XEP-0163 §4.1: `pubsub/pep`).
    account_identities: Vec<(ModuleId, &'static str, &'static str)>,
    /// What the modules list in the disco#items of an account.
    account_items: Vec<(ModuleId, Arc<dyn AccountItems>)>,
    /// What describes nodes of the server's own discovery (XEP-0050 command lists …).
    server_nodes: Vec<(ModuleId, Arc<dyn ServerNodes>)>,
    /// Services of the server (component domains: every host; in-process services: theirs).
    server_items: Vec<(Option<String>, String)>,
    stream_features: Vec<(ModuleId, Element)>,
    /// XEP-0128 forms in the server's disco#info (XEP-0157 contact addresses …).
    server_forms: Vec<(ModuleId, DataForm)>,
    /// The module that creates accounts before authentication, if any.
    in_band_registration: Option<(ModuleId, Arc<dyn InBandRegistration>)>,
    pub(crate) services: HashMap<String, ServiceRoute, crate::FastHasher>,
    pub(crate) hooks: Hooks,
    /// Modules enabled per host; a host missing here runs every module.
    host_modules: HashMap<String, ModuleSet, crate::FastHasher>,
    /// Modules that start services per host, for hosts a reload adds.
    host_services: Vec<(ModuleId, Arc<dyn HostServices>)>,
    /// What reloads added.
    added: added::Added,
    /// The first registration conflict, reported when the registry is finished.
    conflict: Option<ModuleError>,
    /// The modules that take new settings on a reload, by name, in registration order.
    reloaders: Vec<(&'static str, Arc<dyn reload::Reloader>)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("modules", &self.modules)
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// An empty registry (modules are added through a [`RegistryBuilder`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a module under `name` and lets it register; the first conflict it causes is
    /// reported by [`Registry::finish`].
    pub fn add_module(&mut self, name: &'static str, module: Arc<dyn ModuleDyn>) -> ModuleId {
        if self.modules.len() >= MAX_MODULES {
            self.conflict
                .get_or_insert(ModuleError::Registration(format!(
                    "more than {MAX_MODULES} modules: {name} cannot be added"
                )));
            return ModuleId(0);
        }
        let id = ModuleId(self.modules.len() as u8);
        self.modules.push(name);
        self.current = Some(id);
        module.register_dyn(self);
        self.current = None;
        id
    }

    /// Checks what the modules registered: the first conflict (an iq registered twice, a
    /// domain claimed twice) is an error.
    pub fn finish(mut self) -> Result<Registry, ModuleError> {
        match self.conflict.take() {
            Some(e) => Err(e),
            None => Ok(self),
        }
    }

    fn current(&self) -> ModuleId {
        self.current.unwrap_or(ModuleId(0))
    }

    /// The name of a module.
    pub fn module_name(&self, id: ModuleId) -> &'static str {
        self.modules.get(id.0 as usize).copied().unwrap_or("?")
    }

    /// The modules, in registration order.
    pub fn module_names(&self) -> &[&'static str] {
        &self.modules
    }

    /// Restricts `host` to the modules named (the others are invisible there).
    pub fn set_host_modules(&mut self, host: &str, names: &[&str]) {
        let mut set = ModuleSet::default();
        for (i, m) in self.modules.iter().enumerate() {
            if names.contains(m) {
                set.insert(ModuleId(i as u8));
            }
        }
        self.host_modules.insert(host.to_owned(), set);
    }

    /// Whether some host runs only some modules (otherwise every module runs everywhere, and
    /// the router skips the per-host checks).
    #[inline]
    pub fn restricts_hosts(&self) -> bool {
        !self.host_modules.is_empty()
    }

    /// Whether `module` runs on `host` (a domain served here).
    #[inline]
    pub fn enabled(&self, host: &str, module: ModuleId) -> bool {
        self.host_modules
            .get(host)
            .is_none_or(|set| set.contains(module))
    }

    /// Routes iq of this kind and payload to `handler`. Registering one (target, type,
    /// namespace, element) twice is a startup error, not a silent overwrite.
    pub fn iq(
        &mut self,
        target: IqTarget,
        iq_type: IqType,
        ns: &'static str,
        name: &'static str,
        handler: Arc<dyn IqHandler>,
    ) {
        let module = self.current();
        if let Some(other) = self
            .iq
            .iter()
            .find(|r| r.target == target && r.iq_type == iq_type && r.ns == ns && r.name == name)
        {
            let message = format!(
                "the {target:?} iq {} {{{ns}}}{name} is registered by both {} and {}",
                iq_type.as_str(),
                self.module_name(other.module),
                self.module_name(module)
            );
            self.conflict
                .get_or_insert(ModuleError::Registration(message));
            return;
        }
        self.iq.push(IqRoute {
            target,
            iq_type,
            ns,
            name,
            module,
            handler,
        });
    }

    /// Advertises a disco#info feature of the server.
    pub fn server_feature(&mut self, var: &'static str) {
        let module = self.current();
        add_feature(&mut self.server_features, module, var);
    }

    /// Advertises a disco#info feature of every account: what the server does on behalf of
    /// its users, answered to a disco#info query to a user's bare JID (XEP-0030, RFC 6120
    /// §10.5.3.1), e.g. `urn:xmpp:mam:2` (XEP-0313 §7: archives are discovered on the
    /// account) or `urn:xmpp:push:0` (XEP-0357 §5). Listed only on the hosts that run the
    /// module.
    pub fn account_feature(&mut self, var: &'static str) {
        let module = self.current();
        add_feature(&mut self.account_features, module, var);
    }

    /// Advertises a service (an external component's domain) in every host's disco#items.
    pub fn server_item(&mut self, jid: impl Into<String>) {
        let jid = jid.into();
        if !self.server_items.iter().any(|(_, j)| *j == jid) {
            self.server_items.push((None, jid));
        }
    }

    /// Makes `domain` an in-process service of `host`: everything addressed to it goes to
    /// `service`, and it is listed in the host's disco#items.
    pub fn service(&mut self, host: &str, domain: &str, service: Arc<dyn Service>) {
        let module = self.current();
        let domain = domain.to_ascii_lowercase();
        if let Some(other) = self.services.get(&domain) {
            let message = format!(
                "the domain {domain} is claimed as a service by both {} and {}",
                self.module_name(other.module),
                self.module_name(module)
            );
            self.conflict
                .get_or_insert(ModuleError::Registration(message));
            return;
        }
        self.server_items
            .push((Some(host.to_owned()), domain.clone()));
        self.services.insert(
            domain,
            ServiceRoute {
                host: host.to_owned(),
                module,
                service,
            },
        );
    }

    /// The in-process service domains and their hosts.
    pub fn service_domains(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .services
            .iter()
            .map(|(d, s)| (d.clone(), s.host.clone()))
            .chain(self.added_services().into_iter().map(|(d, h, _)| (d, h)))
            .collect();
        v.sort();
        v
    }

    /// The services listed in `host`'s disco#items, sorted.
    pub fn server_items(&self, host: &str) -> Vec<String> {
        let mut items: Vec<String> = self
            .server_items
            .iter()
            .filter(|(h, _)| h.as_deref().is_none_or(|h| h == host))
            .map(|(_, jid)| jid.clone())
            .chain(
                self.added_services()
                    .into_iter()
                    .filter(|(_, h, _)| h == host)
                    .map(|(d, _, _)| d),
            )
            .collect();
        items.sort();
        items
    }

    /// Advertises a stream feature to clients once they are authenticated (e.g. roster
    /// versioning, subscription pre-approval).
    pub fn stream_feature(&mut self, feature: Element) {
        let module = self.current();
        self.stream_features.push((module, feature));
    }

    /// The stream features the modules enabled on `host` added.
    pub fn stream_features(&self, host: &str) -> Vec<Element> {
        self.stream_features
            .iter()
            .filter(|(m, _)| self.enabled(host, *m))
            .map(|(_, f)| f.clone())
            .collect()
    }

    /// Adds a XEP-0128 form (one `FORM_TYPE`) to the server's disco#info on the hosts that
    /// run the module; it is part of the server's entity capabilities (XEP-0115 §5.4).
    pub fn server_form(&mut self, form: DataForm) {
        let module = self.current();
        self.server_forms.push((module, form));
    }

    /// The XEP-0128 forms of `host`'s disco#info.
    pub fn server_forms(&self, host: &str) -> Vec<DataForm> {
        self.server_forms
            .iter()
            .filter(|(m, _)| self.enabled(host, *m))
            .map(|(_, f)| f.clone())
            .collect()
    }

    /// Lets `handler` create accounts for clients that have not authenticated, on the hosts
    /// that run the module (see [`InBandRegistration`]). Only one module may.
    pub fn in_band_registration(&mut self, handler: Arc<dyn InBandRegistration>) {
        let module = self.current();
        if let Some((other, _)) = &self.in_band_registration {
            let message = format!(
                "in-band registration is claimed by both {} and {}",
                self.module_name(*other),
                self.module_name(module)
            );
            self.conflict
                .get_or_insert(ModuleError::Registration(message));
            return;
        }
        self.in_band_registration = Some((module, handler));
    }

    /// Who creates accounts before authentication on `host`, if anyone does.
    pub fn registration_on(&self, host: &str) -> Option<Arc<dyn InBandRegistration>> {
        self.in_band_registration
            .as_ref()
            .filter(|(m, _)| self.enabled(host, *m))
            .map(|(_, handler)| handler.clone())
    }

    /// The disco#info features of `host`, sorted.
    pub fn server_features(&self, host: &str) -> Vec<&'static str> {
        self.features_on(&self.server_features, host)
    }

    /// The disco#info features of the accounts of `host` ([`Registry::account_feature`]),
    /// sorted.
    pub fn account_features(&self, host: &str) -> Vec<&'static str> {
        self.features_on(&self.account_features, host)
    }

    /// The features of `list` registered by modules enabled on `host`, sorted.
    fn features_on(&self, list: &[(ModuleId, &'static str)], host: &str) -> Vec<&'static str> {
        let mut f: Vec<_> = list
            .iter()
            .filter(|(m, _)| self.enabled(host, *m))
            .map(|(_, v)| *v)
            .collect();
        f.sort_unstable();
        f
    }

    /// A subscriber of the module whose `register` is running.
    fn subscriber<H: ?Sized>(
        &self,
        priority: Priority,
        kinds: KindMask,
        hook: Arc<H>,
    ) -> Subscriber<H> {
        Subscriber {
            priority,
            kinds,
            module: self.current(),
            hook,
        }
    }

    /// Subscribes a pre-route filter (every stanza routed).
    pub fn pre_route(&mut self, priority: Priority, hook: Arc<dyn PreRouteFilter>) {
        let sub = self.subscriber(priority, KindMask::ALL, hook);
        self.hooks.pre_route.add(sub);
    }

    /// Subscribes to messages/presence for local accounts of these kinds.
    pub fn inbound(&mut self, priority: Priority, kinds: KindMask, hook: Arc<dyn InboundHook>) {
        let sub = self.subscriber(priority, kinds, hook);
        self.hooks.inbound.add(sub);
    }

    /// Subscribes to messages for local accounts once they are delivered or stored offline
    /// (told which sessions received them).
    pub fn delivered(&mut self, priority: Priority, hook: Arc<dyn DeliveredHook>) {
        let sub = self.subscriber(priority, KindMask::MESSAGE, hook);
        self.hooks.delivered.add(sub);
    }

    /// Subscribes to messages for accounts with no available resource.
    pub fn offline(&mut self, priority: Priority, hook: Arc<dyn OfflineHook>) {
        let sub = self.subscriber(priority, KindMask::MESSAGE, hook);
        self.hooks.offline.add(sub);
    }

    /// Subscribes to stanzas client sessions send, of these kinds.
    pub fn outbound(&mut self, priority: Priority, kinds: KindMask, hook: Arc<dyn OutboundHook>) {
        let sub = self.subscriber(priority, kinds, hook);
        self.hooks.outbound.add(sub);
    }

    /// Subscribes to client sessions' broadcast available presence, to rewrite it before it
    /// is recorded and broadcast (see [`BroadcastPresenceHook`]).
    pub fn broadcast_presence(&mut self, priority: Priority, hook: Arc<dyn BroadcastPresenceHook>) {
        let sub = self.subscriber(priority, KindMask::PRESENCE, hook);
        self.hooks.broadcast_presence.add(sub);
    }

    /// Subscribes to client sessions' lifecycle events.
    pub fn session(&mut self, priority: Priority, hook: Arc<dyn SessionHook>) {
        let sub = self.subscriber(priority, KindMask::ALL, hook);
        self.hooks.session.add(sub);
    }

    /// Subscribes to iq results and errors addressed to the server or an account's bare JID
    /// (the answers to iqs the module sent itself).
    pub fn iq_response(&mut self, priority: Priority, hook: Arc<dyn IqResponseHook>) {
        let sub = self.subscriber(priority, KindMask::IQ, hook);
        self.hooks.iq_response.add(sub);
    }

    /// Subscribes to stored changes of local accounts' subscriptions.
    pub fn subscription(&mut self, priority: Priority, hook: Arc<dyn SubscriptionHook>) {
        let sub = self.subscriber(priority, KindMask::PRESENCE, hook);
        self.hooks.subscription.add(sub);
    }

    /// Saves the module's state of client sessions with them across a restart (see
    /// [`SessionStateHook`]); the module's name keys it in the saved session.
    pub fn session_state(&mut self, hook: Arc<dyn SessionStateHook>) {
        let sub = self.subscriber(0, KindMask::ALL, hook);
        self.hooks.session_state.add(sub);
    }

    /// The saved state of a session's modules, by module name.
    pub(crate) fn save_session_state(
        &self,
        ext: &crate::Extensions,
    ) -> std::collections::BTreeMap<String, serde_json::Value> {
        self.hooks
            .session_state
            .iter()
            .filter_map(|sub| {
                let value = sub.hook.save(ext)?;
                Some((self.module_name(sub.module).to_owned(), value))
            })
            .collect()
    }

    /// Puts saved module state back into a restored session.
    pub(crate) fn restore_session_state(
        &self,
        ext: &crate::Extensions,
        saved: &std::collections::BTreeMap<String, serde_json::Value>,
    ) {
        for sub in self.hooks.session_state.iter() {
            if let Some(value) = saved.get(self.module_name(sub.module)) {
                sub.hook.restore(ext, value);
            }
        }
    }

    /// The modules subscribed to each hook point, in the order they run.
    pub fn hook_order(&self) -> Vec<(&'static str, Vec<&'static str>)> {
        let names = |order: Vec<ModuleId>| -> Vec<&'static str> {
            order.into_iter().map(|m| self.module_name(m)).collect()
        };
        vec![
            ("pre_route", names(self.hooks.pre_route.order())),
            ("inbound", names(self.hooks.inbound.order())),
            ("delivered", names(self.hooks.delivered.order())),
            ("offline", names(self.hooks.offline.order())),
            ("outbound", names(self.hooks.outbound.order())),
            (
                "broadcast_presence",
                names(self.hooks.broadcast_presence.order()),
            ),
            ("session", names(self.hooks.session.order())),
            ("iq_response", names(self.hooks.iq_response.order())),
            ("subscription", names(self.hooks.subscription.order())),
        ]
    }

    /// The handler for an iq to `host`, if a module enabled there registered one.
    pub fn iq_handler(
        &self,
        host: &str,
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
            .filter(|r| self.enabled(host, r.module))
            .map(|r| r.handler.clone())
    }
}

/// Adds `var` to a feature list once (the first module to register it owns it).
fn add_feature(list: &mut Vec<(ModuleId, &'static str)>, module: ModuleId, var: &'static str) {
    if !list.iter().any(|(_, v)| *v == var) {
        list.push((module, var));
    }
}

/// Object-safe form of [`Module`], implemented for every module.
pub trait ModuleDyn: Send + Sync + 'static {
    /// See [`Module::register`].
    fn register_dyn(self: Arc<Self>, registry: &mut Registry);
}

impl<M: Module> ModuleDyn for M {
    fn register_dyn(self: Arc<Self>, registry: &mut Registry) {
        self.register(registry);
    }
}

#[cfg(test)]
mod tests;
