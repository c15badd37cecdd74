//! Service discovery of accounts (XEP-0030 on a bare JID, answered by the server with the
//! account features modules register) and the server's entity capabilities in the stream
//! features (XEP-0115 §6.3), checked against a disco#info answer hashed here by §5.1.

use crate::common;

use std::sync::Arc;

use base64::Engine as _;
use common::*;
use sha1::{Digest, Sha1};
use xmppd::modules::ExtraModules;
use xmppd_core::{Module, NoSettings, Registry};
use xmppd_testkit::{TestClient, TestServer};
use xmppd_xml::Element;

const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
const CAPS: &str = "http://jabber.org/protocol/caps";
const DATA_FORMS: &str = "jabber:x:data";
const ACCOUNT_FEATURE: &str = "urn:example:account-feature";

/// A module that declares one account feature, as archives and push do.
struct AccountFeature;

impl Module for AccountFeature {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        registry.account_feature(ACCOUNT_FEATURE);
    }
}

fn with_account_feature() -> ExtraModules {
    Box::new(|b| b.module("account-feature", |_: NoSettings, _| Ok(AccountFeature)))
}

/// Sends a disco query (`ns`, with `node` if any) to `to`.
async fn ask(
    client: &mut TestClient,
    id: &str,
    to: &str,
    ns: &str,
    node: Option<&str>,
) -> anyhow::Result<()> {
    let node = node.map(|n| format!(" node='{n}'")).unwrap_or_default();
    client
        .send(&format!(
            "<iq type='get' id='{id}' to='{to}'><query xmlns='{ns}'{node}/></iq>"
        ))
        .await
}

/// The `<query/>` of the result of `id` from `from`.
async fn answer(client: &mut TestClient, id: &str, from: &str) -> anyhow::Result<Element> {
    let result = expect_result(client, id, from).await?;
    result
        .children()
        .next()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("empty result: {result}"))
}

fn features(query: &Element) -> Vec<String> {
    query
        .children()
        .filter(|c| c.is("feature", DISCO_INFO))
        .filter_map(|f| f.attr("var").map(str::to_owned))
        .collect()
}

/// `account/registered` and, from the PEP module, `pubsub/pep`.
fn account_identities() -> Vec<(String, String)> {
    vec![
        ("account".to_owned(), "registered".to_owned()),
        ("pubsub".to_owned(), "pep".to_owned()),
    ]
}

fn identities(query: &Element) -> Vec<(String, String)> {
    query
        .children()
        .filter(|c| c.is("identity", DISCO_INFO))
        .map(|i| {
            let attr = |a| i.attr(a).unwrap_or_default().to_owned();
            (attr("category"), attr("type"))
        })
        .collect()
}

#[tokio::test]
async fn an_account_is_discovered_by_its_user_and_contacts_only() -> anyhow::Result<()> {
    let server = TestServer::start_with_modules(|_| {}, Some(with_account_feature())).await?;
    add_users(&server, &["alice", "bob", "carol"]).await?;
    let mut alice = online_with_roster(&server, "alice", "phone", 0).await?;
    let mut bob = online_with_roster(&server, "bob", "desk", 0).await?;
    befriend(&mut alice, "alice", &mut bob, "bob").await?;
    let mut carol = online(&server, "carol", "tablet", 0).await?;
    let (alice_bare, bob_bare) = ("alice@localhost", "bob@localhost");

    // The user, and a contact with a presence subscription (§8): the account's identity and
    // the features registered for accounts.
    for (client, id) in [(&mut alice, "own"), (&mut bob, "contact")] {
        ask(client, id, alice_bare, DISCO_INFO, None).await?;
        let info = answer(client, id, alice_bare).await?;
        // XEP-0163 §4.1: every account is also a PEP service.
        assert_eq!(identities(&info), account_identities(), "{info}");
        let features = features(&info);
        for var in [DISCO_INFO, DISCO_ITEMS, ACCOUNT_FEATURE] {
            assert!(features.iter().any(|f| f == var), "{var}: {info}");
        }
        // Server features are not account features.
        assert!(!features.iter().any(|f| f == CAPS), "{info}");
        ask(
            client,
            &format!("{id}-items"),
            alice_bare,
            DISCO_ITEMS,
            None,
        )
        .await?;
        let items = answer(client, &format!("{id}-items"), alice_bare).await?;
        assert_eq!(items.children().count(), 0, "{items}");
    }
    // An unknown node.
    ask(&mut alice, "node", alice_bare, DISCO_INFO, Some("urn:x")).await?;
    expect_error(&mut alice, "iq", "node", alice_bare, "item-not-found").await?;

    // A stranger learns nothing: the error a missing account gives, and no items.
    ask(&mut carol, "stranger", bob_bare, DISCO_INFO, None).await?;
    expect_error(
        &mut carol,
        "iq",
        "stranger",
        bob_bare,
        "service-unavailable",
    )
    .await?;
    ask(&mut carol, "missing", "nobody@localhost", DISCO_INFO, None).await?;
    expect_error(
        &mut carol,
        "iq",
        "missing",
        "nobody@localhost",
        "service-unavailable",
    )
    .await?;
    ask(&mut carol, "items", bob_bare, DISCO_ITEMS, Some("urn:x")).await?;
    let items = answer(&mut carol, "items", bob_bare).await?;
    assert_eq!(items.children().count(), 0, "{items}");
    server.stop().await;
    Ok(())
}

/// XEP-0115 §5.1, written out again here so that the server's hash is checked against an
/// independent reading of the algorithm.
fn verification_string(info: &Element) -> String {
    let mut identities: Vec<String> = info
        .children()
        .filter(|c| c.is("identity", DISCO_INFO))
        .map(|i| {
            let a = |n| i.attr(n).unwrap_or_default();
            format!(
                "{}/{}/{}/{}",
                a("category"),
                a("type"),
                a("xml:lang"),
                a("name")
            )
        })
        .collect();
    identities.sort();
    let mut features = features(info);
    features.sort();
    let s: String = identities
        .iter()
        .chain(&features)
        .map(|x| format!("{x}<"))
        .collect();
    let forms = info.children().filter(|c| c.is("x", DATA_FORMS)).count();
    assert_eq!(
        forms, 0,
        "extended forms are not hashed by this test: {info}"
    );
    base64::engine::general_purpose::STANDARD.encode(Sha1::digest(s.as_bytes()))
}

#[tokio::test]
async fn the_stream_features_carry_the_servers_capabilities() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    let mut alice = server.login("alice", &password("alice"), "phone").await?;
    let stream_features = alice
        .features
        .clone()
        .ok_or_else(|| anyhow::anyhow!("no features after authentication"))?;
    let c = stream_features
        .child("c", CAPS)
        .ok_or_else(|| anyhow::anyhow!("no caps in {stream_features}"))?;
    assert_eq!(c.attr("hash"), Some("sha-1"), "{c}");
    assert!(c.attr("node").is_some_and(|n| !n.is_empty()), "{c}");

    // §6.3: the disco#info of the server named in the stream header.
    ask(&mut alice, "d", "localhost", DISCO_INFO, None).await?;
    let info = answer(&mut alice, "d", "localhost").await?;
    assert!(features(&info).iter().any(|f| f == CAPS), "{info}");
    assert_eq!(
        c.attr("ver"),
        Some(verification_string(&info).as_str()),
        "{info}"
    );
    // §6.2: the node `node#ver` is answered alike; a node with another ver is not ours.
    let (node, ver) = (
        c.attr("node").unwrap_or_default(),
        c.attr("ver").unwrap_or_default(),
    );
    let node_ver = format!("{node}#{ver}");
    ask(&mut alice, "n", "localhost", DISCO_INFO, Some(&node_ver)).await?;
    let by_node = answer(&mut alice, "n", "localhost").await?;
    assert_eq!(by_node.attr("node"), Some(node_ver.as_str()), "{by_node}");
    assert_eq!(features(&by_node), features(&info));
    let stale = format!("{node}#AAAA");
    ask(&mut alice, "s", "localhost", DISCO_INFO, Some(&stale)).await?;
    expect_error(&mut alice, "iq", "s", "localhost", "item-not-found").await?;
    // And by another implementation: xmpp-parsers (xmpp-rs), as tokio-xmpp clients hash.
    assert_eq!(c.attr("ver"), Some(xmpp_rs_ver(&info)?.as_str()), "{info}");

    // Other modules, another hash; without the disco module, no capabilities.
    for (modules, expect_caps) in [(vec!["disco", "ping"], true), (vec!["ping"], false)] {
        let other = TestServer::start_with(|config| {
            config.modules = Some(modules.iter().map(|m| (*m).to_owned()).collect());
        })
        .await?;
        add_users(&other, &["alice"]).await?;
        let login = other.login("alice", &password("alice"), "phone").await?;
        let other_ver = login
            .features
            .as_ref()
            .and_then(|f| f.child("c", CAPS))
            .and_then(|c| c.attr("ver").map(str::to_owned));
        assert_eq!(other_ver.is_some(), expect_caps, "{modules:?}");
        assert_ne!(other_ver.as_deref(), c.attr("ver"), "{modules:?}");
        other.stop().await;
    }
    server.stop().await;
    Ok(())
}

/// Across federation: a remote stranger gets `service-unavailable`; once the user approved
/// the remote contact's subscription, the contact discovers the account.
#[tokio::test]
async fn a_remote_contact_discovers_the_account_once_subscribed() -> anyhow::Result<()> {
    use common::federation::{Auth, next_matching, online, two_servers};
    let (_pki, a, b) = two_servers(Auth::Certificates).await?;
    let mut alice = online(&a, "alice").await?;
    let mut bob = online(&b, "bob").await?;
    let info_of_alice = |id: &str| {
        format!("<iq type='get' id='{id}' to='alice@a.test'><query xmlns='{DISCO_INFO}'/></iq>")
    };
    let answer_to = |id: &'static str| {
        move |e: &Element| {
            e.is("iq", CLIENT) && e.attr("id") == Some(id) && e.attr("from") == Some("alice@a.test")
        }
    };
    bob.send(&info_of_alice("before")).await?;
    let refused = next_matching(&mut bob, "the refusal", answer_to("before")).await?;
    assert_eq!(
        xmppd_testkit::stanza_error_condition(&refused).as_deref(),
        Some("service-unavailable"),
        "{refused}"
    );

    bob.send("<presence to='alice@a.test' type='subscribe'/>")
        .await?;
    next_matching(&mut alice, "bob's request", |e| {
        e.attr("type") == Some("subscribe") && e.attr("from") == Some("bob@b.test")
    })
    .await?;
    alice
        .send("<presence to='bob@b.test' type='subscribed'/>")
        .await?;
    next_matching(&mut bob, "the approval", |e| {
        e.attr("type") == Some("subscribed") && e.attr("from") == Some("alice@a.test")
    })
    .await?;
    bob.send(&info_of_alice("after")).await?;
    let info = next_matching(&mut bob, "the account's info", answer_to("after")).await?;
    let query = info
        .child("query", DISCO_INFO)
        .ok_or_else(|| anyhow::anyhow!("not a disco#info result: {info}"))?;
    assert_eq!(identities(query), account_identities());
    Ok(())
}
