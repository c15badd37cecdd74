//! RFC 6121 §2: the roster, `<query xmlns='jabber:iq:roster' ver='…'>` with `<item/>`s.
//!
//! One type serves the get, the result, the set and the push; which is meant follows from the
//! iq type. What is only valid in some of them is left to the caller, who knows which it has:
//! a set carries exactly one item (§2.3.3, [`RosterQuery::single_item`]), and in a set only a
//! `subscription` of `remove` means anything (§2.1.2.5), so `subscription` stays `None` when
//! absent rather than defaulting to `none`. The checks with their own error conditions (an empty or
//! oversized group or name is `not-acceptable`, §2.3.3) are the roster module's, too.
//!
//! Items are contacts' bare JIDs: a JID with a resource is refused (`bad-request`), one that
//! is not a JID at all is `jid-malformed`. `ask` has one defined value, `subscribe`, and
//! `approved` is an `xs:boolean` (§2.1.2.2, §2.1.2.1); other values of those two are ignored.
//! `ver` (XEP-0237 roster versioning) is opaque: an empty one in a get means "versioning
//! supported, nothing cached" and is kept as `Some("")`.

use jid::BareJid;
use xmppd_xml::Element;

use crate::ns;
use crate::payload::{PayloadError, expect, into_element, parse_bool, required_jid_attr};

/// The `subscription` attribute of an item (§2.1.2.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subscription {
    /// Neither side receives the other's presence.
    None,
    /// The user receives the contact's presence.
    To,
    /// The contact receives the user's presence.
    From,
    /// Both receive each other's presence.
    Both,
    /// In a set, remove the item; in a push, the item was removed (§2.5).
    Remove,
}

impl Subscription {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Subscription::None => "none",
            Subscription::To => "to",
            Subscription::From => "from",
            Subscription::Both => "both",
            Subscription::Remove => "remove",
        }
    }

    /// The subscription with this attribute value.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "none" => Some(Subscription::None),
            "to" => Some(Subscription::To),
            "from" => Some(Subscription::From),
            "both" => Some(Subscription::Both),
            "remove" => Some(Subscription::Remove),
            _ => None,
        }
    }
}

/// An `<item/>` of the roster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RosterItem {
    /// The contact.
    pub jid: BareJid,
    /// The user's name for the contact.
    pub name: Option<String>,
    /// The subscription, when given (absent in a client's set).
    pub subscription: Option<Subscription>,
    /// `ask='subscribe'`: the user's subscription request is pending (§2.1.2.2).
    pub ask: bool,
    /// `approved='true'`: the contact is pre-approved (§3.4).
    pub approved: bool,
    /// The groups, in order, as sent (duplicates and empty names included).
    pub groups: Vec<String>,
}

impl RosterItem {
    /// An item for `jid` with nothing else set.
    pub fn new(jid: BareJid) -> Self {
        RosterItem {
            jid,
            name: None,
            subscription: None,
            ask: false,
            approved: false,
            groups: Vec::new(),
        }
    }

    /// The `subscription='remove'` item of a removal set or push (§2.5).
    pub fn remove(jid: BareJid) -> Self {
        RosterItem {
            subscription: Some(Subscription::Remove),
            ..RosterItem::new(jid)
        }
    }

    /// The `<item/>` element: `jid`, `subscription`, `name`, `ask`, `approved`, then groups.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("item", ns::ROSTER).with_attr("jid", self.jid.as_str());
        if let Some(sub) = self.subscription {
            el.set_attr("subscription", sub.as_str());
        }
        if let Some(name) = &self.name {
            el.set_attr("name", name.as_str());
        }
        if self.ask {
            el.set_attr("ask", "subscribe");
        }
        if self.approved {
            el.set_attr("approved", "true");
        }
        for group in &self.groups {
            el.push_child(Element::new("group", ns::ROSTER).with_text(group.as_str()));
        }
        el
    }
}

impl TryFrom<&Element> for RosterItem {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "item", ns::ROSTER)?;
        let jid = required_jid_attr(el, "jid")?;
        if jid.is_full() {
            return Err(PayloadError::invalid(
                "a roster item's 'jid' is a bare JID (no resource)",
            ));
        }
        let subscription = el
            .attr("subscription")
            .map(|s| {
                Subscription::from_name(s).ok_or_else(|| {
                    PayloadError::invalid(format!(
                        "subscription is none, to, from, both or remove, not '{s}'"
                    ))
                })
            })
            .transpose()?;
        Ok(RosterItem {
            jid: jid.into_bare(),
            name: el.attr("name").map(str::to_owned),
            subscription,
            ask: el.attr("ask") == Some("subscribe"),
            approved: el.attr("approved").and_then(parse_bool) == Some(true),
            groups: el
                .children()
                .filter(|c| c.is("group", ns::ROSTER))
                .map(Element::text)
                .collect(),
        })
    }
}

/// A `<query xmlns='jabber:iq:roster'/>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RosterQuery {
    /// The roster version (XEP-0237): the client's cached one in a get, the current one in a
    /// result or push.
    pub ver: Option<String>,
    /// The items.
    pub items: Vec<RosterItem>,
}

impl RosterQuery {
    /// The one item of a roster set; anything else is `bad-request` (§2.3.3).
    pub fn single_item(&self) -> Result<&RosterItem, PayloadError> {
        match self.items.as_slice() {
            [item] => Ok(item),
            _ => Err(PayloadError::invalid(
                "a roster set carries exactly one <item/>",
            )),
        }
    }

    /// The `<query/>` with its items.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("query", ns::ROSTER);
        if let Some(ver) = &self.ver {
            el.set_attr("ver", ver.as_str());
        }
        for item in &self.items {
            el.push_child(item.to_element());
        }
        el
    }
}

impl TryFrom<&Element> for RosterQuery {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "query", ns::ROSTER)?;
        Ok(RosterQuery {
            ver: el.attr("ver").map(str::to_owned),
            items: el
                .children()
                .filter(|c| c.is("item", ns::ROSTER))
                .map(RosterItem::try_from)
                .collect::<Result<_, _>>()?,
        })
    }
}

into_element!(RosterItem, RosterQuery);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::element;

    fn bare(s: &str) -> BareJid {
        BareJid::new(s).unwrap()
    }

    fn parse(xml: &str) -> Result<RosterQuery, PayloadError> {
        RosterQuery::try_from(&element(xml))
    }

    #[test]
    fn parses_a_roster_result() {
        // An RFC 6121 §2.1.4 roster result, abridged.
        let roster = parse(
            "<query xmlns='jabber:iq:roster' ver='ver11'>\
             <item jid='romeo@example.net' name='Romeo' subscription='both'>\
               <group>Friends</group></item>\
             <item jid='mercutio@example.com' name='Mercutio' subscription='from'/>\
             <item jid='benvolio@example.net' subscription='none' ask='subscribe' \
               approved='true'/></query>",
        )
        .unwrap();
        assert_eq!(roster.ver.as_deref(), Some("ver11"));
        assert_eq!(roster.items.len(), 3);
        let romeo = &roster.items[0];
        assert_eq!(romeo.jid, bare("romeo@example.net"));
        assert_eq!(romeo.name.as_deref(), Some("Romeo"));
        assert_eq!(romeo.subscription, Some(Subscription::Both));
        assert_eq!(romeo.groups, ["Friends"]);
        assert!(!romeo.ask && !romeo.approved);
        let benvolio = &roster.items[2];
        assert!(benvolio.ask && benvolio.approved);
        assert!(roster.single_item().is_err());
    }

    #[test]
    fn parses_sets_gets_and_removals() {
        let set = parse(
            "<query xmlns='jabber:iq:roster'><item jid='Nurse@Example.com' name='Nurse'>\
             <group>Servants</group><group>Servants</group><group></group></item></query>",
        )
        .unwrap();
        let item = set.single_item().unwrap();
        assert_eq!(item.jid, bare("nurse@example.com"));
        assert_eq!(item.subscription, None);
        // §2.3.3's checks on groups are the caller's: what was sent is kept.
        assert_eq!(item.groups, ["Servants", "Servants", ""]);
        let remove = parse(
            "<query xmlns='jabber:iq:roster'>\
             <item jid='nurse@example.com' subscription='remove'/></query>",
        )
        .unwrap();
        assert_eq!(
            remove.single_item(),
            Ok(&RosterItem::remove(bare("nurse@example.com")))
        );
        let get = parse("<query xmlns='jabber:iq:roster' ver=''/>").unwrap();
        assert_eq!(get.ver.as_deref(), Some(""));
        assert!(get.items.is_empty());
        assert!(matches!(get.single_item(), Err(PayloadError::Invalid(_))));
    }

    #[test]
    fn serialises_exactly_and_round_trips() {
        let item = RosterItem {
            name: Some("Romeo".into()),
            subscription: Some(Subscription::To),
            ask: true,
            groups: vec!["Friends".into()],
            ..RosterItem::new(bare("romeo@example.net"))
        };
        assert_eq!(
            item.to_element().to_string(),
            "<item xmlns=\"jabber:iq:roster\" jid=\"romeo@example.net\" subscription=\"to\" \
             name=\"Romeo\" ask=\"subscribe\"><group>Friends</group></item>"
        );
        let push = RosterQuery {
            ver: Some("ver34".into()),
            items: vec![item, RosterItem::remove(bare("nurse@example.com"))],
        };
        assert_eq!(
            Element::from(&push).to_string(),
            "<query xmlns=\"jabber:iq:roster\" ver=\"ver34\">\
             <item jid=\"romeo@example.net\" subscription=\"to\" name=\"Romeo\" \
             ask=\"subscribe\"><group>Friends</group></item>\
             <item jid=\"nurse@example.com\" subscription=\"remove\"/></query>"
        );
        assert_eq!(RosterQuery::try_from(&push.to_element()), Ok(push));
        let approved = RosterItem {
            approved: true,
            ..RosterItem::new(bare("example.org"))
        };
        assert_eq!(
            RosterItem::try_from(&Element::from(&approved)),
            Ok(approved)
        );
    }

    #[test]
    fn unknown_children_and_attributes_are_ignored() {
        let roster = parse(
            "<query xmlns='jabber:iq:roster' extra='1'><unknown/>\
             <item jid='a@b' ask='unsubscribe' approved='maybe' x='y'>\
             <note xmlns='urn:example'>hi</note></item></query>",
        )
        .unwrap();
        assert_eq!(roster.items, [RosterItem::new(bare("a@b"))]);
    }

    #[test]
    fn bad_items_are_refused() {
        let item = |attrs: &str| {
            parse(&format!(
                "<query xmlns='jabber:iq:roster'><item {attrs}/></query>"
            ))
        };
        assert!(matches!(item("name='x'"), Err(PayloadError::Invalid(t)) if t.contains("'jid'")));
        assert!(matches!(item("jid='a@b/r'"), Err(PayloadError::Invalid(t)) if t.contains("bare")));
        assert!(matches!(
            item("jid='@@'"),
            Err(PayloadError::JidMalformed(_))
        ));
        assert!(matches!(
            item("jid='a@b' subscription='pending'"),
            Err(PayloadError::Invalid(t)) if t.contains("'pending'")
        ));
    }

    #[test]
    fn other_elements_are_a_mismatch() {
        assert_eq!(
            parse("<query xmlns='jabber:iq:private'/>"),
            Err(PayloadError::Mismatch)
        );
        let item = element("<item xmlns='http://jabber.org/protocol/disco#items' jid='a@b'/>");
        assert_eq!(RosterItem::try_from(&item), Err(PayloadError::Mismatch));
    }
}
