//! Invitations end to end (XEP-0401, XEP-0445, XEP-0379), on a server whose open
//! registration is off (the default): invitations are issued as `xmppd invite create` does,
//! through the store the running server reads; a client presents the token with `<preauth/>`
//! before registering, over TLS. An account invitation registers once and then is
//! `item-not-found`; expired, unknown and malformed tokens too, and the address's refused
//! tokens are limited; a reset invitation sets an existing account's password; a contact
//! invitation subscribes the new account and the inviter both ways, and approves an existing
//! account's request that carries it; the landing page over HTTPS.

use crate::common;

use std::net::SocketAddr;

use common::ws::{self, http_request};
use common::{
    add_users, answer, expect_presence, expect_push, online_with_roster, password, roster_get,
    unauthenticated,
};
use xmppd::config::HttpListenConfig;
use xmppd::invites::{self, InviteRequest, Issued};
use xmppd_core::storage::Storage;
use xmppd_core::{InviteKind, Invites};
use xmppd_http::HttpKind;
use xmppd_proto::pars::{NS_IBR_TOKEN, NS_INVITE_LEGACY, NS_PARS};
use xmppd_proto::register::{NS_FEATURE, NS_REGISTER};
use xmppd_testkit::{TestClient, TestServer, stanza_error_condition};
use xmppd_xml::Element;

const ANY: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// The test server with an HTTPS listener and `[modules.register]` `settings` (open
/// registration off unless they say otherwise).
async fn server(settings: &str) -> anyhow::Result<TestServer> {
    let text: std::sync::Arc<str> =
        std::sync::Arc::from(format!("[modules.register]\n{settings}\n"));
    TestServer::start_with(move |c| {
        c.text = Some(text);
        c.http_listen = vec![HttpListenConfig {
            kind: HttpKind::Tls,
            addr: ANY,
            read_rate: None,
        }];
    })
    .await
}

/// The store, opened beside the running server as the `xmppd invite` verbs open it.
async fn store(server: &TestServer) -> anyhow::Result<Storage> {
    xmppd::open_storage(&server.config).await
}

async fn issue(server: &TestServer, request: InviteRequest) -> anyhow::Result<Issued> {
    let storage = store(server).await?;
    invites::create(&server.config, &storage, None, &request, None).await
}

/// XEP-0445 §4: presents `token`; the answer.
async fn preauth(client: &mut TestClient, token: &str) -> anyhow::Result<Element> {
    client
        .send(&format!(
            "<iq type='set' id='pa'><preauth xmlns='{NS_PARS}' token='{token}'/></iq>"
        ))
        .await?;
    answer(client, "pa").await
}

/// XEP-0077 §3.1: registers `user` with `pass`; the answer.
async fn register(client: &mut TestClient, user: &str, pass: &str) -> anyhow::Result<Element> {
    client
        .send(&format!(
            "<iq type='set' id='reg'><query xmlns='{NS_REGISTER}'><username>{user}</username>\
             <password>{pass}</password></query></iq>"
        ))
        .await?;
    answer(client, "reg").await
}

fn is_result(reply: &Element) -> bool {
    reply.attr("type") == Some("result")
}

fn condition(reply: &Element) -> Option<String> {
    stanza_error_condition(reply)
}

/// The token of an issued invitation, from its URI.
fn token(issued: &Issued) -> anyhow::Result<String> {
    Ok(xmppd_proto::pars::InviteUri::parse(&issued.uri)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .token)
}

/// `GET path` over HTTPS: status, headers, body.
async fn get(
    server: &TestServer,
    path: &str,
) -> anyhow::Result<(u16, Vec<(String, String)>, String)> {
    let addr = server
        .server
        .http_addr(HttpKind::Tls)
        .ok_or_else(|| anyhow::anyhow!("no HTTPS listener"))?;
    let io = ws::tls(server, addr, "localhost").await?;
    http_request(io, "GET", "localhost", path, &[]).await
}

/// Skips stanzas until one satisfies `check` (at most 20).
async fn until(
    client: &mut TestClient,
    what: &str,
    check: impl Fn(&Element) -> bool,
) -> anyhow::Result<Element> {
    for _ in 0..20 {
        let el = client.recv().await?;
        if check(&el) {
            return Ok(el);
        }
    }
    anyhow::bail!("no {what} among 20 stanzas")
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn an_invitation_registers_once_while_open_registration_is_off() -> anyhow::Result<()> {
    let server = server("").await?;
    let issued = issue(&server, InviteRequest::Account).await?;
    let token = token(&issued)?;
    assert_eq!(
        issued.uri,
        format!("xmpp:localhost?register;preauth={token}")
    );

    let (mut client, features) = unauthenticated(&server).await?;
    for ns in [NS_IBR_TOKEN, NS_INVITE_LEGACY, NS_FEATURE] {
        assert!(features.has_child("register", ns), "{ns} in {features}");
    }
    // Without a token the host is invitation-only.
    let reply = register(&mut client, "juliet", "balcony-secret").await?;
    assert_eq!(condition(&reply).as_deref(), Some("forbidden"), "{reply}");

    let (mut client, _) = unauthenticated(&server).await?;
    let reply = preauth(&mut client, &token).await?;
    assert!(is_result(&reply), "{reply}");
    let reply = register(&mut client, "juliet", "balcony-secret").await?;
    assert!(is_result(&reply), "{reply}");
    client
        .authenticate("SCRAM-SHA-256", "juliet", "balcony-secret")
        .await?;
    let jid = client.bind(Some("phone")).await?;
    assert_eq!(jid.as_str(), "juliet@localhost/phone");

    // Used up: the token is unknown now, and its landing page gone.
    let (mut again, _) = unauthenticated(&server).await?;
    let reply = preauth(&mut again, &token).await?;
    assert_eq!(
        condition(&reply).as_deref(),
        Some("item-not-found"),
        "{reply}"
    );
    let (status, _, _) = get(&server, &format!("/invite/{token}")).await?;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test]
async fn a_taken_username_leaves_the_invitation_usable() -> anyhow::Result<()> {
    let server = server("").await?;
    add_users(&server, &["alice"]).await?;
    let token = token(&issue(&server, InviteRequest::Account).await?)?;
    let (mut client, _) = unauthenticated(&server).await?;
    assert!(is_result(&preauth(&mut client, &token).await?));
    let reply = register(&mut client, "alice", "another-secret").await?;
    assert_eq!(condition(&reply).as_deref(), Some("conflict"), "{reply}");
    let reply = register(&mut client, "alicia", "another-secret").await?;
    assert!(is_result(&reply), "{reply}");
    Ok(())
}

#[tokio::test]
async fn expired_unknown_and_malformed_tokens_are_item_not_found() -> anyhow::Result<()> {
    let server = server("").await?;
    let storage = store(&server).await?;
    let expired = Invites::new(storage.map.clone())
        .create("localhost", InviteKind::Account, 0)
        .await?;
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    for token in [expired.token.as_str(), unknown, "not-a-token"] {
        let (mut client, _) = unauthenticated(&server).await?;
        let reply = preauth(&mut client, token).await?;
        assert_eq!(
            condition(&reply).as_deref(),
            Some("item-not-found"),
            "{reply}"
        );
        // Nothing was admitted.
        let reply = register(&mut client, "mallory", "long enough").await?;
        assert_eq!(condition(&reply).as_deref(), Some("forbidden"), "{reply}");
    }
    let (status, _, _) = get(&server, &format!("/invite/{}", expired.token)).await?;
    assert_eq!(status, 404);
    // A <preauth/> without a token is malformed.
    let (mut client, _) = unauthenticated(&server).await?;
    client
        .send(&format!(
            "<iq type='set' id='pa'><preauth xmlns='{NS_PARS}'/></iq>"
        ))
        .await?;
    let reply = answer(&mut client, "pa").await?;
    assert_eq!(condition(&reply).as_deref(), Some("bad-request"), "{reply}");
    Ok(())
}

#[tokio::test]
async fn refused_tokens_are_limited_per_address() -> anyhow::Result<()> {
    let server = server("max_token_failures_per_ip = 2").await?;
    let token = token(&issue(&server, InviteRequest::Account).await?)?;
    let unknown = "0123456789abcdef0123456789abcdef01234567";
    for _ in 0..2 {
        let (mut client, _) = unauthenticated(&server).await?;
        let reply = preauth(&mut client, unknown).await?;
        assert_eq!(condition(&reply).as_deref(), Some("item-not-found"));
    }
    // Past the limit even a good token waits.
    let (mut client, _) = unauthenticated(&server).await?;
    let reply = preauth(&mut client, &token).await?;
    assert_eq!(
        condition(&reply).as_deref(),
        Some("resource-constraint"),
        "{reply}"
    );
    Ok(())
}

#[tokio::test]
async fn a_reset_invitation_sets_the_accounts_password() -> anyhow::Result<()> {
    let server = server("").await?;
    add_users(&server, &["alice"]).await?;
    let issued = issue(&server, InviteRequest::Reset("alice".into())).await?;
    let token = token(&issued)?;
    assert_eq!(
        issued.uri,
        format!("xmpp:alice@localhost?register;preauth={token}")
    );
    let (mut client, _) = unauthenticated(&server).await?;
    assert!(is_result(&preauth(&mut client, &token).await?));
    let reply = register(&mut client, "bob", "new-password").await?;
    assert_eq!(condition(&reply).as_deref(), Some("forbidden"), "{reply}");
    let reply = register(&mut client, "alice", "new-password").await?;
    assert!(is_result(&reply), "{reply}");
    client
        .authenticate("SCRAM-SHA-256", "alice", "new-password")
        .await?;
    let old = server.authenticated("alice", &password("alice")).await;
    assert!(old.is_err(), "the old password no longer works");
    Ok(())
}

#[tokio::test]
async fn a_contact_invitation_registers_and_subscribes_both_ways() -> anyhow::Result<()> {
    let server = server("").await?;
    add_users(&server, &["alice"]).await?;
    let mut alice = online_with_roster(&server, "alice", "desk", 0).await?;
    let issued = issue(&server, InviteRequest::Contact("alice@localhost".into())).await?;
    let token = token(&issued)?;
    assert_eq!(
        issued.uri,
        format!("xmpp:alice@localhost?roster;preauth={token};ibr=y")
    );

    let (mut client, _) = unauthenticated(&server).await?;
    assert!(is_result(&preauth(&mut client, &token).await?));
    assert!(is_result(
        &register(&mut client, "juliet", "balcony-secret").await?
    ));
    // XEP-0401 §3.5: the inviter learns at once.
    expect_push(&mut alice, "juliet@localhost", "both", false).await?;

    client
        .authenticate("SCRAM-SHA-256", "juliet", "balcony-secret")
        .await?;
    client.bind(Some("phone")).await?;
    let roster = roster_get(&mut client, None).await?;
    assert_eq!(
        common::items(&roster),
        vec![("alice@localhost".to_owned(), "both".to_owned(), false)]
    );
    client.available(0).await?;
    expect_presence(&mut alice, "juliet@localhost/phone", None).await?;
    Ok(())
}

#[tokio::test]
async fn an_existing_account_presenting_a_contact_token_is_approved() -> anyhow::Result<()> {
    let server = server("").await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online_with_roster(&server, "alice", "desk", 0).await?;
    let mut bob = online_with_roster(&server, "bob", "phone", 0).await?;
    let token = token(&issue(&server, InviteRequest::Contact("alice".into())).await?)?;

    // XEP-0379 §3.4: bob's client pre-approves alice, then asks with the token.
    bob.send("<presence to='alice@localhost' type='subscribed'/>")
        .await?;
    expect_push(&mut bob, "alice@localhost", "none", false).await?;
    bob.send(&format!(
        "<presence to='alice@localhost' type='subscribe'>\
         <preauth xmlns='{NS_PARS}' token='{token}'/></presence>"
    ))
    .await?;
    // Approved for alice, who asks back and is approved by bob's pre-approval.
    until(&mut bob, "bob subscribed both ways", |e| {
        e.attr("type") == Some("set")
            && common::items(e) == vec![("alice@localhost".to_owned(), "both".to_owned(), false)]
    })
    .await?;
    until(&mut alice, "alice subscribed both ways", |e| {
        e.attr("type") == Some("set")
            && common::items(e) == vec![("bob@localhost".to_owned(), "both".to_owned(), false)]
    })
    .await?;
    // The token is used up.
    let storage = store(&server).await?;
    let left = Invites::new(storage.map.clone())
        .get("localhost", &token)
        .await?;
    assert_eq!(left, None);
    Ok(())
}

#[tokio::test]
async fn a_request_with_a_bad_token_takes_the_manual_path() -> anyhow::Result<()> {
    let server = server("").await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online_with_roster(&server, "alice", "desk", 0).await?;
    let mut bob = online_with_roster(&server, "bob", "phone", 0).await?;
    // A token of another user's invitation approves nothing for alice (XEP-0379 §4.1).
    add_users(&server, &["carol"]).await?;
    let carols = token(&issue(&server, InviteRequest::Contact("carol".into())).await?)?;
    bob.send(&format!(
        "<presence to='alice@localhost' type='subscribe'>\
         <preauth xmlns='{NS_PARS}' token='{carols}'/></presence>"
    ))
    .await?;
    expect_presence(&mut alice, "bob@localhost", Some("subscribe")).await?;
    expect_push(&mut bob, "alice@localhost", "none", true).await?;
    Ok(())
}

#[tokio::test]
async fn the_landing_page_shows_the_invitation_and_404s_the_rest() -> anyhow::Result<()> {
    let server = server("").await?;
    add_users(&server, &["alice"]).await?;
    let issued = issue(&server, InviteRequest::Contact("alice".into())).await?;
    let token = token(&issued)?;
    let (status, headers, body) = get(&server, &format!("/invite/{token}")).await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    assert_eq!(header(&headers, "referrer-policy"), Some("no-referrer"));
    assert!(body.contains(&format!("href=\"{}\"", issued.uri)), "{body}");
    assert!(body.contains("<strong>alice@localhost</strong>"), "{body}");
    assert!(!body.to_ascii_lowercase().contains("<script"));

    for path in [
        "/invite/0123456789abcdef0123456789abcdef01234567".to_owned(),
        "/invite/%3Cscript%3E".to_owned(),
        format!("/invite/{}", token.to_ascii_uppercase()),
    ] {
        let (status, headers, body) = get(&server, &path).await?;
        assert_eq!(status, 404, "{path}");
        assert_eq!(header(&headers, "cache-control"), Some("no-store"));
        assert!(body.contains("not valid"), "{body}");
        assert!(!body.contains("<script"), "{body}");
    }
    // Revoked from the command line's store: gone at once.
    let storage = store(&server).await?;
    invites::revoke(&server.config, &storage, None, &token).await?;
    let (status, _, _) = get(&server, &format!("/invite/{token}")).await?;
    assert_eq!(status, 404);
    Ok(())
}
