//! XEP-0352 client state indication: an inactive client is spared presence updates (only the
//! latest per contact is kept) and text-less messages until something urgent comes or it is
//! active again; held stanzas are not counted by stream management until they are written.

use crate::common;

use common::*;
use xmppd_testkit::{TestClient, TestServer};

const CSI: &str = "urn:xmpp:csi:0";
const SM: &str = "urn:xmpp:sm:3";

async fn directed(bob: &mut TestClient, show: &str) -> anyhow::Result<()> {
    bob.send(&format!(
        "<presence to='alice@localhost/phone'><show>{show}</show></presence>"
    ))
    .await
}

fn show(el: &xmppd_xml::Element) -> Option<String> {
    el.child("show", CLIENT).map(xmppd_xml::Element::text)
}

#[tokio::test]
async fn an_inactive_client_gets_only_the_latest_presence_when_a_message_comes()
-> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let features = alice.features.clone();
    assert!(features.is_some_and(|f| f.has_child("csi", CSI)));
    let mut bob = online(&server, "bob", "desk", 0).await?;

    alice.send(&format!("<inactive xmlns='{CSI}'/>")).await?;
    directed(&mut bob, "away").await?;
    bob.send(
        "<message to='alice@localhost/phone' type='chat' id='typing'>\
         <composing xmlns='http://jabber.org/protocol/chatstates'/></message>",
    )
    .await?;
    directed(&mut bob, "dnd").await?;
    alice.expect_silence(SILENCE).await?;
    // A message with a body is urgent: it comes, after what was held, in order.
    bob.send("<message to='alice@localhost/phone' type='chat' id='hi'><body>hi</body></message>")
        .await?;
    let typing = alice
        .expect("the chat state", |e| e.name() == "message")
        .await?;
    assert_eq!(typing.attr("id"), Some("typing"));
    let presence = alice.expect("presence", |e| e.name() == "presence").await?;
    assert_eq!(show(&presence).as_deref(), Some("dnd"), "only the latest");
    let hi = alice
        .expect("the message", |e| e.name() == "message")
        .await?;
    assert_eq!(hi.attr("id"), Some("hi"));
    alice.expect_silence(SILENCE).await?;

    // <active/> releases what is held before the server answers what follows it (§5).
    directed(&mut bob, "xa").await?;
    alice.expect_silence(SILENCE).await?;
    alice
        .send(&format!(
            "<active xmlns='{CSI}'/><iq type='get' id='ping' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await?;
    let presence = alice.expect("presence", |e| e.name() == "presence").await?;
    assert_eq!(show(&presence).as_deref(), Some("xa"));
    expect_result(&mut alice, "ping", "localhost").await?;
    // Active again: presence flows at once.
    directed(&mut bob, "chat").await?;
    alice.expect("presence", |e| e.name() == "presence").await?;
    Ok(())
}

#[tokio::test]
async fn held_stanzas_do_not_count_as_sent_for_stream_management() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    let mut alice = server.login("alice", &password("alice"), "phone").await?;
    alice.send(&format!("<enable xmlns='{SM}'/>")).await?;
    alice.expect("enabled", |e| e.is("enabled", SM)).await?;
    alice.send(&format!("<inactive xmlns='{CSI}'/>")).await?;
    directed(&mut bob, "away").await?;
    alice.expect_silence(SILENCE).await?;
    // Nothing was written, so acknowledging one stanza is acknowledging too many.
    alice.send(&format!("<a xmlns='{SM}' h='1'/>")).await?;
    let el = alice.recv().await?;
    assert!(el.has_child("handled-count-too-high", SM), "{el}");
    Ok(())
}

#[tokio::test]
async fn an_unknown_client_state_ends_the_stream() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    alice.send(&format!("<asleep xmlns='{CSI}'/>")).await?;
    assert_eq!(
        alice.expect_stream_error().await?,
        "unsupported-stanza-type"
    );
    Ok(())
}
