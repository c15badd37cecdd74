//! A configuration reload gives the running modules their new `[modules.NAME]` sections: a
//! client's next request follows the new values while its session and its room membership
//! survive, and a reload with one bad section is refused whole, leaving every old value in
//! force.

use std::sync::Arc;

use anyhow::Context;

use crate::common;

use common::muc::*;
use common::*;
use xmppd_testkit::{TestClient, TestServer, stanza_error_condition};
use xmppd_xml::Element;

const UPLOAD: &str = "upload.localhost";
const NS_UPLOAD: &str = "urn:xmpp:http:upload:0";
const NS_VERSION: &str = "jabber:iq:version";
const NS_PRIVATE: &str = "jabber:iq:private";
const VCARD: &str = "vcard-temp";

/// The sections of the modules under test with these values; `muc` is the body of
/// `[modules.muc]`.
fn sections(upload: u64, muc: &str, vcard: usize, private: usize, hide_os: bool) -> String {
    format!(
        "[modules.upload]\nbase_url = \"https://files.localhost\"\nmax_file_size = {upload}\n\n\
         [modules.muc]\n{muc}\n\n\
         [modules.vcard]\nmax_size = {vcard}\n\n\
         [modules.private]\nmax_item_size = {private}\n\n\
         [modules.version]\nhide_os = {hide_os}\n"
    )
}

/// The sections the server starts with: small limits that the requests below exceed.
fn before() -> String {
    sections(1000, "max_message_bytes = 400", 2000, 300, false)
}

/// The same modules with room for those requests, `hide_os` on, and a new MUC subdomain
/// (which names the service registered at startup, so it waits for a restart).
fn after() -> String {
    sections(
        5000,
        "subdomain = \"rooms\"\nmax_message_bytes = 2000",
        8000,
        2000,
        true,
    )
}

/// The configuration the server runs, with `text` as its file.
fn with_text(server: &TestServer, text: &str) -> xmppd::Config {
    let mut config = server.config.clone();
    config.text = Some(Arc::from(text));
    config
}

/// The answer to the iq `id`, past whatever the room sends meanwhile.
async fn answer_to(client: &mut TestClient, id: &str) -> anyhow::Result<Element> {
    let seen = collect_until(client, &format!("the answer to {id}"), 50, |e| {
        e.is("iq", CLIENT) && e.attr("id") == Some(id)
    })
    .await?;
    seen.into_iter().last().context("no answer")
}

/// Sends the iq and returns its answer.
async fn ask(client: &mut TestClient, id: &str, iq: &str) -> anyhow::Result<Element> {
    client.send(iq).await?;
    answer_to(client, id).await
}

/// The error condition of an answer, `None` for a result.
fn refusal(answer: &Element) -> Option<String> {
    (answer.attr("type") == Some("error"))
        .then(|| stanza_error_condition(answer))
        .flatten()
}

/// Asks the upload service for a slot of `size` bytes.
async fn upload_slot(client: &mut TestClient, id: &str, size: usize) -> anyhow::Result<Element> {
    let iq = format!(
        "<iq type='get' id='{id}' to='{UPLOAD}'><request xmlns='{NS_UPLOAD}' \
         filename='a.txt' size='{size}' content-type='text/plain'/></iq>"
    );
    ask(client, id, &iq).await
}

/// Whether the server's software version names the operating system.
async fn shows_os(client: &mut TestClient, id: &str) -> anyhow::Result<bool> {
    let iq = format!("<iq type='get' id='{id}' to='localhost'><query xmlns='{NS_VERSION}'/></iq>");
    let answer = ask(client, id, &iq).await?;
    anyhow::ensure!(answer.attr("type") == Some("result"), "{answer}");
    let query = answer.child("query", NS_VERSION).context("no query")?;
    Ok(query.child("os", NS_VERSION).is_some())
}

/// Sets a vCard of about `size` bytes.
async fn set_vcard(client: &mut TestClient, id: &str, size: usize) -> anyhow::Result<Element> {
    let desc = "v".repeat(size);
    let iq =
        format!("<iq type='set' id='{id}'><vCard xmlns='{VCARD}'><DESC>{desc}</DESC></vCard></iq>");
    ask(client, id, &iq).await
}

/// Stores a private XML fragment of about `size` bytes.
async fn set_private(client: &mut TestClient, id: &str, size: usize) -> anyhow::Result<Element> {
    let text = "p".repeat(size);
    let iq = format!(
        "<iq type='set' id='{id}'><query xmlns='{NS_PRIVATE}'>\
         <notes xmlns='urn:test:notes'>{text}</notes></query></iq>"
    );
    ask(client, id, &iq).await
}

/// A server running [`before`], alice and bob in `ROOM`.
async fn room_of_two() -> anyhow::Result<(TestServer, TestClient, TestClient)> {
    let server = TestServer::start_with(|c| c.text = Some(Arc::from(before()))).await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    create_instant(&mut alice, ROOM, "Alice").await?;
    let mut bob = online(&server, "bob", "pc", 0).await?;
    enter(&mut bob, ROOM, "Bob", "").await?;
    expect_presence_from(&mut alice, &occupant("Bob")).await?;
    Ok((server, alice, bob))
}

/// Checks that every limit of [`before`] holds for alice.
async fn before_holds(alice: &mut TestClient, round: &str) -> anyhow::Result<()> {
    let slot = upload_slot(alice, &format!("{round}-up"), 2000).await?;
    assert_eq!(refusal(&slot).as_deref(), Some("not-acceptable"), "{slot}");
    assert!(shows_os(alice, &format!("{round}-ver")).await?);
    let vcard = set_vcard(alice, &format!("{round}-vc"), 3000).await?;
    assert_eq!(
        refusal(&vcard).as_deref(),
        Some("not-acceptable"),
        "{vcard}"
    );
    let private = set_private(alice, &format!("{round}-px"), 500).await?;
    assert_eq!(
        refusal(&private).as_deref(),
        Some("not-acceptable"),
        "{private}"
    );
    let long = "m".repeat(500);
    let id = format!("{round}-big");
    say(alice, ROOM, &id, &long).await?;
    let seen = collect_until(alice, "the refusal of the long message", 50, |e| {
        e.is("message", CLIENT) && e.attr("id") == Some(id.as_str())
    })
    .await?;
    let refused = seen.last().context("nothing")?;
    assert_eq!(
        stanza_error_condition(refused).as_deref(),
        Some("policy-violation"),
        "{refused}"
    );
    Ok(())
}

#[tokio::test]
async fn a_reload_gives_running_modules_their_new_settings() -> anyhow::Result<()> {
    let (server, mut alice, mut bob) = room_of_two().await?;
    before_holds(&mut alice, "before").await?;

    let report = server.server.reload(&with_text(&server, &after()))?;
    assert!(!report.needs_restart, "only module sections changed");
    for module in ["upload", "muc", "vcard", "private", "version"] {
        assert!(
            report.modules.modules.contains(&module),
            "{module} took no settings: {:?}",
            report.modules.modules
        );
    }
    let restart: Vec<String> = report
        .modules
        .restart
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(restart, ["[modules.muc] subdomain"]);

    // The same session, its next requests: the new values.
    let slot = upload_slot(&mut alice, "after-up", 2000).await?;
    assert_eq!(slot.attr("type"), Some("result"), "{slot}");
    assert!(slot.child("slot", NS_UPLOAD).is_some(), "{slot}");
    assert!(!shows_os(&mut alice, "after-ver").await?);
    let vcard = set_vcard(&mut alice, "after-vc", 3000).await?;
    assert_eq!(vcard.attr("type"), Some("result"), "{vcard}");
    let private = set_private(&mut alice, "after-px", 500).await?;
    assert_eq!(private.attr("type"), Some("result"), "{private}");
    // Both are still in the room (the service kept its domain), and the long message
    // reaches bob.
    let long = "m".repeat(500);
    say(&mut alice, ROOM, "after-big", &long).await?;
    expect_groupchat(&mut bob, &occupant("Alice"), &long).await?;
    expect_groupchat(&mut alice, &occupant("Alice"), &long).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_reload_with_a_bad_module_section_changes_nothing() -> anyhow::Result<()> {
    let (server, mut alice, mut bob) = room_of_two().await?;
    // Every module's section would be valid but the room service's: its `max_occupants`
    // fails the module's own rule, which only the module checks.
    let bad_value = after().replace(
        "max_message_bytes = 2000",
        "max_message_bytes = 2000\nmax_occupants = 0",
    );
    let e = server
        .server
        .reload(&with_text(&server, &bad_value))
        .expect_err("max_occupants = 0 is refused");
    let text = format!("{e:#}");
    assert!(
        text.contains("muc") && text.contains("max_occupants"),
        "{text}"
    );
    // An unknown key is refused with its line.
    let typo = after().replace("max_size = 8000", "max_sise = 8000");
    let e = server
        .server
        .reload(&with_text(&server, &typo))
        .expect_err("a typo is refused");
    let text = format!("{e:#}");
    assert!(
        text.contains("[modules.vcard]") && text.contains("max_sise") && text.contains("line 10"),
        "{text}"
    );
    // Every module, before and after the bad one in the list, kept its old values.
    before_holds(&mut alice, "kept").await?;
    say(&mut alice, ROOM, "short", "still here").await?;
    expect_groupchat(&mut bob, &occupant("Alice"), "still here").await?;
    server.stop().await;
    Ok(())
}
