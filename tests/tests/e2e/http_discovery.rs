//! The HTTP listeners end to end: XEP-0156 host-meta (XRD and JRD) per host with CORS, 404
//! for a host we do not serve, `X-Forwarded-For`/`Forwarded` believed only from a trusted
//! proxy (seen through the per-address request rate and the announced scheme), and the
//! listener's limits (connections per address, header size, body size).

use crate::common;

use std::net::SocketAddr;

use common::ws::{self, header, http_request};
use tokio::net::TcpStream;
use xmppd::config::{HostConfig, HttpListenConfig};
use xmppd_http::proxy::TrustedProxies;
use xmppd_http::{HostWeb, HttpKind};
use xmppd_proto::host_meta::{HostMeta, REL_BOSH, REL_WEBSOCKET};
use xmppd_testkit::TestServer;

const ANY: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Two hosts (localhost and example.net, whose WebSocket URL is configured), on an HTTPS and
/// a plain HTTP listener.
async fn server(adjust: impl FnOnce(&mut xmppd::Config)) -> anyhow::Result<TestServer> {
    TestServer::start_with(|c| {
        c.hosts.push(HostConfig {
            name: "example.net".into(),
            tls: None,
            modules: None,
        });
        c.http_listen = vec![
            HttpListenConfig {
                kind: HttpKind::Tls,
                addr: ANY,
                read_rate: None,
            },
            HttpListenConfig {
                kind: HttpKind::Plain,
                addr: ANY,
                read_rate: None,
            },
        ];
        c.http.hosts.insert(
            "example.net".into(),
            HostWeb {
                websocket: true,
                websocket_url: Some("wss://chat.example.net/ws".into()),
                bosh: true,
                bosh_url: Some("https://chat.example.net/http-bind".into()),
            },
        );
        adjust(c);
    })
    .await
}

fn addr(server: &TestServer, kind: HttpKind) -> anyhow::Result<SocketAddr> {
    server
        .server
        .http_addr(kind)
        .ok_or_else(|| anyhow::anyhow!("no {kind:?} listener"))
}

async fn get_tls(
    server: &TestServer,
    host: &str,
    path: &str,
) -> anyhow::Result<(u16, Vec<(String, String)>, String)> {
    let a = addr(server, HttpKind::Tls)?;
    let io = ws::tls(server, a, "localhost").await?;
    http_request(io, "GET", host, path, &[]).await
}

async fn get_plain(
    server: &TestServer,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<u16> {
    let io = TcpStream::connect(addr(server, HttpKind::Plain)?).await?;
    Ok(http_request(io, "GET", host, path, headers).await?.0)
}

fn parse_xrd(body: &str) -> anyhow::Result<HostMeta> {
    let xml = body
        .split_once("?>")
        .map(|(_, rest)| rest.trim())
        .unwrap_or(body);
    let el = ws::parse_message(xml)?;
    HostMeta::try_from(&el).map_err(|e| anyhow::anyhow!("{e:?}"))
}

fn parse_jrd(body: &str) -> anyhow::Result<Vec<(String, String)>> {
    let value: serde_json::Value = serde_json::from_str(body)?;
    Ok(value["links"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| {
            let field = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
            (field("rel"), field("href"))
        })
        .collect())
}

#[tokio::test]
async fn host_meta_lists_each_hosts_websocket_and_bosh_with_cors() -> anyhow::Result<()> {
    let server = server(|_| {}).await?;
    let port = addr(&server, HttpKind::Tls)?.port();
    let localhost = format!("localhost:{port}");
    let expected = [
        (
            localhost.as_str(),
            format!("wss://localhost:{port}/xmpp-websocket"),
            format!("https://localhost:{port}/http-bind"),
        ),
        (
            "example.net",
            "wss://chat.example.net/ws".to_owned(),
            "https://chat.example.net/http-bind".to_owned(),
        ),
    ];
    for (host, url, bosh) in &expected {
        let (status, headers, body) = get_tls(&server, host, "/.well-known/host-meta").await?;
        assert_eq!(status, 200, "{host}: {body}");
        assert_eq!(
            header(&headers, "content-type"),
            Some("application/xrd+xml")
        );
        assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
        let meta = parse_xrd(&body)?;
        assert_eq!(meta.link(REL_WEBSOCKET), Some(url.as_str()), "{host}");
        assert_eq!(meta.link(REL_BOSH), Some(bosh.as_str()), "{host}");

        let (status, headers, body) = get_tls(&server, host, "/.well-known/host-meta.json").await?;
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
        assert_eq!(
            parse_jrd(&body)?,
            vec![
                (REL_WEBSOCKET.to_owned(), url.clone()),
                (REL_BOSH.to_owned(), bosh.clone())
            ]
        );
    }
    // A CORS preflight from another origin.
    let io = ws::tls(&server, addr(&server, HttpKind::Tls)?, "localhost").await?;
    let preflight = [
        ("Origin", "https://web.example"),
        ("Access-Control-Request-Method", "GET"),
    ];
    let (status, headers, _) = http_request(
        io,
        "OPTIONS",
        &localhost,
        "/.well-known/host-meta.json",
        &preflight,
    )
    .await?;
    assert_eq!(status, 204);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    assert!(header(&headers, "access-control-allow-methods").is_some_and(|m| m.contains("GET")));
    // A host we do not serve, and a path that is nothing.
    let (status, _, _) = get_tls(&server, "example.com", "/.well-known/host-meta").await?;
    assert_eq!(status, 404);
    let (status, _, _) = get_tls(&server, &localhost, "/nothing-here").await?;
    assert_eq!(status, 404);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_origin_is_configurable_and_hosts_without_websocket_or_bosh_list_nothing()
-> anyhow::Result<()> {
    let server = server(|c| {
        c.http.allow_origin = "https://chat.example.org".into();
        ws::without_websocket(c, "example.net");
        if let Some(web) = c.http.hosts.get_mut("example.net") {
            web.bosh = false;
        }
    })
    .await?;
    let (status, headers, body) =
        get_tls(&server, "example.net", "/.well-known/host-meta.json").await?;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "access-control-allow-origin"),
        Some("https://chat.example.org")
    );
    assert!(parse_jrd(&body)?.is_empty(), "{body}");
    server.stop().await;
    Ok(())
}

/// Requests with a distinct invented client address each, from 127.0.0.1; how many got 429.
async fn limited_with_forged_addresses(server: &TestServer, n: usize) -> anyhow::Result<usize> {
    let mut limited = 0;
    for i in 0..n {
        let forged = format!("198.51.100.{}", i + 1);
        let status = get_plain(
            server,
            "localhost",
            "/.well-known/host-meta",
            &[("X-Forwarded-For", &forged)],
        )
        .await?;
        if status == 429 {
            limited += 1;
        }
    }
    Ok(limited)
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_a_trusted_proxy() -> anyhow::Result<()> {
    let strict = |c: &mut xmppd::Config| {
        c.http.requests_per_second = 1;
        c.http.request_burst = 3;
    };
    // Not a proxy: the headers are the client's own invention, and the budget is 127.0.0.1's.
    let server1 = server(strict).await?;
    assert_eq!(limited_with_forged_addresses(&server1, 6).await?, 3);
    let status = get_plain(
        &server1,
        "localhost",
        "/.well-known/host-meta.json",
        &[("X-Forwarded-Proto", "https")],
    )
    .await?;
    assert_eq!(status, 429);
    server1.stop().await;

    // 127.0.0.1 is the proxy: each forwarded client has a budget of its own.
    let proxy = "127.0.0.1".parse()?;
    let server2 = server(|c| {
        strict(c);
        c.http.trusted_proxies = TrustedProxies(vec![proxy]);
    })
    .await?;
    assert_eq!(limited_with_forged_addresses(&server2, 6).await?, 0);
    // One client behind the proxy still has one budget (RFC 7239 Forwarded here).
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let status = get_plain(
            &server2,
            "localhost",
            "/",
            &[("Forwarded", "for=203.0.113.5;proto=https")],
        )
        .await?;
        statuses.push(status);
    }
    assert_eq!(statuses, [404, 404, 404, 429]);
    // The proxy's scheme and host decide the announced URL.
    let io = TcpStream::connect(addr(&server2, HttpKind::Plain)?).await?;
    let headers = [
        ("X-Forwarded-For", "203.0.113.6"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Host", "localhost"),
    ];
    let (status, _, body) = http_request(
        io,
        "GET",
        "internal:5280",
        "/.well-known/host-meta.json",
        &headers,
    )
    .await?;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        parse_jrd(&body)?,
        vec![
            (
                REL_WEBSOCKET.to_owned(),
                "wss://localhost/xmpp-websocket".to_owned()
            ),
            (
                REL_BOSH.to_owned(),
                "https://localhost/http-bind".to_owned()
            )
        ]
    );
    server2.stop().await;
    Ok(())
}

#[tokio::test]
async fn listener_limits() -> anyhow::Result<()> {
    let server = server(|c| {
        c.http.max_connections_per_ip = 2;
        c.http.max_header_bytes = 8192;
        c.http.max_body_bytes = 100;
    })
    .await?;
    let plain = addr(&server, HttpKind::Plain)?;
    // Two connections held open; the third is closed at once.
    let _a = TcpStream::connect(plain).await?;
    let _b = TcpStream::connect(plain).await?;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let c = TcpStream::connect(plain).await?;
    let refused = http_request(c, "GET", "localhost", "/", &[]).await;
    assert!(refused.is_err(), "a third connection must be refused");
    drop((_a, _b));
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // Headers over the limit: 431.
    let big = "x".repeat(10_000);
    let io = TcpStream::connect(plain).await?;
    let (status, _, _) = http_request(io, "GET", "localhost", "/", &[("X-Big", &big)]).await?;
    assert_eq!(status, 431);
    // A body announced over the limit: 413.
    let io = TcpStream::connect(plain).await?;
    let (status, _, _) =
        http_request(io, "POST", "localhost", "/", &[("Content-Length", "1000")]).await?;
    assert_eq!(status, 413);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed_after_the_header_timeout() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let server = server(|c| c.http.header_timeout = std::time::Duration::from_secs(1)).await?;
    let plain = addr(&server, HttpKind::Plain)?;
    // Nothing sent at all.
    let mut silent = TcpStream::connect(plain).await?;
    // A request, then nothing (a keep-alive connection left idle).
    let mut idle = TcpStream::connect(plain).await?;
    idle.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await?;
    let started = std::time::Instant::now();
    for conn in [&mut silent, &mut idle] {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            conn.read_to_end(&mut buf),
        )
        .await;
        assert!(read.is_ok(), "the connection must be closed");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    server.stop().await;
    Ok(())
}
