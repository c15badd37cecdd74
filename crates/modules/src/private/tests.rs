//! The store's limits and the interceptors, against SQLite.

use std::collections::HashSet;
use std::sync::Mutex;

use xmppd_core::SessionRegistry;
use xmppd_core::accounts::Accounts;
use xmppd_proto::{Stanza, StanzaKind};

use super::*;

/// A fresh SQLite store (the directory must outlive it).
async fn storage() -> (tempfile::TempDir, Storage) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = xmppd_storage::StorageConfig::Sqlite {
        path: dir.path().join("private.db"),
    };
    let storage = xmppd_storage::open(&config).await.expect("storage");
    (dir, storage)
}

/// How many fragments hamlet has stored.
async fn stored(storage: &Storage) -> u64 {
    let count = storage.map.count("shakespeare.lit", "hamlet", STORE).await;
    count.expect("count")
}

fn hamlet() -> BareJid {
    BareJid::new("hamlet@shakespeare.lit").expect("jid")
}

fn fragment(ns: &str, name: &str, text: &str) -> Element {
    Element::new(name, ns).with_child(Element::new("v", ns).with_text(text))
}

#[tokio::test]
async fn fragments_round_trip_and_an_empty_one_removes_its_key() {
    let (_dir, storage) = storage().await;
    let store = PrivateStore::new(&storage, PrivateSettings::default());
    let prefs = fragment("exodus:prefs", "exodus", "Hamlet");
    store
        .put(&hamlet(), std::slice::from_ref(&prefs))
        .await
        .expect("put");
    let got = store
        .get(&hamlet(), "exodus:prefs", "exodus")
        .await
        .expect("get");
    assert_eq!(got, Some(prefs));
    assert_eq!(
        store
            .get(&hamlet(), "exodus:prefs", "other")
            .await
            .expect("get"),
        None
    );
    store
        .put(&hamlet(), &[Element::new("exodus", "exodus:prefs")])
        .await
        .expect("clear");
    assert_eq!(stored(&storage).await, 0);
}

#[tokio::test]
async fn the_size_and_count_limits_refuse_a_set_before_anything_is_written() {
    let (_dir, storage) = storage().await;
    let settings = PrivateSettings {
        max_item_size: 100,
        max_items: 2,
        max_bytes: 0,
    };
    let store = PrivateStore::new(&storage, settings);
    let big = fragment("a:big", "x", &"x".repeat(200));
    let err = store
        .put(&hamlet(), &[fragment("a:one", "x", "1"), big])
        .await;
    assert!(matches!(err, Err(PrivateError::TooLarge { .. })));
    let three = [
        fragment("a:one", "x", "1"),
        fragment("a:two", "x", "2"),
        fragment("a:three", "x", "3"),
    ];
    assert!(matches!(
        store.put(&hamlet(), &three).await,
        Err(PrivateError::TooMany(2))
    ));
    assert_eq!(stored(&storage).await, 0);
    store.put(&hamlet(), &three[..2]).await.expect("two fit");
    // Replacing a stored fragment adds nothing to the count.
    store
        .put(&hamlet(), &[fragment("a:two", "x", "2b")])
        .await
        .expect("replace");
    assert!(matches!(
        store.put(&hamlet(), &three[2..]).await,
        Err(PrivateError::TooMany(2))
    ));
}

/// Keeps `storage:bookmarks` to itself and records what it was given.
#[derive(Default)]
struct Bookmarks {
    sets: Mutex<Vec<Element>>,
}

#[async_trait]
impl PrivateInterceptor for Bookmarks {
    async fn get(
        &self,
        _router: &Router,
        _owner: &BareJid,
        _store: &PrivateStore,
    ) -> Result<Option<Element>, StanzaError> {
        let last = self.sets.lock().expect("lock").last().cloned();
        Ok(last)
    }

    async fn set(
        &self,
        _router: &Router,
        _owner: &BareJid,
        fragment: &Element,
        _store: &PrivateStore,
    ) -> Result<Intercepted, StanzaError> {
        self.sets.lock().expect("lock").push(fragment.clone());
        Ok(Intercepted::Handled)
    }
}

fn router(storage: &Storage) -> Router {
    let accounts = Accounts::new(storage.keyval.clone(), storage.users.clone(), 4096);
    let hosts = HashSet::from(["shakespeare.lit".to_owned()]);
    Router::new(
        hosts,
        Arc::new(SessionRegistry::new()),
        accounts,
        Registry::new(),
    )
}

async fn ask(
    module: &PrivateXml,
    router: &Router,
    ty: &str,
    query: Element,
) -> Result<Option<Element>, StanzaError> {
    let from = jid::Jid::new("hamlet@shakespeare.lit/denmark").expect("jid");
    let el = Element::new("iq", ns::CLIENT)
        .with_attr("type", ty)
        .with_attr("id", "1")
        .with_attr("from", from.as_str())
        .with_child(query.clone());
    let stanza = Stanza::new_unchecked(StanzaKind::Iq, Some(from.clone()), None, el);
    let to = hamlet();
    module
        .handle(IqRequest {
            stanza: &stanza,
            payload: &query,
            from: &from,
            to: &to,
            router,
        })
        .await
}

#[tokio::test]
async fn an_interceptor_takes_over_its_fragment_and_the_rest_is_stored() {
    let (_dir, storage) = storage().await;
    let interceptors = PrivateInterceptors::default();
    let bookmarks = Arc::new(Bookmarks::default());
    interceptors.add("storage:bookmarks", "storage", bookmarks.clone());
    let module = PrivateXml::new(&storage, PrivateSettings::default(), interceptors);
    let router = router(&storage);
    let marks = fragment("storage:bookmarks", "storage", "room");
    let prefs = fragment("exodus:prefs", "exodus", "Hamlet");
    let set = PrivateQuery::new(vec![marks.clone(), prefs.clone()]).to_element();
    assert_eq!(ask(&module, &router, "set", set).await.expect("set"), None);
    assert_eq!(
        bookmarks.sets.lock().expect("lock").as_slice(),
        std::slice::from_ref(&marks)
    );
    let stored = module
        .store()
        .get(&hamlet(), "storage:bookmarks", "storage")
        .await;
    assert_eq!(stored.expect("get"), None, "the interceptor kept it");
    for (named, expected) in [
        (Element::new("storage", "storage:bookmarks"), marks),
        (Element::new("exodus", "exodus:prefs"), prefs),
    ] {
        let get = PrivateQuery::new(vec![named]).to_element();
        let answer = ask(&module, &router, "get", get)
            .await
            .expect("get")
            .expect("query");
        assert_eq!(
            PrivateQuery::try_from(&answer).expect("query").items,
            [expected]
        );
    }
}

#[test]
fn settings_have_defaults_and_refuse_unknown_keys() {
    let s = PrivateSettings::default();
    assert_eq!((s.max_item_size, s.max_items), (65_536, 100));
    let s: PrivateSettings = toml::from_str("max_items = 5").expect("parses");
    assert_eq!((s.max_item_size, s.max_items), (65_536, 5));
    assert!(toml::from_str::<PrivateSettings>("max_size = 5").is_err());
}
