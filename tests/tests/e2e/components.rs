//! XEP-0114 external components: handshake, routing both ways, and the errors around them.

use crate::common;

use common::component::{connect_component, open_component};
use common::{CLIENT, SILENCE, add_users, body, expect_error, online};
use xmppd::config::ComponentConfig;
use xmppd_stream::component::{COMPONENT_NS, handshake_digest};
use xmppd_testkit::{TestClient, TestServer};

const IRC: &str = "irc.localhost";
const SECRET: &str = "gateway-secret";

async fn server() -> anyhow::Result<TestServer> {
    let server = TestServer::start_with(|c| {
        c.components = vec![ComponentConfig {
            name: IRC.into(),
            secret: SECRET.into(),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        }];
    })
    .await?;
    add_users(&server, &["alice"]).await?;
    Ok(server)
}

/// A component for irc.localhost that completed the handshake.
async fn connect(server: &TestServer) -> anyhow::Result<TestClient> {
    connect_component(server, IRC, SECRET).await
}

#[tokio::test]
async fn users_and_the_component_exchange_stanzas() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    let mut gateway = connect(&server).await?;

    alice.send("<message to='#chan%irc.net@irc.localhost' type='groupchat' id='g1'><body>hello irc</body></message>").await?;
    let msg = gateway
        .expect("alice's message", |e| e.is("message", COMPONENT_NS))
        .await?;
    assert_eq!(msg.attr("from"), Some("alice@localhost/pc"));
    assert_eq!(msg.attr("to"), Some("#chan%irc.net@irc.localhost"));
    assert_eq!(
        msg.child("body", COMPONENT_NS).map(|b| b.text()).as_deref(),
        Some("hello irc")
    );

    gateway
        .send("<message from='#chan%irc.net@irc.localhost/bob' to='alice@localhost/pc' type='groupchat'><body>hi alice</body></message>")
        .await?;
    let reply = alice
        .expect("the gateway's message", |e| e.is("message", CLIENT))
        .await?;
    assert_eq!(reply.attr("from"), Some("#chan%irc.net@irc.localhost/bob"));
    assert_eq!(body(&reply).as_deref(), Some("hi alice"));

    // An iq round trip: the component answers on behalf of a JID at its domain.
    alice
        .send("<iq to='irc.localhost' type='get' id='v1'><query xmlns='jabber:iq:version'/></iq>")
        .await?;
    let iq = gateway
        .expect("alice's iq", |e| e.is("iq", COMPONENT_NS))
        .await?;
    assert_eq!(iq.attr("id"), Some("v1"));
    gateway
        .send("<iq from='irc.localhost' to='alice@localhost/pc' type='result' id='v1'/>")
        .await?;
    let result = alice.expect("the result", |e| e.is("iq", CLIENT)).await?;
    assert_eq!(
        (result.attr("type"), result.attr("from")),
        (Some("result"), Some("irc.localhost"))
    );
    Ok(())
}

#[tokio::test]
async fn the_component_is_listed_in_the_servers_disco_items() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    alice.send("<iq to='localhost' type='get' id='d1'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>").await?;
    let result = alice
        .expect("disco#items", |e| e.attr("id") == Some("d1"))
        .await?;
    let query = result
        .child("query", "http://jabber.org/protocol/disco#items")
        .expect("query");
    let items: Vec<_> = query.children().filter_map(|i| i.attr("jid")).collect();
    // The component beside the server's own group chat and upload services.
    assert_eq!(items, ["conference.localhost", IRC, "upload.localhost"]);
    Ok(())
}

#[tokio::test]
async fn a_wrong_secret_is_not_authorized_and_an_unknown_name_is_host_unknown() -> anyhow::Result<()>
{
    let server = server().await?;
    let (mut component, id) = open_component(&server, IRC).await?;
    component
        .send(&format!(
            "<handshake>{}</handshake>",
            handshake_digest(&id, "guess")
        ))
        .await?;
    assert_eq!(component.expect_stream_error().await?, "not-authorized");

    let (mut component, _) = open_component(&server, "matrix.localhost").await?;
    assert_eq!(component.expect_stream_error().await?, "host-unknown");
    Ok(())
}

#[tokio::test]
async fn a_component_cannot_send_from_another_domain() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    let mut gateway = connect(&server).await?;
    gateway.send("<message from='admin@localhost' to='alice@localhost/pc'><body>trust me</body></message>").await?;
    assert_eq!(gateway.expect_stream_error().await?, "invalid-from");
    alice.expect_silence(SILENCE).await?;
    Ok(())
}

#[tokio::test]
async fn a_second_connection_for_the_same_component_is_a_conflict() -> anyhow::Result<()> {
    let server = server().await?;
    let mut first = connect(&server).await?;
    let (mut second, id) = open_component(&server, IRC).await?;
    second
        .send(&format!(
            "<handshake>{}</handshake>",
            handshake_digest(&id, SECRET)
        ))
        .await?;
    assert_eq!(second.expect_stream_error().await?, "conflict");
    first.expect_silence(SILENCE).await?;
    Ok(())
}

#[tokio::test]
async fn stanzas_to_a_disconnected_component_bounce() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    alice
        .send("<message to='x@irc.localhost' type='chat' id='m1'><body>anyone?</body></message>")
        .await?;
    expect_error(
        &mut alice,
        "message",
        "m1",
        "x@irc.localhost",
        "service-unavailable",
    )
    .await?;

    let gateway = connect(&server).await?;
    gateway.close().await?;
    // Bounded wait until the server has unregistered the closed component.
    for _ in 0..50 {
        if server.server.router.components().link(IRC).is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    alice
        .send(
            "<message to='x@irc.localhost' type='chat' id='m2'><body>still there?</body></message>",
        )
        .await?;
    expect_error(
        &mut alice,
        "message",
        "m2",
        "x@irc.localhost",
        "service-unavailable",
    )
    .await?;
    Ok(())
}

/// The next presence the gateway receives: (type, from, to).
async fn gateway_presence(
    gateway: &mut TestClient,
) -> anyhow::Result<(Option<String>, Option<String>, Option<String>)> {
    let p = gateway
        .expect("a presence", |e| e.is("presence", COMPONENT_NS))
        .await?;
    let attr = |name| p.attr(name).map(str::to_owned);
    Ok((attr("type"), attr("from"), attr("to")))
}

// RFC 6121 §4.6.3: a gateway (biboumi) learns that a user left its rooms only from the
// unavailable presence the server sends on the user's behalf when the session ends.
#[tokio::test]
async fn a_session_that_ends_sends_unavailable_to_the_rooms_it_joined() -> anyhow::Result<()> {
    let server = server().await?;
    let mut gateway = connect(&server).await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    let me = Some("alice@localhost/pc".to_owned());
    let room_a = "#a%irc.net@irc.localhost/alice";
    let room_b = "#b%irc.net@irc.localhost/alice";
    for room in [room_a, room_b] {
        alice
            .send(&format!(
                "<presence to='{room}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
            ))
            .await?;
        let joined = gateway_presence(&mut gateway).await?;
        assert_eq!(joined, (None, me.clone(), Some(room.to_owned())));
    }
    // Leaving one room explicitly: it is not told again when the session ends.
    alice
        .send(&format!("<presence to='{room_b}' type='unavailable'/>"))
        .await?;
    let left = gateway_presence(&mut gateway).await?;
    assert_eq!(left.0.as_deref(), Some("unavailable"));

    alice.close().await?;
    let unavailable = gateway_presence(&mut gateway).await?;
    assert_eq!(
        unavailable,
        (Some("unavailable".into()), me, Some(room_a.to_owned()))
    );
    gateway.expect_silence(SILENCE).await?;
    Ok(())
}

#[tokio::test]
async fn broadcast_unavailable_goes_to_the_rooms_once_with_its_status() -> anyhow::Result<()> {
    let server = server().await?;
    let mut gateway = connect(&server).await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    let room = "#a%irc.net@irc.localhost/alice";
    alice
        .send(&format!(
            "<presence to='{room}'><x xmlns='http://jabber.org/protocol/muc'/></presence>"
        ))
        .await?;
    gateway_presence(&mut gateway).await?;

    alice
        .send("<presence type='unavailable'><status>gone fishing</status></presence>")
        .await?;
    let p = gateway
        .expect("the unavailable presence", |e| {
            e.is("presence", COMPONENT_NS)
        })
        .await?;
    assert_eq!(
        (p.attr("type"), p.attr("from"), p.attr("to")),
        (Some("unavailable"), Some("alice@localhost/pc"), Some(room))
    );
    assert_eq!(
        p.child("status", COMPONENT_NS).map(|s| s.text()).as_deref(),
        Some("gone fishing")
    );
    // Already told: ending the session sends nothing more.
    alice.close().await?;
    gateway.expect_silence(SILENCE).await?;
    Ok(())
}
