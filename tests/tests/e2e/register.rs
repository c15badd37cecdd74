//! XEP-0077 in-band registration: open registration off by default, which leaves a host
//! invitation-only (the features and `forbidden`; invitations themselves are in
//! `invites.rs`), and without invitations either no stream feature and `service-unavailable`;
//! when enabled, creating an account and logging in with it on the same stream, the refusals
//! (`conflict`, `not-acceptable`, the per-address limit, the allow list); a logged-in user's
//! password change and account removal, which deletes the account's data, ends its
//! subscriptions and closes every session with `not-authorized`.

use crate::common;

use std::sync::Arc;

use common::{
    CLIENT, SILENCE, add_users, answer, befriend, expect_error, expect_presence, expect_result,
    online_with_roster, password, roster_get, unauthenticated,
};
use xmppd_proto::register::{NS_FEATURE, NS_REGISTER};
use xmppd_testkit::{TestClient, TestServer, stanza_error_condition};
use xmppd_xml::Element;

const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// A server whose `[modules.register]` is `settings`.
async fn server(settings: &str) -> anyhow::Result<TestServer> {
    let text: Arc<str> = Arc::from(format!("[modules.register]\n{settings}\n"));
    TestServer::start_with(move |c| c.text = Some(text)).await
}

/// Sends a registration iq of `kind` with `body` inside the query; returns the answer.
async fn register_iq(
    client: &mut TestClient,
    kind: &str,
    id: &str,
    body: &str,
) -> anyhow::Result<Element> {
    client
        .send(&format!(
            "<iq type='{kind}' id='{id}'><query xmlns='{NS_REGISTER}'>{body}</query></iq>"
        ))
        .await?;
    answer(client, id).await
}

/// Registers `user` with `pass` on a new connection; the answer.
async fn register(server: &TestServer, user: &str, pass: &str) -> anyhow::Result<Element> {
    let (mut client, _) = unauthenticated(server).await?;
    let body = format!("<username>{user}</username><password>{pass}</password>");
    register_iq(&mut client, "set", "reg", &body).await
}

fn condition(reply: &Element) -> Option<String> {
    stanza_error_condition(reply)
}

fn is_result(reply: &Element) -> bool {
    reply.attr("type") == Some("result")
}

#[tokio::test]
async fn by_default_only_invitations_register() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (mut client, features) = unauthenticated(&server).await?;
    assert!(features.has_child("register", NS_FEATURE), "{features}");
    assert!(
        features.has_child("register", xmppd_proto::pars::NS_IBR_TOKEN),
        "{features}"
    );
    let form = register_iq(&mut client, "get", "r1", "").await?;
    assert!(is_result(&form), "{form}");
    let body = "<username>mallory</username><password>long enough</password>";
    let reply = register_iq(&mut client, "set", "r2", body).await?;
    assert_eq!(condition(&reply).as_deref(), Some("forbidden"));
    Ok(())
}

#[tokio::test]
async fn off_without_invitations_no_feature_and_service_unavailable() -> anyhow::Result<()> {
    let server = server("invites = false").await?;
    let (mut client, features) = unauthenticated(&server).await?;
    assert!(!features.has_child("register", NS_FEATURE), "{features}");
    let reply = register_iq(&mut client, "get", "r1", "").await?;
    assert_eq!(condition(&reply).as_deref(), Some("service-unavailable"));
    let body = "<username>mallory</username><password>long enough</password>";
    let reply = register_iq(&mut client, "set", "r2", body).await?;
    assert_eq!(condition(&reply).as_deref(), Some("service-unavailable"));
    assert!(
        client
            .authenticate("SCRAM-SHA-256", "mallory", "long enough")
            .await
            .is_err(),
        "nothing was created"
    );

    // Password changes are still possible, so the server advertises the namespace (§10).
    add_users(&server, &["alice"]).await?;
    let mut alice = server.login("alice", &password("alice"), "r").await?;
    alice
        .send(&format!(
            "<iq type='get' to='localhost' id='d1'><query xmlns='{DISCO_INFO}'/></iq>"
        ))
        .await?;
    let info = expect_result(&mut alice, "d1", "localhost").await?;
    let features: Vec<_> = info
        .child("query", DISCO_INFO)
        .map(|q| q.children().filter_map(|f| f.attr("var")).collect())
        .unwrap_or_default();
    assert!(features.contains(&NS_REGISTER), "{info}");
    Ok(())
}

#[tokio::test]
async fn an_account_is_created_and_used_on_the_same_stream() -> anyhow::Result<()> {
    let server = server("enabled = true\nmax_per_ip = 10").await?;
    let (mut client, features) = unauthenticated(&server).await?;
    assert!(features.has_child("register", NS_FEATURE), "{features}");
    let form = register_iq(&mut client, "get", "r1", "").await?;
    let query = form
        .child("query", NS_REGISTER)
        .ok_or_else(|| anyhow::anyhow!("no query in {form}"))?;
    for field in ["instructions", "username", "password"] {
        assert!(query.has_child(field, NS_REGISTER), "{form}");
    }
    let body = "<username>Bill</username><password>Calliope!</password>";
    let reply = register_iq(&mut client, "set", "r2", body).await?;
    assert!(is_result(&reply), "{reply}");
    // The username was prepared (nodeprep folds case).
    client
        .authenticate("SCRAM-SHA-256", "bill", "Calliope!")
        .await?;
    let jid = client.bind(Some("globe")).await?;
    assert_eq!(jid.as_str(), "bill@localhost/globe");

    let reply = register(&server, "bill", "m1cro$oft!").await?;
    assert_eq!(condition(&reply).as_deref(), Some("conflict"));
    for body in [
        "<username>bill smith</username><password>long enough</password>",
        "<username>a@b</username><password>long enough</password>",
        "<username>carol</username><password/>",
        "<username>carol</username>",
        "<username>carol</username><password>short</password>",
    ] {
        let (mut client, _) = unauthenticated(&server).await?;
        let reply = register_iq(&mut client, "set", "r3", body).await?;
        assert_eq!(
            condition(&reply).as_deref(),
            Some("not-acceptable"),
            "{body}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn the_address_limit_refuses_the_next_account() -> anyhow::Result<()> {
    let server = server("enabled = true\nmax_per_ip = 2\nwindow_secs = 3600").await?;
    assert!(is_result(&register(&server, "one", "password1").await?));
    // A refused registration does not count.
    let taken = register(&server, "one", "password1").await?;
    assert_eq!(condition(&taken).as_deref(), Some("conflict"));
    assert!(is_result(&register(&server, "two", "password2").await?));
    let third = register(&server, "three", "password3").await?;
    assert_eq!(condition(&third).as_deref(), Some("resource-constraint"));
    assert_eq!(
        third.child("error", CLIENT).and_then(|e| e.attr("type")),
        Some("wait")
    );
    let (mut client, _) = unauthenticated(&server).await?;
    assert!(
        client
            .authenticate("SCRAM-SHA-256", "three", "password3")
            .await
            .is_err()
    );
    Ok(())
}

#[tokio::test]
async fn an_allow_list_refuses_other_networks() -> anyhow::Result<()> {
    let server = server("enabled = true\nallow = [\"10.0.0.0/8\", \"2001:db8::/32\"]").await?;
    let (mut client, _) = unauthenticated(&server).await?;
    let reply = register_iq(&mut client, "get", "r1", "").await?;
    assert_eq!(condition(&reply).as_deref(), Some("not-allowed"));
    let reply = register(&server, "eve", "password1").await?;
    assert_eq!(condition(&reply).as_deref(), Some("not-allowed"));

    let server = server_allowing_loopback().await?;
    assert!(is_result(&register(&server, "eve", "password1").await?));
    Ok(())
}

async fn server_allowing_loopback() -> anyhow::Result<TestServer> {
    server("enabled = true\nallow = [\"127.0.0.0/8\"]").await
}

#[tokio::test]
async fn a_user_changes_the_password_and_logs_in_with_it() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = server.login("alice", &password("alice"), "r").await?;
    let change = |id: &str, body: &str| {
        format!(
            "<iq type='set' to='localhost' id='{id}'><query xmlns='{NS_REGISTER}'>{body}</query></iq>"
        )
    };
    for (id, body, condition) in [
        (
            "c1",
            "<username>bob</username><password>new-pass</password>",
            "not-authorized",
        ),
        ("c2", "<password>new-pass</password>", "bad-request"),
        ("c3", "<username>alice</username><password/>", "bad-request"),
        (
            "c4",
            "<username>alice</username><password>short</password>",
            "not-acceptable",
        ),
    ] {
        alice.send(&change(id, body)).await?;
        expect_error(&mut alice, "iq", id, "localhost", condition).await?;
    }
    // Another account's registration is not alice's to change.
    alice
        .send(&format!(
            "<iq type='set' to='bob@localhost' id='c5'><query xmlns='{NS_REGISTER}'><remove/></query></iq>"
        ))
        .await?;
    expect_error(&mut alice, "iq", "c5", "bob@localhost", "forbidden").await?;
    alice
        .send(&change(
            "c6",
            "<username>alice</username><password>new-pass</password>",
        ))
        .await?;
    expect_result(&mut alice, "c6", "localhost").await?;
    // The registration on file.
    alice
        .send(&format!(
            "<iq type='get' id='g1'><query xmlns='{NS_REGISTER}'/></iq>"
        ))
        .await?;
    let on_file = answer(&mut alice, "g1").await?;
    assert!(is_result(&on_file), "{on_file}");
    let query = on_file
        .child("query", NS_REGISTER)
        .ok_or_else(|| anyhow::anyhow!("no query in {on_file}"))?;
    assert!(query.has_child("registered", NS_REGISTER));
    assert_eq!(
        query
            .child("username", NS_REGISTER)
            .map(Element::text)
            .as_deref(),
        Some("alice")
    );

    let (mut old, _) = unauthenticated(&server).await?;
    assert!(
        old.authenticate("SCRAM-SHA-256", "alice", &password("alice"))
            .await
            .is_err()
    );
    server.login("alice", "new-pass", "again").await?;
    let mut bob = server.login("bob", &password("bob"), "r").await?;
    bob.expect_silence(SILENCE).await?;
    Ok(())
}

#[tokio::test]
async fn removal_deletes_the_data_and_closes_every_session() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut phone = online_with_roster(&server, "alice", "phone", 0).await?;
    let mut bob = online_with_roster(&server, "bob", "desk", 0).await?;
    befriend(&mut phone, "alice", &mut bob, "bob").await?;
    // Alice goes unavailable: bob's message waits offline for her.
    phone.send("<presence type='unavailable'/>").await?;
    expect_presence(&mut bob, "alice@localhost/phone", Some("unavailable")).await?;
    bob.send("<message to='alice@localhost' type='chat' id='m1'><body>kept?</body></message>")
        .await?;
    let mut laptop = server.login("alice", &password("alice"), "laptop").await?;

    laptop
        .send(&format!(
            "<iq type='set' id='bad'><query xmlns='{NS_REGISTER}'><remove/><username>alice</username></query></iq>"
        ))
        .await?;
    let reply = answer(&mut laptop, "bad").await?;
    assert_eq!(condition(&reply).as_deref(), Some("bad-request"));
    laptop
        .send(&format!(
            "<iq type='set' id='unreg1'><query xmlns='{NS_REGISTER}'><remove/></query></iq>"
        ))
        .await?;
    let reply = answer(&mut laptop, "unreg1").await?;
    assert!(is_result(&reply), "{reply}");
    assert_eq!(laptop.expect_stream_error().await?, "not-authorized");
    assert_eq!(
        phone.expect_stream_error_skipping().await?,
        "not-authorized"
    );

    // Bob hears that the subscriptions ended both ways.
    let mut seen = Vec::new();
    while let Some(event) = bob.next_event_within(SILENCE * 3).await? {
        if let xmppd_xml::StreamEvent::Stanza(el) = event {
            if el.is("presence", CLIENT) && el.attr("from") == Some("alice@localhost") {
                seen.push(el.attr("type").unwrap_or("available").to_owned());
            } else if el.is("iq", CLIENT) && el.attr("type") == Some("set") {
                let id = el.attr("id").unwrap_or_default();
                bob.send(&format!("<iq type='result' id='{id}'/>")).await?;
            }
        }
    }
    seen.sort();
    assert_eq!(seen, ["unsubscribe", "unsubscribed"]);
    let roster = roster_get(&mut bob, None).await?;
    let item = roster.child("query", "jabber:iq:roster").and_then(|q| {
        q.children()
            .find(|i| i.attr("jid") == Some("alice@localhost"))
    });
    assert_eq!(item.and_then(|i| i.attr("subscription")), Some("none"));

    // The account is gone: its password no longer works.
    let (mut client, _) = unauthenticated(&server).await?;
    assert!(
        client
            .authenticate("SCRAM-SHA-256", "alice", &password("alice"))
            .await
            .is_err()
    );
    // An account made anew under the same name starts empty: no roster, no offline message.
    server.add_user("alice", "fresh-start").await?;
    let mut again = server.login("alice", "fresh-start", "new").await?;
    let roster = roster_get(&mut again, None).await?;
    let items = roster
        .child("query", "jabber:iq:roster")
        .map_or(0, |q| q.children().count());
    assert_eq!(items, 0, "{roster}");
    again.available(0).await?;
    expect_presence(&mut again, "alice@localhost/new", None).await?;
    again.expect_silence(SILENCE).await?;
    Ok(())
}

/// Waits (at most two seconds) until `user` has `count` sessions on the server.
async fn sessions_become(server: &TestServer, user: &str, count: usize) -> anyhow::Result<()> {
    let bare = jid::BareJid::new(&format!("{user}@localhost"))?;
    for _ in 0..40 {
        if server.server.router.sessions().resources(&bare).len() == count {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    anyhow::bail!("{user} does not have {count} sessions")
}

#[tokio::test]
async fn removal_also_ends_a_session_waiting_for_resumption() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    let mut phone = server.login("alice", &password("alice"), "phone").await?;
    phone
        .send("<enable xmlns='urn:xmpp:sm:3' resume='true'/>")
        .await?;
    phone
        .expect("enabled", |e| e.is("enabled", "urn:xmpp:sm:3"))
        .await?;
    // The link breaks without a stream close: the session waits to be resumed.
    drop(phone);
    let mut laptop = server.login("alice", &password("alice"), "laptop").await?;
    sessions_become(&server, "alice", 2).await?;
    laptop
        .send(&format!(
            "<iq type='set' id='unreg1'><query xmlns='{NS_REGISTER}'><remove/></query></iq>"
        ))
        .await?;
    let reply = answer(&mut laptop, "unreg1").await?;
    assert!(is_result(&reply), "{reply}");
    assert_eq!(laptop.expect_stream_error().await?, "not-authorized");
    sessions_become(&server, "alice", 0).await?;
    Ok(())
}
