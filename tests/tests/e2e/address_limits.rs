//! XEP-0205: what one client address may do — connections at once (§4.1), connection attempts
//! in a period (§4.2), failed authentications (§4.3: slowed per address, never a lock on the
//! account) — while another address is not affected. 127.0.0.2 is the other address: the
//! whole of 127.0.0.0/8 is loopback.

use crate::common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::{add_users, password};
use xmppd_core::per_address::{AuthThrottleSettings, ConnectionLimits};
use xmppd_testkit::{TestClient, TestServer};

const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

async fn server_with(
    per_address: ConnectionLimits,
    auth: AuthThrottleSettings,
) -> anyhow::Result<TestServer> {
    let server = TestServer::start_with(|c| {
        c.limits.per_address = per_address;
        c.auth_throttle = auth;
        // One failure per connection: each guess is a new connection.
        c.max_auth_failures = 1;
    })
    .await?;
    add_users(&server, &["alice"]).await?;
    Ok(server)
}

fn connections(per_address: u32, attempts: u32) -> ConnectionLimits {
    ConnectionLimits {
        per_address,
        per_ipv6_64: per_address,
        attempts,
        attempt_period: Duration::from_secs(3600),
    }
}

/// A STARTTLS connection whose stream is open (so the server has accepted and counted it).
async fn open(server: &TestServer) -> anyhow::Result<TestClient> {
    let mut client = TestClient::connect(server.starttls_addr()).await?;
    client.open_stream(server.domain()).await?;
    Ok(client)
}

/// Expects the `policy-violation` stream error that ends a refused connection.
async fn refusal(client: &mut TestClient) -> anyhow::Result<()> {
    assert_eq!(client.expect_stream_error().await?, "policy-violation");
    Ok(())
}

#[tokio::test]
async fn one_address_gets_its_connections_and_another_still_logs_in() -> anyhow::Result<()> {
    let server = server_with(connections(3, 1000), AuthThrottleSettings::default()).await?;
    let first = open(&server).await?;
    let _second = open(&server).await?;
    let _third = open(&server).await?;

    // The fourth, on either listener: the STARTTLS one says why, the direct-TLS one closes.
    let mut fourth = TestClient::connect(server.starttls_addr()).await?;
    refusal(&mut fourth).await?;
    let mut fourth_tls = TestClient::connect(server.direct_tls_addr()).await?;
    fourth_tls.expect_closed().await?;

    // Another address is not affected.
    let mut other = server
        .authenticated_from(OTHER, "alice", &password("alice"))
        .await?;
    other.bind(Some("other")).await?;

    // A connection that ends gives its place back.
    first.close().await?;
    let mut again = None;
    for _ in 0..50 {
        let mut client = TestClient::connect(server.starttls_addr()).await?;
        if client.open_stream(server.domain()).await.is_ok() {
            again = Some(client);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut again = again.ok_or_else(|| anyhow::anyhow!("the closed connection's place"))?;
    again
        .starttls(server.tls_client_config(), server.domain())
        .await?;
    again
        .authenticate("SCRAM-SHA-256", "alice", &password("alice"))
        .await?;
    Ok(())
}

#[tokio::test]
async fn connection_attempts_are_a_budget_per_period() -> anyhow::Result<()> {
    let server = server_with(connections(100, 4), AuthThrottleSettings::default()).await?;
    for _ in 0..4 {
        open(&server).await?.close().await?;
    }
    // Nothing is open, but the period's attempts are spent.
    let mut fifth = TestClient::connect(server.starttls_addr()).await?;
    refusal(&mut fifth).await?;
    let mut other = TestClient::connect_from(server.starttls_addr(), OTHER).await?;
    other.open_stream(server.domain()).await?;
    Ok(())
}

/// One authentication from `source` with `secret`; how long the whole exchange took and
/// whether it succeeded.
async fn attempt(
    server: &TestServer,
    source: IpAddr,
    secret: &str,
) -> anyhow::Result<(Duration, bool)> {
    let mut client = TestClient::connect_from(server.starttls_addr(), source).await?;
    client.open_stream(server.domain()).await?;
    client
        .starttls(server.tls_client_config(), server.domain())
        .await?;
    let started = Instant::now();
    let result = client.authenticate("SCRAM-SHA-256", "alice", secret).await;
    Ok((started.elapsed(), result.is_ok()))
}

#[tokio::test]
async fn failed_authentications_slow_every_answer_to_their_address() -> anyhow::Result<()> {
    let delay = Duration::from_millis(300);
    let server = server_with(
        connections(100, 1000),
        AuthThrottleSettings {
            free_failures: 2,
            delay,
            max_delay: Duration::from_secs(10),
            forget_after: Duration::from_secs(600),
        },
    )
    .await?;
    let here: IpAddr = "127.0.0.1".parse()?;
    // Two free failures, each on its own connection.
    for _ in 0..2 {
        let (_, ok) = attempt(&server, here, "guess").await?;
        assert!(!ok);
    }
    // Then each answer waits, twice as long as the one before.
    let (third, ok) = attempt(&server, here, "guess").await?;
    assert!(!ok);
    assert!(third >= delay, "third failure answered after {third:?}");
    let (fourth, ok) = attempt(&server, here, "guess").await?;
    assert!(!ok);
    assert!(
        fourth >= delay * 2,
        "fourth failure answered after {fourth:?}"
    );
    // The right password from that address waits too (or not waiting would tell a guess
    // from the truth), and succeeds: the account is not locked.
    let (right, ok) = attempt(&server, here, &password("alice")).await?;
    assert!(ok);
    assert!(right >= delay * 4, "success answered after {right:?}");
    Ok(())
}

#[tokio::test]
async fn a_slowed_address_does_not_slow_another() -> anyhow::Result<()> {
    let server = server_with(
        connections(100, 1000),
        AuthThrottleSettings {
            free_failures: 1,
            delay: Duration::from_secs(60),
            max_delay: Duration::from_secs(60),
            forget_after: Duration::from_secs(600),
        },
    )
    .await?;
    let here: IpAddr = "127.0.0.1".parse()?;
    let (_, ok) = attempt(&server, here, "guess").await?;
    assert!(!ok);
    // The next guess from here is held back for a minute...
    let (tx, mut held) = tokio::sync::oneshot::channel();
    let guessing = {
        let addr = server.starttls_addr();
        let tls = server.tls_client_config();
        tokio::spawn(async move {
            let attempt = async {
                let mut client = TestClient::connect(addr).await?;
                client.open_stream("localhost").await?;
                client.starttls(tls, "localhost").await?;
                anyhow::Ok(client.authenticate("SCRAM-SHA-256", "alice", "guess").await)
            };
            let _ = tx.send(attempt.await.map(|r| r.is_ok()));
        })
    };
    // ...while the owner logs in from another address.
    let mut owner = server
        .authenticated_from(OTHER, "alice", &password("alice"))
        .await?;
    owner.bind(Some("phone")).await?;
    assert!(
        held.try_recv().is_err(),
        "the held-back guess was answered before the other address logged in"
    );
    guessing.abort();
    Ok(())
}
