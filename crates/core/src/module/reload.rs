//! New settings for running modules (a configuration reload: SIGHUP, `xmppd reload`).
//!
//! A module built once keeps serving the connections, rooms and sessions it already has; a
//! reload only changes what it decides for what comes next. A module that can take new
//! settings implements [`Reconfigure`] and is declared with
//! [`RegistryBuilder::reloadable`](super::RegistryBuilder::reloadable); the registry keeps a
//! reloader for it by name.
//!
//! A reload is all-or-nothing, in two phases: every module's `[modules.NAME]` section is
//! parsed and checked first ([`Reconfigure::check`], the same rules as at startup), and only
//! when all of them are valid is each applied ([`Reconfigure::reconfigure`]). One bad section
//! therefore leaves every module on the settings it had, and the error names the module and
//! the key as startup validation does.
//!
//! Some settings decide what a module registered at startup (a service's domain, a disco
//! feature that exists only when enabled). Those cannot change under a running registry: the
//! module keeps their old value, and [`Reconfigure::check`] names them, so that the reload can
//! report them as waiting for the next restart instead of pretending to have applied them.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde::de::DeserializeOwned;

use super::builder::{ConfigSource, ModuleError};
use super::{Module, Registry};

/// Settings that a reload may replace while the module runs.
///
/// Readers take one snapshot per operation ([`Live::get`]) so that one request never sees
/// half of the old settings and half of the new; a snapshot is an `Arc`, so taking one is an
/// atomic load, not a lock on the hot path.
pub struct Live<T>(ArcSwap<T>);

impl<T> Live<T> {
    /// Settings that start as `value`.
    pub fn new(value: T) -> Self {
        Live(ArcSwap::from_pointee(value))
    }

    /// The settings now in force, for the whole of one operation.
    pub fn get(&self) -> Arc<T> {
        self.0.load_full()
    }

    /// Puts `value` in force for the operations that start from now on.
    pub fn set(&self, value: T) {
        self.0.store(Arc::new(value));
    }
}

impl<T: Default> Default for Live<T> {
    fn default() -> Self {
        Live::new(T::default())
    }
}

impl<T: fmt::Debug> fmt::Debug for Live<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.load().fmt(f)
    }
}

/// A module that takes new settings in place.
pub trait Reconfigure: Module {
    /// The module's `[modules.NAME]` section (its defaults when the section is absent).
    type Settings: DeserializeOwned + Default + Send + 'static;

    /// Checks `new` by the rules the module's constructor applies, before any module takes
    /// new settings. Returns the keys whose new value differs from the running one but only
    /// takes effect at the next restart (the module keeps their running value); an error
    /// (what is wrong and how to fix it) refuses the whole reload. What can fail (reading a
    /// file the settings name) happens here, and its result may be written into `new`, so
    /// that [`Reconfigure::reconfigure`] cannot fail after other modules took theirs.
    /// The default: no rule beyond the section's own types, and nothing fixed at startup.
    fn check(&self, new: &mut Self::Settings) -> Result<Vec<&'static str>, String> {
        let _ = new;
        Ok(Vec::new())
    }

    /// Puts `new` (already checked) in force for what starts from now on.
    fn reconfigure(&self, new: Self::Settings);
}

/// The keys fixed at startup whose value a reload changes ([`Reconfigure::check`]'s answer):
/// `Fixed::default().key("subdomain", &running.subdomain, &new.subdomain).into_keys()`.
#[derive(Debug, Default)]
pub struct Fixed(Vec<&'static str>);

impl Fixed {
    /// Notes `key` when its `new` value differs from the `running` one.
    #[must_use]
    pub fn key<T: PartialEq + ?Sized>(mut self, key: &'static str, running: &T, new: &T) -> Self {
        if running != new {
            self.0.push(key);
        }
        self
    }

    /// The keys noted, in the order they were compared.
    pub fn into_keys(self) -> Vec<&'static str> {
        self.0
    }
}

/// A setting that changed in the file but waits for the next restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestartKey {
    /// The module.
    pub module: &'static str,
    /// The key in its `[modules.NAME]` section.
    pub key: &'static str,
}

impl fmt::Display for RestartKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[modules.{}] {}", self.module, self.key)
    }
}

/// What a reload of the modules' settings did.
#[derive(Debug, Default)]
pub struct Reconfigured {
    /// The modules that were given their new settings, in registration order.
    pub modules: Vec<&'static str>,
    /// Changed keys that take effect at the next restart.
    pub restart: Vec<RestartKey>,
}

/// A module's new settings, checked and ready to be put in force.
pub(crate) struct Prepared {
    restart: Vec<&'static str>,
    apply: Box<dyn FnOnce() + Send>,
}

/// The type-erased form of a [`Reconfigure`] module that the registry keeps.
pub(crate) trait Reloader: Send + Sync {
    /// Phase one: parses and checks the module's section from `source`.
    fn prepare(&self, name: &'static str, source: &ConfigSource) -> Result<Prepared, ModuleError>;
}

/// A module's reloader.
pub(crate) struct ReloaderOf<M>(pub(crate) Arc<M>);

impl<M: Reconfigure> Reloader for ReloaderOf<M> {
    fn prepare(&self, name: &'static str, source: &ConfigSource) -> Result<Prepared, ModuleError> {
        let mut settings = source.section::<M::Settings>(name)?.unwrap_or_default();
        let restart = self
            .0
            .check(&mut settings)
            .map_err(|message| ModuleError::Invalid {
                module: name.to_owned(),
                message,
            })?;
        let module = self.0.clone();
        Ok(Prepared {
            restart,
            apply: Box::new(move || module.reconfigure(settings)),
        })
    }
}

impl Registry {
    /// Adds a module that a reload can give new settings (see [`Registry::add_module`]).
    pub fn add_reloadable<M: Reconfigure>(&mut self, name: &'static str, module: Arc<M>) {
        self.add_module(name, module.clone());
        self.reloaders.push((name, Arc::new(ReloaderOf(module))));
    }

    /// The modules a reload can give new settings.
    pub fn reloadable(&self) -> Vec<&'static str> {
        self.reloaders.iter().map(|(name, _)| *name).collect()
    }

    /// Gives every reloadable module its section of `source`: all of them, or none when one
    /// section is invalid (the error names the module, and the key with its line).
    pub fn reconfigure(&self, source: &ConfigSource) -> Result<Reconfigured, ModuleError> {
        Ok(self.prepare_reload(source)?.apply())
    }

    /// Phase one of [`Registry::reconfigure`]: parses and checks every reloadable module's
    /// section, changing nothing. A caller that must apply other things all-or-nothing with
    /// the modules (certificates) prepares those too before it applies the plan.
    pub fn prepare_reload(&self, source: &ConfigSource) -> Result<ReloadPlan, ModuleError> {
        let mut modules = Vec::with_capacity(self.reloaders.len());
        for (name, reloader) in &self.reloaders {
            modules.push((*name, reloader.prepare(name, source)?));
        }
        Ok(ReloadPlan { modules })
    }
}

/// Every reloadable module's new settings, checked; nothing is in force until
/// [`ReloadPlan::apply`] (dropping the plan changes nothing).
pub struct ReloadPlan {
    modules: Vec<(&'static str, Prepared)>,
}

impl fmt::Debug for ReloadPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.modules.iter().map(|(name, _)| *name).collect();
        f.debug_struct("ReloadPlan")
            .field("modules", &names)
            .finish()
    }
}

impl ReloadPlan {
    /// Phase two: puts every module's new settings in force (this cannot fail).
    pub fn apply(self) -> Reconfigured {
        let mut done = Reconfigured::default();
        for (name, p) in self.modules {
            done.restart.extend(
                p.restart
                    .iter()
                    .map(|&key| RestartKey { module: name, key }),
            );
            (p.apply)();
            done.modules.push(name);
        }
        done
    }
}

#[cfg(test)]
#[path = "reload_tests.rs"]
mod tests;
