//! MUC test helpers: entering rooms and collecting what the room sends on entry, creating
//! instant rooms, configuring, and reading `muc#user` items and status codes.

#![allow(dead_code)]

use anyhow::{Context, bail};
use xmppd_testkit::TestClient;
use xmppd_xml::Element;

use super::CLIENT;

/// `http://jabber.org/protocol/muc`.
pub const MUC: &str = "http://jabber.org/protocol/muc";
/// `http://jabber.org/protocol/muc#user`.
pub const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
/// `http://jabber.org/protocol/muc#admin`.
pub const MUC_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
/// `http://jabber.org/protocol/muc#owner`.
pub const MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
/// The service of the test server.
pub const SERVICE: &str = "conference.localhost";

/// The status codes of a stanza's `muc#user` element.
pub fn codes(el: &Element) -> Vec<u16> {
    el.child("x", MUC_USER)
        .map(|x| {
            x.children()
                .filter(|c| c.is("status", MUC_USER))
                .filter_map(|c| c.attr("code")?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The `muc#user` item of a presence: (affiliation, role, jid, nick).
pub fn item(el: &Element) -> Option<(String, String, Option<String>, Option<String>)> {
    let item = el.child("x", MUC_USER)?.child("item", MUC_USER)?;
    Some((
        item.attr("affiliation").unwrap_or_default().to_owned(),
        item.attr("role").unwrap_or_default().to_owned(),
        item.attr("jid").map(str::to_owned),
        item.attr("nick").map(str::to_owned),
    ))
}

/// The XEP-0421 occupant id of a stanza.
pub fn occupant_id(el: &Element) -> Option<String> {
    el.child("occupant-id", "urn:xmpp:occupant-id:0")
        .and_then(|o| o.attr("id"))
        .map(str::to_owned)
}

/// Whether `el` is the subject message that ends a room entry.
pub fn is_subject(el: &Element) -> bool {
    el.is("message", CLIENT)
        && el.attr("type") == Some("groupchat")
        && el.child("subject", CLIENT).is_some()
        && el.child("body", CLIENT).is_none()
}

/// Receives stanzas until one satisfies `done` (included); at most `limit` stanzas.
pub async fn collect_until(
    client: &mut TestClient,
    what: &str,
    limit: usize,
    done: impl Fn(&Element) -> bool,
) -> anyhow::Result<Vec<Element>> {
    let mut seen = Vec::new();
    for _ in 0..limit {
        let el = client
            .recv()
            .await
            .with_context(|| format!("waiting for {what}"))?;
        let last = done(&el);
        seen.push(el);
        if last {
            return Ok(seen);
        }
    }
    bail!("{what} did not come within {limit} stanzas: {seen:?}")
}

/// Enters `room` as `nick` with `x_children` inside the `<x xmlns='…muc'/>` (history,
/// password) and returns what the room sent up to the subject: presences, history, subject.
pub async fn enter(
    client: &mut TestClient,
    room: &str,
    nick: &str,
    x_children: &str,
) -> anyhow::Result<Vec<Element>> {
    client
        .send(&format!(
            "<presence to='{room}/{nick}'><x xmlns='{MUC}'>{x_children}</x></presence>"
        ))
        .await?;
    collect_until(client, &format!("the entry into {room}"), 3000, is_subject).await
}

/// The presence with status 110 in an entry.
pub fn own_presence(entry: &[Element]) -> anyhow::Result<&Element> {
    entry
        .iter()
        .find(|e| e.is("presence", CLIENT) && codes(e).contains(&110))
        .context("no self-presence (110) in the entry")
}

/// Creates `room` as an instant room (§10.1.2) with `nick`; returns the entry.
pub async fn create_instant(
    client: &mut TestClient,
    room: &str,
    nick: &str,
) -> anyhow::Result<Vec<Element>> {
    let entry = enter(client, room, nick, "").await?;
    let own = own_presence(&entry)?;
    if !codes(own).contains(&201) {
        bail!("{room} was not created: {own}");
    }
    configure(client, room, &[]).await?;
    Ok(entry)
}

/// Submits the configuration form with `fields` (var, values).
pub async fn configure(
    client: &mut TestClient,
    room: &str,
    fields: &[(&str, &[&str])],
) -> anyhow::Result<Element> {
    let answer = configure_answer(client, room, fields).await?;
    if answer.attr("type") != Some("result") {
        bail!("configuring {room} failed: {answer}");
    }
    Ok(answer)
}

/// Submits the configuration form with `fields`; returns the iq answer, whatever it is.
pub async fn configure_answer(
    client: &mut TestClient,
    room: &str,
    fields: &[(&str, &[&str])],
) -> anyhow::Result<Element> {
    let mut form = String::from(
        "<field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/muc#roomconfig</value></field>",
    );
    for (var, values) in fields {
        form.push_str(&format!("<field var='{var}'>"));
        for v in *values {
            form.push_str(&format!("<value>{v}</value>"));
        }
        form.push_str("</field>");
    }
    let form = if fields.is_empty() {
        String::new()
    } else {
        form
    };
    iq(
        client,
        room,
        "set",
        &format!(
            "<query xmlns='{MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'>{form}</x></query>"
        ),
    )
    .await
}

/// Sends an iq and returns its answer (result or error), skipping other stanzas (at most
/// 200).
pub async fn iq(
    client: &mut TestClient,
    to: &str,
    kind: &str,
    payload: &str,
) -> anyhow::Result<Element> {
    let id = format!("iq{}", rand_id());
    client
        .send(&format!(
            "<iq to='{to}' type='{kind}' id='{id}'>{payload}</iq>"
        ))
        .await?;
    let seen = collect_until(client, &format!("the answer to {id}"), 200, |e| {
        e.is("iq", CLIENT) && e.attr("id") == Some(id.as_str())
    })
    .await?;
    seen.into_iter().last().context("no answer")
}

fn rand_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Sends a groupchat message with `id` and `text`.
pub async fn say(client: &mut TestClient, room: &str, id: &str, text: &str) -> anyhow::Result<()> {
    client
        .send(&format!(
            "<message to='{room}' type='groupchat' id='{id}'><body>{text}</body></message>"
        ))
        .await
}

/// Expects the groupchat message from `from` with `text`.
pub async fn expect_groupchat(
    client: &mut TestClient,
    from: &str,
    text: &str,
) -> anyhow::Result<Element> {
    let seen = collect_until(client, &format!("'{text}' from {from}"), 50, |e| {
        e.is("message", CLIENT)
            && e.attr("type") == Some("groupchat")
            && e.attr("from") == Some(from)
            && e.child("body", CLIENT).map(Element::text).as_deref() == Some(text)
    })
    .await?;
    seen.into_iter().last().context("no message")
}

/// Expects a presence from `from` (any type), skipping other stanzas (at most 50).
pub async fn expect_presence_from(client: &mut TestClient, from: &str) -> anyhow::Result<Element> {
    let seen = collect_until(client, &format!("presence from {from}"), 50, |e| {
        e.is("presence", CLIENT) && e.attr("from") == Some(from)
    })
    .await?;
    seen.into_iter().last().context("no presence")
}

/// The room the feature and limit tests use.
pub const ROOM: &str = "lounge@conference.localhost";

/// `ROOM/nick`.
pub fn occupant(nick: &str) -> String {
    format!("{ROOM}/{nick}")
}

/// `localhost` with these `[modules.muc]` settings and the accounts alice, bob and carol.
pub async fn server_with(settings: &str) -> anyhow::Result<xmppd_testkit::TestServer> {
    let text: std::sync::Arc<str> = std::sync::Arc::from(format!("[modules.muc]\n{settings}\n"));
    let server = xmppd_testkit::TestServer::start_with(move |c| c.text = Some(text)).await?;
    super::add_users(&server, &["alice", "bob", "carol"]).await?;
    Ok(server)
}
