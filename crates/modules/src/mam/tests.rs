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

/// The recipient's hook runs for what it archives and for what carries stanza ids to strip,
/// and for nothing else (a PEP notification, a chat state keep the direct path).
#[test]
fn the_recipients_hook_applies_to_archivable_messages_and_stanza_ids() {
    let rows = [
        ("<message type='chat'><body>hi</body></message>", true),
        (
            "<message type='headline'><event xmlns='http://jabber.org/protocol/pubsub#event'/></message>",
            false,
        ),
        (
            "<message type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>",
            false,
        ),
        (
            "<message type='headline'><stanza-id xmlns='urn:xmpp:sid:0' id='x' by='bob@x'/></message>",
            true,
        ),
    ];
    for (xml, applies) in rows {
        assert_eq!(rules::concerns_recipient(&element(xml)), applies, "{xml}");
    }
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

    for value in ["true", "false", "1", "0"] {
        let asked = parse_form(Some(&form(&[("include-groupchat", &[value])])));
        assert_eq!(asked.expect("a boolean"), Filter::default(), "{value}");
    }

    let cases: [(Fields<'_>, DefinedCondition); 5] = [
        (&[("start", &["yesterday"])], DefinedCondition::BadRequest),
        (
            &[("end", &["2010-13-01T00:00:00Z"])],
            DefinedCondition::BadRequest,
        ),
        (&[("with", &["@@"])], DefinedCondition::BadRequest),
        (
            &[("include-groupchat", &["maybe"])],
            DefinedCondition::BadRequest,
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

/// The module over a fresh SQLite store (the directory must outlive it).
async fn module(
    archive: Option<std::sync::Arc<dyn xmppd_core::storage::ArchiveStore>>,
) -> (tempfile::TempDir, super::Mam) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = xmppd_storage::StorageConfig::Sqlite {
        path: dir.path().join("mam.db"),
    };
    let mut storage = xmppd_storage::open(&config).await.expect("storage");
    if let Some(archive) = archive {
        storage.archive = archive;
    }
    let settings = MamSettings {
        retention_days: 1,
        ..MamSettings::default()
    };
    let mam =
        super::Mam::new(&storage, settings, xmppd_core::RouterHandle::default()).expect("module");
    (dir, mam)
}

fn incoming(xml: &str) -> Stanza {
    Stanza::parse(element(xml), ns::CLIENT).expect("stanza")
}

fn continued(flow: xmppd_core::Flow) -> Stanza {
    match flow {
        xmppd_core::Flow::Continue(s) => s,
        other => panic!("expected the message to go on, got {other:?}"),
    }
}

#[tokio::test]
async fn a_rerouted_message_is_not_archived_twice_and_a_reused_id_is_no_pass() {
    let (_dir, mam) = module(None).await;
    let alice = jid::BareJid::new("alice@localhost").expect("jid");
    let by = Jid::from(alice.clone());
    let count = || async {
        mam.inner
            .storage
            .archive
            .count("localhost", "alice", super::STORE)
            .await
            .expect("count")
    };
    let first = continued(
        mam.inner
            .receive(
                incoming(
                    "<message from='eve@evil.example/x' to='alice@localhost' type='chat'>\
                     <body>hi</body>\
                     <stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='f1'/>\
                     <stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='f2'/></message>",
                ),
                &alice,
            )
            .await,
    );
    let ids: Vec<_> = first
        .element()
        .children()
        .filter(|c| c.is("stanza-id", ns::SID))
        .filter_map(|c| c.attr("id").map(str::to_owned))
        .collect();
    assert_eq!(ids.len(), 1);
    assert!(ids[0] != "f1" && ids[0] != "f2");
    assert_eq!(count().await, 1);

    // Routed again (its session died before writing it): passed on unchanged, not stored.
    let again = continued(mam.inner.receive(first.clone(), &alice).await);
    assert_eq!(again.element(), first.element());
    assert_eq!(count().await, 1);

    // The same id on another message: removed, and the message archived under a new id.
    let reused = format!(
        "<message from='eve@evil.example/x' to='alice@localhost' type='chat'><body>other</body>\
         <stanza-id xmlns='urn:xmpp:sid:0' by='alice@localhost' id='{}'/></message>",
        ids[0]
    );
    let stamped = continued(mam.inner.receive(incoming(&reused), &alice).await);
    let new_id = xmppd_proto::stanza_id::StanzaId::find_by(stamped.element(), &by).expect("id");
    assert_ne!(new_id.id, ids[0]);
    assert_eq!(count().await, 2);
}

#[tokio::test]
async fn a_failed_commit_bounces_the_message_to_its_sender() {
    let (_dir, mam) = module(Some(std::sync::Arc::new(
        super::test_store::Recorder::down(),
    )))
    .await;
    let alice = jid::BareJid::new("alice@localhost").expect("jid");
    let flow = mam
        .inner
        .receive(
            incoming(
                "<message from='bob@localhost/phone' to='alice@localhost' id='m1' type='chat'>\
                 <body>hi</body></message>",
            ),
            &alice,
        )
        .await;
    let xmppd_core::Flow::Stop(Some(bounce)) = flow else {
        panic!("expected a bounce, got {flow:?}");
    };
    assert_eq!(bounce.to().map(Jid::as_str), Some("bob@localhost/phone"));
    assert_eq!(bounce.type_attr(), Some("error"));
    let error = bounce.element().child("error", ns::CLIENT).expect("error");
    assert_eq!(
        StanzaError::from_element(error).condition,
        DefinedCondition::InternalServerError
    );
}

/// A client's message goes on under its reserved id while the commit runs; when the commit
/// fails, the acknowledgement it was deferred to is released all the same (the sender gets
/// the error instead of a stream that never counts the message).
#[tokio::test]
async fn a_message_that_went_on_is_released_when_its_commit_fails() {
    let store = super::test_store::Recorder::default();
    store
        .refusing
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (_dir, mam) = module(Some(std::sync::Arc::new(store))).await;
    let alice = jid::BareJid::new("alice@localhost").expect("jid");
    let (flow, deferred) = xmppd_core::completion::collecting_deferred(mam.inner.receive(
        incoming(
            "<message from='bob@localhost/phone' to='alice@localhost' id='m1' type='chat'>\
             <body>hi</body></message>",
        ),
        &alice,
    ))
    .await;
    let went_on = continued(flow);
    let by = Jid::from(alice.clone());
    assert!(xmppd_proto::stanza_id::StanzaId::find_by(went_on.element(), &by).is_some());
    let deferred = deferred.expect("the acknowledgement waits for the commit");
    tokio::time::timeout(std::time::Duration::from_secs(10), deferred.done())
        .await
        .expect("released after the failed commit");
}

#[test]
fn the_error_for_a_message_sent_but_not_archived_names_it_and_echoes_nothing() {
    let bob = Jid::new("bob@localhost/phone").expect("jid");
    let alice = Jid::new("alice@localhost").expect("jid");
    let error = super::sent_but_not_archived(
        bob.clone(),
        Some(alice.clone()),
        Some("m1".into()),
        "not archived",
    );
    assert_eq!(error.to(), Some(&bob));
    assert_eq!(error.from(), Some(&alice));
    assert_eq!(error.id(), Some("m1"));
    assert_eq!(error.type_attr(), Some("error"));
    let el = error.element().child("error", ns::CLIENT).expect("error");
    assert_eq!(
        StanzaError::from_element(el).condition,
        DefinedCondition::InternalServerError
    );
    assert_eq!(error.element().children().count(), 1);
}

#[tokio::test]
async fn the_sweep_removes_what_is_past_retention_in_idle_archives() {
    let (_dir, mam) = module(None).await;
    let archive = &mam.inner.storage.archive;
    let now = super::now_us();
    let day = 86_400_000_000;
    for (user, t) in [
        ("alice", now - 2 * day),
        ("alice", now),
        ("bob", now - 3 * day),
    ] {
        let record = xmppd_core::storage::NewArchiveRecord {
            with: String::new(),
            timestamp_us: t,
            payload: b"<message/>".to_vec(),
        };
        archive
            .append("localhost", user, super::STORE, record, None)
            .await
            .expect("append");
    }
    let before = mam
        .inner
        .settings
        .get()
        .expire_before_us(now)
        .expect("retention is on");
    super::sweep::sweep(&mam.inner, before).await;
    let count = |user| archive.count("localhost", user, super::STORE);
    assert_eq!(count("alice").await.expect("count"), 1);
    assert_eq!(count("bob").await.expect("count"), 0);
}

#[test]
fn small_limits_trim_on_every_append_and_large_ones_now_and_then() {
    for _ in 0..100 {
        assert!(super::trim_now(5));
        assert!(super::trim_now(19));
    }
    let trims = (0..1_000_000).filter(|_| super::trim_now(100_000)).count();
    // One in 10,000 on average: 100 expected.
    assert!(
        (30..=300).contains(&trims),
        "{trims} trims in a million appends"
    );
}

/// Ids kept from an import (XEP-0227) name their records both ways: in results, in `<fin/>`,
/// in the metadata, and as `after`/`before`/`ids` of a query. An id listed twice names its
/// first record only; a record without a kept id, such as one archived live, has this
/// server's id.
#[tokio::test]
async fn ids_kept_from_an_import_name_their_records_both_ways() {
    use xmppd_core::storage::{ArchiveAppend, NewArchiveRecord};
    use xmppd_proto::mam::Query;
    use xmppd_proto::rsm::{Before, SetQuery};

    let (_dir, mam) = module(None).await;
    let alice = jid::BareJid::new("alice@localhost").expect("jid");
    let storage = &mam.inner.storage;
    let imported = |body: &str| ArchiveAppend {
        host: "localhost".into(),
        user: "alice".into(),
        store: super::STORE.into(),
        record: NewArchiveRecord {
            with: "bob@localhost".into(),
            timestamp_us: super::now_us(),
            payload: format!("<message type='chat'><body>{body}</body></message>").into_bytes(),
        },
        id: None,
        keep_last: None,
        keep_bytes: None,
        expire_before_us: None,
    };
    let stored = storage
        .archive
        .append_batch(&[imported("one"), imported("two")])
        .await
        .expect("append");
    let pairs = [
        ("old-1".to_owned(), stored[0].clone()),
        ("old-1".to_owned(), stored[1].clone()),
    ];
    super::keep_imported_ids(&*storage.map, "localhost", "alice", &pairs)
        .await
        .expect("keep");
    continued(
        mam.inner
            .receive(
                incoming(
                    "<message from='bob@localhost/x' to='alice@localhost' type='chat'>\
                     <body>three</body></message>",
                ),
                &alice,
            )
            .await,
    );
    let page = |set: SetQuery| {
        let query = Query {
            set: Some(set),
            ..Query::default()
        };
        let inner = mam.inner.clone();
        let alice = alice.clone();
        async move { inner.page(&alice, &query, 10).await.expect("page") }
    };
    let all = page(SetQuery::default()).await;
    let ids: Vec<String> = all.results.iter().map(|r| r.id.clone()).collect();
    assert_eq!(ids[0], "old-1");
    assert_eq!(ids.len(), 3);
    assert!(ids[1].len() == 16 && ids[2].len() == 16, "{ids:?}");
    assert_eq!(all.fin.set.first.as_deref(), Some("old-1"));
    let after = page(SetQuery {
        after: Some("old-1".into()),
        ..SetQuery::default()
    })
    .await;
    assert_eq!(after.results.len(), 2);
    let before = page(SetQuery {
        before: Some(Before::Item(ids[2].clone())),
        ..SetQuery::default()
    })
    .await;
    let before: Vec<String> = before.results.iter().map(|r| r.id.clone()).collect();
    assert_eq!(before, ids[..2]);
    let metadata = mam.inner.metadata(&alice).await.expect("metadata");
    let (first, last) = metadata.bounds.expect("bounds");
    assert_eq!(
        (first.id.as_str(), last.id.as_str()),
        ("old-1", ids[2].as_str())
    );
}
