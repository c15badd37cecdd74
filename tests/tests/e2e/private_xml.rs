//! Private XML storage (XEP-0049): fragments of two namespaces stored in one set and read
//! back one by one, the refusals of §3 (reserved namespaces, no child, another user's data),
//! the configured limits, and the data across a restart and after account removal.

use crate::common;

use std::sync::Arc;

use anyhow::Context as _;

use common::*;
use xmppd_testkit::{TestClient, TestServer, stanza_error_condition};
use xmppd_xml::Element;

const PRIVATE: &str = "jabber:iq:private";
const ALICE: &str = "alice@localhost";

/// Sends an iq of `ty` holding `<query xmlns='jabber:iq:private'>{inner}</query>` and
/// returns the answer.
async fn private(
    client: &mut TestClient,
    ty: &str,
    to: Option<&str>,
    id: &str,
    inner: &str,
) -> anyhow::Result<Element> {
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    client
        .send(&format!(
            "<iq type='{ty}' id='{id}'{to}><query xmlns='{PRIVATE}'>{inner}</query></iq>"
        ))
        .await?;
    client
        .expect(&format!("answer to {id}"), |e| {
            e.is("iq", CLIENT) && e.attr("id") == Some(id)
        })
        .await
}

/// The single fragment of a get's result.
fn fragment(answer: &Element) -> anyhow::Result<Element> {
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    let query = answer.child("query", PRIVATE).context("a query")?;
    let items: Vec<&Element> = query.children().collect();
    assert_eq!(items.len(), 1, "{answer}");
    Ok(items[0].clone())
}

fn assert_error(answer: &Element, condition: &str) {
    assert_eq!(answer.attr("type"), Some("error"), "{answer}");
    assert_eq!(
        stanza_error_condition(answer).as_deref(),
        Some(condition),
        "{answer}"
    );
}

const PREFS: &str = "<exodus xmlns='exodus:prefs'><defaultnick>Hamlet</defaultnick></exodus>";
const NOTES: &str =
    "<storage xmlns='storage:rosternotes'><note jid='bob@localhost'>friend</note></storage>";

/// The `exodus:prefs` fragment, as a get with no `to` answers it.
async fn get_prefs(alice: &mut TestClient, id: &str) -> anyhow::Result<Element> {
    let query = "<exodus xmlns='exodus:prefs'/>";
    fragment(&private(alice, "get", None, id, query).await?)
}

async fn expect_stored(alice: &mut TestClient, id: &str) -> anyhow::Result<()> {
    let prefs = get_prefs(alice, id).await?;
    assert_eq!(
        prefs
            .child("defaultnick", "exodus:prefs")
            .map(Element::text)
            .as_deref(),
        Some("Hamlet")
    );
    let id2 = format!("{id}-notes");
    let notes = fragment(
        &private(
            alice,
            "get",
            Some(ALICE),
            &id2,
            "<storage xmlns='storage:rosternotes'/>",
        )
        .await?,
    )?;
    let note = notes
        .child("note", "storage:rosternotes")
        .context("the note")?;
    assert_eq!(note.attr("jid"), Some("bob@localhost"));
    assert_eq!(note.text(), "friend");
    Ok(())
}

#[tokio::test]
async fn two_namespaces_round_trip_survive_a_restart_and_go_with_the_account() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    let mut alice = server.login("alice", &password("alice"), "home").await?;

    // Nothing stored: the empty element comes back.
    let empty = get_prefs(&mut alice, "g0").await?;
    assert!(empty.is("exodus", "exodus:prefs") && empty.nodes().is_empty());

    let ok = private(&mut alice, "set", None, "s1", &format!("{PREFS}{NOTES}")).await?;
    assert_eq!(ok.attr("type"), Some("result"), "{ok}");
    expect_stored(&mut alice, "g1").await?;
    alice.close().await?;

    let server = server.restart().await?;
    let mut alice = server.login("alice", &password("alice"), "home").await?;
    expect_stored(&mut alice, "g2").await?;
    alice.close().await?;

    // Account removal deletes it: a new account of the same name has nothing stored.
    server
        .server
        .router
        .accounts()
        .delete(&jid::BareJid::new(ALICE)?)
        .await?;
    server.add_user("alice", &password("alice")).await?;
    let mut alice = server.login("alice", &password("alice"), "home").await?;
    let empty = get_prefs(&mut alice, "g3").await?;
    assert!(empty.nodes().is_empty(), "{empty}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn reserved_namespaces_empty_queries_and_other_users_are_refused() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = server.login("alice", &password("alice"), "home").await?;
    let mut bob = server.login("bob", &password("bob"), "desk").await?;
    private(&mut alice, "set", None, "s0", PREFS).await?;

    // §3: reserved namespaces, a child without a namespace of its own, no child at all.
    let refused = [
        ("set", "<x xmlns='jabber:client'/>"),
        ("get", "<x xmlns='jabber:client'/>"),
        ("set", "<vCard xmlns='vcard-temp'><FN>Hamlet</FN></vCard>"),
        ("set", "<q xmlns='jabber:iq:roster'/>"),
        ("set", "<plain>no namespace of its own</plain>"),
        (
            "set",
            "<ok xmlns='a:b'/><s xmlns='http://etherx.jabber.org/streams'/>",
        ),
        ("get", ""),
        ("set", ""),
    ];
    for (i, (ty, inner)) in refused.iter().enumerate() {
        let answer = private(&mut alice, ty, None, &format!("r{i}"), inner).await?;
        assert_error(&answer, "not-acceptable");
    }
    // Nothing of the refused set with one acceptable child was stored.
    let ok = fragment(&private(&mut alice, "get", None, "g1", "<ok xmlns='a:b'/>").await?)?;
    assert!(ok.nodes().is_empty());

    // Another user's data, read or written: forbidden (§3).
    for ty in ["get", "set"] {
        let inner = if ty == "get" {
            "<exodus xmlns='exodus:prefs'/>"
        } else {
            PREFS
        };
        let answer = private(&mut bob, ty, Some(ALICE), &format!("b-{ty}"), inner).await?;
        assert_error(&answer, "forbidden");
    }
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_item_size_and_count_limits_are_not_acceptable() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.text = Some(Arc::from(
            "[modules.private]\nmax_item_size = 200\nmax_items = 2\n",
        ));
    })
    .await?;
    add_users(&server, &["alice"]).await?;
    let mut alice = server.login("alice", &password("alice"), "home").await?;
    let big = format!("<big xmlns='a:big'>{}</big>", "x".repeat(300));
    assert_error(
        &private(&mut alice, "set", None, "s1", &big).await?,
        "not-acceptable",
    );
    let two = "<one xmlns='a:one'>1</one><two xmlns='a:two'>2</two>";
    let ok = private(&mut alice, "set", None, "s2", two).await?;
    assert_eq!(ok.attr("type"), Some("result"), "{ok}");
    let third = "<three xmlns='a:three'>3</three>";
    assert_error(
        &private(&mut alice, "set", None, "s3", third).await?,
        "not-acceptable",
    );
    // Replacing one, or emptying one to make room, is allowed.
    let ok = private(&mut alice, "set", None, "s4", "<two xmlns='a:two'/>").await?;
    assert_eq!(ok.attr("type"), Some("result"), "{ok}");
    let ok = private(&mut alice, "set", None, "s5", third).await?;
    assert_eq!(ok.attr("type"), Some("result"), "{ok}");
    server.stop().await;
    Ok(())
}
