//! Building the registry: each module gets a [`ModuleCtx`] with what it needs and no more.
//!
//! The builder decides which modules run on which host (the configured lists), parses each
//! module's `[modules.NAME]` section into the module's own type — with the module's
//! `deny_unknown_fields`, so a typo is an error naming the file, line and key — and hands out
//! storage names so that no two modules write to one store. The same declarations are run
//! once without storage to validate a configuration (`xmppd check`, and before a reload).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, Weak};

use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use super::{Module, Reconfigure, Registry};
use crate::router::Router;
use crate::storage::Storage;

/// Why the modules could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// A module's configuration section is invalid (the message names line, column and key).
    #[error("{path}: [modules.{module}]: {message}")]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// The module.
        module: String,
        /// toml's report, with line, column and the offending key.
        message: String,
    },
    /// Two modules registered the same thing (an iq, a service domain, a store name).
    #[error("module registration conflict: {0}")]
    Registration(String),
    /// A module refused its settings or its environment.
    #[error("module {module}: {message}")]
    Invalid {
        /// The module.
        module: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// The configuration text modules read their sections from.
#[derive(Clone, Debug)]
pub struct ConfigSource {
    path: PathBuf,
    text: Arc<str>,
}

impl ConfigSource {
    /// The text of the file at `path`.
    pub fn new(path: impl Into<PathBuf>, text: impl Into<Arc<str>>) -> Self {
        ConfigSource {
            path: path.into(),
            text: text.into(),
        }
    }

    /// The file the text came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Parses `[modules.NAME]` into `T`, or `None` when the section is absent. The whole
    /// document is read, skipping everything else, so that toml's errors carry the line and
    /// column in the file (a section cut out of it would number its lines from one).
    pub fn section<T: DeserializeOwned>(&self, module: &str) -> Result<Option<T>, ModuleError> {
        let seed = Key {
            key: "modules",
            inner: Key {
                key: module,
                inner: std::marker::PhantomData::<T>,
            },
        };
        let de = toml::Deserializer::parse(&self.text).map_err(|e| self.error(module, &e))?;
        let found = seed.deserialize(de).map_err(|e| self.error(module, &e))?;
        Ok(found.flatten())
    }

    fn error(&self, module: &str, e: &toml::de::Error) -> ModuleError {
        ModuleError::Config {
            path: self.path.clone(),
            module: module.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        }
    }
}

/// Picks one key of a map and deserializes its value with `inner`, skipping every other key
/// unparsed: `Key { key: "modules", inner: Key { key: "version", inner: PhantomData::<T> } }`
/// reads `[modules.version]` alone.
struct Key<'k, S> {
    key: &'k str,
    inner: S,
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Key<'_, S> {
    type Value = Option<S::Value>;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        // `any`, not `map`: toml's document deserializer attaches the input (for line numbers)
        // to errors on that path.
        d.deserialize_any(self)
    }
}

impl<'de, S: DeserializeSeed<'de>> Visitor<'de> for Key<'_, S> {
    type Value = Option<S::Value>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a table that may hold `{}`", self.key)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut inner = Some(self.inner);
        let mut found = None;
        while let Some(key) = map.next_key::<String>()? {
            match inner.take() {
                Some(seed) if key == self.key => found = Some(map.next_value_seed(seed)?),
                other => {
                    inner = other;
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(found)
    }
}

/// The router, once it exists: modules are built before it, and those that act on their own
/// (timers, background work) keep this handle.
#[derive(Clone, Debug, Default)]
pub struct RouterHandle(Arc<OnceLock<Weak<Router>>>);

impl RouterHandle {
    /// Connects the handle to the finished router (once; later calls are ignored).
    pub fn set(&self, router: &Arc<Router>) {
        let _ = self.0.set(Arc::downgrade(router));
    }

    /// The router, unless it is not built yet or already gone (shutdown).
    pub fn get(&self) -> Option<Arc<Router>> {
        self.0.get().and_then(Weak::upgrade)
    }
}

/// What one module is given while it is built.
pub struct ModuleCtx<'a> {
    name: &'static str,
    hosts: Vec<String>,
    storage: Option<&'a Storage>,
    stores: &'a mut HashMap<String, &'static str>,
    router: RouterHandle,
}

impl fmt::Debug for ModuleCtx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModuleCtx")
            .field("name", &self.name)
            .field("hosts", &self.hosts)
            .finish_non_exhaustive()
    }
}

impl ModuleCtx<'_> {
    /// The module's name (its configuration section and log name).
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The hosts the module runs on.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// The router, for work the module starts on its own.
    pub fn router(&self) -> RouterHandle {
        self.router.clone()
    }

    /// Claims the store names the module keeps its data under and returns the storage
    /// shapes. A name another module claimed is a startup error: two features writing one
    /// store would corrupt each other's data.
    pub fn storage(&mut self, stores: &[&str]) -> Result<Storage, ModuleError> {
        for store in stores {
            match self.stores.get(*store) {
                Some(owner) if *owner != self.name => {
                    return Err(ModuleError::Registration(format!(
                        "the store {store} is claimed by both {owner} and {}",
                        self.name
                    )));
                }
                _ => {
                    self.stores.insert((*store).to_owned(), self.name);
                }
            }
        }
        self.storage.cloned().ok_or_else(|| ModuleError::Invalid {
            module: self.name.to_owned(),
            message: "storage is not open".to_owned(),
        })
    }

    /// An error of this module.
    pub fn invalid(&self, message: impl Into<String>) -> ModuleError {
        ModuleError::Invalid {
            module: self.name.to_owned(),
            message: message.into(),
        }
    }
}

/// Which modules each host runs.
#[derive(Clone, Debug)]
pub struct HostModules {
    /// The host's domain.
    pub host: String,
    /// The modules enabled there; `None`: every module.
    pub modules: Option<Vec<String>>,
}

/// Builds a [`Registry`] from module declarations.
pub struct RegistryBuilder<'a> {
    registry: Registry,
    storage: Option<&'a Storage>,
    config: Option<ConfigSource>,
    hosts: Vec<HostModules>,
    stores: HashMap<String, &'static str>,
    declared: Vec<&'static str>,
    router: RouterHandle,
}

impl fmt::Debug for RegistryBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryBuilder")
            .field("declared", &self.declared)
            .finish_non_exhaustive()
    }
}

impl<'a> RegistryBuilder<'a> {
    /// A builder for the server's modules over `storage`, on `hosts`.
    pub fn new(storage: &'a Storage, hosts: Vec<HostModules>) -> Self {
        let mut b = Self::validating(hosts);
        b.storage = Some(storage);
        b
    }

    /// A builder that only parses the modules' configuration (nothing is built).
    pub fn validating(hosts: Vec<HostModules>) -> Self {
        RegistryBuilder {
            registry: Registry::new(),
            storage: None,
            config: None,
            hosts,
            stores: HashMap::new(),
            declared: Vec::new(),
            router: RouterHandle::default(),
        }
    }

    /// Where the modules' `[modules.NAME]` sections are read from.
    pub fn with_config(mut self, config: ConfigSource) -> Self {
        self.config = Some(config);
        self
    }

    /// The registry being built (for entries that belong to no module, such as external
    /// components' disco items).
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Declares the module `name`: parses its section into `C` (the default when absent),
    /// and, if it runs on any host, builds it with `build` and lets it register.
    pub fn module<M, C, F>(&mut self, name: &'static str, build: F) -> Result<(), ModuleError>
    where
        M: Module,
        C: DeserializeOwned + Default,
        F: FnOnce(C, &mut ModuleCtx<'_>) -> Result<M, ModuleError>,
    {
        if let Some(module) = self.build(name, build)? {
            self.registry.add_module(name, Arc::new(module));
        }
        Ok(())
    }

    /// Declares the module `name` like [`RegistryBuilder::module`], and keeps it as one that
    /// a reload gives its new section ([`Registry::reconfigure`]).
    pub fn reloadable<M, F>(&mut self, name: &'static str, build: F) -> Result<(), ModuleError>
    where
        M: Reconfigure,
        F: FnOnce(M::Settings, &mut ModuleCtx<'_>) -> Result<M, ModuleError>,
    {
        if let Some(module) = self.build(name, build)? {
            self.registry.add_reloadable(name, Arc::new(module));
        }
        Ok(())
    }

    /// Parses the section of `name` and builds the module, unless only validating or no host
    /// runs it.
    fn build<M, C, F>(&mut self, name: &'static str, build: F) -> Result<Option<M>, ModuleError>
    where
        C: DeserializeOwned + Default,
        F: FnOnce(C, &mut ModuleCtx<'_>) -> Result<M, ModuleError>,
    {
        if self.declared.contains(&name) {
            return Err(ModuleError::Registration(format!(
                "the module {name} is declared twice"
            )));
        }
        self.declared.push(name);
        let config = match &self.config {
            Some(source) => source.section::<C>(name)?.unwrap_or_default(),
            None => C::default(),
        };
        let hosts: Vec<String> = self
            .hosts
            .iter()
            .filter(|h| {
                h.modules
                    .as_ref()
                    .is_none_or(|m| m.iter().any(|m| m == name))
            })
            .map(|h| h.host.clone())
            .collect();
        let Some(storage) = self.storage else {
            return Ok(None);
        };
        if hosts.is_empty() {
            return Ok(None);
        }
        let mut ctx = ModuleCtx {
            name,
            hosts,
            storage: Some(storage),
            stores: &mut self.stores,
            router: self.router.clone(),
        };
        build(config, &mut ctx).map(Some)
    }

    /// The modules declared so far.
    pub fn declared(&self) -> &[&'static str] {
        &self.declared
    }

    /// The finished registry and the handle to connect to the router once it is built.
    /// A module named in a host's list that was never declared is an error.
    pub fn finish(mut self) -> Result<(Registry, RouterHandle), ModuleError> {
        for h in &self.hosts {
            if let Some(names) = &h.modules {
                if let Some(unknown) = names.iter().find(|n| !self.declared.contains(&n.as_str())) {
                    return Err(ModuleError::Invalid {
                        module: unknown.clone(),
                        message: format!(
                            "enabled on {} but there is no such module (known: {})",
                            h.host,
                            self.declared.join(", ")
                        ),
                    });
                }
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                self.registry.set_host_modules(&h.host, &names);
            }
        }
        Ok((self.registry.finish()?, self.router))
    }
}

/// The settings of a module that has none: an empty `[modules.NAME]` is accepted, any key in
/// it is an error naming its line.
#[derive(Clone, Copy, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}
