//! XEP-0402: PEP Native Bookmarks, with both compatibility layers of its §"Compatibility":
//! XEP-0048 bookmarks through private XML storage (XEP-0049, `urn:xmpp:bookmarks:1#compat`)
//! and through the legacy PEP node `storage:bookmarks` (XEP-0223, `…#compat-pep`, which is
//! also XEP-0411's conversion, `urn:xmpp:bookmarks-conversion:0`).
//!
//! **One source of truth**: the `urn:xmpp:bookmarks:1` node, one item per room (item id = room
//! JID). The XEP-0048 views are made from it:
//! - a private XML get of `<storage xmlns='storage:bookmarks'/>` is built from the node's items
//!   at the time of the request (plus the `<url/>` bookmarks XEP-0402 does not carry, which stay
//!   in private storage), so it is never stale;
//! - a private XML set, or a client's publish to the legacy node, is applied to the node as a
//!   difference: a room whose bookmark changed is published again (its `<extensions/>`, which
//!   XEP-0048 clients do not know, kept as XEP-0402 §3 asks), a room no longer listed is
//!   retracted, an unchanged one is left alone, so XEP-0402 clients get notifications only for
//!   what really changed;
//! - the legacy node's one item (`current`) is published again whenever the bookmarks change
//!   any other way, so that XEP-0048 clients subscribed to it hear of the change (XEP-0411
//!   requires it for changes through private XML).
//!
//! Every node is published with the publish-options XEP-0402 §3.2 (and XEP-0048 §3.3) give —
//! persistent, `whitelist`, and for XEP-0402 `max_items=max`, no last item on presence — so
//! bookmarks never leak to contacts; a node a client configured otherwise refuses the write
//! (`precondition-not-met`), as it would refuse the client's own.

use std::sync::Arc;

use async_trait::async_trait;
use jid::{BareJid, Jid};
use xmppd_core::{Module, Registry, Router};
use xmppd_modules::private::{Intercepted, PrivateInterceptor, PrivateInterceptors, PrivateStore};
use xmppd_proto::StanzaError;
use xmppd_proto::data_form::{DataForm, Field, FieldType, FormType};
use xmppd_proto::pubsub::{Item, NS_PUBLISH_OPTIONS};
use xmppd_xml::Element;

use crate::observe::{NodeChange, PepObserver, PepObservers};
use crate::{PepError, PepHandle};

/// The XEP-0402 node and payload namespace.
pub const NODE: &str = "urn:xmpp:bookmarks:1";
/// The XEP-0048 namespace, which is also the legacy PEP node's name.
pub const LEGACY: &str = "storage:bookmarks";
/// The id of the legacy node's one item (XEP-0048 §3.2).
const LEGACY_ITEM: &str = "current";

/// Account features (XEP-0402 §"Compatibility", XEP-0411 §2).
const FEATURES: [&str; 3] = [
    "urn:xmpp:bookmarks:1#compat",
    "urn:xmpp:bookmarks:1#compat-pep",
    "urn:xmpp:bookmarks-conversion:0",
];

/// One bookmarked room, as both versions describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Conference {
    jid: String,
    name: Option<String>,
    autojoin: bool,
    nick: Option<String>,
    password: Option<String>,
    /// XEP-0402's `<extensions/>`, kept across XEP-0048 edits.
    extensions: Option<Element>,
}

/// XEP-0048 writes booleans as `true`/`1` (XML Schema).
fn boolean(value: Option<&str>) -> bool {
    matches!(value, Some("true" | "1"))
}

fn child_text(el: &Element, name: &str, ns: &str) -> Option<String> {
    el.child(name, ns).map(Element::text)
}

impl Conference {
    /// From a XEP-0402 item (its id is the room).
    fn from_item(item: &Item) -> Option<Self> {
        let jid = item.id.clone()?;
        let c = item.payload.as_ref().filter(|p| p.is("conference", NODE))?;
        Some(Conference {
            jid,
            name: c.attr("name").map(str::to_owned),
            autojoin: boolean(c.attr("autojoin")),
            nick: child_text(c, "nick", NODE),
            password: child_text(c, "password", NODE),
            extensions: c.child("extensions", NODE).cloned(),
        })
    }

    /// From a XEP-0048 `<conference jid=…/>`; `None` without a valid room JID.
    fn from_legacy(c: &Element) -> Option<Self> {
        let jid = BareJid::new(c.attr("jid")?).ok()?.to_string();
        Some(Conference {
            jid,
            name: c.attr("name").map(str::to_owned),
            autojoin: boolean(c.attr("autojoin")),
            nick: child_text(c, "nick", LEGACY),
            password: child_text(c, "password", LEGACY),
            extensions: None,
        })
    }

    /// Whether the two describe the room alike, leaving out what XEP-0048 cannot carry.
    fn same_as_legacy(&self, legacy: &Conference) -> bool {
        (&self.name, self.autojoin, &self.nick, &self.password)
            == (
                &legacy.name,
                legacy.autojoin,
                &legacy.nick,
                &legacy.password,
            )
    }

    fn element(&self, ns: &str) -> Element {
        let mut c = Element::new("conference", ns);
        if ns == LEGACY {
            c.set_attr("jid", self.jid.as_str());
        }
        if let Some(name) = &self.name {
            c.set_attr("name", name.as_str());
        }
        c.set_attr("autojoin", if self.autojoin { "true" } else { "false" });
        if let Some(nick) = &self.nick {
            c.push_child(Element::new("nick", ns).with_text(nick.as_str()));
        }
        if let Some(password) = &self.password {
            c.push_child(Element::new("password", ns).with_text(password.as_str()));
        }
        if let (Some(extensions), NODE) = (&self.extensions, ns) {
            c.push_child(extensions.clone());
        }
        c
    }

    fn to_item(&self) -> Item {
        Item {
            id: Some(self.jid.clone()),
            payload: Some(self.element(NODE)),
        }
    }
}

/// The publish-options of a bookmarks node: private to its owner and persistent; for
/// XEP-0402 every room kept and none sent as a "last item".
fn options(node: &str) -> DataForm {
    let field = |var: &str, value: &str| Field::new(var, FieldType::TextSingle).with_value(value);
    let mut form = DataForm::new(FormType::Submit)
        .with_field(Field::form_type(NS_PUBLISH_OPTIONS))
        .with_field(field("pubsub#persist_items", "true"))
        .with_field(field("pubsub#access_model", "whitelist"));
    if node == NODE {
        form = form
            .with_field(field("pubsub#max_items", "max"))
            .with_field(field("pubsub#send_last_published_item", "never"));
    }
    form
}

/// The bookmarks module: the XEP-0048 views of the XEP-0402 node.
pub struct Bookmarks {
    pep: PepHandle,
    private: PrivateStore,
    /// Where it takes over `storage:bookmarks` when registered.
    interceptors: PrivateInterceptors,
    /// Where it watches the two nodes when registered.
    observers: PepObservers,
}

impl std::fmt::Debug for Bookmarks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Bookmarks")
    }
}

impl Bookmarks {
    /// Over the PEP service (with its observers) and private XML storage (with its
    /// interceptors; `<url/>` bookmarks stay there). It takes its places when registered.
    pub fn new(
        pep: PepHandle,
        observers: PepObservers,
        private: PrivateStore,
        interceptors: PrivateInterceptors,
    ) -> Self {
        Bookmarks {
            pep,
            private,
            interceptors,
            observers,
        }
    }

    /// The owner's XEP-0402 bookmarks, oldest first.
    async fn conferences(&self, owner: &BareJid) -> Result<Vec<Conference>, PepError> {
        let me = Jid::from(owner.clone());
        match self.pep.items(owner, &me, NODE, &[], None).await {
            Ok(items) => Ok(items.iter().filter_map(Conference::from_item).collect()),
            Err(PepError::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(e),
        }
    }

    /// The XEP-0048 `<storage/>` for the owner: the rooms of the XEP-0402 node, and the
    /// `<url/>` bookmarks of `stored` (the last XEP-0048 storage element written).
    fn legacy_storage(conferences: &[Conference], stored: Option<&Element>) -> Element {
        let mut storage = Element::new("storage", LEGACY);
        for c in conferences {
            storage.push_child(c.element(LEGACY));
        }
        for url in stored.into_iter().flat_map(|s| s.children()) {
            if url.is("url", LEGACY) {
                storage.push_child(url.clone());
            }
        }
        storage
    }

    /// Applies a XEP-0048 `<storage/>` to the XEP-0402 node (see the module docs).
    async fn apply(
        &self,
        router: &Router,
        owner: &BareJid,
        storage: &Element,
    ) -> Result<(), StanzaError> {
        // Checked whole before anything changes: a room without a valid JID is refused.
        let wanted = storage
            .children()
            .filter(|c| c.is("conference", LEGACY))
            .map(|c| {
                Conference::from_legacy(c).ok_or_else(|| {
                    StanzaError::bad_request("a bookmarked conference needs a valid room JID")
                })
            })
            .collect::<Result<Vec<Conference>, StanzaError>>()?;
        let existing = self.conferences(owner).await?;
        let form = options(NODE);
        for w in &wanted {
            let old = existing.iter().find(|e| e.jid == w.jid);
            if old.is_some_and(|old| old.same_as_legacy(w)) {
                continue;
            }
            let mut room = w.clone();
            room.extensions = old.and_then(|o| o.extensions.clone());
            self.pep
                .publish(router, owner, NODE, room.to_item(), Some(&form))
                .await?;
        }
        let gone: Vec<String> = existing
            .iter()
            .filter(|e| !wanted.iter().any(|w| w.jid == e.jid))
            .map(|e| e.jid.clone())
            .collect();
        if !gone.is_empty() {
            self.pep.retract(router, owner, NODE, &gone, true).await?;
        }
        Ok(())
    }

    /// Publishes the XEP-0048 view to the legacy node, for its subscribers.
    async fn refresh_legacy_node(&self, router: &Router, owner: &BareJid) -> Result<(), PepError> {
        let conferences = self.conferences(owner).await?;
        let stored = self.stored(owner).await;
        let item = Item {
            id: Some(LEGACY_ITEM.to_owned()),
            payload: Some(Self::legacy_storage(&conferences, stored.as_ref())),
        };
        let form = options(LEGACY);
        self.pep
            .publish(router, owner, LEGACY, item, Some(&form))
            .await
            .map(drop)
    }

    /// The XEP-0048 storage element last written through private XML, for its `<url/>`s.
    async fn stored(&self, owner: &BareJid) -> Option<Element> {
        match self.private.get(owner, LEGACY, "storage").await {
            Ok(stored) => stored,
            Err(e) => {
                tracing::warn!(%owner, error = %e, "bookmarks: private storage unreadable");
                None
            }
        }
    }
}

#[async_trait]
impl PrivateInterceptor for Bookmarks {
    async fn get(
        &self,
        _router: &Router,
        owner: &BareJid,
        _store: &PrivateStore,
    ) -> Result<Option<Element>, StanzaError> {
        let conferences = self.conferences(owner).await?;
        let stored = self.stored(owner).await;
        Ok(Some(Self::legacy_storage(&conferences, stored.as_ref())))
    }

    async fn set(
        &self,
        router: &Router,
        owner: &BareJid,
        fragment: &Element,
        _store: &PrivateStore,
    ) -> Result<Intercepted, StanzaError> {
        self.apply(router, owner, fragment).await?;
        if let Err(e) = self.refresh_legacy_node(router, owner).await {
            tracing::warn!(%owner, error = %e, "bookmarks: legacy PEP node not updated");
        }
        // Kept too, for the `<url/>` bookmarks XEP-0402 has no place for.
        Ok(Intercepted::Store)
    }
}

#[async_trait]
impl PepObserver for Bookmarks {
    fn watches(&self, node: &str) -> bool {
        node == NODE || node == LEGACY
    }

    async fn changed(&self, router: &Router, owner: &BareJid, node: &str, change: NodeChange<'_>) {
        let result = match (node, change) {
            // A XEP-0048 client publishing through PEP (XEP-0048 §3.2): the legacy node holds
            // what it published already.
            (LEGACY, NodeChange::Published(item)) => match &item.payload {
                Some(storage) if storage.is("storage", LEGACY) => self
                    .apply(router, owner, storage)
                    .await
                    .map_err(|e| format!("{:?}", e.condition)),
                _ => Ok(()),
            },
            // Clearing the legacy node is not taken as deleting every bookmark.
            (LEGACY, _) => Ok(()),
            _ => self
                .refresh_legacy_node(router, owner)
                .await
                .map_err(|e| e.to_string()),
        };
        if let Err(e) = result {
            tracing::warn!(%owner, node, error = %e, "bookmarks: the other view was not updated");
        }
    }
}

impl Module for Bookmarks {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        self.interceptors.add(LEGACY, "storage", self.clone());
        self.observers.add(self.clone());
        for feature in FEATURES {
            registry.account_feature(feature);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmppd_proto::stanza::parse_stored;

    fn el(xml: &str) -> Element {
        parse_stored(xml.as_bytes()).expect("xml")
    }

    #[test]
    fn a_room_reads_alike_in_both_versions() {
        let legacy = el(
            "<conference xmlns='storage:bookmarks' jid='Council@Conference.Underhill.org' \
             name='Council of Oberon' autojoin='1'><nick>Puck</nick></conference>",
        );
        let c = Conference::from_legacy(&legacy).expect("valid");
        assert_eq!(c.jid, "council@conference.underhill.org");
        assert!(c.autojoin);
        let item = c.to_item();
        let back = Conference::from_item(&item).expect("valid");
        assert_eq!(back, c);
        assert_eq!(
            item.payload.expect("payload").to_string(),
            "<conference xmlns=\"urn:xmpp:bookmarks:1\" name=\"Council of Oberon\" \
             autojoin=\"true\"><nick>Puck</nick></conference>"
        );
        // No JID, or not one: not a bookmark.
        assert!(Conference::from_legacy(&el("<conference xmlns='storage:bookmarks'/>")).is_none());
        let bad = el("<conference xmlns='storage:bookmarks' jid='a@b@c'/>");
        assert!(Conference::from_legacy(&bad).is_none());
    }

    #[test]
    fn extensions_stay_in_xep_0402_and_are_not_compared() {
        let item = Item {
            id: Some("r@muc.example".into()),
            payload: Some(el(
                "<conference xmlns='urn:xmpp:bookmarks:1' autojoin='true'>\
                 <extensions><state xmlns='urn:example'/></extensions></conference>",
            )),
        };
        let c = Conference::from_item(&item).expect("valid");
        assert!(c.extensions.is_some());
        let legacy = Conference::from_legacy(&el(
            "<conference xmlns='storage:bookmarks' jid='r@muc.example' autojoin='true'/>",
        ))
        .expect("valid");
        assert!(c.same_as_legacy(&legacy));
        assert!(!c.element(LEGACY).to_string().contains("extensions"));
        assert!(c.element(NODE).to_string().contains("urn:example"));
    }

    #[test]
    fn the_legacy_view_keeps_url_bookmarks() {
        let c = Conference::from_legacy(&el(
            "<conference xmlns='storage:bookmarks' jid='r@muc.example'/>",
        ))
        .expect("valid");
        let stored = el(
            "<storage xmlns='storage:bookmarks'><url name='x' url='https://x.example'/>\
             <conference jid='old@muc.example'/></storage>",
        );
        let view = Bookmarks::legacy_storage(&[c], Some(&stored)).to_string();
        assert!(
            view.contains("r@muc.example") && view.contains("https://x.example"),
            "{view}"
        );
        assert!(!view.contains("old@muc.example"), "{view}");
    }
}
