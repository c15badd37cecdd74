//! THE list of modules this server runs. Adding a feature means adding it here.

use std::sync::Arc;

use xmppd_core::Registry;
use xmppd_modules::{Disco, Ping};

/// Builds the registry with every enabled module; `services` (component domains) are listed
/// in the server's disco#items.
pub fn registry(services: &[String]) -> Registry {
    let mut registry = Registry::new();
    for service in services {
        registry.server_item(service.clone());
    }
    let disco = Arc::new(Disco::default());
    registry.add_module(Arc::new(Ping));
    registry.add_module(disco.clone());
    // Last: disco reports what everyone else registered.
    disco.freeze(&registry);
    registry
}
