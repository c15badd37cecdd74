//! What modules add to the discovery of an account (XEP-0030 on a bare JID, answered by the
//! server on the user's behalf): identities beside `account/registered` and disco#items.
//!
//! The disco module answers those queries; it knows no feature. A feature that makes an
//! account more than a registered user — a PEP service (XEP-0163 §6.1: identity `pubsub/pep`,
//! its nodes as items) — registers here, and the answer lists it only on the hosts that run
//! the module.

use std::sync::Arc;

use async_trait::async_trait;
use jid::{BareJid, Jid};
use xmppd_proto::disco::DiscoItem;

use super::Registry;
use crate::router::Router;

/// Lists items of an account's disco#items.
#[async_trait]
pub trait AccountItems: Send + Sync + 'static {
    /// The items of `account` that `requester` may see; each provider decides its own access
    /// rules (XEP-0163 §6.2: only the nodes the requester may retrieve). A failure is logged
    /// and lists nothing.
    async fn items(&self, router: &Router, account: &BareJid, requester: &Jid) -> Vec<DiscoItem>;
}

impl Registry {
    /// Adds an identity to every account's disco#info, e.g. `pubsub/pep` (XEP-0163 §6.1).
    pub fn account_identity(&mut self, category: &'static str, kind: &'static str) {
        let module = self.current();
        if !self
            .account_identities
            .iter()
            .any(|(_, c, k)| *c == category && *k == kind)
        {
            self.account_identities.push((module, category, kind));
        }
    }

    /// The `(category, type)` identities modules enabled on `host` add to its accounts.
    pub fn account_identities(&self, host: &str) -> Vec<(&'static str, &'static str)> {
        self.account_identities
            .iter()
            .filter(|(m, _, _)| self.enabled(host, *m))
            .map(|(_, c, k)| (*c, *k))
            .collect()
    }

    /// Lists `provider`'s items in every account's disco#items.
    pub fn account_items(&mut self, provider: Arc<dyn AccountItems>) {
        let module = self.current();
        self.account_items.push((module, provider));
    }

    /// The item providers of the modules enabled on `host`.
    pub fn account_item_providers(&self, host: &str) -> Vec<Arc<dyn AccountItems>> {
        self.account_items
            .iter()
            .filter(|(m, _)| self.enabled(host, *m))
            .map(|(_, p)| p.clone())
            .collect()
    }
}
