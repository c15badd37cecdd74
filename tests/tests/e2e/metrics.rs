//! `/metrics` on a `metrics` listener: Prometheus text by default, OpenMetrics when asked,
//! and the counts move with what clients do — logins and failed ones, stanzas in and out,
//! a routing error, sessions, offline storage, storage latency, the process's memory — and
//! every series the Grafana dashboard in `deploy/` queries is there.

use crate::common;

use std::collections::HashMap;
use std::net::SocketAddr;

use anyhow::Context as _;
use common::ws::{header, http_request};
use xmppd_testkit::{TestClient, TestServer};

async fn server() -> anyhow::Result<TestServer> {
    let server = TestServer::start_with(|c| {
        c.metrics_listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    })
    .await?;
    for user in ["alice", "bob", "carol"] {
        server.add_user(user, &common::password(user)).await?;
    }
    Ok(server)
}

fn metrics_addr(server: &TestServer) -> anyhow::Result<SocketAddr> {
    server
        .server
        .metrics_listeners
        .first()
        .copied()
        .context("no metrics listener")
}

async fn get(
    server: &TestServer,
    path: &str,
    accept: Option<&str>,
) -> anyhow::Result<(u16, Vec<(String, String)>, String)> {
    let socket = tokio::net::TcpStream::connect(metrics_addr(server)?).await?;
    let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
    http_request(socket, "GET", "localhost", path, &headers).await
}

/// The samples of a scrape: `name{labels}` → value.
async fn scrape(server: &TestServer) -> anyhow::Result<HashMap<String, f64>> {
    let (status, _, body) = get(server, "/metrics", None).await?;
    assert_eq!(status, 200, "{body}");
    let mut samples = HashMap::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line.rsplit_once(' ').context("a sample without a value")?;
        samples.insert(name.to_owned(), value.parse()?);
    }
    Ok(samples)
}

fn value(samples: &HashMap<String, f64>, name: &str) -> f64 {
    samples.get(name).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn prometheus_text_by_default_and_openmetrics_when_asked() -> anyhow::Result<()> {
    let server = server().await?;
    let (status, headers, body) = get(&server, "/metrics", None).await?;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        body.contains("# TYPE xmppd_logins_total counter\n"),
        "{body}"
    );
    assert!(
        body.contains("\nxmppd_connections{kind=\"c2s\"} 0\n"),
        "{body}"
    );
    assert!(!body.contains("# EOF"), "{body}");

    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let (status, headers, body) = get(&server, "/metrics", Some(accept)).await?;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(body.contains("# TYPE xmppd_logins counter\n"), "{body}");
    assert!(body.ends_with("# EOF\n"), "{body}");

    let (status, _, _) = get(&server, "/other", None).await?;
    assert_eq!(status, 404);
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn counts_follow_logins_stanzas_errors_and_storage() -> anyhow::Result<()> {
    let server = server().await?;
    let before = scrape(&server).await?;
    assert_eq!(value(&before, "xmppd_sessions{kind=\"bound\"}"), 0.0);
    assert!(value(&before, "process_resident_memory_bytes") > 1_000_000.0);
    assert!(value(&before, "process_open_fds") > 0.0);

    let mut alice = server
        .login("alice", &common::password("alice"), "desk")
        .await?;
    let mut bob = server
        .login("bob", &common::password("bob"), "desk")
        .await?;
    let mut intruder = TestClient::connect(server.starttls_addr()).await?;
    intruder.open_stream("localhost").await?;
    intruder
        .starttls(server.tls_client_config(), "localhost")
        .await?;
    let failed = intruder.authenticate("PLAIN", "alice", "guess").await;
    assert_eq!(
        failed.err().map(|e| e.to_string()).as_deref(),
        Some("sasl failure: not-authorized")
    );
    let during = scrape(&server).await?;
    assert_eq!(value(&during, "xmppd_connections{kind=\"c2s\"}"), 3.0);
    assert_eq!(value(&during, "xmppd_sessions{kind=\"bound\"}"), 2.0);
    drop(intruder);

    alice
        .send("<message to='bob@localhost/desk' type='chat' id='m1'><body>hi</body></message>")
        .await?;
    common::expect_message(&mut bob, "alice@localhost/desk", "bob@localhost/desk", "hi").await?;
    alice
        .send("<message to='carol@localhost' type='chat' id='m2'><body>later</body></message>")
        .await?;
    alice
        .send("<iq to='bob@localhost/nowhere' type='get' id='q1'><query xmlns='jabber:iq:version'/></iq>")
        .await?;
    common::expect_error(
        &mut alice,
        "iq",
        "q1",
        "bob@localhost/nowhere",
        "service-unavailable",
    )
    .await?;

    let after = scrape(&server).await?;
    for (name, expected) in [
        ("xmppd_logins_total{mechanism=\"SCRAM-SHA-256\"}", 2.0),
        (
            "xmppd_login_failures_total{mechanism=\"PLAIN\",condition=\"not-authorized\"}",
            1.0,
        ),
        (
            "xmppd_stanzas_received_total{peer=\"client\",kind=\"message\"}",
            2.0,
        ),
        (
            "xmppd_stanzas_received_total{peer=\"client\",kind=\"iq\"}",
            1.0,
        ),
        (
            "xmppd_stanzas_sent_total{peer=\"client\",kind=\"message\"}",
            1.0,
        ),
        ("xmppd_stanzas_sent_total{peer=\"client\",kind=\"iq\"}", 1.0),
        (
            "xmppd_routing_errors_total{condition=\"service-unavailable\"}",
            1.0,
        ),
        ("xmppd_archived_messages{store=\"offline\"}", 1.0),
        ("xmppd_sessions{kind=\"bound\"}", 2.0),
        ("xmppd_connections{kind=\"c2s\"}", 2.0),
    ] {
        assert_eq!(value(&after, name), expected, "{name}");
    }
    // The test certificate expires in the future, and its expiry is there for alerts.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    let expiry = "xmppd_tls_certificate_expiry_timestamp_seconds{host=\"localhost\"}";
    assert!(value(&after, expiry) > now, "{expiry}");
    let lookups = "xmppd_storage_seconds_count{shape=\"keyval\",operation=\"get\"}";
    assert!(value(&after, lookups) >= 3.0, "{lookups}");
    let appends = "xmppd_storage_seconds_count{shape=\"archive\",operation=\"append\"}";
    assert!(value(&after, appends) >= 1.0, "{appends}");
    // Every series the shipped Grafana dashboard queries exists.
    let dashboard =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dashboard)?)?;
    let panels = dashboard["panels"].as_array().context("no panels")?;
    let exprs = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().into_iter().flatten())
        .filter_map(|t| t["expr"].as_str());
    for expr in exprs {
        let names = expr
            .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("xmppd_") || w.starts_with("process_"));
        for name in names {
            let prefix = format!("{name}{{");
            assert!(
                after.keys().any(|k| k.starts_with(&prefix) || k == name),
                "the dashboard queries {name}, which /metrics does not expose"
            );
        }
    }
    for client in [alice, bob] {
        client.close().await?;
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn federation_shows_established_links_and_stanzas_to_and_from_servers() -> anyhow::Result<()>
{
    use common::federation::{Auth, chat_both_ways, online, two_servers};
    let (_pki, a, b) = two_servers(Auth::Certificates).await?;
    let mut alice = online(&a, "alice").await?;
    let mut bob = online(&b, "bob").await?;
    chat_both_ways(&mut alice, &mut bob).await?;
    let text = a
        .server
        .router
        .metrics()
        .encode(&xmppd_core::metrics::Scraped::default(), false);
    for expected in [
        "xmppd_s2s_links{direction=\"out\",state=\"established\"} 1",
        "xmppd_s2s_links{direction=\"out\",state=\"negotiating\"} 0",
        "xmppd_s2s_links{direction=\"in\",state=\"established\"} 1",
        "xmppd_connections{kind=\"s2s_out\"} 1",
        "xmppd_connections{kind=\"s2s_in\"} 1",
        "xmppd_stanzas_sent_total{peer=\"server\",kind=\"message\"} 1",
        "xmppd_stanzas_received_total{peer=\"server\",kind=\"message\"} 1",
    ] {
        assert!(
            text.lines().any(|l| l == expected),
            "{expected} missing:\n{text}"
        );
    }
    a.stop().await;
    b.stop().await;
    Ok(())
}

#[tokio::test]
async fn presence_to_resources_that_are_gone_reads_no_storage() -> anyhow::Result<()> {
    let server = server().await?;
    let mut alice = common::online(&server, "alice", "desk", 0).await?;
    let lookups = "xmppd_storage_seconds_count{shape=\"keyval\",operation=\"get\"}";
    let before = value(&scrape(&server).await?, lookups);
    // Carol's account exists but is offline; nobody's does not exist. Directed presence to
    // a resource of either is ignored (RFC 6121 §8.5.3.2.1, §8.5.1), which a room does when
    // it announces departures to occupants who left at the same time.
    for i in 0..50 {
        for to in ["carol@localhost/gone", "nobody@localhost/gone"] {
            let kind = if i % 2 == 0 {
                ""
            } else {
                " type='unavailable'"
            };
            alice.send(&format!("<presence to='{to}'{kind}/>")).await?;
        }
    }
    // A round trip: everything before it was routed.
    alice
        .send("<iq type='get' id='ping' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    common::answer(&mut alice, "ping").await?;
    let after = value(&scrape(&server).await?, lookups);
    assert!(
        after - before < 10.0,
        "{} keyval reads for 100 presences",
        after - before
    );
    Ok(())
}
