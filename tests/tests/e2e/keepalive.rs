//! A bound client that falls silent is asked to answer — a XEP-0199 ping, or an `<r/>` under
//! stream management — and a link that stays silent counts as dead: a resumable session then
//! waits for its client instead of ending.

use crate::common;

use std::time::Duration;

use common::*;
use xmppd_testkit::TestServer;

const SM: &str = "urn:xmpp:sm:3";

async fn quick_keepalive() -> anyhow::Result<TestServer> {
    TestServer::start_with(|c| {
        c.limits.ping_after = Duration::from_secs(1);
        c.limits.dead_after = Duration::from_secs(1);
    })
    .await
}

#[tokio::test]
async fn a_silent_client_is_pinged_and_dropped_when_it_does_not_answer() -> anyhow::Result<()> {
    let server = quick_keepalive().await?;
    add_users(&server, &["alice"]).await?;
    let mut alice = server.login("alice", &password("alice"), "phone").await?;
    let ping = alice.expect("a ping", |e| e.name() == "iq").await?;
    assert_eq!(ping.attr("type"), Some("get"));
    assert!(ping.has_child("ping", "urn:xmpp:ping"), "{ping}");
    // Answering keeps the link: the next ping comes only after another silence.
    let id = ping.attr("id").unwrap_or_default().to_owned();
    alice
        .send(&format!("<iq type='result' id='{id}' to='localhost'/>"))
        .await?;
    alice.expect("the next ping", |e| e.name() == "iq").await?;
    // Not answering: the server gives up on the link.
    alice.expect_closed().await?;
    Ok(())
}

#[tokio::test]
async fn a_dead_link_leaves_a_resumable_session_waiting() -> anyhow::Result<()> {
    let server = quick_keepalive().await?;
    add_users(&server, &["alice"]).await?;
    let mut alice = server.login("alice", &password("alice"), "phone").await?;
    alice
        .send(&format!("<enable xmlns='{SM}' resume='true'/>"))
        .await?;
    let enabled = alice.expect("enabled", |e| e.is("enabled", SM)).await?;
    let id = enabled.attr("id").unwrap_or_default().to_owned();
    // Under stream management the question is an <r/>.
    alice.expect("an ack request", |e| e.is("r", SM)).await?;
    alice.expect_closed().await?;
    let mut alice = server.authenticated("alice", &password("alice")).await?;
    alice
        .send(&format!("<resume xmlns='{SM}' previd='{id}' h='0'/>"))
        .await?;
    alice.expect("resumed", |e| e.is("resumed", SM)).await?;
    Ok(())
}
