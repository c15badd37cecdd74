//! XEP-0357 push notifications, with a real XEP-0114 component as the app server's push
//! service: enabling and disabling, a notification when the user's only session waits for
//! resumption and when the user is offline, none while a session is connected, the body only
//! when the operator allows it, an error answer disabling the registration, and the refusals.

use crate::common;

use std::sync::Arc;

use anyhow::Context;
use std::time::Duration;

use common::component::connect_component;
use common::{SILENCE, add_users, expect_error, expect_presence, expect_result, online, password};
use xmppd::config::ComponentConfig;
use xmppd_proto::data_form::DataForm;
use xmppd_proto::push::{NS_PUBLISH_OPTIONS, NS_PUBSUB, NS_PUSH, Summary};
use xmppd_stream::component::COMPONENT_NS;
use xmppd_testkit::{TestClient, TestServer};
use xmppd_xml::Element;

const SERVICE: &str = "push.localhost";
const SECRET: &str = "push-secret";
const ALICE: &str = "alice@localhost";
const SM: &str = "urn:xmpp:sm:3";

/// A server with the push service as a component, `[modules.push]` set to `settings`, and
/// the accounts alice and bob.
async fn server(settings: &str) -> anyhow::Result<TestServer> {
    let text: Arc<str> = Arc::from(format!("[modules.push]\n{settings}\n"));
    let server = TestServer::start_with(move |c| {
        c.components = vec![ComponentConfig {
            name: SERVICE.into(),
            secret: SECRET.into(),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        }];
        c.text = Some(text);
    })
    .await?;
    add_users(&server, &["alice", "bob"]).await?;
    Ok(server)
}

/// Sends `<enable/>` for `node` (with a secret as publish option when given) and expects
/// the empty result.
async fn enable(client: &mut TestClient, node: &str, secret: Option<&str>) -> anyhow::Result<()> {
    let form = secret.map_or(String::new(), |s| {
        format!(
            "<x xmlns='jabber:x:data' type='submit'>\
               <field var='FORM_TYPE'><value>{NS_PUBLISH_OPTIONS}</value></field>\
               <field var='secret'><value>{s}</value></field></x>"
        )
    });
    let id = format!("enable-{node}");
    client
        .send(&format!(
            "<iq type='set' to='{ALICE}' id='{id}'>\
               <enable xmlns='{NS_PUSH}' jid='{SERVICE}' node='{node}'>{form}</enable></iq>"
        ))
        .await?;
    expect_result(client, &id, ALICE).await?;
    Ok(())
}

/// Logs alice in as `phone` with resumable stream management (a window of `max` seconds
/// when given) and initial presence.
async fn resumable_alice(server: &TestServer, max: Option<u32>) -> anyhow::Result<TestClient> {
    let mut alice = server.login("alice", &password("alice"), "phone").await?;
    let max = max.map(|m| format!(" max='{m}'")).unwrap_or_default();
    alice
        .send(&format!("<enable xmlns='{SM}' resume='true'{max}/>"))
        .await?;
    alice.expect("enabled", |e| e.is("enabled", SM)).await?;
    alice.available(0).await?;
    expect_presence(&mut alice, "alice@localhost/phone", None).await?;
    Ok(alice)
}

async fn chat(from: &mut TestClient, text: &str) -> anyhow::Result<()> {
    from.send(&format!(
        "<message to='{ALICE}' type='chat' id='{text}'><body>{text}</body></message>"
    ))
    .await
}

/// A publish the push service received.
struct Publish {
    iq: Element,
    node: String,
    summary: Summary,
    options: Option<DataForm>,
}

/// Expects the publish iq at the push service.
async fn expect_publish(service: &mut TestClient) -> anyhow::Result<Publish> {
    let iq = service
        .expect("a publish", |e| {
            e.is("iq", COMPONENT_NS) && e.attr("type") == Some("set")
        })
        .await?;
    assert_eq!(iq.attr("from"), Some(ALICE), "from the user's bare JID");
    assert_eq!(iq.attr("to"), Some(SERVICE));
    let pubsub = iq.child("pubsub", NS_PUBSUB).context("pubsub")?;
    let publish = pubsub.child("publish", NS_PUBSUB).context("publish")?;
    let notification = publish
        .child("item", NS_PUBSUB)
        .and_then(|i| i.child("notification", NS_PUSH))
        .context("notification")?;
    let options = pubsub
        .child("publish-options", NS_PUBSUB)
        .and_then(|o| o.child("x", "jabber:x:data"))
        .map(DataForm::try_from)
        .transpose()?;
    Ok(Publish {
        node: publish.attr("node").unwrap_or_default().to_owned(),
        summary: Summary::from_notification(notification)?,
        iq,
        options,
    })
}

/// Answers a publish with an empty result.
async fn acknowledge(service: &mut TestClient, publish: &Publish) -> anyhow::Result<()> {
    let id = publish.iq.attr("id").unwrap_or_default();
    service
        .send(&format!(
            "<iq type='result' from='{SERVICE}' to='{ALICE}' id='{id}'/>"
        ))
        .await
}

/// A server with `settings`, the push service connected, bob online, and alice offline after
/// enabling `nodes`.
struct OfflineScene {
    server: TestServer,
    service: TestClient,
    bob: TestClient,
}

async fn alice_offline_with(settings: &str, nodes: &[&str]) -> anyhow::Result<OfflineScene> {
    let server = server(settings).await?;
    let service = connect_component(&server, SERVICE, SECRET).await?;
    let bob = online(&server, "bob", "desk", 0).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    for node in nodes {
        enable(&mut alice, node, None).await?;
    }
    alice.close().await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(OfflineScene {
        server,
        service,
        bob,
    })
}

#[tokio::test]
async fn a_detached_session_brings_notifications_with_the_publish_options() -> anyhow::Result<()> {
    let server = server("").await?;
    let mut service = connect_component(&server, SERVICE, SECRET).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    let mut alice = resumable_alice(&server, None).await?;
    enable(&mut alice, "node-1", Some("s3cr3t")).await?;
    // The transport dies; the session waits to be resumed.
    drop(alice);
    tokio::time::sleep(Duration::from_millis(200)).await;

    chat(&mut bob, "first").await?;
    let publish = expect_publish(&mut service).await?;
    assert_eq!(publish.node, "node-1");
    assert_eq!(publish.summary.message_count, 1);
    assert_eq!(
        publish.summary.last_sender.as_ref().map(|j| j.as_str()),
        Some("bob@localhost/desk")
    );
    assert_eq!(publish.summary.last_body, None, "no body unless configured");
    let options = publish.options.as_ref().expect("the publish options");
    assert_eq!(options.form_type(), Some(NS_PUBLISH_OPTIONS));
    assert_eq!(options.value("secret"), Some("s3cr3t"));
    acknowledge(&mut service, &publish).await?;

    chat(&mut bob, "second").await?;
    let publish = expect_publish(&mut service).await?;
    assert_eq!(
        publish.summary.message_count, 2,
        "counted since last online"
    );
    acknowledge(&mut service, &publish).await?;
    // A message without a body (a chat state) wakes nobody.
    bob.send(&format!(
        "<message to='{ALICE}' type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>"
    ))
    .await?;
    service.expect_silence(SILENCE).await?;
    Ok(())
}

#[tokio::test]
async fn an_offline_user_is_notified_and_the_count_restarts_at_login() -> anyhow::Result<()> {
    let OfflineScene {
        server,
        mut service,
        mut bob,
    } = alice_offline_with("", &["node-1"]).await?;
    chat(&mut bob, "one").await?;
    let publish = expect_publish(&mut service).await?;
    assert_eq!(publish.summary.message_count, 1);
    assert!(publish.options.is_none(), "none were given");
    acknowledge(&mut service, &publish).await?;
    chat(&mut bob, "two").await?;
    assert_eq!(expect_publish(&mut service).await?.summary.message_count, 2);

    // She logs in (and out): the count starts again.
    let alice = online(&server, "alice", "phone", 0).await?;
    alice.close().await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    chat(&mut bob, "three").await?;
    assert_eq!(expect_publish(&mut service).await?.summary.message_count, 1);
    Ok(())
}

#[tokio::test]
async fn no_notification_while_a_session_is_connected() -> anyhow::Result<()> {
    let server = server("").await?;
    let mut service = connect_component(&server, SERVICE, SECRET).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    let mut phone = resumable_alice(&server, None).await?;
    enable(&mut phone, "node-1", None).await?;
    chat(&mut bob, "connected").await?;
    phone
        .expect("the message", |e| e.name() == "message")
        .await?;
    service.expect_silence(SILENCE).await?;

    // One session waits for resumption, another is connected: still nothing.
    let mut laptop = online(&server, "alice", "laptop", 0).await?;
    expect_presence(&mut laptop, "alice@localhost/phone", None).await?;
    drop(phone);
    tokio::time::sleep(Duration::from_millis(200)).await;
    chat(&mut bob, "to-laptop").await?;
    laptop
        .expect("the message", |e| {
            e.name() == "message" && e.attr("id") == Some("to-laptop")
        })
        .await?;
    service.expect_silence(SILENCE).await?;
    Ok(())
}

#[tokio::test]
async fn the_body_is_sent_only_when_configured() -> anyhow::Result<()> {
    let OfflineScene {
        mut service,
        mut bob,
        ..
    } = alice_offline_with("include_body = true", &["node-1"]).await?;
    chat(&mut bob, "hello").await?;
    let publish = expect_publish(&mut service).await?;
    assert_eq!(publish.summary.last_body.as_deref(), Some("hello"));
    Ok(())
}

#[tokio::test]
async fn an_error_answer_disables_the_registration() -> anyhow::Result<()> {
    let OfflineScene {
        mut service,
        mut bob,
        ..
    } = alice_offline_with("", &["stale", "live"]).await?;

    chat(&mut bob, "one").await?;
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let publish = expect_publish(&mut service).await?;
        let id = publish.iq.attr("id").unwrap_or_default().to_owned();
        if publish.node == "stale" {
            service
                .send(&format!(
                    "<iq type='error' from='{SERVICE}' to='{ALICE}' id='{id}'>\
                       <error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
                ))
                .await?;
        } else {
            acknowledge(&mut service, &publish).await?;
        }
        nodes.push(publish.node);
    }
    nodes.sort();
    assert_eq!(nodes, ["live", "stale"]);
    tokio::time::sleep(Duration::from_millis(100)).await;

    chat(&mut bob, "two").await?;
    let publish = expect_publish(&mut service).await?;
    assert_eq!(publish.node, "live", "the stale node is disabled");
    service.expect_silence(SILENCE).await?;
    Ok(())
}

#[tokio::test]
async fn disable_stops_notifications() -> anyhow::Result<()> {
    let server = server("").await?;
    let mut service = connect_component(&server, SERVICE, SECRET).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    enable(&mut alice, "a", None).await?;
    enable(&mut alice, "b", None).await?;
    // Without `to`: on behalf of her own account. Without node: every node of the service.
    alice
        .send(&format!(
            "<iq type='set' id='d1'><disable xmlns='{NS_PUSH}' jid='{SERVICE}'/></iq>"
        ))
        .await?;
    alice
        .expect("the result", |e| {
            e.attr("id") == Some("d1") && e.attr("type") == Some("result")
        })
        .await?;
    alice.close().await?;
    tokio::time::sleep(Duration::from_millis(100)).await;
    chat(&mut bob, "unseen").await?;
    service.expect_silence(SILENCE).await?;
    Ok(())
}

#[tokio::test]
async fn malformed_requests_and_the_limit_are_refused() -> anyhow::Result<()> {
    let server = server("max_registrations = 2").await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    for (id, attrs, condition) in [
        ("no-node", format!("jid='{SERVICE}'"), "bad-request"),
        ("no-jid", "node='n'".to_owned(), "bad-request"),
        ("bad-jid", "jid='a@@b' node='n'".to_owned(), "jid-malformed"),
    ] {
        alice
            .send(&format!(
                "<iq type='set' to='{ALICE}' id='{id}'><enable xmlns='{NS_PUSH}' {attrs}/></iq>"
            ))
            .await?;
        expect_error(&mut alice, "iq", id, ALICE, condition).await?;
    }
    enable(&mut alice, "a", None).await?;
    enable(&mut alice, "b", None).await?;
    // The same pair again replaces its options; a third pair is over the limit.
    enable(&mut alice, "a", Some("new")).await?;
    alice
        .send(&format!(
            "<iq type='set' to='{ALICE}' id='third'><enable xmlns='{NS_PUSH}' jid='{SERVICE}' node='c'/></iq>"
        ))
        .await?;
    expect_error(&mut alice, "iq", "third", ALICE, "not-acceptable").await?;

    // Nobody else may enable push for her.
    let mut bob = online(&server, "bob", "desk", 0).await?;
    bob.send(&format!(
        "<iq type='set' to='{ALICE}' id='theirs'><enable xmlns='{NS_PUSH}' jid='{SERVICE}' node='x'/></iq>"
    ))
    .await?;
    expect_error(&mut bob, "iq", "theirs", ALICE, "forbidden").await?;
    Ok(())
}

#[tokio::test]
async fn a_message_held_when_the_window_ends_is_not_announced_twice() -> anyhow::Result<()> {
    let server = server("").await?;
    let mut service = connect_component(&server, SERVICE, SECRET).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    let mut alice = resumable_alice(&server, Some(1)).await?;
    enable(&mut alice, "node-1", None).await?;
    drop(alice);
    tokio::time::sleep(Duration::from_millis(200)).await;
    chat(&mut bob, "held").await?;
    let publish = expect_publish(&mut service).await?;
    assert_eq!(publish.summary.message_count, 1);
    acknowledge(&mut service, &publish).await?;
    // The one-second window passes: the held message goes to offline storage, unannounced.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    service.expect_silence(SILENCE).await?;
    chat(&mut bob, "later").await?;
    assert_eq!(expect_publish(&mut service).await?.summary.message_count, 2);
    Ok(())
}

/// §4: the account advertises push in its disco#info.
#[tokio::test]
async fn the_account_advertises_push() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    alice
        .send(&format!(
            "<iq type='get' id='info' to='{ALICE}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
        ))
        .await?;
    let result = expect_result(&mut alice, "info", ALICE).await?;
    let advertised = result
        .children()
        .flat_map(|q| q.children())
        .any(|f| f.name() == "feature" && f.attr("var") == Some(NS_PUSH));
    assert!(advertised, "{result}");
    Ok(())
}
