//! The generator over WebSocket (RFC 7395) against the server's own WebSocket endpoint, in
//! process (testkit): login, messages both ways in order, idle sessions, fixed-rate latency and
//! logout, with the frames, `<open/>` and `<close/>` of the generator's own codec.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use xmppd::config::HttpListenConfig;
use xmppd_bench::client::{self, Protocol};
use xmppd_bench::scenarios::{self, Ctx};
use xmppd_http::HttpKind;
use xmppd_testkit::TestServer;

async fn setup(users: usize) -> (TestServer, Ctx) {
    let server = TestServer::start_with(|c| {
        c.http_listen = vec![HttpListenConfig {
            kind: HttpKind::Tls,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            read_rate: None,
        }];
    })
    .await
    .unwrap_or_else(|e| panic!("server: {e:#}"));
    common::add_users(&server, users).await;
    let addr = server
        .server
        .http_addr(HttpKind::Tls)
        .unwrap_or_else(|| panic!("no HTTPS listener"));
    let ctx = common::ctx(&server, addr, Protocol::WebSocket);
    (server, ctx)
}

#[tokio::test]
async fn login_over_wss_binds_and_logs_out_with_close() {
    let (server, ctx) = setup(1).await;
    let s = client::login(&ctx.target, "u0")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(s.jid.starts_with("u0@localhost/"), "{}", s.jid);
    assert!(s.io.is_websocket());
    // The server answers <close/> with its own (RFC 7395 §3.6).
    s.logout(Duration::from_secs(5))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    // A wrong password is refused, not hung.
    let mut bad = ctx.target.clone();
    bad.password = "wrong".into();
    bad.keys = Arc::default();
    assert!(client::login(&bad, "u0").await.is_err());
    // A wrong path is a refused upgrade.
    let mut lost = ctx.target.clone();
    lost.ws_path = "/nowhere".into();
    let err = client::login(&lost, "u0")
        .await
        .err()
        .map(|e| format!("{e:#}"));
    assert!(
        err.as_deref().is_some_and(|e| e.contains("upgrade")),
        "{err:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn throughput_latency_and_idle_over_wss_account_for_every_message() {
    let (server, ctx) = setup(8).await;
    let v = scenarios::throughput(&ctx, 2, 4, Duration::from_millis(500)).await;
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["out_of_order"], 0, "{v}");
    assert!(v["delivered"].as_u64().is_some_and(|d| d > 0), "{v}");
    let v = scenarios::latency(&ctx, 4, 200, 2, Duration::from_secs(1)).await;
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["out_of_order"], 0, "{v}");
    assert!(v["p99_ms"].as_f64().is_some(), "{v}");
    let v = scenarios::idle(&ctx, 4, None).await;
    assert_eq!(v["ok"], 4, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    let v = scenarios::login(&ctx, 4).await;
    assert_eq!(v["ok"], 4, "{v}");
    server.stop().await;
}

#[tokio::test]
async fn stream_management_over_wss_acks_both_ways() {
    let (server, mut ctx) = setup(4).await;
    ctx.sm = scenarios::Sm {
        enabled: true,
        request_every: 3,
    };
    let v = scenarios::throughput(&ctx, 2, 4, Duration::from_millis(500)).await;
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["out_of_order"], 0, "{v}");
    for key in ["sm_requests_received", "sm_acks_sent", "sm_acks_received"] {
        assert!(v[key].as_u64().is_some_and(|n| n > 0), "{key}: {v}");
    }
    server.stop().await;
}
