//! Stream management (XEP-0198) over BOSH: a session whose client stops sending requests
//! ends after `inactivity` as a dropped TCP connection does, waits to be resumed, and is
//! resumed in a new BOSH session with what was not acknowledged; and a live session is taken
//! over at once by a resumption on TCP.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::bosh::{self, Endpoint, terminated};
use common::{CLIENT, add_users, body, online, password};
use xmppd::config::HttpListenConfig;
use xmppd_http::HttpKind;
use xmppd_testkit::TestServer;

const SM: &str = "urn:xmpp:sm:3";

async fn server(inactivity: Duration) -> anyhow::Result<TestServer> {
    let server = TestServer::start_with(|c| {
        c.http_listen = vec![HttpListenConfig {
            kind: HttpKind::Tls,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            read_rate: None,
        }];
        c.http.requests_per_second = 1000;
        c.http.request_burst = 1000;
        c.http.bosh_inactivity = inactivity;
    })
    .await?;
    add_users(&server, &["alice", "bob"]).await?;
    Ok(server)
}

/// alice logged in over BOSH as `web` with resumable stream management; its id.
async fn resumable(endpoint: &Endpoint) -> anyhow::Result<(bosh::Session, String)> {
    let (mut alice, _) =
        bosh::login(endpoint, "localhost", "alice", &password("alice"), "web").await?;
    let got = alice
        .exchange(&format!("<enable xmlns='{SM}' resume='true'/>"))
        .await?;
    let id = got
        .iter()
        .find(|e| e.is("enabled", SM))
        .and_then(|e| e.attr("id"))
        .ok_or_else(|| anyhow::anyhow!("not enabled: {got:?}"))?
        .to_owned();
    Ok((alice, id))
}

#[tokio::test]
async fn an_inactive_session_is_resumed_in_a_new_bosh_session() -> anyhow::Result<()> {
    let server = server(Duration::from_secs(1)).await?;
    let endpoint = Endpoint::of(&server, true)?;
    let (mut alice, id) = resumable(&endpoint).await?;
    let mut bob = online(&server, "bob", "tcp", 0).await?;
    bob.send("<message to='alice@localhost/web'><body>one</body></message>")
        .await?;
    alice
        .expect("the first message", 3, |e| {
            body(e).as_deref() == Some("one")
        })
        .await?;
    // No request for longer than `inactivity`: the session waits to be resumed.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let gone = alice.send("", "").await?;
    assert_eq!(terminated(&gone).as_deref(), Some("item-not-found"));
    bob.send("<message to='alice@localhost/web'><body>two</body></message>")
        .await?;

    let (mut again, _) =
        bosh::authenticated(&endpoint, "localhost", "alice", &password("alice")).await?;
    let got = again
        .exchange(&format!("<resume xmlns='{SM}' previd='{id}' h='0'/>"))
        .await?;
    let resumed = got
        .iter()
        .find(|e| e.is("resumed", SM))
        .ok_or_else(|| anyhow::anyhow!("not resumed: {got:?}"))?;
    assert_eq!(resumed.attr("previd"), Some(id.as_str()));
    // Nothing was acknowledged: both messages come again, in order.
    let mut bodies: Vec<String> = got.iter().filter_map(body).collect();
    for _ in 0..3 {
        if bodies.len() >= 2 {
            break;
        }
        let answer = again.send("", "").await?;
        bodies.extend(answer.children().filter_map(body));
    }
    assert_eq!(bodies, ["one", "two"]);
    // The resumed session sends and counts.
    again
        .send(
            "",
            &format!(
                "<message xmlns='{CLIENT}' to='bob@localhost/tcp'><body>back</body></message>"
            ),
        )
        .await?;
    common::expect_message(&mut bob, "alice@localhost/web", "bob@localhost/tcp", "back").await?;
    Ok(())
}

#[tokio::test]
async fn a_live_session_is_taken_over_by_a_resumption_on_tcp() -> anyhow::Result<()> {
    // Inactivity far beyond the test: the BOSH session must give way without it.
    let server = server(Duration::from_secs(600)).await?;
    let endpoint = Endpoint::of(&server, true)?;
    let (mut alice, id) = resumable(&endpoint).await?;
    // The client moves to TCP (no request held on BOSH) and resumes there.
    let mut tcp = server.authenticated("alice", &password("alice")).await?;
    tcp.send(&format!("<resume xmlns='{SM}' previd='{id}' h='0'/>"))
        .await?;
    let resumed = tokio::time::timeout(
        Duration::from_secs(10),
        tcp.expect("<resumed/>", |e| e.is("resumed", SM)),
    )
    .await??;
    assert_eq!(resumed.attr("previd"), Some(id.as_str()));
    // The BOSH session is gone.
    let gone = alice.send("", "").await?;
    assert_eq!(terminated(&gone).as_deref(), Some("item-not-found"));
    Ok(())
}
