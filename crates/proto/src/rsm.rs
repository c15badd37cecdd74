//! XEP-0059: Result Set Management.
//!
//! One element, `<set xmlns='http://jabber.org/protocol/rsm'>`, asks for a page inside a
//! wrapper query ([`SetQuery`]: `max`, `after`, `before`, `index`) and describes the page
//! returned ([`SetResult`]: `first` with its `index`, `last`, `count`). Which of the two a
//! `<set/>` is follows from the iq type, so both types read the same element and ignore the
//! other's children.
//!
//! Subtle points:
//! - An empty `<before/>` asks for the last page (§2.5): [`Before::LastPage`].
//! - Without `<after/>` the page starts before the first item (§2.2); an empty `<after/>`
//!   names no item, so we read it the same way.
//! - `max` `0` asks only for the count (§2.7).
//! - A page without items has neither `<first/>` nor `<last/>` (§2.2).

use xmppd_xml::Element;

use crate::ns;
use crate::payload::{PayloadError, expect, into_element, number, number_attr};

/// Where a requested page ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Before {
    /// An empty `<before/>`: the last page of the set (§2.5).
    LastPage,
    /// The page ending just before the item with this UID (§2.3).
    Item(String),
}

/// A `<set/>` in a request: which page to return.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetQuery {
    /// The most items to return (`0`: only the count).
    pub max: Option<usize>,
    /// Return the items after the one with this UID.
    pub after: Option<String>,
    /// Return the items before the one with this UID, or the last page.
    pub before: Option<Before>,
    /// Return the page starting at this position (§2.6).
    pub index: Option<usize>,
}

/// A `<set/>` in a response: which page was returned.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetResult {
    /// The UID of the first item of the page.
    pub first: Option<String>,
    /// The position of the first item in the whole set (the `index` of `<first/>`).
    pub first_index: Option<usize>,
    /// The UID of the last item of the page.
    pub last: Option<String>,
    /// How many items the whole set has (may be approximate).
    pub count: Option<usize>,
}

fn rsm_text(name: &str, text: &str) -> Element {
    Element::new(name, ns::RSM).with_text(text)
}

fn rsm_number(name: &str, n: usize) -> Element {
    rsm_text(name, &n.to_string())
}

/// The text of child `name` when present and not blank.
fn uid(el: &Element, name: &str) -> Option<String> {
    el.child(name, ns::RSM)
        .map(Element::text)
        .filter(|t| !t.trim().is_empty())
}

/// Child `name` as a number, if present.
fn child_number(el: &Element, name: &str) -> Result<Option<usize>, PayloadError> {
    el.child(name, ns::RSM).map(number).transpose()
}

impl SetQuery {
    /// A request for at most `max` items from the start of the set.
    pub fn max(max: usize) -> Self {
        SetQuery {
            max: Some(max),
            ..SetQuery::default()
        }
    }

    /// The `<set/>` among the children of a wrapper query, if there is one.
    pub fn find_in(query: &Element) -> Result<Option<SetQuery>, PayloadError> {
        query
            .child("set", ns::RSM)
            .map(SetQuery::try_from)
            .transpose()
    }

    /// The `<set/>` element: max, after, before, index.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("set", ns::RSM);
        if let Some(max) = self.max {
            el.push_child(rsm_number("max", max));
        }
        if let Some(after) = &self.after {
            el.push_child(rsm_text("after", after));
        }
        match &self.before {
            None => {}
            Some(Before::LastPage) => el.push_child(Element::new("before", ns::RSM)),
            Some(Before::Item(uid)) => el.push_child(rsm_text("before", uid)),
        }
        if let Some(index) = self.index {
            el.push_child(rsm_number("index", index));
        }
        el
    }
}

impl TryFrom<&Element> for SetQuery {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "set", ns::RSM)?;
        let before = el.child("before", ns::RSM).map(|b| {
            let text = b.text();
            if text.trim().is_empty() {
                Before::LastPage
            } else {
                Before::Item(text)
            }
        });
        Ok(SetQuery {
            max: child_number(el, "max")?,
            after: uid(el, "after"),
            before,
            index: child_number(el, "index")?,
        })
    }
}

impl SetResult {
    /// The description of an empty page of a set of `count` items.
    pub fn empty(count: usize) -> Self {
        SetResult {
            count: Some(count),
            ..SetResult::default()
        }
    }

    /// The `<set/>` among the children of a wrapper query, if there is one.
    pub fn find_in(query: &Element) -> Result<Option<SetResult>, PayloadError> {
        query
            .child("set", ns::RSM)
            .map(SetResult::try_from)
            .transpose()
    }

    /// The `<set/>` element: first (with its index), last, count.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("set", ns::RSM);
        if let Some(first) = &self.first {
            let mut f = rsm_text("first", first);
            if let Some(index) = self.first_index {
                f.set_attr("index", index.to_string());
            }
            el.push_child(f);
        }
        if let Some(last) = &self.last {
            el.push_child(rsm_text("last", last));
        }
        if let Some(count) = self.count {
            el.push_child(rsm_number("count", count));
        }
        el
    }
}

impl TryFrom<&Element> for SetResult {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "set", ns::RSM)?;
        let first = el.child("first", ns::RSM);
        Ok(SetResult {
            first: first.map(Element::text),
            first_index: first
                .map(|f| number_attr(f, "index"))
                .transpose()?
                .flatten(),
            last: el.child("last", ns::RSM).map(Element::text),
            count: child_number(el, "count")?,
        })
    }
}

into_element!(SetQuery, SetResult);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::element;

    fn query(xml: &str) -> Result<SetQuery, PayloadError> {
        SetQuery::try_from(&element(xml))
    }

    fn result(xml: &str) -> Result<SetResult, PayloadError> {
        SetResult::try_from(&element(xml))
    }

    #[test]
    fn parses_the_xep_requests() {
        let rsm = "xmlns='http://jabber.org/protocol/rsm'";
        assert_eq!(
            query(&format!(
                "<set {rsm}><max>10</max><after>peterpan@neverland.lit</after></set>"
            )),
            Ok(SetQuery {
                max: Some(10),
                after: Some("peterpan@neverland.lit".into()),
                ..SetQuery::default()
            })
        );
        assert_eq!(
            query(&format!(
                "<set {rsm}><max>10</max><before>peter@pixyland.org</before></set>"
            )),
            Ok(SetQuery {
                max: Some(10),
                before: Some(Before::Item("peter@pixyland.org".into())),
                ..SetQuery::default()
            })
        );
        assert_eq!(
            query(&format!("<set {rsm}><max>10</max><before/></set>")),
            Ok(SetQuery {
                max: Some(10),
                before: Some(Before::LastPage),
                ..SetQuery::default()
            })
        );
        assert_eq!(
            query(&format!("<set {rsm}><max>10</max><index>371</index></set>")),
            Ok(SetQuery {
                max: Some(10),
                index: Some(371),
                ..SetQuery::default()
            })
        );
        assert_eq!(
            query(&format!("<set {rsm}><max>0</max><after/></set>")),
            Ok(SetQuery::max(0))
        );
    }

    #[test]
    fn parses_the_xep_responses() {
        let page = result(
            "<set xmlns='http://jabber.org/protocol/rsm'>\
             <first index='10'>peter@pixyland.org</first><last>peter@rabbit.lit</last>\
             <count>800</count></set>",
        )
        .unwrap();
        assert_eq!(page.first.as_deref(), Some("peter@pixyland.org"));
        assert_eq!(page.first_index, Some(10));
        assert_eq!(page.last.as_deref(), Some("peter@rabbit.lit"));
        assert_eq!(page.count, Some(800));
        let empty = result("<set xmlns='http://jabber.org/protocol/rsm'><count>790</count></set>");
        assert_eq!(empty, Ok(SetResult::empty(790)));
    }

    #[test]
    fn serialises_exactly_and_round_trips() {
        let q = SetQuery {
            max: Some(10),
            after: Some("a".into()),
            before: Some(Before::LastPage),
            index: Some(3),
        };
        assert_eq!(
            q.to_element().to_string(),
            "<set xmlns=\"http://jabber.org/protocol/rsm\"><max>10</max><after>a</after>\
             <before/><index>3</index></set>"
        );
        assert_eq!(SetQuery::try_from(&Element::from(&q)), Ok(q));
        let r = SetResult {
            first: Some("f".into()),
            first_index: Some(0),
            last: Some("l".into()),
            count: Some(2),
        };
        assert_eq!(
            r.to_element().to_string(),
            "<set xmlns=\"http://jabber.org/protocol/rsm\"><first index=\"0\">f</first>\
             <last>l</last><count>2</count></set>"
        );
        assert_eq!(SetResult::try_from(&Element::from(&r)), Ok(r));
    }

    #[test]
    fn unknown_children_are_ignored_and_the_set_is_found_in_its_wrapper() {
        let wrapper = element(
            "<query xmlns='jabber:iq:search'><nick>Pete</nick>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>5</max><unknown/>\
             <future xmlns='urn:example'/></set></query>",
        );
        assert_eq!(SetQuery::find_in(&wrapper), Ok(Some(SetQuery::max(5))));
        let bare = element("<query xmlns='jabber:iq:search'/>");
        assert_eq!(SetQuery::find_in(&bare), Ok(None));
        assert_eq!(SetResult::find_in(&bare), Ok(None));
    }

    #[test]
    fn malformed_numbers_are_refused() {
        let rsm = "xmlns='http://jabber.org/protocol/rsm'";
        for bad in [
            format!("<set {rsm}><max>-1</max></set>"),
            format!("<set {rsm}><max/></set>"),
            format!("<set {rsm}><index>ten</index></set>"),
        ] {
            assert!(
                matches!(query(&bad), Err(PayloadError::Invalid(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            result(&format!("<set {rsm}><first index='x'>a</first></set>")),
            Err(PayloadError::Invalid(t)) if t.contains("index")
        ));
        assert!(matches!(
            result(&format!("<set {rsm}><count>many</count></set>")),
            Err(PayloadError::Invalid(_))
        ));
    }

    #[test]
    fn other_elements_are_a_mismatch() {
        assert_eq!(
            query("<set xmlns='urn:example'/>"),
            Err(PayloadError::Mismatch)
        );
        assert_eq!(
            result("<query xmlns='http://jabber.org/protocol/rsm'/>"),
            Err(PayloadError::Mismatch)
        );
    }
}
