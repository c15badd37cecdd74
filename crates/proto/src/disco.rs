//! XEP-0030: Service Discovery, with XEP-0128: Service Discovery Extensions.
//!
//! `<query xmlns='http://jabber.org/protocol/disco#info' node='…'/>` asks what an entity (or
//! one of its nodes) is and does; the result lists identities (category/type, §3.1), features
//! and, per XEP-0128, data forms of type `result` with more information. `disco#items` asks
//! for the entities and nodes associated with it (§4).
//!
//! Requests and results share their element; which one is meant follows from the iq type, so
//! both request and result types read the same `<query/>`. A result must mirror the request's
//! `node` (§3.2), which [`DiscoInfoQuery::reply`] and [`DiscoItemsQuery::reply`] do.
//!
//! §3.1 requires at least one identity and the `disco#info` feature in every info result, and
//! no two identities with the same category, type and `xml:lang`; those are the responder's
//! duties, so we neither enforce them on what we read nor add anything to what we write.

use jid::Jid;
use xmppd_xml::Element;

use crate::data_form::DataForm;
use crate::ns;
use crate::payload::{PayloadError, expect, into_element, required_attr, required_jid_attr};

/// An `<identity/>` of a disco#info result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The category (`server`, `client`, `conference`, …; the XMPP Registrar's list).
    pub category: String,
    /// The type within the category (`im`, `pc`, `text`, …).
    pub kind: String,
    /// A natural-language name.
    pub name: Option<String>,
    /// The language of the name (`xml:lang`).
    pub lang: Option<String>,
}

impl Identity {
    /// An identity of `category`/`kind` without a name.
    pub fn new(category: impl Into<String>, kind: impl Into<String>) -> Self {
        Identity {
            category: category.into(),
            kind: kind.into(),
            name: None,
            lang: None,
        }
    }

    /// Sets the name.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The `<identity/>` element.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("identity", ns::DISCO_INFO)
            .with_attr("category", self.category.as_str())
            .with_attr("type", self.kind.as_str());
        if let Some(name) = &self.name {
            el.set_attr("name", name.as_str());
        }
        if let Some(lang) = &self.lang {
            el.set_attr("xml:lang", lang.as_str());
        }
        el
    }
}

/// A required attribute that the schema says may not be empty.
fn non_empty_attr<'a>(el: &'a Element, attr: &str) -> Result<&'a str, PayloadError> {
    match required_attr(el, attr)? {
        "" => Err(PayloadError::invalid(format!(
            "'{attr}' of <{}/> must not be empty",
            el.name()
        ))),
        value => Ok(value),
    }
}

impl TryFrom<&Element> for Identity {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "identity", ns::DISCO_INFO)?;
        Ok(Identity {
            category: non_empty_attr(el, "category")?.to_owned(),
            kind: non_empty_attr(el, "type")?.to_owned(),
            name: el.attr("name").map(str::to_owned),
            lang: el.attr("xml:lang").map(str::to_owned),
        })
    }
}

/// The `node` attribute of a `<query/>`, read from and written to `el`.
fn node_of(el: &Element) -> Option<String> {
    el.attr("node").map(str::to_owned)
}

fn query(ns: &str, node: Option<&String>) -> Element {
    let mut el = Element::new("query", ns);
    if let Some(node) = node {
        el.set_attr("node", node.as_str());
    }
    el
}

/// A disco#info request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiscoInfoQuery {
    /// The node asked about, if not the entity itself (§3.2).
    pub node: Option<String>,
}

impl DiscoInfoQuery {
    /// An empty result for this request, with its node mirrored (§3.2).
    pub fn reply(&self) -> DiscoInfoResult {
        DiscoInfoResult {
            node: self.node.clone(),
            ..DiscoInfoResult::default()
        }
    }

    /// The empty `<query/>`.
    pub fn to_element(&self) -> Element {
        query(ns::DISCO_INFO, self.node.as_ref())
    }
}

impl TryFrom<&Element> for DiscoInfoQuery {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "query", ns::DISCO_INFO)?;
        Ok(DiscoInfoQuery { node: node_of(el) })
    }
}

/// A disco#info result.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiscoInfoResult {
    /// The node described (mirrored from the request).
    pub node: Option<String>,
    /// What the entity is.
    pub identities: Vec<Identity>,
    /// The `var` of each feature it supports.
    pub features: Vec<String>,
    /// Extended information as data forms (XEP-0128), usually with a `FORM_TYPE`.
    pub extensions: Vec<DataForm>,
}

impl DiscoInfoResult {
    /// Whether `var` is among the features.
    pub fn has_feature(&self, var: &str) -> bool {
        self.features.iter().any(|f| f == var)
    }

    /// The extension whose `FORM_TYPE` is `form_type`.
    pub fn extension(&self, form_type: &str) -> Option<&DataForm> {
        self.extensions
            .iter()
            .find(|x| x.form_type() == Some(form_type))
    }

    /// The `<query/>`: identities, features, then extensions.
    pub fn to_element(&self) -> Element {
        let mut el = query(ns::DISCO_INFO, self.node.as_ref());
        for identity in &self.identities {
            el.push_child(identity.to_element());
        }
        for var in &self.features {
            el.push_child(Element::new("feature", ns::DISCO_INFO).with_attr("var", var.as_str()));
        }
        for form in &self.extensions {
            el.push_child(form.to_element());
        }
        el
    }
}

impl TryFrom<&Element> for DiscoInfoResult {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "query", ns::DISCO_INFO)?;
        let mut result = DiscoInfoQuery { node: node_of(el) }.reply();
        for child in el.children() {
            match (child.name(), child.ns()) {
                ("identity", ns::DISCO_INFO) => result.identities.push(Identity::try_from(child)?),
                ("feature", ns::DISCO_INFO) => {
                    result
                        .features
                        .push(required_attr(child, "var")?.to_owned());
                }
                ("x", ns::DATA_FORMS) => result.extensions.push(DataForm::try_from(child)?),
                _ => {}
            }
        }
        Ok(result)
    }
}

/// An `<item/>` of a disco#items result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoItem {
    /// The entity.
    pub jid: Jid,
    /// A node of that entity, for items that are not addressable as JIDs alone (§4.2).
    pub node: Option<String>,
    /// A natural-language name.
    pub name: Option<String>,
}

impl DiscoItem {
    /// An item for `jid`, without node or name.
    pub fn new(jid: Jid) -> Self {
        DiscoItem {
            jid,
            node: None,
            name: None,
        }
    }

    /// The `<item/>` element.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("item", ns::DISCO_ITEMS).with_attr("jid", self.jid.as_str());
        if let Some(node) = &self.node {
            el.set_attr("node", node.as_str());
        }
        if let Some(name) = &self.name {
            el.set_attr("name", name.as_str());
        }
        el
    }
}

impl TryFrom<&Element> for DiscoItem {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "item", ns::DISCO_ITEMS)?;
        Ok(DiscoItem {
            jid: required_jid_attr(el, "jid")?,
            node: el.attr("node").map(str::to_owned),
            name: el.attr("name").map(str::to_owned),
        })
    }
}

/// A disco#items request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiscoItemsQuery {
    /// The node whose items are asked for, if not the entity's own (§4.2).
    pub node: Option<String>,
}

impl DiscoItemsQuery {
    /// An empty result for this request, with its node mirrored.
    pub fn reply(&self) -> DiscoItemsResult {
        DiscoItemsResult {
            node: self.node.clone(),
            items: Vec::new(),
        }
    }

    /// The empty `<query/>`.
    pub fn to_element(&self) -> Element {
        query(ns::DISCO_ITEMS, self.node.as_ref())
    }
}

impl TryFrom<&Element> for DiscoItemsQuery {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "query", ns::DISCO_ITEMS)?;
        Ok(DiscoItemsQuery { node: node_of(el) })
    }
}

/// A disco#items result (empty when there are no public items, §4.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DiscoItemsResult {
    /// The node listed (mirrored from the request).
    pub node: Option<String>,
    /// The items.
    pub items: Vec<DiscoItem>,
}

impl DiscoItemsResult {
    /// The `<query/>` with its items.
    pub fn to_element(&self) -> Element {
        let mut el = query(ns::DISCO_ITEMS, self.node.as_ref());
        for item in &self.items {
            el.push_child(item.to_element());
        }
        el
    }
}

impl TryFrom<&Element> for DiscoItemsResult {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "query", ns::DISCO_ITEMS)?;
        Ok(DiscoItemsResult {
            node: node_of(el),
            items: el
                .children()
                .filter(|c| c.is("item", ns::DISCO_ITEMS))
                .map(DiscoItem::try_from)
                .collect::<Result<_, _>>()?,
        })
    }
}

into_element!(
    Identity,
    DiscoInfoQuery,
    DiscoInfoResult,
    DiscoItem,
    DiscoItemsQuery,
    DiscoItemsResult,
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_form::{Field, FormType};
    use crate::test_util::element;

    // XEP-0030 Example 2, abridged, with the XEP-0128 extension of its Example 1.
    const INFO: &str = "<query xmlns='http://jabber.org/protocol/disco#info'>\
        <identity category='conference' type='text' name='Play-Specific Chatrooms'/>\
        <identity category='directory' type='chatroom' name='Salles' xml:lang='fr'/>\
        <feature var='http://jabber.org/protocol/disco#info'/>\
        <feature var='http://jabber.org/protocol/muc'/>\
        <x xmlns='jabber:x:data' type='result'>\
          <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/network/serverinfo</value></field>\
          <field var='c2s_port'><value>5222</value></field></x>\
      </query>";

    #[test]
    fn parses_an_info_result() {
        let info = DiscoInfoResult::try_from(&element(INFO)).unwrap();
        assert_eq!(info.node, None);
        assert_eq!(
            info.identities[0],
            Identity::new("conference", "text").with_name("Play-Specific Chatrooms")
        );
        assert_eq!(info.identities[1].lang.as_deref(), Some("fr"));
        assert!(info.has_feature("http://jabber.org/protocol/muc"));
        assert!(!info.has_feature("urn:xmpp:ping"));
        let serverinfo = info
            .extension("http://jabber.org/network/serverinfo")
            .unwrap();
        assert_eq!(serverinfo.value("c2s_port"), Some("5222"));
    }

    #[test]
    fn parses_requests_and_mirrors_their_node() {
        let el = element(
            "<query xmlns='http://jabber.org/protocol/disco#info' \
             node='http://jabber.org/protocol/commands'/>",
        );
        let q = DiscoInfoQuery::try_from(&el).unwrap();
        assert_eq!(
            q.node.as_deref(),
            Some("http://jabber.org/protocol/commands")
        );
        assert_eq!(q.reply().node, q.node);
        assert_eq!(q.to_element(), el);
        let el = element("<query xmlns='http://jabber.org/protocol/disco#items' node='music'/>");
        let q = DiscoItemsQuery::try_from(&el).unwrap();
        assert_eq!(q.reply().node.as_deref(), Some("music"));
        assert_eq!(Element::from(&q), el);
    }

    #[test]
    fn serialises_exactly_and_round_trips() {
        let info = DiscoInfoResult::try_from(&element(INFO)).unwrap();
        assert_eq!(
            DiscoInfoResult::try_from(&info.to_element()).as_ref(),
            Ok(&info)
        );
        let mut built = DiscoInfoQuery::default().reply();
        built
            .identities
            .push(Identity::new("server", "im").with_name("xmppd"));
        built.features.push(ns::DISCO_INFO.to_owned());
        built
            .extensions
            .push(DataForm::new(FormType::Result).with_field(Field::form_type("urn:example")));
        assert_eq!(
            built.to_element().to_string(),
            "<query xmlns=\"http://jabber.org/protocol/disco#info\">\
             <identity category=\"server\" type=\"im\" name=\"xmppd\"/>\
             <feature var=\"http://jabber.org/protocol/disco#info\"/>\
             <x xmlns=\"jabber:x:data\" type=\"result\"><field var=\"FORM_TYPE\" \
             type=\"hidden\"><value>urn:example</value></field></x></query>"
        );
        assert_eq!(DiscoInfoResult::try_from(&Element::from(&built)), Ok(built));

        let mut items = DiscoItemsQuery::default().reply();
        items
            .items
            .push(DiscoItem::new(Jid::new("conference.capulet.lit").unwrap()));
        items.items.push(DiscoItem {
            jid: Jid::new("catalog.shakespeare.lit").unwrap(),
            node: Some("books".into()),
            name: Some("Books by and about Shakespeare".into()),
        });
        assert_eq!(
            items.to_element().to_string(),
            "<query xmlns=\"http://jabber.org/protocol/disco#items\">\
             <item jid=\"conference.capulet.lit\"/>\
             <item jid=\"catalog.shakespeare.lit\" node=\"books\" \
             name=\"Books by and about Shakespeare\"/></query>"
        );
        assert_eq!(
            DiscoItemsResult::try_from(&Element::from(&items)),
            Ok(items)
        );
    }

    #[test]
    fn unknown_children_are_ignored() {
        let info = DiscoInfoResult::try_from(&element(
            "<query xmlns='http://jabber.org/protocol/disco#info' extra='1'>\
             <identity category='client' type='pc' extra='2'/>\
             <unknown/><x xmlns='jabber:x:oob'/><feature var='a'/></query>",
        ))
        .unwrap();
        assert_eq!(info.identities.len(), 1);
        assert_eq!(info.features, ["a"]);
        assert!(info.extensions.is_empty());
        let items = DiscoItemsResult::try_from(&element(
            "<query xmlns='http://jabber.org/protocol/disco#items'>\
             <item jid='a.example'><unknown xmlns='urn:example'/></item><other/></query>",
        ))
        .unwrap();
        assert_eq!(
            items.items,
            [DiscoItem::new(Jid::new("a.example").unwrap())]
        );
    }

    #[test]
    fn missing_required_attributes_are_refused() {
        let info = |body: &str| {
            DiscoInfoResult::try_from(&element(&format!(
                "<query xmlns='http://jabber.org/protocol/disco#info'>{body}</query>"
            )))
        };
        for (body, what) in [
            ("<identity type='pc'/>", "'category'"),
            ("<identity category='client'/>", "'type'"),
            ("<identity category='' type='pc'/>", "'category'"),
            ("<feature/>", "'var'"),
            ("<x xmlns='jabber:x:data'/>", "'type'"),
        ] {
            assert!(
                matches!(info(body), Err(PayloadError::Invalid(t)) if t.contains(what)),
                "{body}"
            );
        }
        let items = |body: &str| {
            DiscoItemsResult::try_from(&element(&format!(
                "<query xmlns='http://jabber.org/protocol/disco#items'>{body}</query>"
            )))
        };
        assert!(
            matches!(items("<item name='x'/>"), Err(PayloadError::Invalid(t)) if t.contains("'jid'"))
        );
        assert!(matches!(
            items("<item jid='a@b@c'/>"),
            Err(PayloadError::JidMalformed(_))
        ));
    }

    #[test]
    fn other_elements_are_a_mismatch() {
        let items = element("<query xmlns='http://jabber.org/protocol/disco#items'/>");
        let info = element("<query xmlns='http://jabber.org/protocol/disco#info'/>");
        assert_eq!(
            DiscoInfoQuery::try_from(&items),
            Err(PayloadError::Mismatch)
        );
        assert_eq!(
            DiscoInfoResult::try_from(&items),
            Err(PayloadError::Mismatch)
        );
        assert_eq!(
            DiscoItemsQuery::try_from(&info),
            Err(PayloadError::Mismatch)
        );
        assert_eq!(
            DiscoItemsResult::try_from(&info),
            Err(PayloadError::Mismatch)
        );
        let ping = element("<ping xmlns='urn:xmpp:ping'/>");
        assert_eq!(Identity::try_from(&ping), Err(PayloadError::Mismatch));
        assert_eq!(DiscoItem::try_from(&ping), Err(PayloadError::Mismatch));
    }
}
