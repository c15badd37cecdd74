//! What clients change in PEP, told to the modules built on it (bookmarks, avatar
//! conversion).
//!
//! Only changes that came in as pubsub requests are told: what a module does through
//! [`crate::PepHandle`] is not, so a module that mirrors one node into another (XEP-0048's
//! `storage:bookmarks` and XEP-0402's `urn:xmpp:bookmarks:1`) cannot set off an endless round
//! of copies. Observers run after the change is stored and notified and before the client
//! gets its answer, so the client's next request sees what they did; their failures are
//! logged, never the client's (its change stands).

use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use jid::BareJid;
use xmppd_core::Router;
use xmppd_proto::pubsub::Item;

/// A change a client made to one of its nodes.
#[derive(Clone, Copy, Debug)]
pub enum NodeChange<'a> {
    /// An item published (with its id).
    Published(&'a Item),
    /// Items retracted.
    Retracted(&'a [String]),
    /// Every item removed (purge), or the node deleted.
    Cleared,
}

/// Told of the changes clients make to the nodes it watches.
#[async_trait]
pub trait PepObserver: Send + Sync + 'static {
    /// Whether this observer wants to hear of `node`.
    fn watches(&self, node: &str) -> bool;

    /// `owner` changed `node`.
    async fn changed(&self, router: &Router, owner: &BareJid, node: &str, change: NodeChange<'_>);
}

/// The observers, shared between the PEP module and the modules that add one while the
/// server's modules are built (before any request is served).
#[derive(Clone, Default)]
pub struct PepObservers(Arc<RwLock<Vec<Arc<dyn PepObserver>>>>);

impl std::fmt::Debug for PepObservers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PepObservers")
    }
}

impl PepObservers {
    /// Adds an observer.
    pub fn add(&self, observer: Arc<dyn PepObserver>) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(observer);
    }

    /// The observers of `node` (none for almost every publish: OMEMO, avatars' data …).
    pub(crate) fn of(&self, node: &str) -> Vec<Arc<dyn PepObserver>> {
        let all = self.0.read().unwrap_or_else(PoisonError::into_inner);
        all.iter().filter(|o| o.watches(node)).cloned().collect()
    }

    /// Tells the observers of `node`.
    pub(crate) async fn tell(
        &self,
        router: &Router,
        owner: &BareJid,
        node: &str,
        change: NodeChange<'_>,
    ) {
        for observer in self.of(node) {
            observer.changed(router, owner, node, change).await;
        }
    }
}
