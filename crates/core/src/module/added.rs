//! Hosts a configuration reload adds, and the in-process services the modules start for them
//! (`conference.HOST`, `upload.HOST`).
//!
//! The registry is built once; what a reload adds is kept beside it, consulted only once the
//! first host was added (one flag), so routing to the services known at start stays a plain
//! map lookup.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::reload::Live;
use super::{ModuleId, Registry, Service, ServiceRoute};

/// A module that starts services of its own for each host (see [`Registry::on_host_added`]).
pub trait HostServices: Send + Sync {
    /// `host` is served from now on: the services (domain, handler) to start for it. The
    /// module also counts the host as its own from now on.
    fn host_added(&self, host: &str) -> Vec<(String, Arc<dyn Service>)>;
}

/// What reloads added to a registry.
#[derive(Default)]
pub(crate) struct Added {
    any: AtomicBool,
    services: Live<HashMap<String, Arc<ServiceRoute>>>,
}

impl Registry {
    /// Lets `hook` start services for hosts a reload adds (called from `register`).
    pub fn on_host_added(&mut self, hook: Arc<dyn HostServices>) {
        let module = self.current();
        self.host_services.push((module, hook));
    }

    /// Starts the services of hosts a reload added; returns their domains. A domain already
    /// served (a clash a fresh start would refuse) is left to its first owner.
    pub fn add_hosts(&self, hosts: &[String]) -> Vec<String> {
        let mut services = HashMap::clone(&self.added.services.get());
        let mut domains = Vec::new();
        for host in hosts {
            for (module, hook) in &self.host_services {
                if !self.enabled(host, *module) {
                    continue;
                }
                for (domain, service) in hook.host_added(host) {
                    let domain = domain.to_ascii_lowercase();
                    if self.services.contains_key(&domain) || services.contains_key(&domain) {
                        tracing::warn!(%domain, "a service of an added host is already served");
                        continue;
                    }
                    let route = ServiceRoute {
                        host: host.clone(),
                        module: *module,
                        service,
                    };
                    services.insert(domain.clone(), Arc::new(route));
                    domains.push(domain);
                }
            }
        }
        if !domains.is_empty() {
            self.added.services.set(services);
            self.added.any.store(true, Ordering::Release);
        }
        domains
    }

    /// The in-process service of `domain`, if any.
    #[inline]
    pub(crate) fn service_of(&self, domain: &str) -> Option<Cow<'_, Arc<dyn Service>>> {
        if let Some(route) = self.services.get(domain) {
            return Some(Cow::Borrowed(&route.service));
        }
        if !self.added.any.load(Ordering::Acquire) {
            return None;
        }
        self.added
            .services
            .get()
            .get(domain)
            .map(|route| Cow::Owned(route.service.clone()))
    }

    /// The services reloads added, as (domain, host, module).
    pub(crate) fn added_services(&self) -> Vec<(String, String, ModuleId)> {
        if !self.added.any.load(Ordering::Acquire) {
            return Vec::new();
        }
        self.added
            .services
            .get()
            .iter()
            .map(|(d, r)| (d.clone(), r.host.clone(), r.module))
            .collect()
    }
}
