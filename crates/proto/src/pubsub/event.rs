//! XEP-0060 notifications, in `http://jabber.org/protocol/pubsub#event`: items published
//! (§7.1.2), retracted (§7.2.2), the node deleted (§8.4.2) or purged (§8.5.2).

use xmppd_xml::Element;

use super::{Item, NS_EVENT};
use crate::payload::{PayloadError, expect, into_element};

/// What a notification says happened to a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// §7.1.2: items were published.
    Items(Vec<Item>),
    /// §7.2.2: items were deleted.
    Retract(Vec<String>),
    /// §8.4.2: the node was deleted.
    Delete,
    /// §8.5.2: every item was deleted.
    Purge,
}

/// An `<event xmlns='…#event'/>` notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The node.
    pub node: String,
    /// What happened.
    pub kind: EventKind,
}

impl Event {
    /// The `<event/>` element.
    pub fn to_element(&self) -> Element {
        let child = match &self.kind {
            EventKind::Items(items) => {
                let mut el = Element::new("items", NS_EVENT).with_attr("node", &self.node);
                for item in items {
                    el.push_child(item.to_element_in(NS_EVENT));
                }
                el
            }
            EventKind::Retract(ids) => {
                let mut el = Element::new("items", NS_EVENT).with_attr("node", &self.node);
                for id in ids {
                    el.push_child(Element::new("retract", NS_EVENT).with_attr("id", id));
                }
                el
            }
            EventKind::Delete => Element::new("delete", NS_EVENT).with_attr("node", &self.node),
            EventKind::Purge => Element::new("purge", NS_EVENT).with_attr("node", &self.node),
        };
        Element::new("event", NS_EVENT).with_child(child)
    }
}

impl TryFrom<&Element> for Event {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "event", NS_EVENT)?;
        let Some(child) = el.children().find(|c| c.ns() == NS_EVENT) else {
            return Err(PayloadError::invalid("<event/> is empty"));
        };
        let node = child
            .attr("node")
            .ok_or_else(|| PayloadError::invalid("an event names its node"))?
            .to_owned();
        let kind = match child.name() {
            "items" => {
                let retracts: Vec<String> = child
                    .children()
                    .filter(|c| c.is("retract", NS_EVENT))
                    .filter_map(|c| c.attr("id").map(str::to_owned))
                    .collect();
                if retracts.is_empty() {
                    EventKind::Items(
                        child
                            .children()
                            .filter(|c| c.is("item", NS_EVENT))
                            .map(Item::parse)
                            .collect(),
                    )
                } else {
                    EventKind::Retract(retracts)
                }
            }
            "delete" => EventKind::Delete,
            "purge" => EventKind::Purge,
            other => return Err(PayloadError::invalid(format!("unknown event <{other}/>"))),
        };
        Ok(Event { node, kind })
    }
}

into_element!(Event);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::element;

    #[test]
    fn events_round_trip() {
        for kind in [
            EventKind::Items(vec![Item {
                id: Some("1".into()),
                payload: Some(Element::new("tune", "http://jabber.org/protocol/tune")),
            }]),
            EventKind::Retract(vec!["1".into()]),
            EventKind::Delete,
            EventKind::Purge,
        ] {
            let event = Event {
                node: "n".into(),
                kind,
            };
            assert_eq!(Event::try_from(&event.to_element()).unwrap(), event);
        }
        let el = element("<event xmlns='http://jabber.org/protocol/pubsub#event'/>");
        assert!(Event::try_from(&el).is_err());
    }
}
