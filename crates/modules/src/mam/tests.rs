//! Unit tests of the archiving rules, the stanza-id rewrite, the query form and the settings.

use jid::Jid;
use xmppd_proto::data_form::{DataForm, Field, FieldType, FormType};
use xmppd_proto::{DefinedCondition, Stanza, StanzaError, ns};
use xmppd_xml::Element;

use super::query::{Filter, QueryError, parse_form};
use super::{MamSettings, rules};

/// One element as a client stream would carry it.
fn element(xml: &str) -> Element {
    xmppd_im::parse_stored(xml.as_bytes()).unwrap_or_else(|| panic!("not one element: {xml}"))
}

/// XEP-0313 §8.1.1 and XEP-0334 §4, row by row.
#[test]
fn which_messages_are_archived() {
    let body = "<body>hi</body>";
    let rows = [
        (format!("<message type='chat'>{body}</message>"), true),
        (format!("<message>{body}</message>"), true),
        (format!("<message type='normal'>{body}</message>"), true),
        (format!("<message type='bogus'>{body}</message>"), true),
        (format!("<message type='groupchat'>{body}</message>"), false),
        (format!("<message type='headline'>{body}</message>"), false),
        (format!("<message type='error'>{body}</message>"), false),
        ("<message type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>".into(), false),
        ("<message type='chat'><received xmlns='urn:xmpp:receipts' id='x'/></message>".into(), false),
        ("<message type='chat'><encrypted xmlns='eu.siacs.conversations.axolotl'/></message>".into(), true),
        ("<message type='chat'><encrypted xmlns='urn:xmpp:omemo:2'/></message>".into(), true),
        ("<message type='chat'><store xmlns='urn:xmpp:hints'/></message>".into(), true),
        (format!("<message type='chat'>{body}<no-store xmlns='urn:xmpp:hints'/></message>"), false),
        (format!("<message type='chat'>{body}<no-permanent-store xmlns='urn:xmpp:hints'/></message>"), false),
        (format!("<message type='chat'><no-copy xmlns='urn:xmpp:hints'/>{body}</message>"), true),
        ("<message type='chat'><body xmlns='urn:example'>x</body></message>".into(), false),
    ];
    for (xml, archived) in rows {
        assert_eq!(rules::archivable(&element(&xml)), archived, "{xml}");
    }
}

#[test]
fn every_stanza_id_by_the_account_is_removed_and_others_stay() {
    let el = element(
        "<message from='eve@evil.lit/x' to='juliet@capulet.lit' type='chat'><body>hi</body>\
         <stanza-id xmlns='urn:xmpp:sid:0' by='juliet@capulet.lit' id='forged-1'/>\
         <stanza-id xmlns='urn:xmpp:sid:0' by='JULIET@capulet.lit' id='forged-2'/>\
         <stanza-id xmlns='urn:xmpp:sid:0' by='juliet@capulet.lit'/>\
         <stanza-id xmlns='urn:xmpp:sid:0' by='room@muc.lit' id='kept'/>\
         <origin-id xmlns='urn:xmpp:sid:0' id='origin'/></message>",
    );
    let stanza = Stanza::parse(el, ns::CLIENT).expect("stanza");
    let by = Jid::new("juliet@capulet.lit").expect("jid");
    let clean = rules::without_stanza_ids_by(stanza, &by);
    let ids: Vec<_> = clean
        .element()
        .children()
        .filter(|c| c.ns() == ns::SID)
        .map(|c| {
            (
                c.name().to_owned(),
                c.attr("id").unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            ("stanza-id".to_owned(), "kept".to_owned()),
            ("origin-id".to_owned(), "origin".to_owned())
        ]
    );
    assert_eq!(clean.to().map(Jid::as_str), Some("juliet@capulet.lit"));
}

/// Form fields as (var, values).
type Fields<'a> = &'a [(&'a str, &'a [&'a str])];

fn form(fields: Fields<'_>) -> DataForm {
    let mut f = DataForm::new(FormType::Submit).with_field(Field::form_type(ns::MAM));
    for (var, values) in fields {
        let mut field = Field::new(*var, FieldType::TextSingle);
        for v in *values {
            field = field.with_value(*v);
        }
        f = f.with_field(field);
    }
    f
}

#[test]
fn the_form_is_read_and_bad_input_is_refused_with_the_right_condition() {
    let ok = parse_form(Some(&form(&[
        ("with", &["juliet@capulet.lit/balcony"]),
        ("start", &["2010-06-07T00:00:00Z"]),
        ("end", &["2010-07-07T13:23:54.123+02:00"]),
        ("after-id", &["5"]),
        ("before-id", &[]),
        ("ids", &["1", " 2 ", ""]),
    ])))
    .expect("valid");
    assert_eq!(
        ok.with.as_ref().map(Jid::as_str),
        Some("juliet@capulet.lit/balcony")
    );
    assert_eq!(ok.start_us, Some(1_275_868_800_000_000));
    assert_eq!(ok.end_us, Some(1_278_501_834_123_000));
    assert_eq!(ok.after_id.as_deref(), Some("5"));
    assert_eq!(ok.before_id, None);
    assert_eq!(ok.ids, Some(vec!["1".into(), "2".into()]));
    assert_eq!(parse_form(None).expect("no form"), Filter::default());

    let cases: [(Fields<'_>, DefinedCondition); 5] = [
        (&[("start", &["yesterday"])], DefinedCondition::BadRequest),
        (
            &[("end", &["2010-13-01T00:00:00Z"])],
            DefinedCondition::BadRequest,
        ),
        (&[("with", &["@@"])], DefinedCondition::BadRequest),
        (
            &[("include-groupchat", &["true"])],
            DefinedCondition::FeatureNotImplemented,
        ),
        (
            &[("{urn:example}search", &["x"])],
            DefinedCondition::FeatureNotImplemented,
        ),
    ];
    for (fields, condition) in cases {
        let e = parse_form(Some(&form(fields))).expect_err("refused");
        assert_eq!(StanzaError::from(e).condition, condition, "{fields:?}");
    }
    let mut wrong_type = form(&[]);
    wrong_type.fields[0].values = vec!["urn:xmpp:mam:1".into()];
    assert!(matches!(
        parse_form(Some(&wrong_type)),
        Err(QueryError::BadRequest(_))
    ));
}

#[test]
fn errors_map_to_stanza_conditions() {
    let cases = [
        (QueryError::Forbidden, DefinedCondition::Forbidden),
        (
            QueryError::NotFound("7".into()),
            DefinedCondition::ItemNotFound,
        ),
        (QueryError::Busy, DefinedCondition::ResourceConstraint),
        (
            QueryError::Storage(xmppd_core::storage::StorageError::Backend("down".into())),
            DefinedCondition::InternalServerError,
        ),
    ];
    for (e, condition) in cases {
        assert_eq!(StanzaError::from(e).condition, condition);
    }
}

#[test]
fn settings_have_defaults_and_refuse_unknown_keys_and_zero_pages() {
    let s: MamSettings = toml::from_str("").expect("empty");
    assert_eq!(s.max_page.get(), 100);
    let s: MamSettings = toml::from_str(
        "default = \"roster\"\nmax_page = 20\nretention_days = 30\nmax_messages = 0",
    )
    .expect("valid");
    assert_eq!(s.default, super::DefaultSetting::Roster);
    assert_eq!(s.expire_before_us(30 * 86_400_000_000 + 5), Some(5));
    assert!(toml::from_str::<MamSettings>("max_pages = 3").is_err());
    assert!(toml::from_str::<MamSettings>("default = \"sometimes\"").is_err());
    assert!(toml::from_str::<MamSettings>("max_page = 0").is_err());
    assert!(toml::from_str::<MamSettings>("max_batch = 0").is_err());
}
