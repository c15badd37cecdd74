//! XEP-0060 §8: the owner's requests, in `http://jabber.org/protocol/pubsub#owner`.

use xmppd_xml::Element;

use super::{NS_NODE_CONFIG, NS_OWNER, PubSubParseError, node, options_form};
use crate::data_form::DataForm;
use crate::ns;
use crate::payload::{PayloadError, expect, into_element};

/// A request in `http://jabber.org/protocol/pubsub#owner`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerRequest {
    /// §8.2: the configuration form (get), or a new configuration (set; `form` is `None`
    /// for a `cancel` submission, which changes nothing).
    Configure {
        /// The node.
        node: String,
        /// The submitted form.
        form: Option<DataForm>,
    },
    /// §8.4: delete the node.
    Delete {
        /// The node.
        node: String,
    },
    /// §8.5: delete every item of the node.
    Purge {
        /// The node.
        node: String,
    },
    /// An owner action this service does not implement (`subscriptions`, `affiliations` …).
    Other(String),
}

impl TryFrom<&Element> for OwnerRequest {
    type Error = PubSubParseError;

    fn try_from(el: &Element) -> Result<Self, PubSubParseError> {
        expect(el, "pubsub", NS_OWNER)?;
        let Some(action) = el.children().find(|c| c.ns() == NS_OWNER) else {
            return Err(PayloadError::invalid("<pubsub/> names no action").into());
        };
        match action.name() {
            "configure" => {
                let node = node(action)?;
                let cancelled = action
                    .child("x", ns::DATA_FORMS)
                    .is_some_and(|x| x.attr("type") == Some("cancel"));
                let form = if cancelled {
                    None
                } else {
                    options_form(action, NS_NODE_CONFIG)?
                };
                Ok(OwnerRequest::Configure { node, form })
            }
            "delete" => Ok(OwnerRequest::Delete {
                node: node(action)?,
            }),
            "purge" => Ok(OwnerRequest::Purge {
                node: node(action)?,
            }),
            other => Ok(OwnerRequest::Other(other.to_owned())),
        }
    }
}

impl OwnerRequest {
    /// The `<pubsub xmlns='…#owner'/>` element.
    pub fn to_element(&self) -> Element {
        let action = match self {
            OwnerRequest::Configure { node, form } => {
                let mut c = Element::new("configure", NS_OWNER).with_attr("node", node);
                if let Some(form) = form {
                    c.push_child(form.to_element());
                }
                c
            }
            OwnerRequest::Delete { node } => {
                Element::new("delete", NS_OWNER).with_attr("node", node)
            }
            OwnerRequest::Purge { node } => Element::new("purge", NS_OWNER).with_attr("node", node),
            OwnerRequest::Other(name) => Element::new(name, NS_OWNER),
        };
        Element::new("pubsub", NS_OWNER).with_child(action)
    }
}

/// The `<pubsub xmlns='…#owner'><configure node>FORM</configure></pubsub>` answer (§8.2.1).
pub fn configure_result(node: &str, form: &DataForm) -> Element {
    Element::new("pubsub", NS_OWNER).with_child(
        Element::new("configure", NS_OWNER)
            .with_attr("node", node)
            .with_child(form.to_element()),
    )
}

into_element!(OwnerRequest);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StanzaError;
    use crate::pubsub::tests::error_app;
    use crate::test_util::element;

    #[test]
    fn owner_requests_round_trip() {
        for owner in [
            OwnerRequest::Delete { node: "n".into() },
            OwnerRequest::Purge { node: "n".into() },
            OwnerRequest::Configure {
                node: "n".into(),
                form: None,
            },
        ] {
            assert_eq!(OwnerRequest::try_from(&owner.to_element()).unwrap(), owner);
        }
        let el =
            element("<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><frob/></pubsub>");
        assert_eq!(
            OwnerRequest::try_from(&el).unwrap(),
            OwnerRequest::Other("frob".into())
        );
    }

    #[test]
    fn an_owner_request_without_node_is_nodeid_required() {
        let el =
            element("<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><purge/></pubsub>");
        let e = StanzaError::from(OwnerRequest::try_from(&el).unwrap_err());
        assert_eq!(error_app(&e).as_deref(), Some("nodeid-required"));
    }
}
