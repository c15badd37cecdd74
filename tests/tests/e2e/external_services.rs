//! XEP-0215 external services and XEP-0157 contact addresses, end to end: the configured
//! STUN/TURN services with TURN REST API credentials that verify with the shared secret, the
//! type filter, credentials for one service, the refusal of an entity that is not a local
//! user; and the contact addresses form in the server's disco#info, hashed into the caps the
//! stream features carry.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use common::component::connect_component;
use common::{add_users, expect_error, expect_result, password, xmpp_rs_ver};
use hmac::{Hmac, Mac};
use sha1::Sha1;
use xmppd::config::ComponentConfig;
use xmppd_proto::datetime::parse_datetime;
use xmppd_proto::extdisco::{Credentials, NS_EXTDISCO, Services};
use xmppd_testkit::{TestClient, TestServer};
use xmppd_xml::Element;

const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const CAPS: &str = "http://jabber.org/protocol/caps";
const DATA_FORMS: &str = "jabber:x:data";
/// `turn_secret` in [`CONFIG`].
const SECRET: &str = "coturn-shared-secret";
/// An external component: an entity of this server that is not a user.
const COMPONENT: &str = "gateway.localhost";

const CONFIG: &str = r#"
[modules.external_services]
turn_secret = "coturn-shared-secret"
credential_ttl_secs = 3600
[[modules.external_services.services]]
type = "stun"
host = "127.0.0.1"
port = 3478
transport = "udp"
[[modules.external_services.services]]
type = "turn"
host = "127.0.0.1"
port = 3478
transport = "udp"
name = "Relay"
[[modules.external_services.services]]
type = "turns"
host = "turn.localhost"
port = 5349
transport = "tcp"

[modules.contact_info]
abuse = ["mailto:abuse@localhost", "xmpp:abuse@localhost"]
admin = ["xmpp:admin@localhost"]
security = ["https://localhost/security.txt"]
"#;

async fn server() -> anyhow::Result<TestServer> {
    let server = TestServer::start_with(|c| {
        c.text = Some(Arc::from(CONFIG));
        c.components = vec![ComponentConfig {
            name: COMPONENT.into(),
            secret: "component-secret".into(),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        }];
    })
    .await?;
    add_users(&server, &["alice"]).await?;
    Ok(server)
}

/// Sends an extdisco get with `payload` to the server; returns the answer's payload.
async fn ask(client: &mut TestClient, id: &str, payload: &str) -> anyhow::Result<Element> {
    client
        .send(&format!(
            "<iq type='get' to='localhost' id='{id}'>{payload}</iq>"
        ))
        .await?;
    let result = expect_result(client, id, "localhost").await?;
    result
        .children()
        .next()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("empty result {result}"))
}

/// Checks a TURN REST API credential for `user`: the HMAC of the username with the secret,
/// an expiry about `ttl` from now, and the same instant in `expires`.
fn verify_credential(
    service: &xmppd_proto::extdisco::Service,
    user: &str,
    ttl: u64,
) -> anyhow::Result<()> {
    let username = service.username.as_deref().unwrap_or_default();
    let (expiry, who) = username
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("username without expiry: {username}"))?;
    assert_eq!(who, user);
    let expiry: u64 = expiry.parse()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    assert!(
        expiry > now + ttl - 60 && expiry <= now + ttl + 1,
        "{expiry} vs {now}"
    );
    let mut mac = Hmac::<Sha1>::new_from_slice(SECRET.as_bytes())?;
    mac.update(username.as_bytes());
    let expected = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(service.password.as_deref(), Some(expected.as_str()));
    let expires = service
        .expires
        .as_deref()
        .and_then(parse_datetime)
        .ok_or_else(|| anyhow::anyhow!("no valid expires in {service:?}"))?;
    assert_eq!(expires, UNIX_EPOCH + Duration::from_secs(expiry));
    Ok(())
}

#[tokio::test]
async fn services_are_listed_with_credentials_that_verify() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = server.login("alice", &password("alice"), "phone").await?;
    let all = ask(
        &mut alice,
        "s1",
        &format!("<services xmlns='{NS_EXTDISCO}'/>"),
    )
    .await?;
    let all = Services::try_from(&all)?;
    let kinds: Vec<_> = all.services.iter().map(|s| s.kind.as_str()).collect();
    assert_eq!(kinds, ["stun", "turn", "turns"]);
    let stun = &all.services[0];
    assert_eq!(stun.username, None);
    assert_eq!((stun.host.as_str(), stun.port), ("127.0.0.1", Some(3478)));
    for turn in &all.services[1..] {
        assert_eq!(turn.restricted, Some(true));
        verify_credential(turn, "alice@localhost", 3600)?;
    }
    assert_eq!(all.services[1].transport.as_deref(), Some("udp"));
    assert_eq!(all.services[1].name.as_deref(), Some("Relay"));

    let turn = ask(
        &mut alice,
        "s2",
        &format!("<services xmlns='{NS_EXTDISCO}' type='turn'/>"),
    )
    .await?;
    let turn = Services::try_from(&turn)?;
    assert_eq!(turn.kind.as_deref(), Some("turn"));
    assert_eq!(turn.services.len(), 1);
    assert_eq!(turn.services[0].kind, "turn");
    let none = ask(
        &mut alice,
        "s3",
        &format!("<services xmlns='{NS_EXTDISCO}' type='ftp'/>"),
    )
    .await?;
    let none = Services::try_from(&none)?;
    assert_eq!(none.kind.as_deref(), Some("ftp"));
    assert!(none.services.is_empty());

    let creds = ask(
        &mut alice,
        "c1",
        &format!("<credentials xmlns='{NS_EXTDISCO}'><service host='turn.localhost' type='turns'/></credentials>"),
    )
    .await?;
    let creds = Credentials::try_from(&creds)?;
    assert_eq!(creds.services.len(), 1);
    assert_eq!(creds.services[0].port, Some(5349));
    verify_credential(&creds.services[0], "alice@localhost", 3600)?;
    for (id, service, condition) in [
        (
            "c2",
            "<service host='elsewhere.example' type='turn'/>",
            "item-not-found",
        ),
        (
            "c3",
            "<service host='127.0.0.1' type='stun'/>",
            "item-not-found",
        ),
        ("c4", "<service type='turn'/>", "bad-request"),
        ("c5", "", "bad-request"),
    ] {
        alice
            .send(&format!(
                "<iq type='get' to='localhost' id='{id}'><credentials xmlns='{NS_EXTDISCO}'>{service}</credentials></iq>"
            ))
            .await?;
        expect_error(&mut alice, "iq", id, "localhost", condition).await?;
    }
    Ok(())
}

#[tokio::test]
async fn an_entity_that_is_not_a_local_user_is_refused() -> anyhow::Result<()> {
    let server = server().await?;
    let mut gateway = connect_component(&server, COMPONENT, "component-secret").await?;
    for (id, payload) in [
        ("x1", format!("<services xmlns='{NS_EXTDISCO}'/>")),
        (
            "x2",
            format!(
                "<credentials xmlns='{NS_EXTDISCO}'><service host='127.0.0.1' type='turn'/></credentials>"
            ),
        ),
    ] {
        gateway
            .send(&format!(
                "<iq type='get' from='{COMPONENT}' to='localhost' id='{id}'>{payload}</iq>"
            ))
            .await?;
        let reply = gateway
            .expect(&format!("error {id}"), |e| {
                e.name() == "iq" && e.attr("id") == Some(id)
            })
            .await?;
        assert_eq!(reply.attr("type"), Some("error"), "{reply}");
        assert!(!reply.to_string().contains("password"), "{reply}");
        let error = reply
            .children()
            .find(|c| c.name() == "error")
            .ok_or_else(|| anyhow::anyhow!("no error in {reply}"))?;
        assert!(error.children().any(|c| c.name() == "forbidden"), "{reply}");
    }
    Ok(())
}

#[tokio::test]
async fn disco_lists_the_feature_and_the_contact_addresses_in_the_caps() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = server.login("alice", &password("alice"), "phone").await?;
    let c = alice
        .features
        .as_ref()
        .and_then(|f| f.child("c", CAPS))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no caps in the stream features"))?;
    let info = ask(&mut alice, "d1", &format!("<query xmlns='{DISCO_INFO}'/>")).await?;
    let features: Vec<_> = info
        .children()
        .filter(|f| f.name() == "feature")
        .filter_map(|f| f.attr("var"))
        .collect();
    assert!(features.contains(&NS_EXTDISCO), "{info}");
    let form = info
        .children()
        .find(|x| x.is("x", DATA_FORMS))
        .ok_or_else(|| anyhow::anyhow!("no form in {info}"))?;
    let values = |var: &str| -> Vec<String> {
        form.children()
            .find(|f| f.attr("var") == Some(var))
            .map(|f| f.children().map(Element::text).collect())
            .unwrap_or_default()
    };
    assert_eq!(
        values("FORM_TYPE"),
        ["http://jabber.org/network/serverinfo"]
    );
    assert_eq!(
        values("abuse-addresses"),
        ["mailto:abuse@localhost", "xmpp:abuse@localhost"]
    );
    assert_eq!(values("admin-addresses"), ["xmpp:admin@localhost"]);
    assert_eq!(
        values("security-addresses"),
        ["https://localhost/security.txt"]
    );
    assert!(values("sales-addresses").is_empty());
    // The caps in the stream features hash this answer, form included (XEP-0115 §5.4), as an
    // independent implementation computes it.
    assert_eq!(c.attr("ver"), Some(xmpp_rs_ver(&info)?.as_str()), "{info}");
    Ok(())
}
