//! XEP-0050 ad-hoc commands carrying XEP-0133's service administration, through a real
//! client: discovery of the command list (XEP-0133's for administrators only), each command's form and
//! effect (add a user who then logs in, change a password, end a session, list online users,
//! user statistics, an announcement, delete a user whose session ends), and the errors of
//! XEP-0050 §4.6 (forbidden for a non-administrator, bad-sessionid, malformed-action,
//! bad-payload).

use crate::common;

use common::{CLIENT, add_users, online, password};
use xmppd_testkit::{TestClient, TestServer, stanza_error_condition};
use xmppd_xml::Element;

const COMMANDS: &str = "http://jabber.org/protocol/commands";
const ADMIN: &str = "http://jabber.org/protocol/admin";
const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

async fn server() -> anyhow::Result<TestServer> {
    let admin = jid::BareJid::new("admin@localhost")?;
    let server = TestServer::start_with(|c| c.admins = vec![admin]).await?;
    add_users(&server, &["admin", "bob", "carol"]).await?;
    Ok(server)
}

/// Sends an iq and returns the answer with its id (result or error), skipping headline
/// messages (an administrator's own announcement reaches them first).
async fn iq(
    client: &mut TestClient,
    id: &str,
    kind: &str,
    payload: &str,
) -> anyhow::Result<Element> {
    client
        .send(&format!(
            "<iq type='{kind}' id='{id}' to='localhost'>{payload}</iq>"
        ))
        .await?;
    for _ in 0..10 {
        let el = client.recv().await?;
        if el.is("iq", CLIENT) && el.attr("id") == Some(id) {
            return Ok(el);
        }
        anyhow::ensure!(
            el.attr("type") == Some("headline"),
            "expected the answer to {id}, got {el}"
        );
    }
    anyhow::bail!("no answer to {id}")
}

fn command(iq: &Element) -> anyhow::Result<&Element> {
    iq.child("command", COMMANDS)
        .ok_or_else(|| anyhow::anyhow!("no <command/> in {iq}"))
}

/// Executes `node` and returns its sessionid, checking the form came.
async fn start(client: &mut TestClient, node: &str) -> anyhow::Result<String> {
    let answer = iq(
        client,
        "start",
        "set",
        &format!("<command xmlns='{COMMANDS}' node='{ADMIN}#{node}' action='execute'/>"),
    )
    .await?;
    anyhow::ensure!(answer.attr("type") == Some("result"), "{answer}");
    let cmd = command(&answer)?;
    assert_eq!(cmd.attr("status"), Some("executing"));
    assert!(cmd.child("x", "jabber:x:data").is_some(), "no form: {cmd}");
    Ok(cmd.attr("sessionid").unwrap_or_default().to_owned())
}

/// Submits `fields` (var, values) to the session of `node`; returns the answer.
async fn submit(
    client: &mut TestClient,
    node: &str,
    session: &str,
    fields: &[(&str, &[&str])],
) -> anyhow::Result<Element> {
    let mut xml = format!(
        "<command xmlns='{COMMANDS}' node='{ADMIN}#{node}' sessionid='{session}' \
         action='complete'><x xmlns='jabber:x:data' type='submit'>\
         <field var='FORM_TYPE' type='hidden'><value>{ADMIN}</value></field>"
    );
    for (var, values) in fields {
        xml.push_str(&format!("<field var='{var}'>"));
        for v in *values {
            xml.push_str(&format!("<value>{v}</value>"));
        }
        xml.push_str("</field>");
    }
    xml.push_str("</x></command>");
    iq(client, "submit", "set", &xml).await
}

/// Runs a command to completion.
async fn run(
    client: &mut TestClient,
    node: &str,
    fields: &[(&str, &[&str])],
) -> anyhow::Result<Element> {
    let session = start(client, node).await?;
    let answer = submit(client, node, &session, fields).await?;
    anyhow::ensure!(answer.attr("type") == Some("result"), "{answer}");
    assert_eq!(command(&answer)?.attr("status"), Some("completed"));
    Ok(answer)
}

fn field_values(answer: &Element, var: &str) -> Vec<String> {
    command(answer)
        .ok()
        .and_then(|c| c.child("x", "jabber:x:data"))
        .and_then(|x| {
            x.children()
                .find(|f| f.name() == "field" && f.attr("var") == Some(var))
        })
        .map(|f| {
            f.children()
                .filter(|v| v.name() == "value")
                .map(Element::text)
                .collect()
        })
        .unwrap_or_default()
}

fn specific(error_iq: &Element) -> Option<String> {
    error_iq
        .child("error", CLIENT)?
        .children()
        .find(|c| c.ns() == COMMANDS)
        .map(|c| c.name().to_owned())
}

#[tokio::test]
async fn administrators_see_the_commands_and_others_only_their_invitations() -> anyhow::Result<()> {
    let server = server().await?;
    let mut admin = online(&server, "admin", "a", 0).await?;
    let mut bob = online(&server, "bob", "b", 0).await?;
    let query = format!("<query xmlns='{DISCO_ITEMS}' node='{COMMANDS}'/>");
    let items = iq(&mut admin, "items", "get", &query).await?;
    let nodes: Vec<&str> = items
        .child("query", DISCO_ITEMS)
        .map(|q| q.children().filter_map(|i| i.attr("node")).collect())
        .unwrap_or_default();
    for node in [
        "add-user",
        "delete-user",
        "end-user-session",
        "change-user-password",
        "user-stats",
        "get-online-users-list",
        "announce",
    ] {
        assert!(
            nodes.contains(&format!("{ADMIN}#{node}").as_str()),
            "{node} in {items}"
        );
    }
    assert!(nodes.contains(&"urn:xmpp:invite#create-account"), "{items}");
    // Any account of the host may invite its contacts (XEP-0401 §3.1), nothing more.
    let items = iq(&mut bob, "items", "get", &query).await?;
    assert_eq!(items.attr("type"), Some("result"));
    let nodes: Vec<&str> = items
        .child("query", DISCO_ITEMS)
        .map(|q| q.children().filter_map(|i| i.attr("node")).collect())
        .unwrap_or_default();
    assert_eq!(nodes, ["urn:xmpp:invite#invite"], "{items}");
    // The server advertises the protocol; a command's info is the administrators'.
    let info = iq(
        &mut bob,
        "info",
        "get",
        &format!("<query xmlns='{DISCO_INFO}'/>"),
    )
    .await?;
    assert!(info.to_string().contains(COMMANDS), "{info}");
    let node_info = format!("<query xmlns='{DISCO_INFO}' node='{ADMIN}#add-user'/>");
    let info = iq(&mut admin, "ninfo", "get", &node_info).await?;
    assert!(info.to_string().contains("command-node"), "{info}");
    let info = iq(&mut bob, "ninfo", "get", &node_info).await?;
    assert_eq!(
        stanza_error_condition(&info).as_deref(),
        Some("item-not-found")
    );
    Ok(())
}

#[tokio::test]
async fn a_non_administrator_is_forbidden() -> anyhow::Result<()> {
    let server = server().await?;
    let mut bob = online(&server, "bob", "b", 0).await?;
    let answer = iq(
        &mut bob,
        "x",
        "set",
        &format!("<command xmlns='{COMMANDS}' node='{ADMIN}#add-user' action='execute'/>"),
    )
    .await?;
    assert_eq!(
        stanza_error_condition(&answer).as_deref(),
        Some("forbidden")
    );
    Ok(())
}

#[tokio::test]
async fn an_added_user_logs_in_and_a_changed_password_is_the_one_that_works() -> anyhow::Result<()>
{
    let server = server().await?;
    let mut admin = online(&server, "admin", "a", 0).await?;
    run(
        &mut admin,
        "add-user",
        &[
            ("accountjid", &["dave@localhost"]),
            ("password", &["dave-1"]),
            ("password-verify", &["dave-1"]),
        ],
    )
    .await?;
    server.login("dave", "dave-1", "d").await?;
    // Adding it again is a conflict.
    let session = start(&mut admin, "add-user").await?;
    let again = submit(
        &mut admin,
        "add-user",
        &session,
        &[("accountjid", &["dave@localhost"]), ("password", &["x"])],
    )
    .await?;
    assert_eq!(stanza_error_condition(&again).as_deref(), Some("conflict"));
    run(
        &mut admin,
        "change-user-password",
        &[
            ("accountjid", &["dave@localhost"]),
            ("password", &["dave-2"]),
        ],
    )
    .await?;
    assert!(server.login("dave", "dave-1", "d").await.is_err());
    server.login("dave", "dave-2", "d").await?;
    Ok(())
}

#[tokio::test]
async fn online_users_are_listed_with_their_statistics_and_get_announcements() -> anyhow::Result<()>
{
    let server = server().await?;
    let mut admin = online(&server, "admin", "a", 0).await?;
    let mut bob = online(&server, "bob", "b", 0).await?;
    let answer = run(
        &mut admin,
        "get-online-users-list",
        &[("max_items", &["100"])],
    )
    .await?;
    assert_eq!(
        field_values(&answer, "onlineuserjids"),
        ["admin@localhost", "bob@localhost"]
    );
    let answer = run(
        &mut admin,
        "user-stats",
        &[("accountjid", &["bob@localhost"])],
    )
    .await?;
    assert_eq!(field_values(&answer, "rostersize"), ["0"]);
    assert_eq!(
        field_values(&answer, "onlineresources"),
        ["bob@localhost/b"]
    );
    run(
        &mut admin,
        "announce",
        &[
            ("subject", &["Maintenance"]),
            ("announcement", &["Back soon", "really"]),
        ],
    )
    .await?;
    let message = bob
        .expect("the announcement", |e| e.is("message", CLIENT))
        .await?;
    assert_eq!(message.attr("from"), Some("localhost"));
    assert_eq!(message.attr("type"), Some("headline"));
    assert_eq!(common::body(&message).as_deref(), Some("Back soon\nreally"));
    Ok(())
}

#[tokio::test]
async fn ending_a_session_closes_its_stream_and_deleting_a_user_too() -> anyhow::Result<()> {
    let server = server().await?;
    let mut admin = online(&server, "admin", "a", 0).await?;
    let mut bob = online(&server, "bob", "b", 0).await?;
    run(
        &mut admin,
        "end-user-session",
        &[("accountjids", &["bob@localhost/b"])],
    )
    .await?;
    assert_eq!(
        bob.expect_stream_error_skipping().await?,
        "policy-violation"
    );
    let mut carol = online(&server, "carol", "c", 0).await?;
    run(
        &mut admin,
        "delete-user",
        &[("accountjids", &["carol@localhost"])],
    )
    .await?;
    assert_eq!(
        carol.expect_stream_error_skipping().await?,
        "not-authorized"
    );
    assert!(
        server
            .login("carol", &password("carol"), "c")
            .await
            .is_err()
    );
    // A session that is not there is a warning, not an error.
    let answer = run(
        &mut admin,
        "end-user-session",
        &[("accountjids", &["bob@localhost"])],
    )
    .await?;
    assert!(answer.to_string().contains("warn"), "{answer}");
    Ok(())
}

#[tokio::test]
async fn sessions_actions_and_payloads_are_checked() -> anyhow::Result<()> {
    let server = server().await?;
    let mut admin = online(&server, "admin", "a", 0).await?;
    // A session id that was never given.
    let answer = submit(
        &mut admin,
        "add-user",
        "nope",
        &[("accountjid", &["x@localhost"])],
    )
    .await?;
    assert_eq!(
        stanza_error_condition(&answer).as_deref(),
        Some("bad-request")
    );
    assert_eq!(specific(&answer).as_deref(), Some("bad-sessionid"));
    // An action XEP-0050 does not define.
    let session = start(&mut admin, "add-user").await?;
    let answer = iq(&mut admin, "m", "set", &format!(
        "<command xmlns='{COMMANDS}' node='{ADMIN}#add-user' sessionid='{session}' action='jump'/>"
    ))
    .await?;
    assert_eq!(specific(&answer).as_deref(), Some("malformed-action"));
    // No form: bad-payload, and the session is over.
    let answer = iq(&mut admin, "p", "set", &format!(
        "<command xmlns='{COMMANDS}' node='{ADMIN}#add-user' sessionid='{session}' action='complete'/>"
    ))
    .await?;
    assert_eq!(specific(&answer).as_deref(), Some("bad-payload"));
    // Cancel ends a session; the id is no good afterwards.
    let session = start(&mut admin, "announce").await?;
    let answer = iq(&mut admin, "c", "set", &format!(
        "<command xmlns='{COMMANDS}' node='{ADMIN}#announce' sessionid='{session}' action='cancel'/>"
    ))
    .await?;
    assert_eq!(command(&answer)?.attr("status"), Some("canceled"));
    let answer = submit(
        &mut admin,
        "announce",
        &session,
        &[("announcement", &["hi"])],
    )
    .await?;
    assert_eq!(specific(&answer).as_deref(), Some("bad-sessionid"));
    // An account of another domain, and a JID that is none.
    let session = start(&mut admin, "delete-user").await?;
    let answer = submit(
        &mut admin,
        "delete-user",
        &session,
        &[("accountjids", &["x@elsewhere.example"])],
    )
    .await?;
    assert_eq!(
        stanza_error_condition(&answer).as_deref(),
        Some("not-allowed")
    );
    let session = start(&mut admin, "delete-user").await?;
    let answer = submit(
        &mut admin,
        "delete-user",
        &session,
        &[("accountjids", &["@@"])],
    )
    .await?;
    assert_eq!(
        stanza_error_condition(&answer).as_deref(),
        Some("jid-malformed")
    );
    // An unknown command.
    let answer = iq(
        &mut admin,
        "u",
        "set",
        &format!("<command xmlns='{COMMANDS}' node='{ADMIN}#shutdown' action='execute'/>"),
    )
    .await?;
    assert_eq!(
        stanza_error_condition(&answer).as_deref(),
        Some("item-not-found")
    );
    Ok(())
}
