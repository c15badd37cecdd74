//! XEP-0060: Publish-Subscribe — the payloads of the subset a PEP service (XEP-0163) speaks.
//!
//! Requests in `http://jabber.org/protocol/pubsub`: `<publish/>` (with `<publish-options/>`,
//! XEP-0223 / §7.1.5), `<items/>` (§6.5), `<retract/>` (§7.2); owner requests in `…#owner`:
//! `<configure/>` (§8.2), `<delete/>` (§8.4), `<purge/>` (§8.5); notifications in `…#event`
//! (§7.1.2, §7.2.2, §8.4.2, §8.5.2); and the pubsub-specific error conditions of `…#errors`.
//!
//! A request names one action; other children of `<pubsub/>` (`<subscribe/>`, `<create/>` …)
//! are reported as [`PubSubRequest::Other`] so the service can answer `feature-not-implemented`
//! with `<unsupported feature='…'/>` (§5.4 and the error table of §7) rather than a parse error.
//! A missing `node` is `nodeid-required` (§7.2.3.3); a retract without an item id is
//! `item-required` (§7.2.3.4). Both are reported by [`PubSubParseError`], which knows its
//! stanza error.

use xmppd_xml::Element;

mod event;
mod owner;

pub use event::{Event, EventKind};
pub use owner::{OwnerRequest, configure_result};

use crate::data_form::{DataForm, FormType};
use crate::error::{DefinedCondition, StanzaError};
use crate::ns;
use crate::payload::{PayloadError, expect, into_element, number_attr, parse_bool};

/// `http://jabber.org/protocol/pubsub`.
pub const NS_PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// `http://jabber.org/protocol/pubsub#owner`.
pub const NS_OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
/// `http://jabber.org/protocol/pubsub#event`.
pub const NS_EVENT: &str = "http://jabber.org/protocol/pubsub#event";
/// `http://jabber.org/protocol/pubsub#errors`.
pub const NS_ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
/// The `FORM_TYPE` of publish options (§7.1.5).
pub const NS_PUBLISH_OPTIONS: &str = "http://jabber.org/protocol/pubsub#publish-options";
/// The `FORM_TYPE` of a node configuration (§8.2).
pub const NS_NODE_CONFIG: &str = "http://jabber.org/protocol/pubsub#node_config";

/// A pubsub-specific error condition (§7 error tables, the `…#errors` schema).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PubSubCondition {
    /// A node with an access model of `whitelist` and the requester not on it.
    ClosedNode,
    /// Options the service cannot accept.
    InvalidOptions,
    /// The item holds not exactly one payload element.
    InvalidPayload,
    /// An item given where none is allowed.
    ItemForbidden,
    /// No item (or no item id) where one is needed.
    ItemRequired,
    /// No `node` attribute.
    NodeIdRequired,
    /// Access model `roster`, the requester in none of the allowed groups.
    NotInRosterGroup,
    /// The item is larger than the service accepts.
    PayloadTooBig,
    /// A publish-options precondition differs from the node's configuration.
    PreconditionNotMet,
    /// Access model `presence`, the requester not subscribed to the owner's presence.
    PresenceSubscriptionRequired,
    /// A feature the service does not implement; `feature` names it (§5.4).
    Unsupported(&'static str),
}

impl PubSubCondition {
    /// The condition's element.
    pub fn to_element(self) -> Element {
        let name = match self {
            Self::ClosedNode => "closed-node",
            Self::InvalidOptions => "invalid-options",
            Self::InvalidPayload => "invalid-payload",
            Self::ItemForbidden => "item-forbidden",
            Self::ItemRequired => "item-required",
            Self::NodeIdRequired => "nodeid-required",
            Self::NotInRosterGroup => "not-in-roster-group",
            Self::PayloadTooBig => "payload-too-big",
            Self::PreconditionNotMet => "precondition-not-met",
            Self::PresenceSubscriptionRequired => "presence-subscription-required",
            Self::Unsupported(_) => "unsupported",
        };
        let el = Element::new(name, NS_ERRORS);
        match self {
            Self::Unsupported(feature) => el.with_attr("feature", feature),
            _ => el,
        }
    }

    /// The stanza error `condition` carrying this pubsub condition.
    pub fn error(self, condition: DefinedCondition) -> StanzaError {
        StanzaError::new(condition).with_app(self.to_element())
    }
}

/// Why a `<pubsub/>` request could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PubSubParseError {
    /// Not a pubsub payload (or malformed in a way no pubsub condition names).
    #[error(transparent)]
    Payload(#[from] PayloadError),
    /// The action names no node (§7.2.3.3): `bad-request` + `nodeid-required`.
    #[error("the request names no node")]
    NodeIdRequired,
    /// A retract without an item id (§7.2.3.4): `bad-request` + `item-required`.
    #[error("the request names no item")]
    ItemRequired,
    /// A form of the wrong `FORM_TYPE` or shape: `bad-request` + `invalid-options`.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
}

impl From<PubSubParseError> for StanzaError {
    fn from(e: PubSubParseError) -> Self {
        match e {
            PubSubParseError::Payload(p) => p.into(),
            PubSubParseError::NodeIdRequired => {
                PubSubCondition::NodeIdRequired.error(DefinedCondition::BadRequest)
            }
            PubSubParseError::ItemRequired => {
                PubSubCondition::ItemRequired.error(DefinedCondition::BadRequest)
            }
            PubSubParseError::InvalidOptions(text) => PubSubCondition::InvalidOptions
                .error(DefinedCondition::BadRequest)
                .with_text(text),
        }
    }
}

/// An `<item/>`: an id and at most one payload element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The ItemID; the service makes one when a publisher gives none (§7.1.1).
    pub id: Option<String>,
    /// The payload.
    pub payload: Option<Element>,
}

impl Item {
    /// The `<item/>` in namespace `ns` (`…pubsub` in results, `…#event` in notifications).
    pub fn to_element_in(&self, ns: &str) -> Element {
        let mut el = Element::new("item", ns);
        if let Some(id) = &self.id {
            el.set_attr("id", id.as_str());
        }
        if let Some(payload) = &self.payload {
            el.push_child(payload.clone());
        }
        el
    }

    /// Reads an `<item/>` of any pubsub namespace. More than one payload element is
    /// `invalid-payload` for the caller to decide (§7.1.3.6); here only the first is kept and
    /// [`Item::payload_count`] tells.
    pub(crate) fn parse(el: &Element) -> Item {
        Item {
            id: el.attr("id").map(str::to_owned),
            payload: el.children().next().cloned(),
        }
    }
}

/// The number of payload elements of an `<item/>`.
pub fn payload_count(item: &Element) -> usize {
    item.children().count()
}

/// A request in `http://jabber.org/protocol/pubsub`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PubSubRequest {
    /// §7.1: publish an item (several `<item/>` are a batch the service may refuse).
    Publish {
        /// The node.
        node: String,
        /// The items published (one, usually).
        items: Vec<Item>,
        /// How many payload elements each item carried, in order (§7.1.3.6).
        payload_counts: Vec<usize>,
        /// XEP-0223 / §7.1.5 preconditions, the form's fields other than `FORM_TYPE`.
        options: Option<DataForm>,
    },
    /// §6.5: retrieve items (all, the newest `max_items`, or those named).
    Items {
        /// The node.
        node: String,
        /// At most this many, newest first chosen.
        max_items: Option<u32>,
        /// Only these ids (none: all).
        ids: Vec<String>,
    },
    /// §7.2: delete items.
    Retract {
        /// The node.
        node: String,
        /// Whether subscribers are told (`notify='true'`).
        notify: bool,
        /// The ids to delete (at least one).
        ids: Vec<String>,
    },
    /// An action this service does not implement, by element name (`subscribe`, `create` …).
    Other(String),
}

/// The `node` attribute of an action, required and non-empty.
pub(crate) fn node(el: &Element) -> Result<String, PubSubParseError> {
    match el.attr("node") {
        Some(n) if !n.is_empty() => Ok(n.to_owned()),
        _ => Err(PubSubParseError::NodeIdRequired),
    }
}

/// The form inside `<publish-options/>` or `<configure/>`, with the `FORM_TYPE` expected.
pub(crate) fn options_form(
    el: &Element,
    form_type: &str,
) -> Result<Option<DataForm>, PubSubParseError> {
    let Some(x) = el.child("x", ns::DATA_FORMS) else {
        return Ok(None);
    };
    let form = DataForm::try_from(x)?;
    if form.kind != FormType::Submit || form.form_type() != Some(form_type) {
        return Err(PubSubParseError::InvalidOptions(format!(
            "the form must be a submission with the FORM_TYPE {form_type}"
        )));
    }
    Ok(Some(form))
}

impl TryFrom<&Element> for PubSubRequest {
    type Error = PubSubParseError;

    fn try_from(el: &Element) -> Result<Self, PubSubParseError> {
        expect(el, "pubsub", NS_PUBSUB)?;
        let Some(action) = el
            .children()
            .find(|c| c.ns() == NS_PUBSUB && c.name() != "publish-options")
        else {
            return Err(PayloadError::invalid("<pubsub/> names no action").into());
        };
        let ids = |el: &Element| -> Vec<String> {
            el.children()
                .filter(|c| c.is("item", NS_PUBSUB))
                .filter_map(|c| c.attr("id").map(str::to_owned))
                .collect()
        };
        match action.name() {
            "publish" => {
                let node = node(action)?;
                let items: Vec<&Element> = action
                    .children()
                    .filter(|c| c.is("item", NS_PUBSUB))
                    .collect();
                let options = match el.child("publish-options", NS_PUBSUB) {
                    Some(po) => options_form(po, NS_PUBLISH_OPTIONS)?,
                    None => None,
                };
                Ok(PubSubRequest::Publish {
                    node,
                    payload_counts: items.iter().map(|i| payload_count(i)).collect(),
                    items: items.into_iter().map(Item::parse).collect(),
                    options,
                })
            }
            "items" => Ok(PubSubRequest::Items {
                node: node(action)?,
                max_items: number_attr(action, "max_items")?,
                ids: ids(action),
            }),
            "retract" => {
                let node = node(action)?;
                let notify = action
                    .attr("notify")
                    .is_some_and(|v| parse_bool(v) == Some(true));
                let ids = ids(action);
                if ids.is_empty() {
                    return Err(PubSubParseError::ItemRequired);
                }
                Ok(PubSubRequest::Retract { node, notify, ids })
            }
            other => Ok(PubSubRequest::Other(other.to_owned())),
        }
    }
}

impl PubSubRequest {
    /// The `<pubsub/>` element (what a client sends).
    pub fn to_element(&self) -> Element {
        let mut pubsub = Element::new("pubsub", NS_PUBSUB);
        match self {
            PubSubRequest::Publish {
                node,
                items,
                options,
                ..
            } => {
                let mut publish = Element::new("publish", NS_PUBSUB).with_attr("node", node);
                for item in items {
                    publish.push_child(item.to_element_in(NS_PUBSUB));
                }
                pubsub.push_child(publish);
                if let Some(form) = options {
                    pubsub.push_child(
                        Element::new("publish-options", NS_PUBSUB).with_child(form.to_element()),
                    );
                }
            }
            PubSubRequest::Items {
                node,
                max_items,
                ids,
            } => {
                let mut items = Element::new("items", NS_PUBSUB).with_attr("node", node);
                if let Some(max) = max_items {
                    items.set_attr("max_items", max.to_string());
                }
                for id in ids {
                    items.push_child(Element::new("item", NS_PUBSUB).with_attr("id", id));
                }
                pubsub.push_child(items);
            }
            PubSubRequest::Retract { node, notify, ids } => {
                let mut retract = Element::new("retract", NS_PUBSUB).with_attr("node", node);
                if *notify {
                    retract.set_attr("notify", "true");
                }
                for id in ids {
                    retract.push_child(Element::new("item", NS_PUBSUB).with_attr("id", id));
                }
                pubsub.push_child(retract);
            }
            PubSubRequest::Other(name) => pubsub.push_child(Element::new(name, NS_PUBSUB)),
        }
        pubsub
    }
}

/// The `<pubsub><publish node><item id/></publish></pubsub>` result of a publish (§7.1.2),
/// telling the publisher the id the service gave.
pub fn publish_result(node: &str, id: &str) -> Element {
    Element::new("pubsub", NS_PUBSUB).with_child(
        Element::new("publish", NS_PUBSUB)
            .with_attr("node", node)
            .with_child(Element::new("item", NS_PUBSUB).with_attr("id", id)),
    )
}

/// The `<pubsub><items node>…</items></pubsub>` result of a retrieval (§6.5.2).
pub fn items_result<'a>(node: &str, items: impl IntoIterator<Item = &'a Item>) -> Element {
    let mut el = Element::new("items", NS_PUBSUB).with_attr("node", node);
    for item in items {
        el.push_child(item.to_element_in(NS_PUBSUB));
    }
    Element::new("pubsub", NS_PUBSUB).with_child(el)
}

into_element!(PubSubRequest);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::element;

    pub(super) fn error_app(e: &StanzaError) -> Option<String> {
        e.app.as_ref().map(|a| a.name().to_owned())
    }

    /// An OMEMO device list publish with its access model as a precondition (XEP-0384 §5.3.1).
    #[test]
    fn publish_with_options_round_trips() {
        let el = element(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'>\
               <publish node='eu.siacs.conversations.axolotl.devicelist'>\
                 <item id='current'><list xmlns='eu.siacs.conversations.axolotl'>\
                   <device id='12345'/></list></item></publish>\
               <publish-options><x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE' type='hidden'>\
                   <value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
                 <field var='pubsub#access_model'><value>open</value></field>\
               </x></publish-options><unknown xmlns='urn:example'/></pubsub>",
        );
        let req = PubSubRequest::try_from(&el).unwrap();
        let PubSubRequest::Publish {
            node,
            items,
            payload_counts,
            options,
        } = &req
        else {
            panic!("{req:?}");
        };
        assert_eq!(node, "eu.siacs.conversations.axolotl.devicelist");
        assert_eq!(items[0].id.as_deref(), Some("current"));
        assert_eq!(payload_counts, &[1]);
        let options = options.as_ref().unwrap();
        assert_eq!(options.value("pubsub#access_model"), Some("open"));
        assert_eq!(PubSubRequest::try_from(&req.to_element()).unwrap(), req);
    }

    #[test]
    fn items_and_retract_round_trip() {
        let el = element(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'>\
               <items node='n' max_items='2'><item id='a'/></items></pubsub>",
        );
        let req = PubSubRequest::try_from(&el).unwrap();
        assert_eq!(
            req,
            PubSubRequest::Items {
                node: "n".into(),
                max_items: Some(2),
                ids: vec!["a".into()]
            }
        );
        assert_eq!(PubSubRequest::try_from(&req.to_element()).unwrap(), req);
        let retract = PubSubRequest::Retract {
            node: "n".into(),
            notify: true,
            ids: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            PubSubRequest::try_from(&retract.to_element()).unwrap(),
            retract
        );
    }

    #[test]
    fn missing_node_and_item_have_their_conditions() {
        let el = element("<pubsub xmlns='http://jabber.org/protocol/pubsub'><items/></pubsub>");
        let e = StanzaError::from(PubSubRequest::try_from(&el).unwrap_err());
        assert_eq!(e.condition, DefinedCondition::BadRequest);
        assert_eq!(error_app(&e).as_deref(), Some("nodeid-required"));
        let el = element(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><retract node='n'/></pubsub>",
        );
        let e = StanzaError::from(PubSubRequest::try_from(&el).unwrap_err());
        assert_eq!(error_app(&e).as_deref(), Some("item-required"));
    }

    #[test]
    fn a_publish_options_form_of_another_type_is_invalid_options() {
        let el = element(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='n'/>\
               <publish-options><x xmlns='jabber:x:data' type='submit'>\
                 <field var='FORM_TYPE'><value>urn:other</value></field></x>\
               </publish-options></pubsub>",
        );
        let e = StanzaError::from(PubSubRequest::try_from(&el).unwrap_err());
        assert_eq!(e.condition, DefinedCondition::BadRequest);
        assert_eq!(error_app(&e).as_deref(), Some("invalid-options"));
    }

    #[test]
    fn unimplemented_actions_and_foreign_elements() {
        let el = element(
            "<pubsub xmlns='http://jabber.org/protocol/pubsub'><subscribe node='n' jid='a@b'/></pubsub>",
        );
        assert_eq!(
            PubSubRequest::try_from(&el).unwrap(),
            PubSubRequest::Other("subscribe".into())
        );
        let el = element("<query xmlns='jabber:iq:roster'/>");
        assert!(matches!(
            PubSubRequest::try_from(&el),
            Err(PubSubParseError::Payload(PayloadError::Mismatch))
        ));
        let unsupported = PubSubCondition::Unsupported("subscribe").to_element();
        assert_eq!(unsupported.attr("feature"), Some("subscribe"));
        assert_eq!(unsupported.ns(), NS_ERRORS);
    }
}
