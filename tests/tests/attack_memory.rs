//! Attack catalogue (`tests/SECURITY.md`), the memory row: what unauthenticated and
//! authenticated peers can make the server hold. Hundreds of connections each holding a
//! stanza just under the pre-authentication limit, and hundreds more throwing a megabyte
//! each at once (before login; four after it), leave the process (server and test clients,
//! which share it) within a fixed bound of where it started; the held connections are all
//! cut at the negotiation deadline.
//!
//! One test in its own binary: the bound is read from `/proc/self/status`, which other tests
//! running in the same process would disturb.

mod common;

use std::time::Duration;

use common::add_users;
use xmppd_testkit::{TestClient, TestServer};

/// The process's resident set, in bytes.
fn rss() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/self/status"))?;
    Ok(kib * 1024)
}

#[tokio::test]
async fn what_peers_make_the_server_hold_is_bounded() -> anyhow::Result<()> {
    let deadline = Duration::from_secs(5);
    let server = TestServer::start_with(|c| {
        c.limits.auth_timeout = deadline;
        c.limits.per_address.attempts = 1_000_000;
        c.limits.per_address.per_address = 1_000;
    })
    .await?;
    add_users(&server, &["alice"]).await?;
    // Warm up: one full login, so that what is measured is what the attack adds.
    let warm = server
        .login("alice", &common::password("alice"), "warm")
        .await?;
    warm.close().await?;
    let before = rss()?;

    // 300 connections, each with 15 KiB of a message that never ends (the limit before
    // authentication is 16 KiB), held open.
    let almost = format!(
        "<message to='alice@localhost'><body>{}",
        "a".repeat(15 * 1024)
    );
    let mut held = Vec::new();
    for _ in 0..300 {
        let mut client = TestClient::connect(server.starttls_addr()).await?;
        client.open_stream("localhost").await?;
        client.send(&almost).await?;
        held.push(client);
    }
    // 300 more, each writing 1 MiB of a message that never ends, all at once, before login;
    // and 10 logged-in sessions writing 4 MiB each (the limit is 256 KiB). Buffered, that
    // would be 340 MiB; each is cut at its limit instead. The sockets stay open until the
    // measurement, so nothing read from them could have been freed with the connection.
    let mut thrown = Vec::new();
    for _ in 0..300 {
        let mut client = TestClient::connect(server.starttls_addr()).await?;
        client.open_stream("localhost").await?;
        thrown.push((client, 1024 * 1024));
    }
    for i in 0..10 {
        let client = server
            .login("alice", &common::password("alice"), &format!("r{i}"))
            .await?;
        thrown.push((client, 4 * 1024 * 1024));
    }
    let filler = vec![b'b'; 4 * 1024 * 1024];
    let writes = thrown.iter_mut().map(|(client, size)| {
        let bytes = &filler[..*size];
        async move {
            let _ = client.send("<message to='alice@localhost'><body>").await;
            // Fails once the server has cut the connection.
            let _ = client.send_raw(bytes).await;
        }
    });
    futures::future::join_all(writes).await;
    let grown = rss()?.saturating_sub(before);
    // What the held stanzas need (300 × 16 KiB, about 5 MiB), with room for the sessions'
    // own state and allocator slack.
    assert!(
        grown < 64 * 1024 * 1024,
        "the process grew by {} MiB",
        grown / (1024 * 1024)
    );
    for (client, _) in &mut thrown {
        assert_eq!(client.expect_stream_error().await?, "policy-violation");
    }

    // The held connections never authenticated: each is cut at the deadline.
    for client in &mut held {
        assert_eq!(client.expect_stream_error().await?, "connection-timeout");
    }
    Ok(())
}
