//! XEP-0049: Private XML Storage — the payload.
//!
//! `<query xmlns='jabber:iq:private'>` holds the fragments to store (a set) or the empty
//! elements naming those to fetch (a get), each in a namespace of its own. Fragments are
//! kept whole: the server stores what it was given and gives it back.
//!
//! What §3 refuses, with `not-acceptable` (the legacy 406 of its examples, XEP-0086):
//! - a query without a child ("at least one child element with a proper namespace MUST be
//!   included");
//! - a child in a reserved namespace: §3 names those beginning with `jabber:` or
//!   `http://jabber.org/`, and `vcard-temp`; the stream-level namespaces
//!   (`http://etherx.jabber.org/…`, `urn:ietf:params:xml:ns:xmpp-…`) are refused too. A child
//!   written without `xmlns` inherits `jabber:iq:private` from the query, so it lands here:
//!   it has no namespace of its own.

use xmppd_xml::Element;

use crate::error::{DefinedCondition, StanzaError};
use crate::ns;
use crate::payload::{PayloadError, expect};

/// Namespace prefixes no fragment may be stored under (§3, and the stream's own).
const RESERVED_PREFIXES: &[&str] = &[
    "jabber:",
    "http://jabber.org/",
    "http://etherx.jabber.org/",
    "urn:ietf:params:xml:ns:xmpp-",
];

/// Whether fragments in `namespace` are refused (§3).
pub fn is_reserved(namespace: &str) -> bool {
    namespace.is_empty()
        || namespace == ns::VCARD
        || RESERVED_PREFIXES.iter().any(|p| namespace.starts_with(p))
}

/// Why a query is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrivateQueryError {
    /// The query holds no element (§3).
    #[error("the query must hold at least one element in a namespace of its own")]
    Empty,
    /// A child is in a reserved namespace, or has none of its own (§3).
    #[error("the namespace '{0}' is reserved")]
    Reserved(String),
}

impl From<PrivateQueryError> for StanzaError {
    fn from(e: PrivateQueryError) -> Self {
        StanzaError::new(DefinedCondition::NotAcceptable).with_text(e.to_string())
    }
}

/// The storage key of a fragment: `{namespace}name`, one fragment per pair.
pub fn key(fragment: &Element) -> String {
    format!("{{{}}}{}", fragment.ns(), fragment.name())
}

/// A `jabber:iq:private` query: the fragments of a set, or the elements a get names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivateQuery {
    /// The child elements, in order.
    pub items: Vec<Element>,
}

impl PrivateQuery {
    /// A query (the result of a get) holding `items`.
    pub fn new(items: Vec<Element>) -> Self {
        PrivateQuery { items }
    }

    /// Checks §3's rules: at least one child, none in a reserved namespace.
    pub fn validate(&self) -> Result<(), PrivateQueryError> {
        if self.items.is_empty() {
            return Err(PrivateQueryError::Empty);
        }
        match self.items.iter().find(|i| is_reserved(i.ns())) {
            Some(item) => Err(PrivateQueryError::Reserved(item.ns().to_owned())),
            None => Ok(()),
        }
    }

    /// The `<query/>` element.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("query", ns::PRIVATE);
        for item in &self.items {
            el.push_child(item.clone());
        }
        el
    }
}

impl TryFrom<&Element> for PrivateQuery {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "query", ns::PRIVATE)?;
        Ok(PrivateQuery {
            items: el.children().cloned().collect(),
        })
    }
}

crate::payload::into_element!(PrivateQuery);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::element as parse;

    #[test]
    fn a_set_with_two_namespaces_round_trips_and_keys_each_fragment() {
        let el = parse(
            "<query xmlns='jabber:iq:private'>\
               <exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus>\
               <storage xmlns='storage:rosternotes'><note jid='a@b'>hi</note></storage>\
             </query>",
        );
        let q = PrivateQuery::try_from(&el).unwrap();
        assert_eq!(q.validate(), Ok(()));
        let keys: Vec<String> = q.items.iter().map(key).collect();
        assert_eq!(
            keys,
            ["{exodus:prefs}exodus", "{storage:rosternotes}storage"]
        );
        assert_eq!(PrivateQuery::try_from(&q.to_element()).unwrap(), q);
    }

    #[test]
    fn reserved_namespaces_and_empty_queries_are_not_acceptable() {
        let cases = [
            (
                "<query xmlns='jabber:iq:private'/>",
                PrivateQueryError::Empty,
            ),
            (
                "<query xmlns='jabber:iq:private'><x xmlns='jabber:client'/></query>",
                PrivateQueryError::Reserved("jabber:client".into()),
            ),
            (
                "<query xmlns='jabber:iq:private'><x/></query>",
                PrivateQueryError::Reserved("jabber:iq:private".into()),
            ),
            (
                "<query xmlns='jabber:iq:private'><vCard xmlns='vcard-temp'/></query>",
                PrivateQueryError::Reserved("vcard-temp".into()),
            ),
            (
                "<query xmlns='jabber:iq:private'><a xmlns='a:b'/><s xmlns='http://etherx.jabber.org/streams'/></query>",
                PrivateQueryError::Reserved("http://etherx.jabber.org/streams".into()),
            ),
        ];
        for (xml, expected) in cases {
            let q = PrivateQuery::try_from(&parse(xml)).unwrap();
            let err = q.validate().unwrap_err();
            assert_eq!(err, expected, "{xml}");
            assert_eq!(
                StanzaError::from(err).condition,
                DefinedCondition::NotAcceptable
            );
        }
        for ns in [
            "jabber:server",
            "http://jabber.org/protocol/disco#info",
            "urn:ietf:params:xml:ns:xmpp-stanzas",
        ] {
            assert!(is_reserved(ns), "{ns}");
        }
        for ns in [
            "storage:bookmarks",
            "exodus:prefs",
            "vcard-temp:x:update",
            "urn:xmpp:bookmarks:1",
        ] {
            assert!(!is_reserved(ns), "{ns}");
        }
    }

    #[test]
    fn other_elements_are_not_mine() {
        for xml in [
            "<query xmlns='jabber:iq:roster'/>",
            "<storage xmlns='jabber:iq:private'/>",
        ] {
            assert!(
                PrivateQuery::try_from(&parse(xml))
                    .unwrap_err()
                    .is_mismatch()
            );
        }
    }
}
