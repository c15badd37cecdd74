//! XEP-0205 §4.8: a client listener's read rate, over TCP and over WebSocket. A client that
//! floods is read no faster than the rate allows — what the server processed is counted by
//! the answers it sent — and is not disconnected for it.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{arriving_within, ws};
use tokio::time::Instant;
use xmppd::config::HttpListenConfig;
use xmppd_core::read_shaper::ReadRate;
use xmppd_http::HttpKind;
use xmppd_testkit::TestServer;

#[tokio::test]
async fn a_flooding_client_is_read_at_its_rate() -> anyhow::Result<()> {
    let rate = ReadRate {
        bytes_per_second: 2000,
        // Enough for the login (about 1.5 KB after TLS) and a few pings more.
        burst_bytes: 8192,
    };
    let server = TestServer::start_with(|c| {
        for listen in &mut c.listen {
            listen.read_rate = Some(rate);
        }
    })
    .await?;
    server.add_user("alice", "pw").await?;
    let mut alice = server.login("alice", "pw", "pc").await?;

    // 300 pings of 250 bytes each: 75 KB, sent at once.
    let pad = "x".repeat(170);
    let flood: String = (0..300)
        .map(|i| {
            format!("<iq type='get' id='p{i:03}' to='localhost' pad='{pad}'><ping xmlns='urn:xmpp:ping'/></iq>")
        })
        .collect();
    assert!(flood.len() >= 75_000);
    alice.send(&flood).await?;

    // In two seconds the server may read the rest of the burst (at most 8 KB), two seconds
    // of the rate (4 KB) and what one read brought on top (a TLS read, under 40 KB): at
    // most 210 pings. Without a rate it answers all 300 at once.
    let period = Duration::from_secs(2);
    let answers = arriving_within(&mut alice, "iq", period).await?;
    for (i, el) in answers.iter().enumerate() {
        assert_eq!(el.attr("type"), Some("result"), "{el}");
        assert_eq!(el.attr("id"), Some(format!("p{i:03}").as_str()));
    }
    let answered = answers.len();
    assert!(answered > 0, "the server answered nothing");
    assert!(
        answered < 250,
        "{answered} of 300 pings answered in {period:?}"
    );
    // Read slowly, not disconnected: the answers keep coming.
    let next = alice
        .expect("the next answer", |el| el.name() == "iq")
        .await?;
    assert_eq!(next.attr("id"), Some(format!("p{answered:03}").as_str()));
    Ok(())
}

/// The WebSocket transport (RFC 7395) has its listener's read rate, as TCP has: a client that
/// floods is read at its rate, and its pings keep being answered.
#[tokio::test]
async fn a_flooding_websocket_is_read_at_its_rate() -> anyhow::Result<()> {
    let rate = ReadRate {
        bytes_per_second: 2000,
        burst_bytes: 8192,
    };
    let server = TestServer::start_with(|c| {
        c.http_listen = vec![HttpListenConfig {
            kind: HttpKind::Tls,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            read_rate: Some(rate),
        }];
    })
    .await?;
    server.add_user("alice", "pw").await?;
    let addr = server
        .server
        .http_addr(HttpKind::Tls)
        .ok_or_else(|| anyhow::anyhow!("no HTTPS listener"))?;
    let (mut ws, _) = ws::login(&server, addr, "alice", "pw", "web").await?;

    // 300 pings of about 270 bytes each (with the frame's header and the namespace), sent
    // at once: more than 75 KB.
    let pad = "x".repeat(170);
    for i in 0..300 {
        ws::send(
            &mut ws,
            &format!(
                "<iq xmlns='jabber:client' type='get' id='p{i:03}' to='localhost' pad='{pad}'><ping xmlns='urn:xmpp:ping'/></iq>"
            ),
        )
        .await?;
    }
    // Two seconds: the rest of the burst, two seconds of the rate and one read of at most
    // 16 KiB (a TLS read) on top, 30 KB at most: about 110 pings. Without a rate, 300.
    let period = Duration::from_secs(2);
    let until = Instant::now() + period;
    let mut answered = 0;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        let Ok(el) = tokio::time::timeout(left, ws::recv_el(&mut ws)).await else {
            break;
        };
        let el = el?;
        assert_eq!(el.attr("type"), Some("result"), "{el}");
        assert_eq!(el.attr("id"), Some(format!("p{answered:03}").as_str()));
        answered += 1;
    }
    assert!(answered > 0, "the server answered nothing");
    assert!(
        answered < 250,
        "{answered} of 300 pings answered in {period:?}"
    );
    // Read slowly, not disconnected: the answers keep coming.
    let next = ws::recv_el(&mut ws).await?;
    assert_eq!(next.attr("id"), Some(format!("p{answered:03}").as_str()));
    Ok(())
}
