//! XEP-0030: Service Discovery, for the server itself.
//!
//! disco#info lists the server identity (`server/im`, §3.1 and the Registrar's category list)
//! and the features the modules enabled on the addressed host registered; disco#items lists
//! the services of that host (external components, in-process services). A `node` we do not
//! know is `item-not-found` (§3.1, §4.1).

use std::sync::Arc;

use async_trait::async_trait;
use xmppd_core::{IqHandler, IqRequest, IqTarget, IqType, Module, Registry};
use xmppd_proto::{DefinedCondition, StanzaError, ns};
use xmppd_xml::Element;

/// The service discovery module.
#[derive(Debug, Default)]
pub struct Disco;

struct Info;
struct Items;

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
        let host = request.to.domain().as_str();
        for var in request.router.registry().server_features(host) {
            query.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", var));
        }
        Ok(Some(query))
    }
}

#[async_trait]
impl IqHandler for Items {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        reject_nodes(request.payload)?;
        let mut query = Element::new("query", ns::DISCO_ITEMS);
        let host = request.to.domain().as_str();
        for jid in request.router.registry().server_items(host) {
            query.push_child(Element::new("item", ns::DISCO_ITEMS).with_attr("jid", jid));
        }
        Ok(Some(query))
    }
}

impl Module for Disco {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        registry.iq(
            IqTarget::Server,
            IqType::Get,
            ns::DISCO_INFO,
            "query",
            Arc::new(Info),
        );
        registry.iq(
            IqTarget::Server,
            IqType::Get,
            ns::DISCO_ITEMS,
            "query",
            Arc::new(Items),
        );
        registry.server_feature(ns::DISCO_INFO);
        registry.server_feature(ns::DISCO_ITEMS);
    }
}
