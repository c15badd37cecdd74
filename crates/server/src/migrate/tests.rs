use super::*;

fn read(text: &str) -> (Vec<UserElement>, Result<(), ImportError>) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.xml");
    std::fs::write(&path, text).unwrap();
    let mut users = Vec::new();
    let result = read_users(&path, ReadLimits::default(), |u| {
        users.push(u);
        Ok(())
    });
    (users, result)
}

fn error_text(result: Result<(), ImportError>) -> String {
    result.unwrap_err().to_string()
}

const HEAD: &str = "<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='urn:xmpp:pie:0'>\n";

#[test]
fn users_are_read_one_at_a_time_with_their_host_and_line() {
    let (users, result) = read(&format!(
        "{HEAD}<!-- exported -->\n<host jid='a.test'>\n  <user name='juliet' password='x &amp; y'>\n\
         <query xmlns='jabber:iq:roster'><item jid='romeo@b.test' subscription='both'>\
         <group>Friends &#x2764;</group></item></query>\n  </user>\n  <user name='nurse'/>\n</host>\n\
         <host jid='b.test'><user name='romeo'/></host>\n</server-data>\n"
    ));
    result.unwrap();
    let names: Vec<_> = users
        .iter()
        .map(|u| format!("{}@{}:{}", u.user.attr("name").unwrap(), u.host, u.line))
        .collect();
    assert_eq!(
        names,
        ["juliet@a.test:5", "nurse@a.test:8", "romeo@b.test:10"]
    );
    assert_eq!(users[0].user.attr("password"), Some("x & y"));
    let group = users[0]
        .user
        .child("query", "jabber:iq:roster")
        .and_then(|q| q.child("item", "jabber:iq:roster"))
        .and_then(|i| i.child("group", "jabber:iq:roster"))
        .map(|g| g.text());
    assert_eq!(group.as_deref(), Some("Friends \u{2764}"));
}

#[test]
fn hostile_constructs_are_refused_with_their_line() {
    let doctype = format!(
        "<?xml version='1.0'?>\n<!DOCTYPE lolz [<!ENTITY lol \"lol\">]>\n{}",
        &HEAD[HEAD.find('\n').unwrap() + 1..]
    );
    let cases = [
        (doctype.as_str(), "2:", "DOCTYPE"),
        (
            &*format!(
                "{HEAD}<host jid='a.test'>\n<user name='x'>&lol;</user></host></server-data>"
            ),
            "4:",
            "entity '&lol;' is not allowed",
        ),
        (
            &*format!("{HEAD}<?php evil() ?></server-data>"),
            "3:",
            "processing instructions",
        ),
        (
            "<?xml version='1.0'?>\n<server-data xmlns='urn:xmpp:pie:1'/>",
            "2:",
            "expected <server-data xmlns='urn:xmpp:pie:0'>",
        ),
        (
            &*format!("{HEAD}<host jid='a.test'>\n<user name='x'>"),
            ":",
            "ends inside an element",
        ),
        (
            &*format!("{HEAD}<host jid='a.test'><user name='x'>&#1;</user></host></server-data>"),
            "3:",
            "U+0001",
        ),
    ];
    for (text, line, wanted) in cases {
        let (users, result) = read(text);
        assert!(users.is_empty(), "{text}");
        let e = error_text(result);
        assert!(e.contains(line) && e.contains(wanted), "{text}: {e}");
    }
}

#[test]
fn an_oversized_or_too_deep_user_is_refused_without_holding_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.xml");
    let mut text = format!(
        "{HEAD}<host jid='a.test'>\n<user name='first'/>\n<user name='big'><vCard xmlns='vcard-temp'><NOTE>"
    );
    text.push_str(&"x".repeat(3 * 1024 * 1024));
    text.push_str("</NOTE></vCard></user></host></server-data>");
    std::fs::write(&path, text).unwrap();
    let limits = ReadLimits {
        max_user_bytes: 1024 * 1024,
        ..ReadLimits::default()
    };
    let mut users = Vec::new();
    let e = read_users(&path, limits, |u| {
        users.push(u);
        Ok(())
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(":5:") && e.contains("larger than 1048576 bytes"),
        "{e}"
    );
    // The account before it was handed over.
    assert_eq!(users.len(), 1);

    let deep = format!(
        "{HEAD}<host jid='a.test'><user name='d'>{}{}</user></host></server-data>",
        "<a>".repeat(100),
        "</a>".repeat(100)
    );
    let e = error_text(read(&deep).1);
    assert!(e.contains("nested deeper than 64"), "{e}");
}

#[test]
fn validation_names_what_is_wrong_with_an_account() {
    let hosts = ["a.test".to_owned()];
    let (users, result) = read(&format!(
        "{HEAD}<host jid='a.test'><user name='nocreds'/>\
         <user name='bad'><scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>\
         <iter-count>0</iter-count><salt>c2FsdA==</salt><server-key>AA==</server-key>\
         <stored-key>AA==</stored-key></scram-credentials></user>\
         <user name='ok' password='secret'><pubsub xmlns='urn:xmpp:pie:0#pubsub'/></user></host>\
         <host jid='elsewhere.test'><user name='x' password='p'/></host></server-data>"
    ));
    result.unwrap();
    let errors: Vec<String> = users
        .into_iter()
        .map(|u| match validate(u, &hosts, &ImportSettings::default()) {
            Ok(a) => format!("ok {} skipped {:?}", a.jid, a.skipped),
            Err(e) => e,
        })
        .collect();
    assert!(errors[0].starts_with("no credentials"), "{errors:?}");
    assert!(errors[1].contains("not a positive integer"), "{errors:?}");
    assert_eq!(errors[2], "ok ok@a.test skipped [\"pubsub\"]");
    assert!(
        errors[3].contains("host elsewhere.test is not served here"),
        "{errors:?}"
    );
}
