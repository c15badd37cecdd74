//! The in-process API on a real router and SQLite store: the rules and notifications of the
//! protocol, without a client.

use std::collections::HashSet;
use std::sync::Arc;

use jid::{BareJid, FullJid, Jid};
use xmppd_core::{Accounts, QueueReceiver, Registry, Router, SessionRegistry, session_queue};
use xmppd_proto::caps::Caps;
use xmppd_proto::pubsub::Item;
use xmppd_proto::{Stanza, StanzaKind, ns};
use xmppd_xml::Element;

use crate::caps::Seen;
use crate::{Denied, PepError, PepHandle, PepModule, PepSettings};

struct World {
    _dir: tempfile::TempDir,
    router: Router,
    handle: PepHandle,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = xmppd_storage::StorageConfig::Sqlite {
        path: dir.path().join("pep.db"),
    };
    let storage = xmppd_storage::open(&config).await.expect("storage");
    let module = PepModule::new(&storage, PepSettings::default());
    let handle = module.handle();
    let mut registry = Registry::new();
    registry.add_module("pep", Arc::new(module));
    let router = Router::new(
        HashSet::from(["x".to_owned()]),
        Arc::new(SessionRegistry::new()),
        Accounts::new(storage.keyval.clone(), storage.users.clone(), 4096),
        registry,
    );
    World {
        _dir: dir,
        router,
        handle,
    }
}

/// Binds `jid` with caps interested in `node` (the hash taken as verified).
fn interested(world: &World, jid: &str, node: &str) -> QueueReceiver {
    let full = FullJid::new(jid).expect("jid");
    let (tx, rx) = session_queue(16);
    world.router.sessions().bind(&full, 1, tx, Arc::default());
    let caps = Caps {
        hash: "sha-1".into(),
        node: "urn:test".into(),
        ver: format!("ver-{node}"),
    };
    world.handle.0.caps.remember(
        Arc::from(caps.ver.as_str()),
        Arc::new(HashSet::from([node.to_owned()])),
    );
    let el = Element::new("presence", ns::CLIENT).with_child(caps.to_element());
    let presence = Stanza::new_unchecked(
        StanzaKind::Presence,
        Some(Jid::from(full.clone())),
        None,
        el,
    );
    let seen = world
        .handle
        .0
        .caps
        .observe(&full.to_bare(), &full, &presence, "x");
    assert!(matches!(seen, Seen::Available(_)), "{seen:?}");
    rx
}

fn text(rx: &mut QueueReceiver) -> String {
    rx.try_recv()
        .map(|o| String::from_utf8_lossy(&o.bytes).into_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn the_handle_publishes_reads_and_retracts_with_notifications() {
    let world = world().await;
    let alice = BareJid::new("alice@x").expect("jid");
    let mut laptop = interested(&world, "alice@x/laptop", "urn:n");
    let router = &world.router;
    let item = Item {
        id: None,
        payload: Some(Element::new("n", "urn:n").with_text("hello")),
    };
    let id = world
        .handle
        .publish(router, &alice, "urn:n", item, None)
        .await
        .expect("publish");
    let event = text(&mut laptop);
    assert!(event.contains("hello") && event.contains(&id), "{event}");
    assert!(event.contains("to=\"alice@x/laptop\""), "{event}");

    let owner = Jid::from(alice.clone());
    let items = world
        .handle
        .items(&alice, &owner, "urn:n", &[], None)
        .await
        .expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].id.as_deref(), Some(id.as_str()));

    // The default access model (presence) keeps a stranger out.
    let stranger = Jid::new("eve@y/z").expect("jid");
    let refused = world
        .handle
        .items(&alice, &stranger, "urn:n", &[], None)
        .await;
    assert!(matches!(
        refused,
        Err(PepError::Denied(Denied::PresenceSubscriptionRequired))
    ));

    world
        .handle
        .retract(router, &alice, "urn:n", std::slice::from_ref(&id), false)
        .await
        .expect("retract");
    let retract = text(&mut laptop);
    assert!(
        retract.contains("<retract id="),
        "notify_retract is on by default: {retract}"
    );
    let missing = world
        .handle
        .retract(router, &alice, "urn:n", &[id], false)
        .await;
    assert!(matches!(missing, Err(PepError::NotFound(_))));
}
