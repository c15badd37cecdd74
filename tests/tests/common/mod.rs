//! Helpers shared by the end-to-end test files: logging in with presence, and the exact
//! checks of what a client must receive.

#![allow(dead_code)]

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
