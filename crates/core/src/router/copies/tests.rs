use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use jid::{FullJid, Jid};
use xmppd_proto::{Stanza, StanzaKind, ns};
use xmppd_xml::Element;

use crate::accounts::Accounts;
use crate::hooks::{Flow, PreRouteFilter};
use crate::module::{Module, Registry};
use crate::queue::{QueueReceiver, session_queue};
use crate::router::{Router, client_bytes, readdress};
use crate::session::SessionRegistry;
use crate::storage::{KeyVal, StorageResult, UserData};

/// Storage the router never reads in these tests (every recipient is bound).
struct NoStorage;

#[async_trait]
impl KeyVal for NoStorage {
    async fn get(&self, _: &str, _: &str, _: &str) -> StorageResult<Option<Vec<u8>>> {
        Ok(None)
    }
    async fn put(&self, _: &str, _: &str, _: &str, _: &[u8]) -> StorageResult<()> {
        Ok(())
    }
    async fn insert_new(&self, _: &str, _: &str, _: &str, _: &[u8]) -> StorageResult<bool> {
        Ok(true)
    }
    async fn delete(&self, _: &str, _: &str, _: &str) -> StorageResult<bool> {
        Ok(false)
    }
    async fn users(&self, _: &str, _: &str) -> StorageResult<Vec<String>> {
        Ok(Vec::new())
    }
}

#[async_trait]
impl UserData for NoStorage {
    async fn delete_user(&self, _: &str, _: &str) -> StorageResult<()> {
        Ok(())
    }
}

/// Drops whatever is addressed to `blocked@x` (a block list's effect).
struct DropBlocked;

#[async_trait]
impl PreRouteFilter for DropBlocked {
    fn applies(&self, _: &Router, stanza: &Stanza) -> bool {
        stanza
            .to()
            .is_some_and(|to| to.node().map(|n| n.as_str()) == Some("blocked"))
    }
    async fn pre_route(&self, _: &Router, _: Stanza) -> Flow {
        Flow::drop_silently()
    }
}

struct Filters;

impl Module for Filters {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        registry.pre_route(0, Arc::new(DropBlocked));
    }
}

fn router(filters: bool) -> Router {
    let mut registry = Registry::new();
    if filters {
        registry.add_module("filters", Arc::new(Filters));
    }
    Router::new(
        HashSet::from(["x".to_owned()]),
        Arc::new(SessionRegistry::new()),
        Accounts::new(Arc::new(NoStorage), Arc::new(NoStorage), 4096),
        registry,
    )
}

fn bind(router: &Router, jid: &str, id: u64) -> QueueReceiver {
    let (tx, rx) = session_queue(8);
    let jid = FullJid::new(jid).unwrap();
    router.sessions().bind(&jid, id, tx, Arc::default());
    rx
}

fn event() -> Stanza {
    let from = Jid::new("owner@x").unwrap();
    let el = Element::new("message", ns::CLIENT)
        .with_attr("from", "owner@x")
        .with_attr("type", "headline")
        .with_attr("id", "n1")
        .with_child(
            Element::new("event", "http://jabber.org/protocol/pubsub#event").with_child(
                Element::new("items", "http://jabber.org/protocol/pubsub#event")
                    .with_attr("node", "a&b"),
            ),
        );
    Stanza::new_unchecked(StanzaKind::Message, Some(from), None, el)
}

/// The same element, attributes compared as a set (a copy has `to` first).
fn same(bytes: &[u8], expected: &Stanza) -> bool {
    let Some(got) = xmppd_proto::stanza::parse_stored(bytes) else {
        return false;
    };
    let want = expected.element();
    let mut a: Vec<_> = got.attrs().collect();
    let mut b: Vec<_> = want.attrs().collect();
    a.sort_unstable();
    b.sort_unstable();
    got.name() == want.name() && a == b && got.nodes() == want.nodes()
}

/// Each copy is what routing the stanza readdressed would have queued.
#[tokio::test]
async fn each_copy_is_the_stanza_addressed_to_its_recipient() {
    let router = router(false);
    let mut a = bind(&router, "a@x/r", 1);
    let mut b = bind(&router, "b@x/o'q", 2);
    let to: Vec<Jid> = ["a@x/r", "b@x/o'q"]
        .iter()
        .map(|j| Jid::new(j).unwrap())
        .collect();
    assert_eq!(router.route_copies(event(), &to).await, 2);
    for (rx, jid) in [(&mut a, &to[0]), (&mut b, &to[1])] {
        let got = rx.try_recv().map(|o| o.bytes).unwrap_or_default();
        let expected = readdress(&event(), jid);
        assert!(
            same(&got, &expected),
            "{got:?} is not {}",
            expected.element()
        );
        assert_eq!(got.len(), client_bytes(&expected).len());
    }
}

/// A copy a filter applies to takes the general path, where the filter decides; the others
/// still go straight to their sessions.
#[tokio::test]
async fn a_filtered_recipient_gets_nothing_and_the_others_their_copy() {
    let router = router(true);
    let mut a = bind(&router, "a@x/r", 1);
    let mut blocked = bind(&router, "blocked@x/r", 2);
    let to: Vec<Jid> = ["blocked@x/r", "a@x/r", "gone@x/r"]
        .iter()
        .map(|j| Jid::new(j).unwrap())
        .collect();
    assert_eq!(router.route_copies(event(), &to).await, 1);
    assert!(a.try_recv().is_some());
    assert!(blocked.try_recv().is_none());
}
