//! A configuration reload (SIGHUP, `xmppd reload`) in process: hosts, limits, the
//! authentication policy and federation's settings apply to what starts afterwards, while
//! sessions already open go on as they were.

use crate::common;

use common::federation::{A, B, free_port, route_to};
use common::{expect_message, password};
use jid::BareJid;
use xmppd::config::HostConfig;
use xmppd_testkit::{TestClient, TestPki, TestServer};

const SECOND: &str = "second.test";

/// Logs `user@SECOND` in (its certificate is from `pki`) and binds `resource`.
async fn login_second(
    server: &TestServer,
    pki: &TestPki,
    user: &str,
    resource: &str,
) -> anyhow::Result<TestClient> {
    let mut client = TestClient::connect(server.starttls_addr()).await?;
    client.open_stream(SECOND).await?;
    client.starttls(pki.tls_client_config(), SECOND).await?;
    client
        .authenticate("SCRAM-SHA-256", user, &password(user))
        .await?;
    client.bind(Some(resource)).await?;
    Ok(client)
}

/// A message of about `bytes` bytes from `client` to itself, and its arrival.
async fn echo_large(client: &mut TestClient, me: &str, bytes: usize) -> anyhow::Result<()> {
    let text = "x".repeat(bytes);
    client
        .send(&format!(
            "<message to='{me}' type='chat'><body>{text}</body></message>"
        ))
        .await?;
    expect_message(client, me, me, &text).await?;
    Ok(())
}

#[tokio::test]
async fn a_reload_adds_and_removes_hosts_and_sets_limits_for_new_connections() -> anyhow::Result<()>
{
    let pki = TestPki::new(&[SECOND])?;
    let server = TestServer::start().await?;
    server.add_user("alice", &password("alice")).await?;
    let mut before = server.login("alice", &password("alice"), "before").await?;

    // A second host, a smaller stanza limit and no SCRAM-SHA-1.
    let mut config = server.config.clone();
    config.hosts.push(HostConfig {
        name: SECOND.into(),
        tls: pki.cert_paths(SECOND),
        modules: None,
    });
    config.limits.max_stanza_bytes = 4096;
    config.disabled_mechanisms = vec![xmppd_stream::sasl::Mechanism::ScramSha1];
    let report = server.server.reload(&config)?;
    assert_eq!(report.hosts_added, [SECOND]);
    let mut services = report.services_added.clone();
    services.sort();
    assert_eq!(services, ["conference.second.test", "upload.second.test"]);
    assert!(report.certificates.iter().any(|h| h == SECOND));
    assert!(!report.needs_restart, "{report:?}");

    // The new host serves its certificate, its accounts log in and reach the first host's.
    let bob = BareJid::new(&format!("bob@{SECOND}"))?;
    server
        .server
        .router
        .accounts()
        .create(&bob, &password("bob"))
        .await?;
    let mut bob_session = login_second(&server, &pki, "bob", "desk").await?;
    bob_session
        .send("<message to='alice@localhost/before' type='chat'><body>hello from the new host</body></message>")
        .await?;
    expect_message(
        &mut before,
        &format!("{bob}/desk"),
        "alice@localhost/before",
        "hello from the new host",
    )
    .await?;

    // The new host's group chat service: listed, and a room made there.
    bob_session
        .send("<iq type='get' id='items' to='second.test'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        .await?;
    let items = common::answer(&mut bob_session, "items").await?;
    assert!(
        items.to_string().contains("conference.second.test"),
        "{items}"
    );
    bob_session
        .send("<presence to='lounge@conference.second.test/bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        .await?;
    let entered = bob_session
        .expect("the room's self-presence", |e| {
            e.name() == "presence"
                && e.attr("from") == Some("lounge@conference.second.test/bob")
                && common::muc::codes(e).contains(&201)
        })
        .await?;
    assert_eq!(entered.attr("type"), None, "{entered}");

    // The session opened before the reload keeps its limit; a new one has the new limit.
    echo_large(&mut before, "alice@localhost/before", 8 * 1024).await?;
    let mut after = server.login("alice", &password("alice"), "after").await?;
    after
        .send(&format!(
            "<message to='alice@localhost/after'><body>{}</body></message>",
            "x".repeat(8 * 1024)
        ))
        .await?;
    assert_eq!(after.expect_stream_error().await?, "policy-violation");

    // The mechanism switched off is no longer offered to new connections.
    let mut fresh = TestClient::connect(server.starttls_addr()).await?;
    fresh.open_stream("localhost").await?;
    let features = fresh
        .starttls(server.tls_client_config(), "localhost")
        .await?;
    let offered = features.to_string();
    assert!(offered.contains("SCRAM-SHA-256"), "{offered}");
    assert!(!offered.contains("SCRAM-SHA-1<"), "{offered}");

    // Removing the host again: new connections to it are refused, its session goes on.
    let report = server.server.reload(&server.config)?;
    assert_eq!(report.hosts_removed, [SECOND]);
    let mut refused = TestClient::connect(server.starttls_addr()).await?;
    refused
        .send(&format!(
            "<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='{SECOND}' version='1.0'>"
        ))
        .await?;
    assert_eq!(refused.expect_stream_error().await?, "host-unknown");
    bob_session
        .send("<message to='alice@localhost/before' type='chat'><body>still here</body></message>")
        .await?;
    expect_message(
        &mut before,
        &format!("{bob}/desk"),
        "alice@localhost/before",
        "still here",
    )
    .await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_bad_certificate_refuses_the_reload_and_changes_nothing() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    server.add_user("alice", &password("alice")).await?;
    let mut config = server.config.clone();
    config.limits.max_stanza_bytes = 4096;
    config.hosts.push(HostConfig {
        name: SECOND.into(),
        tls: Some((
            server.dir.path().join("missing.crt"),
            server.dir.path().join("missing.key"),
        )),
        modules: None,
    });
    assert!(server.server.reload(&config).is_err());
    // Neither the host nor the limit changed.
    assert!(!server.server.router.is_local_domain(SECOND));
    let mut client = server.login("alice", &password("alice"), "r").await?;
    echo_large(&mut client, "alice@localhost/r", 8 * 1024).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_reload_gives_new_federation_links_the_new_routes() -> anyhow::Result<()> {
    let pki = TestPki::new(&[A, B])?;
    let a_addr = free_port([127, 0, 0, 1])?;
    let b_addr = free_port([127, 0, 0, 2])?;
    // a.test first routes b.test to a port where nothing listens.
    let nowhere = free_port([127, 0, 0, 2])?;
    let a = TestServer::start_federated(A, &pki, a_addr, true, |c| {
        route_to(c, B, nowhere);
        c.s2s.secure_auth = true;
    })
    .await?;
    let b = TestServer::start_federated(B, &pki, b_addr, true, |c| {
        route_to(c, A, a_addr);
        c.s2s.secure_auth = true;
    })
    .await?;
    a.add_user("alice", &password("alice")).await?;
    b.add_user("bob", &password("bob")).await?;
    let mut alice = a.login("alice", &password("alice"), "res").await?;
    let mut bob = b.login("bob", &password("bob"), "res").await?;

    alice
        .send("<message id='m1' to='bob@b.test/res' type='chat'><body>lost</body></message>")
        .await?;
    common::expect_error(
        &mut alice,
        "message",
        "m1",
        "bob@b.test/res",
        "remote-server-not-found",
    )
    .await?;

    let mut config = a.config.clone();
    route_to(&mut config, B, b_addr);
    let report = a.server.reload(&config)?;
    assert!(!report.needs_restart, "{report:?}");
    alice
        .send("<message id='m2' to='bob@b.test/res' type='chat'><body>found</body></message>")
        .await?;
    expect_message(&mut bob, "alice@a.test/res", "bob@b.test/res", "found").await?;
    a.stop().await;
    b.stop().await;
    Ok(())
}
