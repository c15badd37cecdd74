//! What the server tells about itself and its users: software version (XEP-0092), entity time
//! (XEP-0202) and last activity (XEP-0012) — the server's uptime, and a user's last logout
//! for those allowed to see the user's presence.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{
    CLIENT, add_users, befriend, expect_error, expect_result, online, online_with_roster,
};
use xmppd_testkit::{TestClient, TestServer};
use xmppd_xml::Element;

const VERSION: &str = "jabber:iq:version";
const TIME: &str = "urn:xmpp:time";
const LAST: &str = "jabber:iq:last";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// Sends an iq get with `payload` to `to` and returns the payload of its result.
async fn get(
    client: &mut TestClient,
    id: &str,
    to: &str,
    payload: &str,
) -> anyhow::Result<Element> {
    client
        .send(&format!(
            "<iq type='get' id='{id}' to='{to}'>{payload}</iq>"
        ))
        .await?;
    let result = expect_result(client, id, to).await?;
    result
        .children()
        .next()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("empty result: {result}"))
}

/// Logs alice in on `server` and asks the server for `payload`; alice and the answer.
async fn ask_the_server(
    server: &TestServer,
    payload: &str,
) -> anyhow::Result<(TestClient, Element)> {
    add_users(server, &["alice"]).await?;
    let mut alice = online(server, "alice", "phone", 0).await?;
    let answer = get(&mut alice, "q1", "localhost", payload).await?;
    Ok((alice, answer))
}

fn child_text(el: &Element, name: &str) -> Option<String> {
    el.child(name, el.ns()).map(Element::text)
}

fn seconds(query: &Element) -> anyhow::Result<u64> {
    let s = query
        .attr("seconds")
        .ok_or_else(|| anyhow::anyhow!("no seconds: {query}"))?;
    Ok(s.parse()?)
}

#[tokio::test]
async fn the_server_tells_its_software_version_and_os() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (mut alice, q) = ask_the_server(&server, &format!("<query xmlns='{VERSION}'/>")).await?;
    assert!(q.is("query", VERSION), "{q}");
    assert_eq!(child_text(&q, "name").as_deref(), Some("xmppd"));
    assert!(
        child_text(&q, "version").is_some_and(|v| !v.is_empty()),
        "{q}"
    );
    assert!(child_text(&q, "os").is_some_and(|v| !v.is_empty()), "{q}");

    let info = get(
        &mut alice,
        "d1",
        "localhost",
        &format!("<query xmlns='{DISCO_INFO}'/>"),
    )
    .await?;
    let features: Vec<&str> = info.children().filter_map(|f| f.attr("var")).collect();
    for ns in [VERSION, TIME, LAST] {
        assert!(features.contains(&ns), "{ns} missing from {features:?}");
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn hide_os_leaves_the_os_out() -> anyhow::Result<()> {
    let server = TestServer::start_with(|config| {
        config.text = Some(Arc::from("[modules.version]\nhide_os = true\n"));
        config.source = Some("xmppd.toml".into());
    })
    .await?;
    let (_alice, q) = ask_the_server(&server, &format!("<query xmlns='{VERSION}'/>")).await?;
    assert_eq!(child_text(&q, "name").as_deref(), Some("xmppd"));
    assert!(q.child("version", VERSION).is_some(), "{q}");
    assert!(q.child("os", VERSION).is_none(), "os must be hidden: {q}");
    server.stop().await;
    Ok(())
}

#[test]
fn a_misspelt_version_setting_names_its_line_and_key() {
    let text = "[modules.version]\nhide_oss = true\n";
    let err = xmppd::config::Config::parse(text, Path::new("xmppd.toml"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("hide_oss"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    assert!(err.contains("xmppd.toml"), "{err}");
}

#[tokio::test]
async fn the_server_tells_its_time_in_utc() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let before = std::time::SystemTime::now();
    let (_alice, t) = ask_the_server(&server, &format!("<time xmlns='{TIME}'/>")).await?;
    assert!(t.is("time", TIME), "{t}");
    assert_eq!(child_text(&t, "tzo").as_deref(), Some("+00:00"));
    let utc = child_text(&t, "utc").unwrap_or_default();
    assert!(utc.ends_with('Z'), "{utc}");
    let at = xmppd_proto::datetime::parse_datetime(&utc)
        .ok_or_else(|| anyhow::anyhow!("unparseable utc {utc}"))?;
    let skew = at.duration_since(before).unwrap_or_else(|e| e.duration());
    assert!(skew < Duration::from_secs(5), "{utc} is far from now");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_server_tells_its_uptime() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (_alice, q) = ask_the_server(&server, &format!("<query xmlns='{LAST}'/>")).await?;
    assert!(q.is("query", LAST), "{q}");
    assert!(seconds(&q)? < 60, "{q}");
    // §5: no character data.
    assert!(q.nodes().is_empty(), "{q}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn last_activity_of_a_contact_is_for_subscribers_only() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob", "carol"]).await?;
    let mut alice = online_with_roster(&server, "alice", "phone", 0).await?;
    let mut bob = online_with_roster(&server, "bob", "desk", 0).await?;
    befriend(&mut alice, "alice", &mut bob, "bob").await?;
    let mut carol = online(&server, "carol", "tablet", 0).await?;
    let query = format!("<query xmlns='{LAST}'/>");

    // §3: bob is online, so zero.
    let q = get(&mut alice, "a1", "bob@localhost", &query).await?;
    assert_eq!(seconds(&q)?, 0, "{q}");
    assert!(q.nodes().is_empty(), "{q}");

    // §3, §8: carol may not see bob's presence, online or not.
    carol
        .send(&format!(
            "<iq type='get' id='c1' to='bob@localhost'>{query}</iq>"
        ))
        .await?;
    expect_error(&mut carol, "iq", "c1", "bob@localhost", "forbidden").await?;

    bob.send("<presence type='unavailable'><status>Heading Home</status></presence>")
        .await?;
    bob.close().await?;
    alice
        .expect("bob's unavailable presence", |e| {
            e.is("presence", CLIENT)
                && e.attr("from") == Some("bob@localhost/desk")
                && e.attr("type") == Some("unavailable")
        })
        .await?;
    // The session is unbound just after the stream closes: ask until bob is gone.
    let mut answer = None;
    for attempt in 0..40 {
        let q = get(
            &mut alice,
            &format!("a2-{attempt}"),
            "bob@localhost",
            &query,
        )
        .await?;
        if q.text() == "Heading Home" {
            answer = Some(q);
            break;
        }
        assert_eq!(seconds(&q)?, 0, "bob still online: {q}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let q = answer.ok_or_else(|| anyhow::anyhow!("no logout reported"))?;
    assert!(seconds(&q)? < 60, "{q}");

    carol
        .send(&format!(
            "<iq type='get' id='c2' to='bob@localhost'>{query}</iq>"
        ))
        .await?;
    expect_error(&mut carol, "iq", "c2", "bob@localhost", "forbidden").await?;
    server.stop().await;
    Ok(())
}
