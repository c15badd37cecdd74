//! XEP-0401's ad-hoc commands through a real client: an account invites a contact with
//! `urn:xmpp:invite#invite` and the invitee registers with the token and is subscribed; an
//! administrator invites a new account with `urn:xmpp:invite#create-account`, which others
//! may not, with the invitee's choice of name or one the administrator gives and which stays
//! reserved for the invitee (§4.2); both results carry the URI, the landing page and the
//! expiry (§3.1, §3.4).

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use common::{add_users, answer, expect_push, online_with_roster, unauthenticated};
use xmppd::config::HttpListenConfig;
use xmppd_http::HttpKind;
use xmppd_proto::pars::{InviteUri, NS_PARS};
use xmppd_proto::register::NS_REGISTER;
use xmppd_testkit::{TestClient, TestServer, stanza_error_condition};
use xmppd_xml::Element;

const COMMANDS: &str = "http://jabber.org/protocol/commands";
const DATA: &str = "jabber:x:data";
const INVITE: &str = "urn:xmpp:invite#invite";
const CREATE_ACCOUNT: &str = "urn:xmpp:invite#create-account";

async fn server() -> anyhow::Result<TestServer> {
    let admin = jid::BareJid::new("admin@localhost")?;
    // Open registration on: a name an invitation reserves must be refused there too.
    let text: std::sync::Arc<str> = std::sync::Arc::from("[modules.register]\nenabled = true\n");
    let server = TestServer::start_with(|c| {
        c.admins = vec![admin];
        c.text = Some(text);
        c.http_listen = vec![HttpListenConfig {
            kind: HttpKind::Tls,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            read_rate: None,
        }];
    })
    .await?;
    add_users(&server, &["admin", "alice"]).await?;
    Ok(server)
}

/// Executes `node` and returns the answer.
async fn execute(client: &mut TestClient, id: &str, node: &str) -> anyhow::Result<Element> {
    client
        .send(&format!(
            "<iq type='set' id='{id}' to='localhost'><command xmlns='{COMMANDS}' node='{node}' action='execute'/></iq>"
        ))
        .await?;
    answer(client, id).await
}

/// Submits the form of the command session `sessionid` of `node` with `fields` (XML).
async fn submit(
    client: &mut TestClient,
    id: &str,
    node: &str,
    sessionid: &str,
    fields: &str,
) -> anyhow::Result<Element> {
    client
        .send(&format!(
            "<iq type='set' id='{id}' to='localhost'><command xmlns='{COMMANDS}' node='{node}' \
             sessionid='{sessionid}' action='complete'><x xmlns='{DATA}' type='submit'>{fields}</x>\
             </command></iq>"
        ))
        .await?;
    answer(client, id).await
}

/// Runs create-account: its form first (§3.4), then the submission of `fields`.
async fn create_account(
    client: &mut TestClient,
    id: &str,
    fields: &str,
) -> anyhow::Result<Element> {
    let form = execute(client, id, CREATE_ACCOUNT).await?;
    let command = form
        .child("command", COMMANDS)
        .ok_or_else(|| anyhow::anyhow!("no command in {form}"))?;
    assert_eq!(command.attr("status"), Some("executing"), "{form}");
    let x = command
        .child("x", DATA)
        .ok_or_else(|| anyhow::anyhow!("no form in {form}"))?;
    let vars: Vec<_> = x.children().filter_map(|f| f.attr("var")).collect();
    assert_eq!(vars, ["username", "roster-subscription"], "{form}");
    let sessionid = command.attr("sessionid").unwrap_or_default().to_owned();
    submit(client, id, CREATE_ACCOUNT, &sessionid, fields).await
}

fn field(var: &str, value: &str) -> String {
    format!("<field var='{var}'><value>{value}</value></field>")
}

/// Registers `user` by open registration; the answer.
async fn register_openly(server: &TestServer, user: &str) -> anyhow::Result<Element> {
    let (mut client, _) = unauthenticated(server).await?;
    client
        .send(&format!(
            "<iq type='set' id='open'><query xmlns='{NS_REGISTER}'><username>{user}</username>\
             <password>a-long-secret</password></query></iq>"
        ))
        .await?;
    answer(&mut client, "open").await
}

/// The value of `var` in the command's result form.
fn value(answer: &Element, var: &str) -> Option<String> {
    answer
        .child("command", COMMANDS)?
        .child("x", DATA)?
        .children()
        .find(|f| f.attr("var") == Some(var))?
        .child("value", DATA)
        .map(|v| v.text())
}

/// Checks the completed result and returns its invitation URI.
fn invitation(answer: &Element, node: &str) -> anyhow::Result<InviteUri> {
    let command = answer
        .child("command", COMMANDS)
        .ok_or_else(|| anyhow::anyhow!("no command in {answer}"))?;
    assert_eq!(command.attr("status"), Some("completed"), "{answer}");
    assert_eq!(command.attr("node"), Some(node));
    assert_eq!(
        value(answer, "FORM_TYPE").as_deref(),
        Some("urn:xmpp:invite#invitation")
    );
    let uri = value(answer, "uri").ok_or_else(|| anyhow::anyhow!("no uri in {answer}"))?;
    let parsed = InviteUri::parse(&uri).map_err(|e| anyhow::anyhow!("{e}"))?;
    let landing = value(answer, "landing-url").unwrap_or_default();
    // The HTTPS listener's real port, not the 0 it was configured with.
    assert!(
        landing.starts_with("https://localhost:")
            && !landing.starts_with("https://localhost:0/")
            && landing.ends_with(&format!("/invite/{}", parsed.token)),
        "{landing}"
    );
    let expire = value(answer, "expire").unwrap_or_default();
    let expire = xmppd_proto::datetime::parse_datetime(&expire)
        .ok_or_else(|| anyhow::anyhow!("expire {expire} is not a DateTime"))?;
    // `[invites] expiry` is a week by default.
    let week = SystemTime::now() + Duration::from_secs(7 * 86_400);
    assert!(expire > week - Duration::from_secs(60) && expire <= week);
    Ok(parsed)
}

/// Presents `token` (XEP-0445) and registers `user` with it; both must succeed.
async fn register_with(client: &mut TestClient, token: &str, user: &str) -> anyhow::Result<()> {
    client
        .send(&format!(
            "<iq type='set' id='pa'><preauth xmlns='{NS_PARS}' token='{token}'/></iq>"
        ))
        .await?;
    let reply = answer(client, "pa").await?;
    anyhow::ensure!(reply.attr("type") == Some("result"), "{reply}");
    client
        .send(&format!(
            "<iq type='set' id='reg'><query xmlns='{NS_REGISTER}'><username>{user}</username>\
             <password>a-long-secret</password></query></iq>"
        ))
        .await?;
    let reply = answer(client, "reg").await?;
    anyhow::ensure!(reply.attr("type") == Some("result"), "{reply}");
    Ok(())
}

#[tokio::test]
async fn an_account_invites_a_contact_who_registers_and_is_subscribed() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = online_with_roster(&server, "alice", "desk", 0).await?;
    let answer = execute(&mut alice, "inv", INVITE).await?;
    let uri = invitation(&answer, INVITE)?;
    assert_eq!(
        uri.to_uri(),
        format!("xmpp:alice@localhost?roster;preauth={};ibr=y", uri.token)
    );

    let (mut juliet, _) = unauthenticated(&server).await?;
    register_with(&mut juliet, &uri.token, "juliet").await?;
    expect_push(&mut alice, "juliet@localhost", "both", false).await?;
    // Single use.
    let (mut again, _) = unauthenticated(&server).await?;
    assert!(
        register_with(&mut again, &uri.token, "romeo")
            .await
            .is_err()
    );
    Ok(())
}

#[tokio::test]
async fn only_administrators_invite_new_accounts() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = server
        .login("alice", &common::password("alice"), "a")
        .await?;
    let refused = execute(&mut alice, "ca", CREATE_ACCOUNT).await?;
    assert_eq!(
        stanza_error_condition(&refused).as_deref(),
        Some("forbidden")
    );

    let mut admin = server
        .login("admin", &common::password("admin"), "a")
        .await?;
    // An empty username: the invitee chooses.
    let answer = create_account(&mut admin, "ca", "").await?;
    let uri = invitation(&answer, CREATE_ACCOUNT)?;
    assert_eq!(
        uri.to_uri(),
        format!("xmpp:localhost?register;preauth={}", uri.token)
    );
    let (mut newcomer, _) = unauthenticated(&server).await?;
    register_with(&mut newcomer, &uri.token, "newcomer").await?;
    newcomer
        .authenticate("SCRAM-SHA-256", "newcomer", "a-long-secret")
        .await?;

    // The commands complete at once: a sessionid or another action is refused.
    admin
        .send(&format!(
            "<iq type='set' id='bad' to='localhost'><command xmlns='{COMMANDS}' node='{INVITE}' sessionid='x' action='complete'/></iq>"
        ))
        .await?;
    let bad = common::answer(&mut admin, "bad").await?;
    assert_eq!(stanza_error_condition(&bad).as_deref(), Some("bad-request"));
    Ok(())
}

#[tokio::test]
async fn a_named_account_is_reserved_for_its_invitee_who_is_subscribed() -> anyhow::Result<()> {
    let server = server().await?;
    let mut admin = online_with_roster(&server, "admin", "desk", 0).await?;
    let fields = field("username", "Juliet") + &field("roster-subscription", "1");
    let answer = create_account(&mut admin, "named", &fields).await?;
    let named = invitation(&answer, CREATE_ACCOUNT)?;
    // §4.2: the name (prepared) in the URI.
    assert_eq!(
        named.to_uri(),
        format!("xmpp:juliet@localhost?register;preauth={}", named.token)
    );

    // The name is free of accounts and of other invitations, and a valid localpart.
    for (id, username, condition) in [
        ("again", "juliet", "conflict"),
        ("taken", "alice", "conflict"),
        ("bad", "jul@iet", "jid-malformed"),
    ] {
        let refused = create_account(&mut admin, id, &field("username", username)).await?;
        assert_eq!(
            stanza_error_condition(&refused).as_deref(),
            Some(condition),
            "{username}: {refused}"
        );
    }
    // Nobody else registers it: not by open registration, not with another invitation.
    let open = register_openly(&server, "juliet").await?;
    assert_eq!(
        stanza_error_condition(&open).as_deref(),
        Some("conflict"),
        "{open}"
    );
    let free = invitation(
        &create_account(&mut admin, "free", "").await?,
        CREATE_ACCOUNT,
    )?;
    let (mut other, _) = unauthenticated(&server).await?;
    let err = register_with(&mut other, &free.token, "juliet")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("conflict"), "{err}");

    // The named invitation registers that name only, then it is subscribed with the admin.
    let (mut juliet, _) = unauthenticated(&server).await?;
    let err = register_with(&mut juliet, &named.token, "romeo")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("forbidden"), "{err}");
    register_with(&mut juliet, &named.token, "juliet").await?;
    expect_push(&mut admin, "juliet@localhost", "both", false).await?;
    juliet
        .authenticate("SCRAM-SHA-256", "juliet", "a-long-secret")
        .await?;
    // Used up, the reservation is gone with it: the other invitation takes another name.
    register_with(&mut other, &free.token, "romeo").await?;
    Ok(())
}
