//! THE list of modules this server runs. Adding a feature means adding it here.

use std::sync::Arc;

use xmppd_core::Registry;
use xmppd_core::storage::Storage;
use xmppd_im::Im;
use xmppd_modules::{Disco, Ping};

use crate::Config;

/// Builds the registry with every enabled module. Component domains are listed in the
/// server's disco#items.
pub fn registry(config: &Config, storage: &Storage) -> Registry {
    let mut registry = Registry::new();
    for component in &config.components {
        registry.server_item(component.name.clone());
    }
    let disco = Arc::new(Disco::default());
    registry.add_module(Arc::new(Ping));
    // RFC 6121: rosters, subscriptions, presence, offline messages.
    registry.add_module(Arc::new(Im::new(storage, config.im)));
    registry.add_module(disco.clone());
    // Last: disco reports what everyone else registered.
    disco.freeze(&registry);
    registry
}
