use super::store::{Registration, Registrations};
use super::*;

fn reg(jid: &str, node: &str) -> Registration {
    Registration {
        jid: jid.into(),
        node: node.into(),
        options: Vec::new(),
    }
}

fn jid(s: &str) -> Jid {
    Jid::new(s).expect("a JID")
}

#[test]
fn settings_default_and_refuse_unknown_keys() {
    let s: PushSettings = toml::from_str("").expect("defaults");
    assert!(!s.include_body);
    assert_eq!(s.max_registrations, 5);
    let s: PushSettings = toml::from_str("include_body = true\nmax_registrations = 2").unwrap();
    assert!(s.include_body);
    assert_eq!(s.max_registrations, 2);
    assert!(toml::from_str::<PushSettings>("include_bodies = true").is_err());
}

#[test]
fn enabling_again_replaces_and_the_limit_counts_pairs() {
    let mut regs = Registrations::default();
    assert!(regs.upsert(reg("push.example", "a"), 2));
    assert!(regs.upsert(reg("push.example", "b"), 2));
    assert!(!regs.upsert(reg("push.example", "c"), 2), "a third pair");
    let mut with_options = reg("push.example", "a");
    with_options.options = vec![("secret".into(), vec!["s".into()])];
    assert!(regs.upsert(with_options.clone(), 2), "the same pair again");
    assert_eq!(regs.iter().next(), Some(&with_options));
    assert_eq!(regs.iter().count(), 2);
}

#[test]
fn disable_removes_one_node_or_the_whole_service() {
    let mut regs = Registrations::default();
    for (j, n) in [("p.example", "a"), ("p.example", "b"), ("q.example", "a")] {
        regs.upsert(reg(j, n), 10);
    }
    assert!(regs.remove(&jid("p.example"), Some("a")));
    assert!(!regs.remove(&jid("p.example"), Some("a")), "already gone");
    let left: Vec<_> = regs
        .iter()
        .map(|r| (r.jid.as_str(), r.node.as_str()))
        .collect();
    assert_eq!(left, [("p.example", "b"), ("q.example", "a")]);
    assert!(regs.remove(&jid("p.example"), None));
    let left: Vec<_> = regs.iter().map(|r| r.jid.as_str()).collect();
    assert_eq!(left, ["q.example"]);
}

#[test]
fn registrations_round_trip_and_corruption_is_reported() {
    let mut regs = Registrations::default();
    let mut r = reg("p.example", "a");
    r.options = vec![("secret".into(), vec!["x".into()])];
    regs.upsert(r, 5);
    regs.upsert(reg("q.example", "b"), 5);
    let bytes = regs.encode().expect("encodes");
    assert_eq!(Registrations::decode(&bytes).expect("decodes"), regs);
    assert!(matches!(
        Registrations::decode(br#"[{"node":"a"}]"#),
        Err(StorageError::Corrupt(_))
    ));
}

#[test]
fn enable_keeps_the_options_without_their_form_type() {
    let form = push::publish_options(&[("secret".into(), vec!["s3".into()])]);
    let enable = Enable {
        jid: jid("p.example"),
        node: "n".into(),
        publish_options: Some(form),
    };
    let r = Registration::from(enable);
    assert_eq!(r.options, [("secret".to_owned(), vec!["s3".to_owned()])]);
}

#[test]
fn only_messages_with_a_body_are_notifiable() {
    let message = |attrs: &str, inner: &str| {
        let xml = format!("<message xmlns='jabber:client' {attrs}>{inner}</message>");
        let mut reader = xmppd_xml::Reader::new(xmppd_xml::Limits::default());
        reader.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
        reader.feed(xml.as_bytes());
        let _ = reader.next_event();
        let Ok(Some(xmppd_xml::StreamEvent::Stanza(el))) = reader.next_event() else {
            panic!("{xml}");
        };
        Stanza::parse(el, ns::CLIENT).expect("a stanza")
    };
    let cases = [
        ("type='chat'", "<body>hi</body>", Some("hi")),
        ("", "<body>hi</body>", Some("hi")),
        ("type='chat'", "<body> </body>", None),
        (
            "type='chat'",
            "<active xmlns='http://jabber.org/protocol/chatstates'/>",
            None,
        ),
        ("type='headline'", "<body>hi</body>", None),
        ("type='groupchat'", "<body>hi</body>", None),
        ("type='error'", "<body>hi</body>", None),
    ];
    for (attrs, inner, want) in cases {
        assert_eq!(
            notifiable(&message(attrs, inner)).as_deref(),
            want,
            "{attrs} {inner}"
        );
    }
}

#[test]
fn errors_map_to_stanza_conditions() {
    let cases = [
        (PushError::Forbidden, DefinedCondition::Forbidden),
        (PushError::TooMany(5), DefinedCondition::NotAcceptable),
        (
            PushError::Storage(StorageError::Backend("down".into())),
            DefinedCondition::InternalServerError,
        ),
    ];
    for (error, condition) in cases {
        assert_eq!(StanzaError::from(error).condition, condition);
    }
}

#[test]
fn a_message_counted_already_is_not_counted_again() {
    let mut announced = Announced::default();
    assert_eq!(announced.count(1), Some(1));
    assert_eq!(announced.count(2), Some(2));
    assert_eq!(announced.count(1), None, "the same message again");
    for key in 3..(3 + RECENT as u64) {
        announced.count(key);
    }
    assert_eq!(
        announced.count(1),
        Some(3 + RECENT as u64),
        "long forgotten"
    );
}
