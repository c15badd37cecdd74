//! Nodes of the server's own service discovery (XEP-0030 §3.2, §4.2): a `node` on a disco
//! query to a host names something a module describes, such as the ad-hoc commands list
//! (XEP-0050 §2.2, node `http://jabber.org/protocol/commands`) and each command.
//!
//! The disco module answers every query to a host; it knows no node. A module that has nodes
//! registers a [`ServerNodes`] provider here, and the disco module asks the providers of the
//! modules enabled on the host, in registration order, before it answers `item-not-found`.
//! The provider decides who may see what (XEP-0050 §2.2: a command list "MAY" differ per
//! requester), so a node hidden from a requester reads as unknown.

use std::sync::Arc;

use async_trait::async_trait;
use jid::{BareJid, Jid};
use xmppd_proto::disco::{DiscoInfoResult, DiscoItem};

use super::Registry;
use crate::router::Router;

/// Describes nodes of a host's disco#info and disco#items.
#[async_trait]
pub trait ServerNodes: Send + Sync + 'static {
    /// The disco#info of `node` on `host` as `requester` may see it; `None`: not this
    /// provider's node (or hidden from `requester`).
    async fn info(
        &self,
        router: &Router,
        host: &BareJid,
        node: &str,
        requester: &Jid,
    ) -> Option<DiscoInfoResult>;

    /// The disco#items of `node`; `None` as for [`ServerNodes::info`].
    async fn items(
        &self,
        router: &Router,
        host: &BareJid,
        node: &str,
        requester: &Jid,
    ) -> Option<Vec<DiscoItem>>;
}

impl Registry {
    /// Lets `provider` describe nodes of the server's discovery.
    pub fn server_nodes(&mut self, provider: Arc<dyn ServerNodes>) {
        let module = self.current();
        self.server_nodes.push((module, provider));
    }

    /// The node providers of the modules enabled on `host`.
    pub fn server_node_providers(&self, host: &str) -> Vec<Arc<dyn ServerNodes>> {
        self.server_nodes
            .iter()
            .filter(|(m, _)| self.enabled(host, *m))
            .map(|(_, p)| p.clone())
            .collect()
    }
}
