//! RFC 6121 §2: the `jabber:iq:roster` payload — the stored item, its XML form, and the
//! checks a roster set must pass (§2.3.3).
//!
//! Lenient in, strict out: unknown attributes and children of a client's item are ignored
//! (`ask` and `approved` are the server's to set), but what makes the request ambiguous or
//! abusive is refused: not exactly one item, a missing or malformed JID, duplicate groups
//! (`bad-request`), an oversized name or group (`not-acceptable`), and a `subscription` other
//! than `remove` (`not-allowed`: subscriptions change only through presence).

use jid::BareJid;
use serde::{Deserialize, Serialize};
use xmppd_proto::roster::{RosterQuery, Subscription};
use xmppd_proto::{DefinedCondition, StanzaError};
use xmppd_xml::Element;

use crate::state::{Sub, SubState};

/// `jabber:iq:roster`.
pub const NS_ROSTER: &str = "jabber:iq:roster";
/// Longest item name and group name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;
/// Most groups per item.
pub const MAX_GROUPS: usize = 64;

/// One contact in a user's roster, as stored (JSON in the `roster` Map store, keyed by the
/// contact's bare JID). Pending inbound requests are not here (see `store.rs`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterItem {
    /// The contact's bare JID.
    pub jid: String,
    /// The user's name for the contact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Groups, in the order given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The subscription.
    pub subscription: Sub,
    /// Pending out (`ask='subscribe'`).
    #[serde(default)]
    pub ask: bool,
    /// Pre-approved (`approved='true'`, §3.4).
    #[serde(default)]
    pub approved: bool,
}

impl RosterItem {
    /// A new item with no subscription.
    pub fn new(jid: &BareJid) -> Self {
        RosterItem {
            jid: jid.to_string(),
            name: None,
            groups: Vec::new(),
            subscription: Sub::None,
            ask: false,
            approved: false,
        }
    }

    /// The subscription state, given whether a request from the contact is pending.
    pub fn state(&self, pending_in: bool) -> SubState {
        SubState {
            sub: self.subscription,
            pending_out: self.ask,
            pending_in,
            approved: self.approved,
        }
    }

    /// Takes the visible parts of a state.
    pub fn set_state(&mut self, state: &SubState) {
        self.subscription = state.sub;
        self.ask = state.pending_out;
        self.approved = state.approved;
    }

    /// The `<item/>` element (§2.1.2).
    pub fn to_element(&self) -> Element {
        let mut item = Element::new("item", NS_ROSTER)
            .with_attr("jid", self.jid.as_str())
            .with_attr("subscription", self.subscription.as_str());
        if let Some(name) = &self.name {
            item.set_attr("name", name.as_str());
        }
        if self.ask {
            item.set_attr("ask", "subscribe");
        }
        if self.approved {
            item.set_attr("approved", "true");
        }
        for group in &self.groups {
            item.push_child(Element::new("group", NS_ROSTER).with_text(group.as_str()));
        }
        item
    }

    /// The `<item subscription='remove'/>` of a push announcing a removal.
    pub fn removed_element(jid: &BareJid) -> Element {
        Element::new("item", NS_ROSTER)
            .with_attr("jid", jid.as_str())
            .with_attr("subscription", "remove")
    }
}

/// A checked roster set (§2.3, §2.5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RosterSet {
    /// Add the item or update its name and groups.
    Update {
        /// The contact.
        jid: BareJid,
        /// Its name (`None`: no name).
        name: Option<String>,
        /// Its groups.
        groups: Vec<String>,
    },
    /// `subscription='remove'`.
    Remove {
        /// The contact.
        jid: BareJid,
    },
}

fn not_acceptable(text: &str) -> StanzaError {
    StanzaError::new(DefinedCondition::NotAcceptable).with_text(text)
}

/// Checks the `<query/>` of a roster set: parsed as [`RosterQuery`], then held to the limits
/// and rules of §2.3.3.
pub fn parse_set(query: &Element) -> Result<RosterSet, StanzaError> {
    // Subscriptions change through presence: any value but `remove`, even one the payload
    // type does not know, is `not-allowed` rather than malformed.
    let raw_subscription = query
        .children()
        .find(|c| c.is("item", NS_ROSTER))
        .and_then(|item| item.attr("subscription"));
    if raw_subscription.is_some_and(|s| s != "remove") {
        return Err(StanzaError::new(DefinedCondition::NotAllowed).with_text(
            "subscriptions change through presence; only subscription='remove' is allowed",
        ));
    }
    let query = RosterQuery::try_from(query)?;
    let item = query.single_item()?;
    let jid = item.jid.clone();
    if item.subscription == Some(Subscription::Remove) {
        return Ok(RosterSet::Remove { jid });
    }
    let name = item.name.clone();
    if name.as_ref().is_some_and(|n| n.len() > MAX_NAME_BYTES) {
        return Err(not_acceptable("the item name is too long"));
    }
    let mut groups: Vec<String> = Vec::new();
    for text in &item.groups {
        if text.is_empty() {
            return Err(not_acceptable("a group name must not be empty"));
        }
        if text.len() > MAX_NAME_BYTES {
            return Err(not_acceptable("a group name is too long"));
        }
        if groups.contains(text) {
            return Err(StanzaError::bad_request("the same group is named twice"));
        }
        groups.push(text.clone());
    }
    if groups.len() > MAX_GROUPS {
        return Err(not_acceptable("too many groups"));
    }
    Ok(RosterSet::Update { jid, name, groups })
}

/// `<query xmlns='jabber:iq:roster' [ver]>` holding `items`.
pub fn query(ver: Option<&str>, items: impl IntoIterator<Item = Element>) -> Element {
    let mut q = Element::new("query", NS_ROSTER);
    if let Some(ver) = ver {
        q.set_attr("ver", ver);
    }
    for item in items {
        q.push_child(item);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(attrs: &[(&str, &str)], groups: &[&str]) -> Element {
        let mut item = Element::new("item", NS_ROSTER);
        for (k, v) in attrs {
            item.set_attr(*k, *v);
        }
        for g in groups {
            item.push_child(Element::new("group", NS_ROSTER).with_text(*g));
        }
        item
    }

    fn set(items: Vec<Element>) -> Result<RosterSet, StanzaError> {
        parse_set(&query(None, items))
    }

    fn condition(r: Result<RosterSet, StanzaError>) -> DefinedCondition {
        r.unwrap_err().condition
    }

    #[test]
    fn update_is_parsed_and_unknown_parts_ignored() {
        let mut el = item(
            &[
                ("jid", "Juliet@Example.com"),
                ("name", "J"),
                ("ask", "subscribe"),
                ("x", "y"),
            ],
            &["Friends", "Lovers"],
        );
        el.push_child(Element::new("unknown", "urn:other"));
        assert_eq!(
            set(vec![el]).unwrap(),
            RosterSet::Update {
                jid: BareJid::new("juliet@example.com").unwrap(),
                name: Some("J".into()),
                groups: vec!["Friends".into(), "Lovers".into()],
            }
        );
    }

    #[test]
    fn remove_is_parsed() {
        let el = item(
            &[("jid", "nurse@example.com"), ("subscription", "remove")],
            &[],
        );
        assert_eq!(
            set(vec![el]).unwrap(),
            RosterSet::Remove {
                jid: BareJid::new("nurse@example.com").unwrap()
            }
        );
    }

    #[test]
    fn invalid_sets_are_refused_with_the_rfc_conditions() {
        let ok = || item(&[("jid", "a@b")], &[]);
        assert_eq!(condition(set(vec![])), DefinedCondition::BadRequest);
        assert_eq!(
            condition(set(vec![ok(), ok()])),
            DefinedCondition::BadRequest
        );
        assert_eq!(
            condition(set(vec![item(&[], &[])])),
            DefinedCondition::BadRequest
        );
        assert_eq!(
            condition(set(vec![item(&[("jid", "a@b/r")], &[])])),
            DefinedCondition::BadRequest
        );
        assert_eq!(
            condition(set(vec![item(&[("jid", "@@")], &[])])),
            DefinedCondition::JidMalformed
        );
        for sub in ["both", "none", "to", "from"] {
            let el = item(&[("jid", "a@b"), ("subscription", sub)], &[]);
            assert_eq!(
                condition(set(vec![el])),
                DefinedCondition::NotAllowed,
                "{sub}"
            );
        }
        let long = "n".repeat(MAX_NAME_BYTES + 1);
        let el = item(&[("jid", "a@b"), ("name", long.as_str())], &[]);
        assert_eq!(condition(set(vec![el])), DefinedCondition::NotAcceptable);
        let el = item(&[("jid", "a@b")], &[long.as_str()]);
        assert_eq!(condition(set(vec![el])), DefinedCondition::NotAcceptable);
        let el = item(&[("jid", "a@b")], &[""]);
        assert_eq!(condition(set(vec![el])), DefinedCondition::NotAcceptable);
        let el = item(&[("jid", "a@b")], &["g", "g"]);
        assert_eq!(condition(set(vec![el])), DefinedCondition::BadRequest);
    }

    #[test]
    fn stored_item_round_trips_and_serialises_exactly() {
        let mut it = RosterItem::new(&BareJid::new("romeo@example.net").unwrap());
        it.name = Some("Romeo".into());
        it.groups = vec!["Friends".into()];
        it.subscription = Sub::To;
        it.ask = true;
        let json = serde_json::to_vec(&it).unwrap();
        assert_eq!(serde_json::from_slice::<RosterItem>(&json).unwrap(), it);
        assert_eq!(
            String::from_utf8(it.to_element().to_bytes()).unwrap(),
            "<item xmlns=\"jabber:iq:roster\" jid=\"romeo@example.net\" subscription=\"to\" \
             name=\"Romeo\" ask=\"subscribe\"><group>Friends</group></item>"
        );
        // What a client sends back parses into the same name and groups.
        let parsed = set(vec![it.to_element()]);
        assert!(matches!(parsed, Err(e) if e.condition == DefinedCondition::NotAllowed));
    }
}
