//! XMPP over BOSH (XEP-0124, XEP-0206) end to end, over HTTPS and plain HTTP: login with
//! SCRAM, `xmpp:restart` and binding; messages both ways with a TCP client; long polling;
//! out-of-order and repeated `rid`s; `rid`s from the past and the far future; unknown and
//! misused `sid`s; an oversized and a malformed body; inactivity, pause and terminate; the
//! per-address session limit; discovery (host-meta) and CORS.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::bosh::{
    self, Endpoint, HTTPBIND, STREAM, Session, XBOSH, creation_body, header, mechanisms, terminated,
};
use common::{
    CLIENT, add_users, befriend, body, expect_message, expect_presence, online, password,
};
use xmppd::config::{HostConfig, HttpListenConfig};
use xmppd_http::HttpKind;
use xmppd_testkit::TestServer;

const SECOND: Duration = Duration::from_secs(1);

/// A server with HTTPS and plain HTTP listeners, and alice and bob.
async fn server(adjust: impl FnOnce(&mut xmppd::Config)) -> anyhow::Result<TestServer> {
    let server = TestServer::start_with(|c| {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        c.http_listen = vec![
            HttpListenConfig {
                kind: HttpKind::Tls,
                addr: any,
                read_rate: None,
            },
            HttpListenConfig {
                kind: HttpKind::Plain,
                addr: any,
                read_rate: None,
            },
        ];
        // Every test makes many requests from 127.0.0.1.
        c.http.requests_per_second = 1000;
        c.http.request_burst = 1000;
        adjust(c);
    })
    .await?;
    add_users(&server, &["alice", "bob"]).await?;
    Ok(server)
}

async fn login(endpoint: &Endpoint, user: &str, resource: &str) -> anyhow::Result<Session> {
    Ok(
        bosh::login(endpoint, "localhost", user, &password(user), resource)
            .await?
            .0,
    )
}

/// Sends initial presence and takes its echo.
async fn available(s: &mut Session, me: &str) -> anyhow::Result<()> {
    let got = s.exchange(&format!("<presence xmlns='{CLIENT}'/>")).await?;
    if got
        .iter()
        .any(|e| e.is("presence", CLIENT) && e.attr("from") == Some(me))
    {
        return Ok(());
    }
    s.expect("the presence echo", 5, |e| {
        e.is("presence", CLIENT) && e.attr("from") == Some(me)
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn login_over_https_and_exchange_messages_with_a_tcp_client() -> anyhow::Result<()> {
    let server = server(|_| {}).await?;
    let endpoint = Endpoint::of(&server, true)?;
    // The session creation response (XEP-0124 §7.2, XEP-0206 §4).
    let (status, headers, bytes) = endpoint
        .http(
            "POST",
            &[("Content-Type", "text/xml; charset=utf-8")],
            creation_body(4242, "localhost", 60).as_bytes(),
            10 * SECOND,
        )
        .await?;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        Some("text/xml; charset=utf-8")
    );
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    let created = common::ws::parse_message(std::str::from_utf8(&bytes)?)?;
    assert!(created.is("body", HTTPBIND), "{created}");
    let sid = created.attr("sid").unwrap_or_default();
    assert!(
        sid.len() >= 32 && sid.bytes().all(|b| b.is_ascii_hexdigit()),
        "{sid}"
    );
    for (attr, value) in [
        ("wait", "60"),
        ("requests", "2"),
        ("hold", "1"),
        ("inactivity", "60"),
        ("polling", "2"),
        ("maxpause", "120"),
        ("ver", "1.6"),
        ("from", "localhost"),
    ] {
        assert_eq!(created.attr(attr), Some(value), "{attr} in {created}");
    }
    assert_eq!(created.attr(&format!("{{{XBOSH}}}version")), Some("1.0"));
    assert_eq!(
        created.attr(&format!("{{{XBOSH}}}restartlogic")),
        Some("true")
    );
    let offered = mechanisms(&created);
    assert!(offered.iter().any(|m| m == "SCRAM-SHA-256"), "{offered:?}");
    // No TLS connection is the session's: nothing binds to one.
    assert!(!offered.iter().any(|m| m.ends_with("-PLUS")), "{offered:?}");
    assert!(
        created
            .child("features", STREAM)
            .is_some_and(|f| !f.has_child("starttls", "urn:ietf:params:xml:ns:xmpp-tls"))
    );

    let (mut alice, features) =
        bosh::login(&endpoint, "localhost", "alice", &password("alice"), "web").await?;
    assert!(features.has_child("bind", "urn:ietf:params:xml:ns:xmpp-bind"));
    available(&mut alice, "alice@localhost/web").await?;

    let mut bob = online(&server, "bob", "tcp", 0).await?;
    bob.send("<message to='alice@localhost/web' type='chat'><body>over TCP</body></message>")
        .await?;
    let got = alice
        .expect("bob's message", 3, |e| e.is("message", CLIENT))
        .await?;
    assert_eq!(got.attr("from"), Some("bob@localhost/tcp"));
    assert_eq!(body(&got).as_deref(), Some("over TCP"));

    alice
        .send(
            "",
            &format!("<message xmlns='{CLIENT}' to='bob@localhost/tcp' type='chat'><body>over BOSH</body></message>"),
        )
        .await?;
    expect_message(
        &mut bob,
        "alice@localhost/web",
        "bob@localhost/tcp",
        "over BOSH",
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn plain_http_carries_a_session_where_tls_is_not_required() -> anyhow::Result<()> {
    let server = server(|c| c.require_tls = false).await?;
    let endpoint = Endpoint::of(&server, false)?;
    let (mut alice, _) =
        bosh::login(&endpoint, "localhost", "alice", &password("alice"), "plain").await?;
    let got = alice
        .exchange(&format!(
            "<iq xmlns='{CLIENT}' type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await?;
    assert!(
        got.iter()
            .any(|e| e.attr("id") == Some("p1") && e.attr("type") == Some("result"))
    );
    Ok(())
}

#[tokio::test]
async fn plain_http_is_refused_where_tls_is_required() -> anyhow::Result<()> {
    let server = server(|_| {}).await?;
    let endpoint = Endpoint::of(&server, false)?;
    let (status, _, _) = endpoint
        .http(
            "POST",
            &[],
            creation_body(1, "localhost", 5).as_bytes(),
            5 * SECOND,
        )
        .await?;
    assert_eq!(status, 403);
    Ok(())
}

#[tokio::test]
async fn a_held_request_carries_what_arrives_and_an_idle_one_ends_empty() -> anyhow::Result<()> {
    let server = server(|_| {}).await?;
    let endpoint = Endpoint::of(&server, true)?;
    let mut alice = login(&endpoint, "alice", "web").await?;
    let mut bob = online(&server, "bob", "tcp", 0).await?;
    // A request with nothing to carry is held for `wait` (5 s asked) and ends empty.
    let started = std::time::Instant::now();
    let empty = alice.send("", "").await?;
    assert!(empty.children().next().is_none(), "{empty}");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    // A held request is answered as soon as a stanza arrives.
    let mut poller = alice.clone();
    poller.rid += 1;
    alice.rid += 1;
    let held = tokio::spawn(async move {
        let body = poller.body(poller.rid, "", "");
        poller.endpoint.post(&body, poller.within).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!held.is_finished(), "the poll was not held");
    bob.send("<message to='alice@localhost/web'><body>wake up</body></message>")
        .await?;
    let answer = tokio::time::timeout(2 * SECOND, held).await???;
    let message = answer
        .children()
        .find(|e| e.is("message", CLIENT))
        .ok_or_else(|| anyhow::anyhow!("no message in {answer}"))?;
    assert_eq!(body(message).as_deref(), Some("wake up"));
    Ok(())
}

#[tokio::test]
async fn requests_out_of_order_are_processed_in_rid_order() -> anyhow::Result<()> {
    let server = server(|_| {}).await?;
    let endpoint = Endpoint::of(&server, true)?;
    let alice = login(&endpoint, "alice", "web").await?;
    let mut bob = online(&server, "bob", "tcp", 0).await?;
    let message = |text: &str| {
        format!("<message xmlns='{CLIENT}' to='bob@localhost/tcp'><body>{text}</body></message>")
    };
    // rid+2 arrives first and waits for rid+1 (XEP-0124 §14.2).
    let second = alice.body(alice.rid + 2, "", &message("second"));
    let first = alice.body(alice.rid + 1, "", &message("first"));
    let e2 = alice.endpoint.clone();
    let within = alice.within;
    let late = tokio::spawn(async move { e2.post(&second, within).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    bob.expect_silence(Duration::from_millis(200)).await?;
    let e1 = alice.endpoint.clone();
    let early = tokio::spawn(async move { e1.post(&first, within).await });
    expect_message(
        &mut bob,
        "alice@localhost/web",
        "bob@localhost/tcp",
        "first",
    )
    .await?;
    expect_message(
        &mut bob,
        "alice@localhost/web",
        "bob@localhost/tcp",
        "second",
    )
    .await?;
    // hold = 1: the first is answered at once, the second when its wait ends.
    let a1 = tokio::time::timeout(2 * SECOND, early).await???;
    assert!(terminated(&a1).is_none(), "{a1}");
    let a2 = tokio::time::timeout(10 * SECOND, late).await???;
    assert!(terminated(&a2).is_none(), "{a2}");
    Ok(())
}

#[tokio::test]
async fn a_repeated_request_gets_the_same_answer_and_is_not_processed_again() -> anyhow::Result<()>
{
    let server = server(|_| {}).await?;
    let endpoint = Endpoint::of(&server, true)?;
    let mut alice = login(&endpoint, "alice", "web").await?;
    let mut bob = online(&server, "bob", "tcp", 0).await?;
    let ping = format!(
        "<iq xmlns='{CLIENT}' type='get' id='once'><ping xmlns='urn:xmpp:ping'/></iq>\
         <message xmlns='{CLIENT}' to='bob@localhost/tcp'><body>once</body></message>"
    );
    alice.rid += 1;
    let request = alice.body(alice.rid, "", &ping);
    let (s1, _, first) = endpoint
        .http("POST", &[], request.as_bytes(), alice.within)
        .await?;
    let (s2, _, again) = endpoint
        .http("POST", &[], request.as_bytes(), alice.within)
        .await?;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(
        first, again,
        "XEP-0124 §14.3: the buffered copy of the answer"
    );
    assert!(String::from_utf8_lossy(&first).contains("id=\"once\""));
    expect_message(&mut bob, "alice@localhost/web", "bob@localhost/tcp", "once").await?;
    bob.expect_silence(Duration::from_millis(300)).await?;
    // The session goes on.
    let pong = alice
        .exchange(&format!(
            "<iq xmlns='{CLIENT}' type='get' id='after'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await?;
    assert!(pong.iter().any(|e| e.attr("id") == Some("after")));
    Ok(())
}

#[tokio::test]
async fn rids_from_the_past_or_the_far_future_end_the_session() -> anyhow::Result<()> {
    let server = server(|_| {}).await?;
    let endpoint = Endpoint::of(&server, true)?;
    for offset in [-10i64, 3, 1_000_000] {
        let (s, _) = Session::create(&endpoint, "localhost", 5).await?;
        let rid = s.rid.checked_add_signed(offset).unwrap_or(1);
        let answer = endpoint.post(&s.body(rid, "", ""), 5 * SECOND).await?;
        assert_eq!(
            terminated(&answer).as_deref(),
            Some("item-not-found"),
            "{offset}: {answer}"
        );
        // And the session is gone.
        let after = endpoint
            .post(&s.body(s.rid + 1, "", ""), 5 * SECOND)
            .await?;
        assert_eq!(
            terminated(&after).as_deref(),
            Some("item-not-found"),
            "{offset}: {after}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn an_unknown_sid_is_not_found_and_a_sessions_sid_with_a_stray_rid_ends_it()
-> anyhow::Result<()> {
    let server = server(|_| {}).await?;
    let endpoint = Endpoint::of(&server, true)?;
    let (a, _) = Session::create(&endpoint, "localhost", 5).await?;
    let (b, _) = Session::create(&endpoint, "localhost", 5).await?;
    assert_ne!(a.sid, b.sid);
    let mut guessed = a.clone();
    guessed.sid = "0".repeat(40);
    let answer = endpoint
        .post(&guessed.body(a.rid + 1, "", ""), 5 * SECOND)
        .await?;
    assert_eq!(terminated(&answer).as_deref(), Some("item-not-found"));
    // b's sid with a's rids: out of b's window, so b ends (§14.2), and a is untouched.
    let mut mixed = b.clone();
    mixed.rid = a.rid + 1_000;
    let answer = mixed.send("", "").await?;
    assert_eq!(terminated(&answer).as_deref(), Some("item-not-found"));
    let mut a = a;
    let still = a
        .send(
            "",
            &format!("<auth xmlns='{}' mechanism='NOPE'/>", bosh::SASL),
        )
        .await?;
    assert!(terminated(&still).is_none(), "{still}");
    Ok(())
}

#[tokio::test]
async fn an_oversized_body_is_413_and_ends_its_session() -> anyhow::Result<()> {
    let server = server(|c| c.http.bosh_max_body_bytes = 4096).await?;
    let endpoint = Endpoint::of(&server, true)?;
    let mut alice = login(&endpoint, "alice", "web").await?;
    let big = format!(
        "<message xmlns='{CLIENT}' to='bob@localhost'><body>{}</body></message>",
        "x".repeat(5000)
    );
    alice.rid += 1;
    let (status, _, _) = endpoint
        .http(
            "POST",
            &[],
            alice.body(alice.rid, "", &big).as_bytes(),
            5 * SECOND,
        )
        .await?;
    assert_eq!(status, 413);
    // §17.2 policy-violation: the session is over.
    let after = alice.send("", "").await?;
    assert!(terminated(&after).is_some(), "{after}");
    Ok(())
}

#[tokio::test]
async fn malformed_bodies_are_bad_requests() -> anyhow::Result<()> {
    let server = server(|_| {}).await?;
    let endpoint = Endpoint::of(&server, true)?;
    for bad in [
        "<body rid='1' xmlns='http://jabber.org/protocol/httpbind'>".to_owned(),
        "<body rid='1'/>".to_owned(),
        "<!DOCTYPE body><body rid='1' xmlns='http://jabber.org/protocol/httpbind'/>".to_owned(),
        format!("<body xmlns='{HTTPBIND}' to='localhost'/>"),
        "{\"json\": true}".to_owned(),
    ] {
        let answer = endpoint.post(&bad, 5 * SECOND).await?;
        assert_eq!(terminated(&answer).as_deref(), Some("bad-request"), "{bad}");
    }
    // A stanza before authentication is the stream's error, inside the session.
    let (mut s, _) = Session::create(&endpoint, "localhost", 5).await?;
    let answer = s
        .send(
            "",
            &format!("<message xmlns='{CLIENT}' to='bob@localhost'/>"),
        )
        .await?;
    assert_eq!(terminated(&answer).as_deref(), Some("remote-stream-error"));
    assert!(answer.child("error", STREAM).is_some(), "{answer}");
    Ok(())
}

#[tokio::test]
async fn a_host_without_bosh_is_unknown() -> anyhow::Result<()> {
    let server = server(|c| {
        c.hosts.push(HostConfig {
            name: "example.net".into(),
            tls: None,
            modules: None,
        });
        c.http.hosts.insert(
            "example.net".into(),
            xmppd_http::HostWeb {
                bosh: false,
                ..Default::default()
            },
        );
    })
    .await?;
    let endpoint = Endpoint::of(&server, true)?;
    for to in ["example.net", "nowhere.example"] {
        let answer = endpoint.post(&creation_body(7, to, 5), 5 * SECOND).await?;
        assert_eq!(terminated(&answer).as_deref(), Some("host-unknown"), "{to}");
    }
    Ok(())
}

#[tokio::test]
async fn an_inactive_session_ends_and_its_contacts_see_it_go() -> anyhow::Result<()> {
    let server = server(|c| c.http.bosh_inactivity = 2 * SECOND).await?;
    let endpoint = Endpoint::of(&server, true)?;
    let mut alice_tcp = common::online_with_roster(&server, "alice", "phone", 0).await?;
    let mut bob = common::online_with_roster(&server, "bob", "tcp", 0).await?;
    befriend(&mut alice_tcp, "alice", &mut bob, "bob").await?;
    alice_tcp.close().await?;
    expect_presence(&mut bob, "alice@localhost/phone", Some("unavailable")).await?;

    let mut alice = login(&endpoint, "alice", "web").await?;
    available(&mut alice, "alice@localhost/web").await?;
    expect_presence(&mut bob, "alice@localhost/web", None).await?;
    // No request for longer than `inactivity` (§8): the session ends as a dropped link.
    bob.expect_silence(SECOND).await?;
    expect_presence(&mut bob, "alice@localhost/web", Some("unavailable")).await?;
    let after = alice.send("", "").await?;
    assert_eq!(terminated(&after).as_deref(), Some("item-not-found"));
    Ok(())
}

#[tokio::test]
async fn a_pause_keeps_the_session_past_its_inactivity() -> anyhow::Result<()> {
    let server = server(|c| {
        c.http.bosh_inactivity = SECOND;
        c.http.bosh_max_pause = 4 * SECOND;
    })
    .await?;
    let endpoint = Endpoint::of(&server, true)?;
    let mut alice = login(&endpoint, "alice", "web").await?;
    let started = std::time::Instant::now();
    let paused = alice.send("pause='3'", "").await?;
    assert!(
        paused.children().next().is_none() && terminated(&paused).is_none(),
        "{paused}"
    );
    assert!(started.elapsed() < SECOND, "a pause is answered at once");
    tokio::time::sleep(2 * SECOND).await;
    let pong = alice
        .exchange(&format!(
            "<iq xmlns='{CLIENT}' type='get' id='back'><ping xmlns='urn:xmpp:ping'/></iq>"
        ))
        .await?;
    assert!(pong.iter().any(|e| e.attr("id") == Some("back")));
    // Back to the normal inactivity after the pause.
    tokio::time::sleep(2 * SECOND).await;
    let gone = alice.send("", "").await?;
    assert_eq!(terminated(&gone).as_deref(), Some("item-not-found"));
    Ok(())
}

#[tokio::test]
async fn terminate_sends_its_payloads_and_ends_the_session() -> anyhow::Result<()> {
    let server = server(|_| {}).await?;
    let endpoint = Endpoint::of(&server, true)?;
    let mut bob = common::online_with_roster(&server, "bob", "tcp", 0).await?;
    let mut alice_tcp = common::online_with_roster(&server, "alice", "phone", 0).await?;
    befriend(&mut alice_tcp, "alice", &mut bob, "bob").await?;
    alice_tcp.close().await?;
    expect_presence(&mut bob, "alice@localhost/phone", Some("unavailable")).await?;

    let mut alice = login(&endpoint, "alice", "web").await?;
    available(&mut alice, "alice@localhost/web").await?;
    expect_presence(&mut bob, "alice@localhost/web", None).await?;
    let answer = alice
        .send(
            "type='terminate'",
            &format!(
                "<presence xmlns='{CLIENT}' type='unavailable'><status>bye</status></presence>"
            ),
        )
        .await?;
    assert_eq!(terminated(&answer).as_deref(), Some(""), "{answer}");
    let gone = expect_presence(&mut bob, "alice@localhost/web", Some("unavailable")).await?;
    assert_eq!(
        gone.child("status", CLIENT).map(|s| s.text()).as_deref(),
        Some("bye")
    );
    let after = alice.send("", "").await?;
    assert_eq!(terminated(&after).as_deref(), Some("item-not-found"));
    Ok(())
}

#[tokio::test]
async fn sessions_per_address_are_limited() -> anyhow::Result<()> {
    let server = server(|c| c.http.bosh_max_sessions_per_ip = 2).await?;
    let endpoint = Endpoint::of(&server, true)?;
    let (mut first, _) = Session::create(&endpoint, "localhost", 5).await?;
    let _second = Session::create(&endpoint, "localhost", 5).await?;
    let (status, _, _) = endpoint
        .http(
            "POST",
            &[],
            creation_body(9, "localhost", 5).as_bytes(),
            5 * SECOND,
        )
        .await?;
    assert_eq!(status, 429);
    // A session that ends makes room.
    let bye = first.send("type='terminate'", "").await?;
    assert!(terminated(&bye).is_some());
    let mut made = false;
    for _ in 0..20 {
        if Session::create(&endpoint, "localhost", 5).await.is_ok() {
            made = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(made, "no room after a session ended");
    Ok(())
}

#[tokio::test]
async fn discovery_lists_bosh_and_the_endpoint_answers_cors_preflights() -> anyhow::Result<()> {
    let server = server(|_| {}).await?;
    let endpoint = Endpoint::of(&server, true)?;
    let port = endpoint.addr.port();
    let mut meta = endpoint.clone();
    meta.path = "/.well-known/host-meta.json".into();
    let (status, _, text) = meta.http("GET", &[], b"", 5 * SECOND).await?;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_slice(&text)?;
    let links = json["links"].as_array().cloned().unwrap_or_default();
    let bosh_link = links
        .iter()
        .find(|l| l["rel"] == "urn:xmpp:alt-connections:xbosh")
        .and_then(|l| l["href"].as_str());
    assert_eq!(
        bosh_link,
        Some(format!("https://localhost:{port}/http-bind").as_str())
    );
    meta.path = "/.well-known/host-meta".into();
    let (_, _, xrd) = meta.http("GET", &[], b"", 5 * SECOND).await?;
    let xrd = String::from_utf8(xrd)?;
    assert!(xrd.contains("urn:xmpp:alt-connections:xbosh"), "{xrd}");
    assert!(
        xrd.contains(&format!("https://localhost:{port}/http-bind")),
        "{xrd}"
    );

    let (status, headers, _) = endpoint
        .http(
            "OPTIONS",
            &[
                ("Origin", "https://chat.example.org"),
                ("Access-Control-Request-Method", "POST"),
                ("Access-Control-Request-Headers", "content-type"),
            ],
            b"",
            5 * SECOND,
        )
        .await?;
    assert_eq!(status, 204);
    assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"));
    assert!(header(&headers, "access-control-allow-methods").is_some_and(|m| m.contains("POST")));
    assert!(
        header(&headers, "access-control-allow-headers")
            .is_some_and(|h| h.to_ascii_lowercase().contains("content-type"))
    );
    let (status, _, _) = endpoint.http("GET", &[], b"", 5 * SECOND).await?;
    assert_eq!(status, 405);
    Ok(())
}
