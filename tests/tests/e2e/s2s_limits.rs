//! XEP-0205 on the federation listener: connections at once (§4.1) and connection attempts
//! in a period (§4.2) per peer address, with budgets of their own (`[s2s]`), while another
//! address still connects; and the read rate of an inbound stream (§4.8): a peer that floods
//! is read at its rate and not disconnected. The target listens on 127.0.0.2; 127.0.0.3 is
//! the other address.

use crate::common;

use std::net::IpAddr;
use std::time::Duration;

use common::arriving_within;
use common::attack::Target;
use common::federation::{A, B, online, open_server_stream, peer_authenticated};
use xmppd_core::per_address::ConnectionLimits;
use xmppd_core::read_shaper::ReadRate;
use xmppd_testkit::TestClient;

const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 3));

fn limits(per_address: u32, attempts: u32) -> ConnectionLimits {
    ConnectionLimits {
        per_address,
        per_ipv6_64: per_address,
        attempts,
        attempt_period: Duration::from_secs(3600),
    }
}

async fn target(per_address: ConnectionLimits) -> anyhow::Result<Target> {
    Target::start_with(|c| c.s2s.settings.per_address = per_address).await
}

/// A federation connection from `source` whose stream is open (so the server has accepted
/// and counted it).
async fn open_from(t: &Target, source: IpAddr) -> anyhow::Result<TestClient> {
    let mut peer = TestClient::connect_from(t.server.s2s_addr(), source).await?;
    open_server_stream(&mut peer, A, B).await?;
    Ok(peer)
}

/// Expects the `policy-violation` stream error and the close that end a refused connection.
async fn refused(t: &Target) -> anyhow::Result<()> {
    let mut peer = TestClient::connect(t.server.s2s_addr()).await?;
    assert_eq!(peer.expect_stream_error().await?, "policy-violation");
    peer.expect_closed().await
}

#[tokio::test]
async fn a_peer_address_gets_its_connections_and_another_still_connects() -> anyhow::Result<()> {
    let here: IpAddr = "127.0.0.1".parse()?;
    let t = target(limits(2, 1000)).await?;
    let first = open_from(&t, here).await?;
    let _second = open_from(&t, here).await?;
    refused(&t).await?;

    // Another address is not affected.
    let mut other = TestClient::connect_from(t.server.s2s_addr(), OTHER).await?;
    open_server_stream(&mut other, A, B).await?;

    // A connection that ends gives its place back.
    first.close().await?;
    let mut again = None;
    for _ in 0..50 {
        if let Ok(peer) = open_from(&t, here).await {
            again = Some(peer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::ensure!(
        again.is_some(),
        "the closed connection's place never came back"
    );
    Ok(())
}

#[tokio::test]
async fn federation_connection_attempts_are_a_budget_per_period() -> anyhow::Result<()> {
    let here: IpAddr = "127.0.0.1".parse()?;
    let t = target(limits(100, 3)).await?;
    for _ in 0..3 {
        open_from(&t, here).await?.close().await?;
    }
    // Nothing is open, but the period's attempts are spent.
    refused(&t).await?;
    open_from(&t, OTHER).await?;
    // The client listeners keep budgets of their own.
    let mut client = TestClient::connect(t.server.starttls_addr()).await?;
    client.open_stream(B).await?;
    Ok(())
}

#[tokio::test]
async fn a_flooding_peer_is_read_at_its_rate() -> anyhow::Result<()> {
    let rate = ReadRate {
        bytes_per_second: 2000,
        // Enough for the negotiation (about 2 KB) and a few messages more.
        burst_bytes: 8192,
    };
    let t = Target::start_with(|c| c.s2s.settings.read_rate = Some(rate)).await?;
    let mut bob = online(&t.server, "bob").await?;
    let mut peer = peer_authenticated(&t.server, &t.pki, A).await?;

    // 300 messages of about 250 bytes each: 75 KB, sent at once.
    let pad = "x".repeat(170);
    let flood: String = (0..300)
        .map(|i| {
            format!("<message from='alice@{A}/x' to='bob@{B}/res' id='m{i:03}'><body>{pad}</body></message>")
        })
        .collect();
    assert!(flood.len() >= 75_000);
    peer.send(&flood).await?;

    // In two seconds the server may read the rest of the burst (at most 8 KB), two seconds
    // of the rate (4 KB) and what one read brought on top (a TLS read, under 40 KB): at
    // most about 210 messages. Without a rate, all 300 are delivered at once.
    let period = Duration::from_secs(2);
    let messages = arriving_within(&mut bob, "message", period).await?;
    for (i, el) in messages.iter().enumerate() {
        assert_eq!(el.attr("id"), Some(format!("m{i:03}").as_str()));
    }
    let delivered = messages.len();
    assert!(delivered > 0, "nothing was delivered");
    assert!(
        delivered < 250,
        "{delivered} of 300 messages delivered in {period:?}"
    );
    // Read slowly, not disconnected: the messages keep coming.
    let next = bob
        .expect("the next message", |el| el.name() == "message")
        .await?;
    assert_eq!(next.attr("id"), Some(format!("m{delivered:03}").as_str()));
    peer.expect_silence(Duration::from_millis(100)).await?;
    Ok(())
}
