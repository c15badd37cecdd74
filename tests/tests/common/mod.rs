//! Helpers shared by the end-to-end test files: logging in with presence, and the exact
//! checks of what a client must receive.

#![allow(dead_code)]

pub mod attack;
pub mod bosh;
pub mod component;
pub mod echo;
pub mod federation;
pub mod mam;
pub mod muc;
pub mod pep;
pub mod scram;
pub mod ws;

use std::time::Duration;

use xmppd_testkit::{TestClient, TestServer, stanza_error_condition};
use xmppd_xml::Element;

/// The `jabber:client` namespace.
pub const CLIENT: &str = "jabber:client";

/// How long a test waits to be sure that something does NOT arrive.
pub const SILENCE: Duration = Duration::from_millis(300);

/// Logs `user` in with `resource`, sends initial presence with `priority` and takes the
/// server's echo of that presence (RFC 6121 §4.2.2). Presence of the account's other available
/// resources, which follows, is left for the test to expect.
pub async fn online(
    server: &TestServer,
    user: &str,
    resource: &str,
    priority: i8,
) -> anyhow::Result<TestClient> {
    let mut client = server.login(user, &password(user), resource).await?;
    client.available(priority).await?;
    let me = format!("{user}@localhost/{resource}");
    expect_presence(&mut client, &me, None).await?;
    Ok(client)
}

/// The stanzas named `name` that arrive within `period`, others skipped: what a rate let
/// through. A stream event that is no stanza (an error, the end) fails.
pub async fn arriving_within(
    client: &mut TestClient,
    name: &str,
    period: Duration,
) -> anyhow::Result<Vec<Element>> {
    let until = tokio::time::Instant::now() + period;
    let mut arrived = Vec::new();
    while let Some(left) = until.checked_duration_since(tokio::time::Instant::now()) {
        match client.next_event_within(left).await? {
            Some(xmppd_xml::StreamEvent::Stanza(el)) if el.name() == name => arrived.push(el),
            Some(xmppd_xml::StreamEvent::Stanza(_)) => {}
            Some(other) => anyhow::bail!("expected <{name}/> stanzas, got {other:?}"),
            None => break,
        }
    }
    Ok(arrived)
}

/// The password the tests give `user`.
pub fn password(user: &str) -> String {
    format!("{user}-secret")
}

/// Creates the accounts with [`password`].
pub async fn add_users(server: &TestServer, users: &[&str]) -> anyhow::Result<()> {
    for user in users {
        server.add_user(user, &password(user)).await?;
    }
    Ok(())
}

/// The body text of a message, if it has one.
pub fn body(el: &Element) -> Option<String> {
    el.child("body", CLIENT).map(Element::text)
}

/// Expects a presence from `from` with `type` (None: available).
pub async fn expect_presence(
    client: &mut TestClient,
    from: &str,
    kind: Option<&str>,
) -> anyhow::Result<Element> {
    let what = format!("presence type={kind:?} from {from}");
    client
        .expect(&what, |e| {
            e.is("presence", CLIENT) && e.attr("from") == Some(from) && e.attr("type") == kind
        })
        .await
}

/// Expects a message from `from` to `to` carrying exactly `text` as its body.
pub async fn expect_message(
    client: &mut TestClient,
    from: &str,
    to: &str,
    text: &str,
) -> anyhow::Result<Element> {
    let what = format!("message from {from} to {to} with body {text:?}");
    client
        .expect(&what, |e| {
            e.is("message", CLIENT)
                && e.attr("from") == Some(from)
                && e.attr("to") == Some(to)
                && e.attr("type") != Some("error")
                && body(e).as_deref() == Some(text)
        })
        .await
}

/// Expects a `<kind type='error'/>` bounce with `id`, from `from`, to this client's full JID,
/// carrying `condition`.
pub async fn expect_error(
    client: &mut TestClient,
    kind: &str,
    id: &str,
    from: &str,
    condition: &str,
) -> anyhow::Result<Element> {
    let what = format!("{kind} error {condition} for id {id} from {from}");
    let me = client.jid.as_ref().map(|j| j.as_str().to_owned());
    client
        .expect(&what, |e| {
            e.is(kind, CLIENT)
                && e.attr("type") == Some("error")
                && e.attr("id") == Some(id)
                && e.attr("from") == Some(from)
                && e.attr("to") == me.as_deref()
                && stanza_error_condition(e).as_deref() == Some(condition)
        })
        .await
}

/// Expects an iq result with `id`, from `from`, to this client's full JID.
pub async fn expect_result(
    client: &mut TestClient,
    id: &str,
    from: &str,
) -> anyhow::Result<Element> {
    let me = client.jid.as_ref().map(|j| j.as_str().to_owned());
    client
        .expect(&format!("iq result {id} from {from}"), |e| {
            e.is("iq", CLIENT)
                && e.attr("type") == Some("result")
                && e.attr("id") == Some(id)
                && e.attr("from") == Some(from)
                && e.attr("to") == me.as_deref()
        })
        .await
}

/// `jabber:iq:roster`.
pub const ROSTER: &str = "jabber:iq:roster";

/// Fetches the roster (`ver`: XEP-0237 version to send) and returns the result iq.
pub async fn roster_get(client: &mut TestClient, ver: Option<&str>) -> anyhow::Result<Element> {
    let ver = ver.map(|v| format!(" ver='{v}'")).unwrap_or_default();
    client
        .send(&format!(
            "<iq type='get' id='rget'><query xmlns='{ROSTER}'{ver}/></iq>"
        ))
        .await?;
    client
        .expect("roster result", |e| {
            e.is("iq", CLIENT) && e.attr("id") == Some("rget") && e.attr("type") == Some("result")
        })
        .await
}

/// The `(jid, subscription, ask)` of each item of a roster result or push.
pub fn items(iq: &Element) -> Vec<(String, String, bool)> {
    iq.child("query", ROSTER)
        .map(|q| {
            q.children()
                .map(|i| {
                    (
                        i.attr("jid").unwrap_or_default().to_owned(),
                        i.attr("subscription").unwrap_or_default().to_owned(),
                        i.attr("ask") == Some("subscribe"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Expects a roster push of one item `jid` with `subscription` and pending-out `ask`, and
/// answers it (RFC 6121 §2.1.6).
pub async fn expect_push(
    client: &mut TestClient,
    jid: &str,
    subscription: &str,
    ask: bool,
) -> anyhow::Result<Element> {
    let what = format!("roster push of {jid} subscription={subscription} ask={ask}");
    let expected = vec![(jid.to_owned(), subscription.to_owned(), ask)];
    let push = client
        .expect(&what, |e| {
            e.is("iq", CLIENT) && e.attr("type") == Some("set") && items(e) == expected
        })
        .await?;
    if let Some(id) = push.attr("id") {
        client
            .send(&format!("<iq type='result' id='{id}'/>"))
            .await?;
    }
    Ok(push)
}

/// Expects a subscription presence (`kind`) from `from`.
pub async fn expect_subscription(
    client: &mut TestClient,
    from: &str,
    kind: &str,
) -> anyhow::Result<Element> {
    expect_presence(client, from, Some(kind)).await
}

/// Logs `user` in with `resource`, requests the roster (becoming an interested resource) and
/// sends initial presence; takes the roster result and the presence echo.
pub async fn online_with_roster(
    server: &TestServer,
    user: &str,
    resource: &str,
    priority: i8,
) -> anyhow::Result<TestClient> {
    let mut client = server.login(user, &password(user), resource).await?;
    roster_get(&mut client, None).await?;
    client.available(priority).await?;
    let me = format!("{user}@localhost/{resource}");
    expect_presence(&mut client, &me, None).await?;
    Ok(client)
}

/// Makes `a` and `b` (online with roster) subscribed both ways, consuming everything each
/// receives on the way, and leaves both quiet.
pub async fn befriend(
    a: &mut TestClient,
    a_user: &str,
    b: &mut TestClient,
    b_user: &str,
) -> anyhow::Result<()> {
    let (a_bare, b_bare) = (format!("{a_user}@localhost"), format!("{b_user}@localhost"));
    subscribe_and_approve(a, &a_bare, b, &b_bare).await?;
    subscribe_and_approve(b, &b_bare, a, &a_bare).await?;
    a.expect_silence(SILENCE).await?;
    b.expect_silence(SILENCE).await?;
    Ok(())
}

/// `x` asks `y` for its presence and `y` approves; everything both receive is consumed.
async fn subscribe_and_approve(
    x: &mut TestClient,
    xb: &str,
    y: &mut TestClient,
    yb: &str,
) -> anyhow::Result<()> {
    x.send(&format!("<presence to='{yb}' type='subscribe'/>"))
        .await?;
    let ask = x.expect("push", |e| e.name() == "iq").await?;
    reply(x, &ask).await?;
    y.expect("subscribe", |e| e.attr("type") == Some("subscribe"))
        .await?;
    y.send(&format!("<presence to='{xb}' type='subscribed'/>"))
        .await?;
    let push = y.expect("push", |e| e.name() == "iq").await?;
    reply(y, &push).await?;
    // RFC 6121 §3.1.6: the approval reaches x before the roster push.
    x.expect("subscribed", |e| e.attr("type") == Some("subscribed"))
        .await?;
    let push = x.expect("push", |e| e.name() == "iq").await?;
    reply(x, &push).await?;
    x.expect("presence", |e| {
        e.name() == "presence" && e.attr("type").is_none()
    })
    .await?;
    Ok(())
}

async fn reply(client: &mut TestClient, iq: &Element) -> anyhow::Result<()> {
    if let Some(id) = iq.attr("id") {
        client
            .send(&format!("<iq type='result' id='{id}'/>"))
            .await?;
    }
    Ok(())
}

/// The caps `ver` xmpp-parsers (xmpp-rs) computes for a disco#info `<query/>`: a second
/// implementation of XEP-0115 §5, extended forms included.
pub fn xmpp_rs_ver(info: &Element) -> anyhow::Result<String> {
    use base64::Engine as _;
    use tokio_xmpp::minidom;
    use tokio_xmpp::parsers::{caps, disco, hashes};
    let el: minidom::Element = info.to_string().parse()?;
    let info = disco::DiscoInfoResult::try_from(el)?;
    let hash = caps::hash_caps(&caps::compute_disco(&info), hashes::Algo::Sha_1)
        .map_err(|e| anyhow::anyhow!(e))?;
    Ok(base64::engine::general_purpose::STANDARD.encode(hash.hash))
}

/// A client past STARTTLS, not authenticated (to register, say); and the features it was
/// offered then.
pub async fn unauthenticated(server: &TestServer) -> anyhow::Result<(TestClient, Element)> {
    let mut client = TestClient::connect(server.starttls_addr()).await?;
    client.open_stream(server.domain()).await?;
    let features = client
        .starttls(server.tls_client_config(), server.domain())
        .await?;
    Ok((client, features))
}

/// The answer to the iq `id` (an iq without `to` is answered without `from`).
pub async fn answer(client: &mut TestClient, id: &str) -> anyhow::Result<Element> {
    client
        .expect(&format!("answer to {id}"), |e| {
            e.is("iq", CLIENT) && e.attr("id") == Some(id)
        })
        .await
}

/// Whether no session is bound to `jid` any more, waiting up to `limit` for it to go.
pub async fn unbound_within(
    server: &TestServer,
    jid: &str,
    limit: Duration,
) -> anyhow::Result<bool> {
    let jid = jid::FullJid::new(jid)?;
    let deadline = tokio::time::Instant::now() + limit;
    while server.server.router.sessions().get(&jid).is_some() {
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(true)
}
