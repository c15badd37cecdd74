//! XEP-0030: Service Discovery, for the server itself.
//!
//! disco#info lists the server identity (`server/im`, §3.1 and the Registrar's category list)
//! and the features every module registered; disco#items lists the services registered with
//! the server (external components). A `node` we do not know is `item-not-found` (§3.1,
//! §4.1).

use std::sync::Arc;
use std::sync::OnceLock;

use async_trait::async_trait;
use xmppd_core::{IqHandler, IqRequest, IqTarget, IqType, Module, Registry};
use xmppd_proto::{DefinedCondition, StanzaError, ns};
use xmppd_xml::Element;

/// The service discovery module.
#[derive(Debug, Default)]
pub struct Disco {
    /// The features of the finished registry, frozen when the router is built.
    features: OnceLock<Vec<&'static str>>,
    /// The services (items) of the finished registry.
    items: OnceLock<Vec<String>>,
}

struct Info(Arc<Disco>);
struct Items(Arc<Disco>);

impl Disco {
    /// Records the registry's final feature list (called once wiring is complete).
    pub fn freeze(&self, registry: &Registry) {
        let _ = self.features.set(registry.server_features());
        let _ = self.items.set(registry.server_items());
    }
}

fn reject_nodes(payload: &Element) -> Result<(), StanzaError> {
    match payload.attr("node") {
        None => Ok(()),
        Some(node) => Err(StanzaError::new(DefinedCondition::ItemNotFound)
            .with_text(format!("no such node: {node}"))),
    }
}

#[async_trait]
impl IqHandler for Info {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        reject_nodes(request.payload)?;
        let mut query = Element::new("query", ns::DISCO_INFO).with_child(
            Element::new("identity", ns::DISCO_INFO)
                .with_attr("category", "server")
                .with_attr("type", "im")
                .with_attr("name", "xmppd"),
        );
        for var in self.0.features.get().map(Vec::as_slice).unwrap_or_default() {
            query.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", *var));
        }
        Ok(Some(query))
    }
}

#[async_trait]
impl IqHandler for Items {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        reject_nodes(request.payload)?;
        let mut query = Element::new("query", ns::DISCO_ITEMS);
        for jid in self.0.items.get().map(Vec::as_slice).unwrap_or_default() {
            query.push_child(Element::new("item", ns::DISCO_ITEMS).with_attr("jid", jid.as_str()));
        }
        Ok(Some(query))
    }
}

impl Module for Disco {
    fn name(&self) -> &'static str {
        "disco"
    }

    fn register(self: Arc<Self>, registry: &mut Registry) {
        registry.iq(
            IqTarget::Server,
            IqType::Get,
            ns::DISCO_INFO,
            "query",
            Arc::new(Info(self.clone())),
        );
        registry.iq(
            IqTarget::Server,
            IqType::Get,
            ns::DISCO_ITEMS,
            "query",
            Arc::new(Items(self)),
        );
        registry.server_feature(ns::DISCO_INFO);
        registry.server_feature(ns::DISCO_ITEMS);
    }
}
