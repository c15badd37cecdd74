//! Federation between two xmppd instances on two loopback addresses with static routes
//! (RFC 6120 §13.7, XEP-0178, XEP-0220): certificate authentication, dialback, a forged
//! sender, a wrong dialback key, and stanzas bounced when the peer cannot be reached.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::federation::{
    A, Auth, B, chat_both_ways, expect_body, free_port, next_matching, online, peer_authenticated,
    peer_over_tls, ping_remote_server, route_to, two_servers,
};
use common::{CLIENT, password};
use xmppd::config::{ComponentConfig, S2sListenConfig};
use xmppd_s2s::{S2sListenerKind, StaticRoute, Transport};
use xmppd_stream::component::{COMPONENT_NS, handshake_digest};
use xmppd_testkit::{TestClient, TestPki, TestServer, stanza_error_condition};
use xmppd_xml::{Element, StreamEvent};

#[tokio::test]
async fn certificates_carry_messages_pings_and_subscriptions_both_ways() -> anyhow::Result<()> {
    // secure_auth on both sides: only SASL EXTERNAL with the test CA's certificates can
    // authenticate these streams.
    let (_pki, a, b) = two_servers(Auth::Certificates).await?;
    let mut alice = online(&a, "alice").await?;
    let mut bob = online(&b, "bob").await?;
    chat_both_ways(&mut alice, &mut bob).await?;
    ping_remote_server(&mut alice, B).await?;
    ping_remote_server(&mut bob, A).await?;

    // RFC 6121 §3: alice subscribes to bob across the federation; bob approves.
    alice
        .send("<presence to='bob@b.test' type='subscribe'/>")
        .await?;
    next_matching(&mut bob, "subscription request", |e| {
        e.is("presence", CLIENT)
            && e.attr("type") == Some("subscribe")
            && e.attr("from") == Some("alice@a.test")
    })
    .await?;
    bob.send("<presence to='alice@a.test' type='subscribed'/>")
        .await?;
    // The approval reaches alice, then bob's current presence (RFC 6121 §3.1.5, §3.1.6).
    next_matching(&mut alice, "the approval", |e| {
        e.is("presence", CLIENT)
            && e.attr("type") == Some("subscribed")
            && e.attr("from") == Some("bob@b.test")
    })
    .await?;
    next_matching(&mut alice, "bob's presence", |e| {
        e.is("presence", CLIENT)
            && e.attr("from") == Some("bob@b.test/res")
            && e.attr("type").is_none()
    })
    .await?;
    // A presence update from bob reaches his subscriber on the other server.
    bob.send("<presence><status>on the other server</status></presence>")
        .await?;
    next_matching(&mut alice, "bob's presence update", |e| {
        e.is("presence", CLIENT)
            && e.attr("from") == Some("bob@b.test/res")
            && e.child("status", CLIENT).map(Element::text).as_deref()
                == Some("on the other server")
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn dialback_authenticates_when_certificates_are_not_trusted() -> anyhow::Result<()> {
    let (_pki, a, b) = two_servers(Auth::Dialback).await?;
    let mut alice = online(&a, "alice").await?;
    let mut bob = online(&b, "bob").await?;
    chat_both_ways(&mut alice, &mut bob).await?;
    ping_remote_server(&mut bob, A).await?;
    Ok(())
}

#[tokio::test]
async fn direct_tls_federation_with_xep_0368() -> anyhow::Result<()> {
    // b.test also listens for TLS from the first byte; a.test's route says so.
    let pki = TestPki::new(&[A, B])?;
    let a_addr = free_port([127, 0, 0, 1])?;
    let b_addr = free_port([127, 0, 0, 2])?;
    let b_direct = free_port([127, 0, 0, 2])?;
    let a = TestServer::start_federated(A, &pki, a_addr, true, |c| {
        c.s2s.settings.routes.insert(
            B.to_owned(),
            vec![StaticRoute {
                host: b_direct.ip().to_string(),
                port: b_direct.port(),
                transport: Transport::DirectTls,
            }],
        );
        c.s2s.secure_auth = true;
    })
    .await?;
    let b = TestServer::start_federated(B, &pki, b_addr, true, |c| {
        route_to(c, A, a_addr);
        c.s2s.secure_auth = true;
        c.s2s_listen.push(S2sListenConfig {
            kind: S2sListenerKind::DirectTls,
            addr: b_direct,
        });
    })
    .await?;
    a.add_user("alice", &password("alice")).await?;
    b.add_user("bob", &password("bob")).await?;
    let mut alice = online(&a, "alice").await?;
    let mut bob = online(&b, "bob").await?;
    chat_both_ways(&mut alice, &mut bob).await?;
    Ok(())
}

#[tokio::test]
async fn a_component_talks_to_a_remote_user() -> anyhow::Result<()> {
    // XEP-0114: irc.a.test is a component of a.test; its stanzas to b.test go through
    // federation as the component's own domain (authenticated by dialback, since a.test's
    // certificate does not name it), and b.test's replies come back to it.
    const IRC: &str = "irc.a.test";
    const SECRET: &str = "gateway-secret";
    let pki = TestPki::new(&[A, B])?;
    let a_addr = free_port([127, 0, 0, 1])?;
    let b_addr = free_port([127, 0, 0, 2])?;
    let a = TestServer::start_federated(A, &pki, a_addr, true, |c| {
        route_to(c, B, b_addr);
        c.components = vec![ComponentConfig {
            name: IRC.into(),
            secret: SECRET.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        }];
    })
    .await?;
    let b = TestServer::start_federated(B, &pki, b_addr, true, |c| {
        route_to(c, A, a_addr);
        route_to(c, IRC, a_addr);
    })
    .await?;
    b.add_user("bob", &password("bob")).await?;
    let mut bob = online(&b, "bob").await?;
    let mut component = TestClient::connect(a.server.component_listeners[0]).await?;
    component
        .send(&format!(
            "<stream:stream xmlns='{COMPONENT_NS}' xmlns:stream='http://etherx.jabber.org/streams' to='{IRC}'>"
        ))
        .await?;
    let StreamEvent::Open(header) = component.next_event().await? else {
        anyhow::bail!("expected the server's stream header");
    };
    let id = header.attr("id").unwrap_or_default().to_owned();
    component
        .send(&format!(
            "<handshake>{}</handshake>",
            handshake_digest(&id, SECRET)
        ))
        .await?;
    component
        .expect("handshake", |e| e.name() == "handshake")
        .await?;
    component
        .send("<message from='#chan%irc@irc.a.test/nick' to='bob@b.test/res'><body>from irc</body></message>")
        .await?;
    expect_body(&mut bob, "#chan%irc@irc.a.test/nick", "from irc").await?;
    bob.send("<message to='#chan%irc@irc.a.test/nick'><body>to irc</body></message>")
        .await?;
    next_matching(&mut component, "bob's reply", |e| {
        e.name() == "message"
            && e.attr("from") == Some("bob@b.test/res")
            && e.child("body", COMPONENT_NS).map(Element::text).as_deref() == Some("to irc")
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn secure_auth_refuses_a_peer_without_a_trusted_certificate() -> anyhow::Result<()> {
    // b.test trusts nothing and allows no dialback: a.test cannot authenticate to it.
    let pki = TestPki::new(&[A, B])?;
    let a_addr = free_port([127, 0, 0, 1])?;
    let b_addr = free_port([127, 0, 0, 2])?;
    let a = TestServer::start_federated(A, &pki, a_addr, true, |c| route_to(c, B, b_addr)).await?;
    let b = TestServer::start_federated(B, &pki, b_addr, false, |c| {
        route_to(c, A, a_addr);
        c.s2s.secure_auth = true;
    })
    .await?;
    a.add_user("alice", &password("alice")).await?;
    b.add_user("bob", &password("bob")).await?;
    let mut alice = online(&a, "alice").await?;
    alice
        .send("<message to='bob@b.test' id='m1'><body>hi</body></message>")
        .await?;
    let bounce = next_matching(&mut alice, "bounce", |e| e.attr("id") == Some("m1")).await?;
    // b.test answers a.test's dialback with a policy-violation error; XEP-0220 §2.4 has the
    // queued stanzas returned as remote-server-timeout.
    assert_eq!(
        stanza_error_condition(&bounce).as_deref(),
        Some("remote-server-timeout"),
        "{bounce}"
    );
    Ok(())
}

#[tokio::test]
async fn queued_stanzas_bounce_when_the_peer_is_down() -> anyhow::Result<()> {
    let pki = TestPki::new(&[A])?;
    // Nothing listens on this port.
    let nowhere = free_port([127, 0, 0, 2])?;
    let a = TestServer::start_federated(A, &pki, free_port([127, 0, 0, 1])?, true, |c| {
        route_to(c, B, nowhere)
    })
    .await?;
    a.add_user("alice", &password("alice")).await?;
    let mut alice = online(&a, "alice").await?;
    for i in 0..3 {
        alice
            .send(&format!(
                "<message to='bob@b.test' id='q{i}'><body>{i}</body></message>"
            ))
            .await?;
    }
    for i in 0..3 {
        let id = format!("q{i}");
        let bounce = next_matching(&mut alice, &id, |e| e.attr("id") == Some(id.as_str())).await?;
        assert_eq!(bounce.attr("type"), Some("error"));
        assert_eq!(bounce.attr("from"), Some("bob@b.test"));
        assert_eq!(
            stanza_error_condition(&bounce).as_deref(),
            Some("remote-server-not-found")
        );
    }
    Ok(())
}

/// A "server" on 127.0.0.2 that accepts connections and never says anything; abort the task
/// to close them.
async fn silent_peer() -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let silent = tokio::net::TcpListener::bind("127.0.0.2:0").await?;
    let addr = silent.local_addr()?;
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    Ok((addr, held))
}

#[tokio::test]
async fn a_peer_that_never_answers_times_out() -> anyhow::Result<()> {
    let pki = TestPki::new(&[A])?;
    let (silent_addr, held) = silent_peer().await?;
    let a = TestServer::start_federated(A, &pki, free_port([127, 0, 0, 1])?, true, |c| {
        route_to(c, B, silent_addr);
        c.s2s.settings.negotiation_timeout = Duration::from_secs(1);
    })
    .await?;
    a.add_user("alice", &password("alice")).await?;
    let mut alice = online(&a, "alice").await?;
    alice
        .send("<iq to='b.test' type='get' id='t1'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    let bounce = next_matching(&mut alice, "timeout", |e| e.attr("id") == Some("t1")).await?;
    assert_eq!(
        stanza_error_condition(&bounce).as_deref(),
        Some("remote-server-timeout")
    );
    held.abort();
    Ok(())
}

#[tokio::test]
async fn outbound_streams_are_bounded() -> anyhow::Result<()> {
    // One outbound stream at most: while the one to b.test hangs in negotiation, a stanza for
    // c.test is refused at once instead of opening another.
    let pki = TestPki::new(&[A])?;
    let (silent_addr, held) = silent_peer().await?;
    let a = TestServer::start_federated(A, &pki, free_port([127, 0, 0, 1])?, true, |c| {
        route_to(c, B, silent_addr);
        route_to(c, "c.test", silent_addr);
        c.s2s.settings.max_outbound_links = 1;
    })
    .await?;
    a.add_user("alice", &password("alice")).await?;
    let mut alice = online(&a, "alice").await?;
    alice
        .send("<message to='bob@b.test' id='m1'><body>1</body></message>")
        .await?;
    alice
        .send("<message to='carol@c.test' id='m2'><body>2</body></message>")
        .await?;
    let bounce = next_matching(&mut alice, "refusal", |e| e.attr("id") == Some("m2")).await?;
    assert_eq!(
        stanza_error_condition(&bounce).as_deref(),
        Some("remote-server-not-found")
    );
    held.abort();
    Ok(())
}

#[tokio::test]
async fn an_idle_link_closes_and_a_new_one_opens_for_the_next_stanza() -> anyhow::Result<()> {
    let pki = TestPki::new(&[A, B])?;
    let a_addr = free_port([127, 0, 0, 1])?;
    let b_addr = free_port([127, 0, 0, 2])?;
    let a = TestServer::start_federated(A, &pki, a_addr, true, |c| {
        route_to(c, B, b_addr);
        c.s2s.settings.idle_timeout = Duration::from_millis(300);
    })
    .await?;
    let b = TestServer::start_federated(B, &pki, b_addr, true, |c| route_to(c, A, a_addr)).await?;
    a.add_user("alice", &password("alice")).await?;
    b.add_user("bob", &password("bob")).await?;
    let mut alice = online(&a, "alice").await?;
    let mut bob = online(&b, "bob").await?;
    alice
        .send("<message to='bob@b.test/res'><body>one</body></message>")
        .await?;
    expect_body(&mut bob, "alice@a.test/res", "one").await?;
    tokio::time::sleep(Duration::from_millis(900)).await;
    alice
        .send("<message to='bob@b.test/res'><body>two</body></message>")
        .await?;
    expect_body(&mut bob, "alice@a.test/res", "two").await?;
    Ok(())
}

#[tokio::test]
async fn a_sender_domain_not_authenticated_on_the_stream_is_invalid_from() -> anyhow::Result<()> {
    let pki = TestPki::new(&[A, B])?;
    let b = TestServer::start_federated(B, &pki, free_port([127, 0, 0, 2])?, true, |_| {}).await?;
    b.add_user("bob", &password("bob")).await?;
    // Authenticated as a.test with its certificate (SASL EXTERNAL, XEP-0178)...
    let mut peer = peer_authenticated(&b, &pki, A).await?;
    peer.send("<message from='alice@a.test/x' to='bob@b.test'><body>legit</body></message>")
        .await?;
    // ...but then claiming to speak for another domain.
    peer.send("<message from='mallory@c.test' to='bob@b.test'><body>forged</body></message>")
        .await?;
    assert_eq!(peer.expect_stream_error().await?, "invalid-from");
    Ok(())
}

#[tokio::test]
async fn stanzas_before_authentication_and_after_a_wrong_dialback_key_are_refused()
-> anyhow::Result<()> {
    let pki = TestPki::new(&[A, B])?;
    let a_addr = free_port([127, 0, 0, 1])?;
    let b_addr = free_port([127, 0, 0, 2])?;
    // The real a.test is up (it is the authoritative server b.test asks).
    let _a =
        TestServer::start_federated(A, &pki, a_addr, false, |c| route_to(c, B, b_addr)).await?;
    let b = TestServer::start_federated(B, &pki, b_addr, false, |c| route_to(c, A, a_addr)).await?;
    // An unsolicited "valid" result authorises nothing (XEP-0220 §3): a stanza after it is
    // still from a domain not authenticated on the stream.
    let (mut peer, _) = peer_over_tls(&b, &pki, A, None).await?;
    peer.send("<db:result from='a.test' to='b.test' type='valid'/>")
        .await?;
    peer.send("<message from='alice@a.test' to='bob@b.test'><body>forged</body></message>")
        .await?;
    assert_eq!(peer.expect_stream_error().await?, "invalid-from");

    // An impostor claims a.test with a made-up key: a.test disowns it, b.test answers
    // "invalid" and, with no other valid domain pair on the stream, closes it (§2.2.1).
    let (mut peer, _) = peer_over_tls(&b, &pki, A, None).await?;
    peer.send("<db:result from='a.test' to='b.test'>0123456789abcdef</db:result>")
        .await?;
    let answer = peer
        .expect("dialback result", |e| {
            e.name() == "result" && e.ns() == "jabber:server:dialback"
        })
        .await?;
    assert_eq!(answer.attr("type"), Some("invalid"), "{answer}");
    assert_eq!(answer.attr("from"), Some(B));
    assert_eq!(peer.expect_stream_error().await?, "not-authorized");
    Ok(())
}

#[tokio::test]
async fn the_authoritative_server_confirms_only_its_own_keys() -> anyhow::Result<()> {
    // b.test's stream ids and a.test's secret make the key; a.test must say "valid" for the
    // key it issued and "invalid" for anything else (XEP-0220 §2.3, XEP-0185).
    let (pki, a, b) = two_servers(Auth::Dialback).await?;
    let mut alice = online(&a, "alice").await?;
    let mut bob = online(&b, "bob").await?;
    chat_both_ways(&mut alice, &mut bob).await?;
    let (mut verifier, _) = peer_over_tls(&a, &pki, B, None).await?;
    verifier
        .send("<db:verify from='b.test' to='a.test' id='made-up'>00ff</db:verify>")
        .await?;
    let answer = verifier
        .expect("verify answer", |e| e.name() == "verify")
        .await?;
    assert_eq!(answer.attr("type"), Some("invalid"), "{answer}");
    assert_eq!(answer.attr("id"), Some("made-up"));
    Ok(())
}
