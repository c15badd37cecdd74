//! External components (XEP-0114) known to the router: which domains are configured, and
//! which of them have a live connection.
//!
//! A configured component that is not connected is still "ours": stanzas to it are bounced
//! with `service-unavailable` instead of being treated as a remote domain.

use std::collections::HashSet;
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::mpsc;

use crate::outbound::Outbound;
use crate::session::SessionControl;

/// A second connection for a component domain that already has one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("component {0} is already connected")]
pub struct AlreadyConnected(pub String);

#[derive(Clone, Debug)]
struct Connected {
    conn_id: u64,
    tx: mpsc::Sender<Outbound>,
    control: Arc<SessionControl>,
}

/// The component domains of this server and their connections.
#[derive(Debug, Default)]
pub struct ComponentRegistry {
    configured: HashSet<String, crate::FastHasher>,
    connected: DashMap<String, Connected, crate::FastHasher>,
}

/// A connected component's queue and control handle.
#[derive(Clone, Debug)]
pub struct ComponentLink {
    /// The component's outbound queue (stanzas serialised in `jabber:component:accept`).
    pub tx: mpsc::Sender<Outbound>,
    /// Ends the component's connection.
    pub control: Arc<SessionControl>,
}

impl ComponentRegistry {
    /// A registry of these configured domains, none connected.
    pub fn new(domains: impl IntoIterator<Item = String>) -> Self {
        ComponentRegistry {
            configured: domains.into_iter().collect(),
            connected: DashMap::default(),
        }
    }

    /// Whether `domain` is a configured component.
    pub fn is_component(&self, domain: &str) -> bool {
        self.configured.contains(domain)
    }

    /// Configured component domains, sorted.
    pub fn domains(&self) -> Vec<String> {
        let mut d: Vec<String> = self.configured.iter().cloned().collect();
        d.sort();
        d
    }

    /// Records a connection; refuses a second one for the same domain.
    pub fn connect(
        &self,
        domain: &str,
        conn_id: u64,
        tx: mpsc::Sender<Outbound>,
        control: Arc<SessionControl>,
    ) -> Result<(), AlreadyConnected> {
        match self.connected.entry(domain.to_owned()) {
            dashmap::Entry::Occupied(_) => Err(AlreadyConnected(domain.to_owned())),
            dashmap::Entry::Vacant(v) => {
                v.insert(Connected {
                    conn_id,
                    tx,
                    control,
                });
                Ok(())
            }
        }
    }

    /// Forgets a connection if it is still the registered one.
    pub fn disconnect(&self, domain: &str, conn_id: u64) {
        self.connected
            .remove_if(domain, |_, c| c.conn_id == conn_id);
    }

    /// The live connection of a component.
    pub fn link(&self, domain: &str) -> Option<ComponentLink> {
        self.connected.get(domain).map(|c| ComponentLink {
            tx: c.tx.clone(),
            control: c.control.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_connection_per_domain() {
        let reg = ComponentRegistry::new(["irc.x".to_owned()]);
        let (tx, _rx) = mpsc::channel(1);
        assert!(reg.connect("irc.x", 1, tx.clone(), Arc::default()).is_ok());
        assert_eq!(
            reg.connect("irc.x", 2, tx.clone(), Arc::default()),
            Err(AlreadyConnected("irc.x".into()))
        );
        reg.disconnect("irc.x", 2);
        assert!(
            reg.link("irc.x").is_some(),
            "a refused connection cannot remove the live one"
        );
        reg.disconnect("irc.x", 1);
        assert!(reg.link("irc.x").is_none());
        assert!(reg.is_component("irc.x") && !reg.is_component("x"));
    }
}
