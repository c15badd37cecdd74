//! XEP-0114 component listener under attack: a small budget of bytes before the handshake, and
//! wrong handshakes answered ever more slowly per address (as failed client authentications
//! are), while a component on another address connects at once.

use crate::common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::component::{
    complete_handshake, connect_component, open_component, open_component_from, send_handshake,
};
use common::{add_users, online};
use xmppd::config::ComponentConfig;
use xmppd_core::per_address::AuthThrottleSettings;
use xmppd_testkit::TestServer;

const IRC: &str = "irc.localhost";
const SECRET: &str = "gateway-secret";

async fn server(auth: AuthThrottleSettings) -> anyhow::Result<TestServer> {
    TestServer::start_with(|c| {
        c.components = vec![ComponentConfig {
            name: IRC.into(),
            secret: SECRET.into(),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        }];
        c.auth_throttle = auth;
    })
    .await
}

#[tokio::test]
async fn more_than_the_budget_before_the_handshake_ends_the_stream() -> anyhow::Result<()> {
    let server = server(AuthThrottleSettings::default()).await?;
    assert_eq!(server.config.component_handshake_bytes, 16 * 1024);
    let (mut component, _) = open_component(&server, IRC).await?;
    // Whitespace is no element, so only the budget can stop it.
    component.send(&" ".repeat(17 * 1024)).await?;
    assert_eq!(component.expect_stream_error().await?, "policy-violation");

    // After the handshake a stanza may be as large as the stanza limit.
    add_users(&server, &["alice"]).await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    let mut gateway = connect_component(&server, IRC, SECRET).await?;
    let big = "b".repeat(40 * 1024);
    gateway
        .send(&format!(
            "<message from='bot@{IRC}' to='alice@localhost/pc' id='big'><body>{big}</body></message>"
        ))
        .await?;
    let msg = alice
        .expect("the large message", |e| e.attr("id") == Some("big"))
        .await?;
    assert_eq!(
        msg.child("body", "jabber:client").map(|b| b.text().len()),
        Some(big.len())
    );
    Ok(())
}

/// A wrong handshake on a new connection from `source`; how long its answer took (it must be
/// `not-authorized`).
async fn wrong_handshake(server: &TestServer, source: IpAddr) -> anyhow::Result<Duration> {
    let (mut component, id) = open_component_from(server, IRC, source).await?;
    let started = Instant::now();
    send_handshake(&mut component, &id, "guess").await?;
    assert_eq!(component.expect_stream_error().await?, "not-authorized");
    Ok(started.elapsed())
}

#[tokio::test]
async fn wrong_handshakes_slow_their_address_down() -> anyhow::Result<()> {
    let delay = Duration::from_millis(300);
    let server = server(AuthThrottleSettings {
        free_failures: 1,
        delay,
        max_delay: Duration::from_secs(10),
        forget_after: Duration::from_secs(600),
    })
    .await?;
    let here: IpAddr = "127.0.0.1".parse()?;
    wrong_handshake(&server, here).await?;
    let second = wrong_handshake(&server, here).await?;
    assert!(
        second >= delay,
        "second wrong handshake answered after {second:?}"
    );
    let third = wrong_handshake(&server, here).await?;
    assert!(
        third >= delay * 2,
        "third wrong handshake answered after {third:?}"
    );

    // The right secret from another address is not held back by this one's failures.
    let other: IpAddr = "127.0.0.2".parse()?;
    let (mut component, id) = open_component_from(&server, IRC, other).await?;
    complete_handshake(&mut component, &id, SECRET).await?;
    Ok(())
}
