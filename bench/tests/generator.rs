//! The generator against the server's own SCRAM and routing, in process (testkit).

mod common;

use std::sync::Arc;
use std::time::Duration;

use xmppd_bench::client::{self, Protocol};
use xmppd_bench::room::Archiving;
use xmppd_bench::scenarios::{self, Ctx};
use xmppd_testkit::TestServer;

async fn setup(users: usize) -> (TestServer, Ctx) {
    setup_with(users, |_| {}).await
}

async fn setup_with(
    users: usize,
    adjust: impl FnOnce(&mut xmppd::config::Config),
) -> (TestServer, Ctx) {
    let server = TestServer::start_with(adjust)
        .await
        .unwrap_or_else(|e| panic!("server: {e:#}"));
    common::add_users(&server, users).await;
    let ctx = common::ctx(&server, server.starttls_addr(), Protocol::Xmpp);
    (server, ctx)
}

/// Whether the row's `error` mentions `what`.
fn error_says(v: &serde_json::Value, what: &str) -> bool {
    v["error"].as_str().is_some_and(|e| e.contains(what))
}

#[tokio::test]
async fn scram_sha1_login_against_the_server_and_cached_keys() {
    let (server, ctx) = setup(1).await;
    let s = client::login(&ctx.target, "u0")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(s.jid.starts_with("u0@localhost/"), "{}", s.jid);
    s.close(Protocol::Xmpp).await;
    assert!(ctx.target.keys.lock().is_ok_and(|k| k.contains_key("u0")));
    // Second login uses the cached ClientKeys; the server must still accept the proof.
    let s = client::login(&ctx.target, "u0")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    s.close(Protocol::Xmpp).await;
    // A wrong password is refused, not hung.
    let mut bad = ctx.target.clone();
    bad.password = "wrong".into();
    bad.keys = Arc::default();
    assert!(client::login(&bad, "u0").await.is_err());
    server.stop().await;
}

#[tokio::test]
async fn throughput_accounts_every_message_in_order() {
    let (server, ctx) = setup(4).await;
    let v = scenarios::throughput(&ctx, 2, 4, Duration::from_millis(500)).await;
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["out_of_order"], 0, "{v}");
    assert!(v["delivered"].as_u64().is_some_and(|d| d > 0), "{v}");
    let v = scenarios::login(&ctx, 4).await;
    assert_eq!(v["ok"], 4, "{v}");
    server.stop().await;
}

#[tokio::test]
async fn stream_management_acks_both_ways_without_losing_order() {
    let (server, mut ctx) = setup(8).await;
    ctx.sm = scenarios::Sm {
        enabled: true,
        request_every: 3,
    };
    let v = scenarios::throughput(&ctx, 2, 4, Duration::from_millis(500)).await;
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["out_of_order"], 0, "{v}");
    assert!(v["delivered"].as_u64().is_some_and(|d| d > 0), "{v}");
    // The server asks every few stanzas and each ask is answered; the ends' own asks are
    // answered too.
    for key in [
        "sm_requests_received",
        "sm_acks_sent",
        "sm_requests_sent",
        "sm_acks_received",
    ] {
        assert!(v[key].as_u64().is_some_and(|n| n > 0), "{key}: {v}");
    }
    let v = scenarios::latency(&ctx, 4, 200, 2, Duration::from_millis(500)).await;
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["out_of_order"], 0, "{v}");
    assert!(v["p99_ms"].as_f64().is_some(), "{v}");
    let v = scenarios::idle(&ctx, 4, None).await;
    assert_eq!(v["ok"], 4, "{v}");
    assert_eq!(v["sm_acked_sessions"], 4, "{v}");
    server.stop().await;
}

#[tokio::test]
async fn fanout_builds_rosters_then_counts_every_contacts_presence() {
    let (server, ctx) = setup(22).await;
    // Nine contacts each: more than the setup's window of own requests.
    let settings = scenarios::FanoutSettings {
        groups: scenarios::Groups {
            first: 2,
            count: 2,
            size: 10,
            shape: scenarios::Shape::Clique,
        },
        setup_timeout: Duration::from_secs(30),
        timeout: Duration::from_secs(30),
    };
    let v = scenarios::fanout(&ctx, &settings).await;
    assert_eq!(v["setup"], "built", "{v}");
    // 2 groups × 10 × 9.
    assert_eq!(v["expected"], 180, "{v}");
    assert_eq!(v["delivered"], 180, "{v}");
    assert_eq!(v["fraction"], 1.0, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(v["strangers"], 0, "{v}");
    assert!(
        v["presences_per_s"].as_f64().is_some_and(|r| r > 0.0),
        "{v}"
    );
    // The rosters are kept: a second run finds them and measures again.
    let v = scenarios::fanout(&ctx, &settings).await;
    assert_eq!(v["setup"], "present", "{v}");
    assert_eq!(v["delivered"], 180, "{v}");
    // Accounts 0 and 1 hold no group member: a group over them and part of the first group
    // is a partial clique, which the setup refuses instead of guessing.
    let partial = scenarios::FanoutSettings {
        groups: scenarios::Groups {
            first: 0,
            count: 1,
            size: 4,
            shape: scenarios::Shape::Clique,
        },
        ..settings
    };
    let v = scenarios::fanout(&ctx, &partial).await;
    assert!(error_says(&v, "part of their group"), "{v}");
    server.stop().await;
}

#[tokio::test]
async fn pep_builds_a_star_and_counts_every_contacts_notification() {
    let (server, ctx) = setup(8).await;
    // A publisher (u1) with six contacts, all with +notify caps; u0 and u7 are outside.
    let settings = scenarios::PepSettings {
        groups: scenarios::Groups {
            first: 1,
            count: 1,
            size: 7,
            shape: scenarios::Shape::Star,
        },
        publishes: 5,
        window: 2,
        setup_timeout: Duration::from_secs(30),
        timeout: Duration::from_secs(30),
    };
    let v = scenarios::pep(&ctx, &settings).await;
    assert_eq!(v["setup"], "build", "{v}");
    assert_eq!(v["warm_fraction"], 1.0, "{v}");
    assert_eq!(v["publish_ok"], 5, "{v}");
    // 5 items × 6 contacts, each once; the members answered the server's caps query.
    assert_eq!(v["expected"], 30, "{v}");
    assert_eq!(v["delivered"], 30, "{v}");
    assert_eq!(v["repeats"], 0, "{v}");
    assert!(
        v["disco_queries_answered"].as_u64().is_some_and(|n| n >= 1),
        "{v}"
    );
    // The star is kept: a second run finds it.
    let v = scenarios::pep(&ctx, &settings).await;
    assert_eq!(v["setup"], "present", "{v}");
    assert_eq!(v["delivered"], 30, "{v}");
    server.stop().await;
}

fn muc_settings(archiving: bool) -> scenarios::MucSettings {
    scenarios::MucSettings {
        // u0 stays out of the room.
        first: 1,
        senders: 3,
        // Two messages per sender on their way in a room of 10.
        in_flight: 60,
        warmup: Duration::from_millis(200),
        secs: Duration::from_millis(500),
        service: "conference.localhost".into(),
        archiving: Archiving {
            on: archiving,
            field: Some("muc#roomconfig_enablearchiving".into()),
        },
        setup_timeout: Duration::from_secs(30),
        timeout: Duration::from_secs(30),
    }
}

#[tokio::test]
async fn muc_creates_a_room_and_every_occupant_gets_every_copy() {
    // As bench/compare configures it: no message rate limit (the default, 10 a second with
    // bursts of 30, would refuse the senders' messages, which the scenario reports as errors).
    let (server, ctx) = setup_with(12, |c| {
        c.text = Some(std::sync::Arc::from(
            "[modules.muc]\nmessages_per_second = 1000000.0\nmessage_burst = 1000000\n",
        ));
    })
    .await;
    let v = scenarios::muc(&ctx, &muc_settings(false), 10).await;
    assert_eq!(v["error"], serde_json::Value::Null, "{v}");
    assert_eq!(v["joined"], 10, "{v}");
    assert_eq!(v["window"], 2, "{v}");
    let sent = v["sent"].as_u64().unwrap_or(0);
    assert!(sent >= 3, "every sender posted: {v}");
    // Every occupant, the senders included, has every message once.
    assert_eq!(v["expected"], sent * 10, "{v}");
    assert_eq!(v["delivered"], sent * 10, "{v}");
    assert_eq!(v["missing"], 0, "{v}");
    assert_eq!(v["fraction"], 1.0, "{v}");
    assert_eq!(v["errors"], 0, "{v}");
    assert!(
        v["deliveries_per_s"].as_f64().is_some_and(|r| r > 0.0),
        "{v}"
    );
    assert!(
        v["server_us_per_delivery"]
            .as_f64()
            .is_some_and(|c| c > 0.0),
        "{v}"
    );
    // The room was created without an archive: the archive shows nothing.
    assert!(v["archived"].as_u64().unwrap_or(0) == 0, "{v}");

    // Archiving on: a new room, whose archive holds what was sent.
    let v = scenarios::muc(&ctx, &muc_settings(true), 4).await;
    assert_eq!(v["error"], serde_json::Value::Null, "{v}");
    assert_eq!(v["archive"], "on", "{v}");
    assert_eq!(v["delivered"], v["expected"], "{v}");
    assert!(
        v["archived"]
            .as_u64()
            .is_some_and(|a| Some(a) == v["sent"].as_u64()),
        "{v}"
    );
    server.stop().await;
}

fn soak_settings(cycles: u64, time_limit: Duration, idle: usize) -> scenarios::SoakSettings {
    scenarios::SoakSettings {
        cycles,
        time_limit,
        accounts: 10,
        first_batch: 50,
        report_every: 100,
        idle,
        quiet_timeout: Duration::from_secs(2),
    }
}

#[tokio::test]
async fn soak_accounts_every_cycle_and_spreads_them_over_the_source_addresses() {
    // 150 connections per address and minute (XEP-0205 §4.2): the 250 logins below pass only
    // if the two source addresses share them.
    let (server, mut ctx) = setup_with(50, |c| c.limits.per_address.attempts = 150).await;
    ctx.sources = vec![[127, 0, 0, 1].into(), [127, 0, 0, 2].into()];
    let settings = soak_settings(200, Duration::from_secs(120), 50);
    let v = scenarios::soak_cycles(&ctx, &settings).await;
    assert_eq!(v["error"], serde_json::Value::Null, "{v}");
    assert_eq!(v["completed"], 200, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(v["not_started"], 0, "{v}");
    assert_eq!(v["stopped_by"], serde_json::Value::Null, "{v}");
    assert_eq!(
        v["sources"],
        serde_json::json!(["127.0.0.1", "127.0.0.2"]),
        "{v}"
    );
    // Read after the first batch, at each multiple of the interval, and at the end.
    let at: Vec<u64> = v["rss_samples"]
        .as_array()
        .map(|s| s.iter().filter_map(|s| s["cycles"].as_u64()).collect())
        .unwrap_or_default();
    assert_eq!(at, [50, 100, 200], "{v}");
    assert_eq!(v["rss_first_kib"], v["rss_samples"][0]["rss_kib"], "{v}");
    assert_eq!(v["rss_end_kib"], v["rss_samples"][2]["rss_kib"], "{v}");
    // Every cycle done: the verdict is the memory's (the test process holds the generator
    // too, so which way it goes is not asserted here; crate::soak's tests do that).
    assert!(
        matches!(v["verdict"].as_str(), Some("pass" | "grew")),
        "{v}"
    );
    assert!(
        v["server_us_per_cycle"].as_f64().is_some_and(|u| u > 0.0),
        "{v}"
    );
    assert!(v["cycles_per_s"].as_f64().is_some_and(|r| r > 0.0), "{v}");

    let v = scenarios::soak_idle(&ctx, &settings).await;
    assert_eq!(v["n"], 50, "{v}");
    assert_eq!(v["ok"], 50, "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(v["limited_by"], serde_json::Value::Null, "{v}");
    assert!(v["kib_per_session"].as_f64().is_some(), "{v}");
    assert!(
        v["server_open_files_loaded"]
            .as_u64()
            .is_some_and(|f| f >= 100),
        "both ends of 50 sessions in this process: {v}"
    );
    server.stop().await;

    // One source address: the same logins run into the limit (a refused connection is a
    // failed cycle, and the run is an error).
    let (server, mut ctx) = setup_with(10, |c| c.limits.per_address.attempts = 150).await;
    ctx.sources = vec![[127, 0, 0, 1].into()];
    let v = scenarios::soak_cycles(&ctx, &soak_settings(200, Duration::from_secs(120), 0)).await;
    assert!(v["failed"].as_u64().is_some_and(|f| f > 0), "{v}");
    assert_eq!(v["verdict"], "error", "{v}");
    assert!(error_says(&v, "policy-violation"), "{v}");
    server.stop().await;
}

#[tokio::test]
async fn soak_stopped_by_its_time_limit_says_how_far_it_got_and_does_not_pass() {
    let (server, ctx) = setup(10).await;
    let requested = 1_000_000;
    let v = scenarios::soak_cycles(
        &ctx,
        &soak_settings(requested, Duration::from_millis(1500), 0),
    )
    .await;
    assert_eq!(v["stopped_by"], "time limit", "{v}");
    assert_eq!(v["verdict"], "incomplete", "{v}");
    assert_eq!(v["failed"], 0, "{v}");
    let completed = v["completed"].as_u64().unwrap_or(0);
    assert!(completed > 0 && completed < requested, "{v}");
    assert_eq!(
        v["not_started"].as_u64(),
        Some(requested - completed),
        "{v}"
    );
    // The reading where it stopped is the last.
    let samples = v["rss_samples"].as_array().cloned().unwrap_or_default();
    assert_eq!(
        samples.last().and_then(|s| s["cycles"].as_u64()),
        Some(completed),
        "{v}"
    );
    server.stop().await;
}
