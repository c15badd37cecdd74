//! BOSH acknowledgements (XEP-0124 §9): a session created with `ack='1'` gets `ack` in its
//! creation response and in answers that say more than that their own request came (§9.1),
//! and a request whose `ack` misses an answer sent a while ago is answered at once with
//! `report` and `time` (§9.2); sessions created without it see none of these attributes.

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::bosh::{Endpoint, HTTPBIND, Session, XBOSH, terminated};
use xmppd::config::HttpListenConfig;
use xmppd_http::HttpKind;
use xmppd_testkit::TestServer;

async fn server() -> anyhow::Result<TestServer> {
    TestServer::start_with(|c| {
        c.http_listen = vec![HttpListenConfig {
            kind: HttpKind::Tls,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            read_rate: None,
        }];
        c.http.requests_per_second = 1000;
        c.http.request_burst = 1000;
    })
    .await
}

/// A session created as Strophe.js does (hold 1, so requests 2), with `ack='1'` or not.
async fn create(endpoint: &Endpoint, acks: bool) -> anyhow::Result<(Session, xmppd_xml::Element)> {
    let rid: u64 = 2_000_000;
    let ack = if acks { "ack='1'" } else { "" };
    let body = format!(
        "<body rid='{rid}' xmlns='{HTTPBIND}' to='localhost' xml:lang='en' wait='5' hold='1' \
         {ack} ver='1.6' xmpp:version='1.0' xmlns:xmpp='{XBOSH}'/>"
    );
    let answer = endpoint.post(&body, Duration::from_secs(10)).await?;
    let sid = answer
        .attr("sid")
        .ok_or_else(|| anyhow::anyhow!("no sid in {answer}"))?
        .to_owned();
    let session = Session {
        endpoint: endpoint.clone(),
        sid,
        rid,
        within: Duration::from_secs(15),
    };
    Ok((session, answer))
}

/// Posts request `rid` with `attrs` on a task; its answer.
fn post(
    s: &Session,
    rid: u64,
    attrs: &str,
) -> tokio::task::JoinHandle<anyhow::Result<xmppd_xml::Element>> {
    let (endpoint, body, within) = (s.endpoint.clone(), s.body(rid, attrs, ""), s.within);
    tokio::spawn(async move { endpoint.post(&body, within).await })
}

#[tokio::test]
async fn answers_carry_acks_and_report_an_answer_the_client_missed() -> anyhow::Result<()> {
    let server = server().await?;
    let endpoint = Endpoint::of(&server, true)?;
    let (s, created) = create(&endpoint, true).await?;
    let first = s.rid;
    assert_eq!(
        created.attr("ack"),
        Some(first.to_string().as_str()),
        "§9.1: {created}"
    );

    // r1 is held; r2 arrives, so r1 is answered (hold 1) with the ack of r2: more than that
    // r1 itself came.
    let r1 = post(&s, first + 1, &format!("ack='{first}'"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r2 = post(&s, first + 2, "");
    let a1 = tokio::time::timeout(Duration::from_secs(5), r1).await???;
    assert!(terminated(&a1).is_none(), "{a1}");
    assert_eq!(
        a1.attr("ack"),
        Some((first + 2).to_string().as_str()),
        "{a1}"
    );
    assert_eq!(a1.attr("report"), None);

    // More than a second later, r3 says (ack = first) that r1's answer never came: the
    // oldest held request, r2, is answered at once with report = r1 and the time since.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r3 = post(&s, first + 3, &format!("ack='{first}'"));
    let a2 = tokio::time::timeout(Duration::from_secs(3), r2).await???;
    assert_eq!(
        a2.attr("report"),
        Some((first + 1).to_string().as_str()),
        "§9.2: {a2}"
    );
    let time: u64 = a2
        .attr("time")
        .ok_or_else(|| anyhow::anyhow!("no time in {a2}"))?
        .parse()?;
    assert!((1000..15_000).contains(&time), "time {time}");
    // The client sends r1 again and gets the kept copy (§14.3).
    let again = tokio::time::timeout(Duration::from_secs(3), post(&s, first + 1, "")).await???;
    assert_eq!(again, a1);
    // r3, answered when its wait ends, is the rid of the answer: no ack there.
    let a3 = tokio::time::timeout(Duration::from_secs(10), r3).await???;
    assert!(terminated(&a3).is_none(), "{a3}");
    assert_eq!(a3.attr("ack"), None, "{a3}");
    Ok(())
}

#[tokio::test]
async fn without_ack_at_creation_no_answer_carries_acks_or_reports() -> anyhow::Result<()> {
    let server = server().await?;
    let endpoint = Endpoint::of(&server, true)?;
    let (s, created) = create(&endpoint, false).await?;
    let first = s.rid;
    assert_eq!(created.attr("ack"), None, "{created}");
    let r1 = post(&s, first + 1, "");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r2 = post(&s, first + 2, "");
    let a1 = tokio::time::timeout(Duration::from_secs(5), r1).await???;
    assert_eq!(a1.attr("ack"), None, "{a1}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    // An ack from a client that did not ask for them is ignored: r3's arrival answers r2
    // (hold 1), without a report.
    let r3 = post(&s, first + 3, &format!("ack='{first}'"));
    let a2 = tokio::time::timeout(Duration::from_secs(3), r2).await???;
    assert_eq!(a2.attr("report"), None, "{a2}");
    let a3 = tokio::time::timeout(Duration::from_secs(10), r3).await???;
    assert!(terminated(&a3).is_none(), "{a3}");
    Ok(())
}
