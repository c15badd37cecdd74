//! XEP-0030: Service Discovery, for the server itself.
//!
//! disco#info lists the server identity (`server/im`, §3.1 and the Registrar's category list)
//! and the features the modules enabled on the addressed host registered; disco#items lists
//! the services of that host (external components, in-process services). A `node` we do not
//! know is `item-not-found` (§3.1, §4.1).

use std::sync::Arc;

use async_trait::async_trait;
use jid::Jid;
use xmppd_core::{IqHandler, IqRequest, IqTarget, IqType, Module, Registry};
use xmppd_proto::disco::{DiscoInfoQuery, DiscoItem, DiscoItemsQuery, Identity};
use xmppd_proto::{DefinedCondition, StanzaError, ns};
use xmppd_xml::Element;

/// The service discovery module.
#[derive(Debug, Default)]
pub struct Disco;

struct Info;
struct Items;

/// Only the entity itself is described: a `node` we do not know is `item-not-found` (§3.1).
fn reject_node(node: Option<&String>) -> Result<(), StanzaError> {
    match node {
        None => Ok(()),
        Some(node) => Err(StanzaError::new(DefinedCondition::ItemNotFound)
            .with_text(format!("no such node: {node}"))),
    }
}

#[async_trait]
impl IqHandler for Info {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        let query = DiscoInfoQuery::try_from(request.payload)?;
        reject_node(query.node.as_ref())?;
        let host = request.to.domain().as_str();
        let mut result = query.reply();
        result
            .identities
            .push(Identity::new("server", "im").with_name("xmppd"));
        result.features = request
            .router
            .registry()
            .server_features(host)
            .into_iter()
            .map(str::to_owned)
            .collect();
        Ok(Some(result.to_element()))
    }
}

#[async_trait]
impl IqHandler for Items {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        let query = DiscoItemsQuery::try_from(request.payload)?;
        reject_node(query.node.as_ref())?;
        let host = request.to.domain().as_str();
        let mut result = query.reply();
        for jid in request.router.registry().server_items(host) {
            match Jid::new(&jid) {
                Ok(jid) => result.items.push(DiscoItem::new(jid)),
                Err(e) => tracing::warn!(%jid, error = %e, "a service domain is not a JID"),
            }
        }
        Ok(Some(result.to_element()))
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
