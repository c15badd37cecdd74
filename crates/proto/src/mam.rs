//! XEP-0313: Message Archive Management (`urn:xmpp:mam:2`), and the preferences of
//! XEP-0441 that share its namespace.
//!
//! The payloads a user's server reads — `<query/>` (§4: an optional data form, an RSM set and
//! the extended `<flip-page/>`), `<prefs/>` (XEP-0441 §2) — and those it writes: the form of
//! supported fields (§4.1.1.1), each `<result/>` (§4.2), `<fin/>` (§4.2.2), `<metadata/>`
//! (§5) and `<prefs/>`. The query's form fields are left as a [`DataForm`] here: which fields
//! a server supports, and what an unknown one means (`feature-not-implemented`, §4.1.1.1), is
//! the server's decision, not the parser's.

use std::time::SystemTime;

use jid::Jid;
use xmppd_xml::Element;

use crate::data_form::{DataForm, Field, FieldType, FormType};
use crate::datetime::format_datetime;
use crate::forwarded::Forwarded;
use crate::ns;
use crate::payload::{PayloadError, expect, into_element};
use crate::rsm::{SetQuery, SetResult};

/// `urn:xmpp:mam:2#extended`: `before-id`, `after-id`, `ids`, flipped pages, metadata (§7).
pub const EXTENDED: &str = "urn:xmpp:mam:2#extended";

/// `urn:xmpp:mam:2#groupchat-field`: the `include-groupchat` query field is understood (§7:
/// advertised "even if they cannot return groupchat messages").
pub const GROUPCHAT_FIELD: &str = "urn:xmpp:mam:2#groupchat-field";
/// `http://jabber.org/protocol/xdata-validate` (XEP-0122), for the open `ids` list.
pub const XDATA_VALIDATE: &str = "http://jabber.org/protocol/xdata-validate";

/// A `<query xmlns='urn:xmpp:mam:2'/>`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// `queryid`, echoed in every `<result/>`.
    pub queryid: Option<String>,
    /// `node` (pubsub archives; unused by user archives).
    pub node: Option<String>,
    /// The submitted filter form.
    pub form: Option<DataForm>,
    /// The RSM request.
    pub set: Option<SetQuery>,
    /// `<flip-page/>`: the page's results in reverse order (§4.3.3).
    pub flip_page: bool,
}

impl TryFrom<&Element> for Query {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "query", ns::MAM)?;
        let form = el
            .child("x", ns::DATA_FORMS)
            .map(DataForm::try_from)
            .transpose()?;
        Ok(Query {
            queryid: el.attr("queryid").map(str::to_owned),
            node: el.attr("node").map(str::to_owned),
            form,
            set: SetQuery::find_in(el)?,
            flip_page: el.has_child("flip-page", ns::MAM),
        })
    }
}

impl Query {
    /// The element, as a client sends it.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("query", ns::MAM);
        if let Some(q) = &self.queryid {
            el.set_attr("queryid", q.as_str());
        }
        if let Some(n) = &self.node {
            el.set_attr("node", n.as_str());
        }
        if let Some(form) = &self.form {
            el.push_child(form.to_element());
        }
        if let Some(set) = &self.set {
            el.push_child(set.to_element());
        }
        if self.flip_page {
            el.push_child(Element::new("flip-page", ns::MAM));
        }
        el
    }
}

/// The `<query/>` answering a form request (§4.1.1.1): the fields a server supports, none
/// marked required, `ids` open to any value (XEP-0122), and `include-groupchat` where it is
/// understood (a user's archive, §4.1.2).
pub fn fields_form(extended: bool, include_groupchat: bool) -> Element {
    let mut form = DataForm::new(FormType::Form)
        .with_field(Field::form_type(ns::MAM))
        .with_field(Field::new("with", FieldType::JidSingle))
        .with_field(Field::new("start", FieldType::TextSingle))
        .with_field(Field::new("end", FieldType::TextSingle));
    if extended {
        form = form
            .with_field(Field::new("before-id", FieldType::TextSingle))
            .with_field(Field::new("after-id", FieldType::TextSingle));
    }
    if include_groupchat {
        form = form.with_field(Field::new("include-groupchat", FieldType::Boolean));
    }
    let mut x = form.to_element();
    if extended {
        let validate = Element::new("validate", XDATA_VALIDATE)
            .with_attr("datatype", "xs:string")
            .with_child(Element::new("open", XDATA_VALIDATE));
        let ids = Field::new("ids", FieldType::ListMulti)
            .to_element()
            .with_child(validate);
        x.push_child(ids);
    }
    Element::new("query", ns::MAM).with_child(x)
}

/// One archived message, as a `<result/>` (§4.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedResult {
    /// The query's `queryid`.
    pub queryid: Option<String>,
    /// The archive id of the message.
    pub id: String,
    /// The message with its `<delay/>`.
    pub forwarded: Forwarded,
}

impl ArchivedResult {
    /// The element.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("result", ns::MAM).with_attr("id", self.id.as_str());
        if let Some(q) = &self.queryid {
            el.set_attr("queryid", q.as_str());
        }
        el.with_child(self.forwarded.to_element())
    }
}

impl TryFrom<&Element> for ArchivedResult {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "result", ns::MAM)?;
        let id = el
            .attr("id")
            .ok_or_else(|| PayloadError::invalid("<result/> needs an 'id'"))?;
        let forwarded = el
            .child("forwarded", ns::FORWARD)
            .ok_or_else(|| PayloadError::invalid("<result/> needs a <forwarded/>"))?;
        Ok(ArchivedResult {
            queryid: el.attr("queryid").map(str::to_owned),
            id: id.to_owned(),
            forwarded: Forwarded::try_from(forwarded)?,
        })
    }
}

/// The `<fin/>` ending a query (§4.2.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fin {
    /// Whether the results were not limited by the page size: the last page (or, paging
    /// backwards, the first).
    pub complete: bool,
    /// The RSM answer: first, last, count.
    pub set: SetResult,
}

impl Fin {
    /// The element; `stable='true'`, since a committed archive does not change under a
    /// query (§4.2.2).
    pub fn to_element(&self) -> Element {
        Element::new("fin", ns::MAM)
            .with_attr("complete", if self.complete { "true" } else { "false" })
            .with_attr("stable", "true")
            .with_child(self.set.to_element())
    }
}

impl TryFrom<&Element> for Fin {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "fin", ns::MAM)?;
        Ok(Fin {
            complete: el
                .attr("complete")
                .is_some_and(|c| crate::payload::parse_bool(c) == Some(true)),
            set: SetResult::find_in(el)?.unwrap_or_default(),
        })
    }
}

/// The first or last message of an archive (§5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bound {
    /// Its archive id.
    pub id: String,
    /// When it was archived.
    pub timestamp: SystemTime,
}

/// `<metadata/>` (§5): empty for an empty archive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Metadata {
    /// The oldest message, and the newest.
    pub bounds: Option<(Bound, Bound)>,
}

impl Metadata {
    /// The element.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("metadata", ns::MAM);
        if let Some((start, end)) = &self.bounds {
            for (name, b) in [("start", start), ("end", end)] {
                el.push_child(
                    Element::new(name, ns::MAM)
                        .with_attr("id", b.id.as_str())
                        .with_attr("timestamp", format_datetime(b.timestamp)),
                );
            }
        }
        el
    }
}

/// The `default` of the preferences (XEP-0441 §2.2.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DefaultPolicy {
    /// Every message is archived.
    #[default]
    Always,
    /// No message is archived.
    Never,
    /// Messages with contacts in the user's roster are archived.
    Roster,
}

impl DefaultPolicy {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            DefaultPolicy::Always => "always",
            DefaultPolicy::Never => "never",
            DefaultPolicy::Roster => "roster",
        }
    }

    /// From the attribute value.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "always" => Some(DefaultPolicy::Always),
            "never" => Some(DefaultPolicy::Never),
            "roster" => Some(DefaultPolicy::Roster),
            _ => None,
        }
    }
}

/// `<prefs/>` (XEP-0441 §2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Prefs {
    /// What happens to JIDs in neither list.
    pub default: DefaultPolicy,
    /// Always archived (§2.2.2).
    pub always: Vec<Jid>,
    /// Never archived (§2.2.3).
    pub never: Vec<Jid>,
}

/// The `<jid/>` children of `<always/>` or `<never/>`, without duplicates.
fn jid_list(prefs: &Element, name: &str) -> Result<Vec<Jid>, PayloadError> {
    let mut jids: Vec<Jid> = Vec::new();
    let Some(list) = prefs.child(name, ns::MAM) else {
        return Ok(jids);
    };
    for j in list.children().filter(|c| c.is("jid", ns::MAM)) {
        let text = j.text();
        let jid = Jid::new(text.trim()).map_err(|e| {
            PayloadError::JidMalformed(format!("<{name}/> holds '{text}', not a JID: {e}"))
        })?;
        if !jids.contains(&jid) {
            jids.push(jid);
        }
    }
    Ok(jids)
}

impl TryFrom<&Element> for Prefs {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "prefs", ns::MAM)?;
        let default = el
            .attr("default")
            .ok_or_else(|| PayloadError::invalid("<prefs/> needs a 'default'"))?;
        let default = DefaultPolicy::from_name(default).ok_or_else(|| {
            PayloadError::invalid(format!(
                "'default' is always, never or roster, not '{default}'"
            ))
        })?;
        Ok(Prefs {
            default,
            always: jid_list(el, "always")?,
            never: jid_list(el, "never")?,
        })
    }
}

impl Prefs {
    /// The element, with both lists present (possibly empty), as XEP-0441 §2.1 shows.
    pub fn to_element(&self) -> Element {
        let list = |name: &str, jids: &[Jid]| {
            let mut l = Element::new(name, ns::MAM);
            for j in jids {
                l.push_child(Element::new("jid", ns::MAM).with_text(j.as_str()));
            }
            l
        };
        Element::new("prefs", ns::MAM)
            .with_attr("default", self.default.as_str())
            .with_child(list("always", &self.always))
            .with_child(list("never", &self.never))
    }
}

into_element!(Query, ArchivedResult, Fin, Metadata, Prefs);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rsm::Before;
    use crate::test_util::element;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn parses_a_full_query_and_round_trips() {
        let q = Query::try_from(&element(
            "<query xmlns='urn:xmpp:mam:2' queryid='f27'>\
             <x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>\
             <field var='with'><value>juliet@capulet.lit</value></field></x>\
             <set xmlns='http://jabber.org/protocol/rsm'><max>10</max><before/></set>\
             <flip-page/><unknown xmlns='urn:example'/></query>",
        ))
        .expect("parses");
        assert_eq!(q.queryid.as_deref(), Some("f27"));
        let form = q.form.as_ref().expect("form");
        assert_eq!(form.form_type(), Some(ns::MAM));
        assert_eq!(form.value("with"), Some("juliet@capulet.lit"));
        assert_eq!(q.set.as_ref().and_then(|s| s.max), Some(10));
        assert_eq!(
            q.set.as_ref().and_then(|s| s.before.clone()),
            Some(Before::LastPage)
        );
        assert!(q.flip_page);
        assert_eq!(Query::try_from(&q.to_element()), Ok(q));
        let bare = Query::try_from(&element("<query xmlns='urn:xmpp:mam:2'/>")).expect("bare");
        assert_eq!(bare, Query::default());
    }

    #[test]
    fn broken_queries_are_refused_and_others_are_a_mismatch() {
        assert!(matches!(
            Query::try_from(&element(
                "<query xmlns='urn:xmpp:mam:2'>\
                 <set xmlns='http://jabber.org/protocol/rsm'><max>ten</max></set></query>"
            )),
            Err(PayloadError::Invalid(_))
        ));
        assert!(matches!(
            Query::try_from(&element(
                "<query xmlns='urn:xmpp:mam:2'><x xmlns='jabber:x:data' type='nope'/></query>"
            )),
            Err(PayloadError::Invalid(_))
        ));
        assert_eq!(
            Query::try_from(&element("<query xmlns='urn:xmpp:mam:1'/>")),
            Err(PayloadError::Mismatch)
        );
    }

    #[test]
    fn the_fields_form_lists_the_extended_fields_with_an_open_ids_list() {
        let q = fields_form(true, false);
        let x = q.child("x", ns::DATA_FORMS).expect("form");
        let form = DataForm::try_from(x).expect("valid form");
        assert_eq!(form.kind, FormType::Form);
        assert_eq!(form.form_type(), Some(ns::MAM));
        let vars: Vec<_> = form.fields.iter().filter_map(|f| f.var.clone()).collect();
        assert_eq!(
            vars,
            [
                "FORM_TYPE",
                "with",
                "start",
                "end",
                "before-id",
                "after-id",
                "ids"
            ]
        );
        assert!(form.fields.iter().all(|f| !f.required));
        let ids = x
            .children()
            .find(|f| f.attr("var") == Some("ids"))
            .expect("ids");
        assert!(
            ids.child("validate", XDATA_VALIDATE)
                .is_some_and(|v| v.has_child("open", XDATA_VALIDATE))
        );
        let basic = DataForm::try_from(
            fields_form(false, false)
                .child("x", ns::DATA_FORMS)
                .unwrap(),
        )
        .expect("valid");
        assert_eq!(basic.fields.len(), 4);
    }

    #[test]
    fn result_and_fin_serialise_exactly_and_round_trip() {
        let message = element("<message from='a@b' to='c@d' type='chat'><body>hi</body></message>");
        let stamp = UNIX_EPOCH + Duration::from_secs(1_280_966_400);
        let r = ArchivedResult {
            queryid: Some("q1".into()),
            id: "42".into(),
            forwarded: Forwarded::new(message).with_delay(crate::delay::Delay::new(stamp)),
        };
        let el = r.to_element();
        assert_eq!(el.attr("id"), Some("42"));
        assert_eq!(el.attr("queryid"), Some("q1"));
        assert_eq!(ArchivedResult::try_from(&el), Ok(r));
        let fin = Fin {
            complete: true,
            set: SetResult {
                first: Some("1".into()),
                first_index: Some(0),
                last: Some("2".into()),
                count: Some(2),
            },
        };
        let el = fin.to_element();
        assert_eq!(el.attr("complete"), Some("true"));
        assert_eq!(el.attr("stable"), Some("true"));
        assert_eq!(Fin::try_from(&el), Ok(fin));
        assert!(matches!(
            ArchivedResult::try_from(&element("<result xmlns='urn:xmpp:mam:2' id='1'/>")),
            Err(PayloadError::Invalid(_))
        ));
    }

    #[test]
    fn metadata_is_empty_for_an_empty_archive() {
        assert_eq!(
            Metadata::default().to_element().to_string(),
            "<metadata xmlns=\"urn:xmpp:mam:2\"/>"
        );
        let at = |s| Bound {
            id: format!("{s}"),
            timestamp: UNIX_EPOCH + Duration::from_secs(s),
        };
        let el = Metadata {
            bounds: Some((at(1), at(2))),
        }
        .to_element();
        let start = el.child("start", ns::MAM).expect("start");
        assert_eq!(start.attr("id"), Some("1"));
        assert_eq!(start.attr("timestamp"), Some("1970-01-01T00:00:01.000Z"));
        assert!(el.child("end", ns::MAM).is_some());
    }

    #[test]
    fn prefs_parse_round_trip_and_refuse_bad_input() {
        let p = Prefs::try_from(&element(
            "<prefs xmlns='urn:xmpp:mam:2' default='roster'>\
             <always><jid>romeo@montague.lit</jid><jid>romeo@montague.lit</jid></always>\
             <never><jid>montague@montague.lit/x</jid></never><other/></prefs>",
        ))
        .expect("parses");
        assert_eq!(p.default, DefaultPolicy::Roster);
        assert_eq!(p.always.len(), 1);
        assert_eq!(p.never[0].as_str(), "montague@montague.lit/x");
        assert_eq!(Prefs::try_from(&p.to_element()), Ok(p));
        let empty = Prefs::try_from(&element("<prefs xmlns='urn:xmpp:mam:2' default='never'/>"))
            .expect("lists are optional");
        assert!(empty.always.is_empty() && empty.never.is_empty());
        for bad in [
            "<prefs xmlns='urn:xmpp:mam:2'/>",
            "<prefs xmlns='urn:xmpp:mam:2' default='sometimes'/>",
        ] {
            assert!(matches!(
                Prefs::try_from(&element(bad)),
                Err(PayloadError::Invalid(_))
            ));
        }
        assert!(matches!(
            Prefs::try_from(&element(
                "<prefs xmlns='urn:xmpp:mam:2' default='always'><never><jid>@@</jid></never></prefs>"
            )),
            Err(PayloadError::JidMalformed(_))
        ));
    }
}
