//! THE list of modules this server runs. Adding a feature means adding it here.

use std::sync::Arc;

use xmppd_core::Registry;
use xmppd_modules::{Disco, Ping};

/// Builds the registry with every enabled module.
pub fn registry() -> Registry {
    let mut registry = Registry::new();
    let disco = Arc::new(Disco::default());
    registry.add_module(Arc::new(Ping));
    registry.add_module(disco.clone());
    // Last: disco reports what everyone else registered.
    disco.freeze(&registry);
    registry
}
