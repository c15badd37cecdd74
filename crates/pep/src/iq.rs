//! The pubsub iq handlers on an account's bare JID: `http://jabber.org/protocol/pubsub`
//! (publish, retract, items) and `…#owner` (configure, delete, purge), mapped onto
//! [`crate::PepHandle`].

use std::sync::Arc;

use async_trait::async_trait;
use xmppd_core::{IqHandler, IqRequest};
use xmppd_proto::pubsub::{
    OwnerRequest, PubSubCondition, PubSubRequest, configure_result, items_result, publish_result,
};
use xmppd_proto::{DefinedCondition, StanzaError};
use xmppd_xml::Element;

use crate::handle::PepHandle;
use crate::observe::NodeChange;
use crate::{Pep, PepError};

/// `<pubsub xmlns='http://jabber.org/protocol/pubsub'/>`.
pub(crate) struct PubSubIq(pub(crate) Arc<Pep>);

/// `<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'/>`.
pub(crate) struct OwnerIq(pub(crate) Arc<Pep>);

/// `feature-not-implemented` + `<unsupported feature='…'/>` (XEP-0060 §5.4, error tables).
fn unsupported(feature: &'static str) -> StanzaError {
    PubSubCondition::Unsupported(feature).error(DefinedCondition::FeatureNotImplemented)
}

/// The XEP-0060 feature name of an action this service does not implement.
fn feature_of(action: &str) -> &'static str {
    match action {
        "subscribe" | "unsubscribe" => "subscribe",
        "subscriptions" => "retrieve-subscriptions",
        "affiliations" => "retrieve-affiliations",
        "options" => "subscription-options",
        "create" => "create-nodes",
        "default" => "retrieve-default",
        _ => "pubsub",
    }
}

/// Only the account itself publishes and administers its nodes.
fn owner_only(request: &IqRequest<'_>) -> Result<(), StanzaError> {
    if request.from.to_bare() == *request.to {
        Ok(())
    } else {
        Err(PepError::Forbidden.into())
    }
}

fn is_set(request: &IqRequest<'_>) -> bool {
    request.stanza.type_attr() == Some("set")
}

fn wrong_type() -> StanzaError {
    StanzaError::bad_request("this action does not go with this iq type")
}

#[async_trait]
impl IqHandler for PubSubIq {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        let pep = PepHandle(self.0.clone());
        let owner = request.to;
        match (PubSubRequest::try_from(request.payload)?, is_set(&request)) {
            (
                PubSubRequest::Publish {
                    node,
                    mut items,
                    payload_counts,
                    options,
                },
                true,
            ) => {
                owner_only(&request)?;
                // §7.1.3.7: a persistent node needs an item; one item per publish here.
                let item = match (items.pop(), items.is_empty()) {
                    (None, _) => {
                        return Err(
                            PubSubCondition::ItemRequired.error(DefinedCondition::BadRequest)
                        );
                    }
                    (Some(_), false) => return Err(unsupported("multi-items")),
                    (Some(item), true) => item,
                };
                // §7.1.3.6: exactly one payload element.
                if payload_counts.first() != Some(&1) {
                    return Err(PubSubCondition::InvalidPayload.error(DefinedCondition::BadRequest));
                }
                let observers = self.0.observers.of(&node);
                let copy = (!observers.is_empty()).then(|| item.clone());
                let id = pep
                    .publish(request.router, owner, &node, item, options.as_ref())
                    .await?;
                if let Some(mut item) = copy {
                    item.id = Some(id.clone());
                    for observer in observers {
                        let change = NodeChange::Published(&item);
                        observer.changed(request.router, owner, &node, change).await;
                    }
                }
                Ok(Some(publish_result(&node, &id)))
            }
            (
                PubSubRequest::Items {
                    node,
                    max_items,
                    ids,
                },
                false,
            ) => {
                let items = pep
                    .items(owner, request.from, &node, &ids, max_items)
                    .await?;
                Ok(Some(items_result(&node, &items)))
            }
            (PubSubRequest::Retract { node, notify, ids }, true) => {
                owner_only(&request)?;
                pep.retract(request.router, owner, &node, &ids, notify)
                    .await?;
                let change = NodeChange::Retracted(&ids);
                self.0
                    .observers
                    .tell(request.router, owner, &node, change)
                    .await;
                Ok(None)
            }
            (PubSubRequest::Other(action), _) => Err(unsupported(feature_of(&action))),
            _ => Err(wrong_type()),
        }
    }
}

#[async_trait]
impl IqHandler for OwnerIq {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        let pep = PepHandle(self.0.clone());
        let owner = request.to;
        let parsed = OwnerRequest::try_from(request.payload)?;
        owner_only(&request)?;
        match (parsed, is_set(&request)) {
            (OwnerRequest::Configure { node, .. }, false) => {
                let form = pep.configuration_form(owner, &node).await?;
                Ok(Some(configure_result(&node, &form)))
            }
            (OwnerRequest::Configure { node, form }, true) => {
                match form {
                    Some(form) => pep.configure(owner, &node, &form).await?,
                    // A cancelled configuration changes nothing, but the node must exist.
                    None => {
                        pep.configuration(owner, &node).await?;
                    }
                }
                Ok(None)
            }
            (OwnerRequest::Delete { node }, true) => {
                pep.delete(request.router, owner, &node).await?;
                let observers = &self.0.observers;
                observers
                    .tell(request.router, owner, &node, NodeChange::Cleared)
                    .await;
                Ok(None)
            }
            (OwnerRequest::Purge { node }, true) => {
                pep.purge(request.router, owner, &node).await?;
                let observers = &self.0.observers;
                observers
                    .tell(request.router, owner, &node, NodeChange::Cleared)
                    .await;
                Ok(None)
            }
            (OwnerRequest::Other(action), _) => Err(unsupported(feature_of(&action))),
            _ => Err(wrong_type()),
        }
    }
}
