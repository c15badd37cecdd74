//! Per-user byte quotas (issue 18): the message archive (XEP-0313) gives up its oldest
//! messages and never a new one, PEP (XEP-0163) refuses a publish past its quota with
//! `resource-constraint`, private XML (XEP-0049) a set with `not-acceptable`; freeing space
//! lets the next store through, and the totals survive a restart.

use crate::common;

use std::sync::Arc;

use common::mam::*;
use common::pep::*;
use common::*;
use xmppd_testkit::{TestClient, TestServer, stanza_error_condition};
use xmppd_xml::Element;

const ALICE: &str = "alice@localhost";

async fn server_with(text: &str) -> anyhow::Result<TestServer> {
    let text: Arc<str> = Arc::from(text);
    let server = TestServer::start_with(move |c| c.text = Some(text)).await?;
    add_users(&server, &["alice", "bob"]).await?;
    Ok(server)
}

/// The error's type attribute and defined condition.
fn error_of(answer: &Element) -> (Option<String>, Option<String>) {
    assert_eq!(answer.attr("type"), Some("error"), "{answer}");
    let ty = answer
        .child("error", CLIENT)
        .and_then(|e| e.attr("type"))
        .map(str::to_owned);
    (ty, stanza_error_condition(answer))
}

/// Alice sends Bob `m{i}` followed by `pad` bytes; Bob receives it (the archives are written
/// before delivery, so both hold it then).
async fn chat(
    alice: &mut TestClient,
    bob: &mut TestClient,
    i: usize,
    pad: usize,
) -> anyhow::Result<()> {
    let text = format!("m{i} {}", "x".repeat(pad));
    alice
        .send(&format!(
            "<message to='bob@localhost/desk' type='chat' id='m{i}'><body>{text}</body></message>"
        ))
        .await?;
    expect_message(bob, "alice@localhost/laptop", "bob@localhost/desk", &text).await?;
    Ok(())
}

/// The first word of each archived body (`m{i}`).
fn kept(answer: &Answer) -> Vec<String> {
    answer
        .bodies()
        .iter()
        .map(|b| b.split(' ').next().unwrap_or_default().to_owned())
        .collect()
}

/// XEP-0313 §3.2: past `max_bytes` the oldest messages give way, in both archives, down to a
/// sixteenth below the limit; every message is delivered; and the newest is kept even when
/// it alone is larger than the limit.
#[tokio::test]
async fn the_archive_gives_up_its_oldest_messages_by_bytes_and_keeps_the_newest()
-> anyhow::Result<()> {
    let server = server_with("[modules.mam]\nmax_bytes = 4000\n").await?;
    let mut alice = online(&server, "alice", "laptop", 0).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    // Each archived copy is 1,050 to 1,300 bytes: three fit in 4,000, a fourth passes it
    // and the trim down to 3,750 takes the oldest one.
    for i in 0..8 {
        chat(&mut alice, &mut bob, i, 1000).await?;
    }
    let sent = query(&mut alice, "a0", Q::default()).await?;
    assert_eq!(kept(&sent), ["m5", "m6", "m7"]);
    let received = query(&mut bob, "b0", Q::default()).await?;
    assert_eq!(kept(&received), ["m5", "m6", "m7"]);

    // One message larger than the whole limit: delivered, archived, and alone.
    chat(&mut alice, &mut bob, 8, 6000).await?;
    let sent = query(&mut alice, "a1", Q::default()).await?;
    assert_eq!(kept(&sent), ["m8"]);
    let received = query(&mut bob, "b1", Q::default()).await?;
    assert_eq!(kept(&received), ["m8"]);
    // The next message is archived too, and the large one, now the oldest, gives way.
    chat(&mut alice, &mut bob, 9, 10).await?;
    let sent = query(&mut alice, "a2", Q::default()).await?;
    assert_eq!(kept(&sent), ["m9"]);
    chat(&mut alice, &mut bob, 10, 10).await?;
    let sent = query(&mut alice, "a3", Q::default()).await?;
    assert_eq!(kept(&sent), ["m9", "m10"]);
    Ok(())
}

/// An item of about 870 bytes as stored.
fn payload(tag: &str) -> String {
    format!(
        "<data xmlns='urn:example:blob'>{tag}{}</data>",
        "x".repeat(800)
    )
}

/// Publishes and returns the answer, whatever it is.
async fn try_publish(
    alice: &mut TestClient,
    iq_id: &str,
    node: &str,
    item: &str,
    payload: &str,
) -> anyhow::Result<Element> {
    let iq = publish_iq(iq_id, node, Some(item), payload, &[]);
    request(alice, &[], iq_id, &iq).await
}

/// The PEP quota counts the items of every node of the account: a publish past it is
/// `resource-constraint` (type `cancel`) and stores nothing; an item that replaces another
/// counts only the difference, also when the node's `max_items` pushes an older one out;
/// retracting an item or deleting a node frees its bytes; the total survives a restart.
#[tokio::test]
async fn pep_items_are_refused_past_the_byte_quota_until_space_is_freed() -> anyhow::Result<()> {
    let server = server_with("[modules.pep]\nmax_bytes = 3000\n").await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let ten = [("pubsub#max_items", "10")];
    publish(&mut alice, &[], "n1", Some("1"), &payload("a"), &ten).await?;
    publish(&mut alice, &[], "n1", Some("2"), &payload("b"), &ten).await?;
    // A node of one item (the default), as avatars are.
    publish(&mut alice, &[], "avatar", Some("v1"), &payload("c"), &[]).await?;

    // A fourth item, in yet another node, passes 3,000 bytes.
    let answer = try_publish(&mut alice, "over", "n2", "1", &payload("d")).await?;
    assert_eq!(
        error_of(&answer),
        (
            Some("cancel".to_owned()),
            Some("resource-constraint".to_owned())
        )
    );
    let answer = fetch(&mut alice, &[], ALICE, "n2", None, &[]).await?;
    assert_eq!(error_of(&answer).1.as_deref(), Some("item-not-found"));

    // A new avatar replaces the old one in its node of one: only the difference counts.
    publish(&mut alice, &[], "avatar", Some("v2"), &payload("e"), &[]).await?;
    // Replacing an item by id with a larger one still passes the quota.
    let big = format!("<data xmlns='urn:example:blob'>{}</data>", "y".repeat(1500));
    let answer = try_publish(&mut alice, "bigger", "n1", "1", &big).await?;
    assert_eq!(error_of(&answer).1.as_deref(), Some("resource-constraint"));

    // Retracting frees its bytes: the refused item now fits.
    let retract = format!(
        "<iq type='set' id='retract'><pubsub xmlns='{PUBSUB}'>\
           <retract node='n1'><item id='2'/></retract></pubsub></iq>"
    );
    let answer = request(&mut alice, &[], "retract", &retract).await?;
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    publish(&mut alice, &[], "n2", Some("1"), &payload("d"), &[]).await?;

    // The total is stored: after a restart the account is still full.
    drop(alice);
    let server = server.restart().await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let answer = try_publish(&mut alice, "after-restart", "n3", "1", &payload("f")).await?;
    assert_eq!(error_of(&answer).1.as_deref(), Some("resource-constraint"));

    // Deleting a node frees the bytes of its items.
    let delete = format!(
        "<iq type='set' id='delete'><pubsub xmlns='{OWNER}'><delete node='n1'/></pubsub></iq>"
    );
    let answer = request(&mut alice, &[], "delete", &delete).await?;
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    publish(&mut alice, &[], "n3", Some("1"), &payload("f"), &[]).await?;
    Ok(())
}

const PRIVATE: &str = "jabber:iq:private";

/// Sends a private XML iq of `ty` holding `inner`; returns the answer.
async fn private(
    alice: &mut TestClient,
    ty: &str,
    id: &str,
    inner: &str,
) -> anyhow::Result<Element> {
    alice
        .send(&format!(
            "<iq type='{ty}' id='{id}'><query xmlns='{PRIVATE}'>{inner}</query></iq>"
        ))
        .await?;
    alice
        .expect(&format!("answer to {id}"), |e| {
            e.is("iq", CLIENT) && e.attr("id") == Some(id)
        })
        .await
}

/// A fragment of about 840 bytes as stored.
fn fragment(ns: &str, fill: &str) -> String {
    format!("<f xmlns='{ns}'>{}</f>", fill.repeat(800))
}

/// Whether the fragment of `ns` is stored (a get answers it with content).
async fn stored(alice: &mut TestClient, id: &str, ns: &str) -> anyhow::Result<bool> {
    let answer = private(alice, "get", id, &format!("<f xmlns='{ns}'/>")).await?;
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    Ok(answer
        .child("query", PRIVATE)
        .and_then(|q| q.children().next())
        .is_some_and(|f| !f.text().is_empty()))
}

/// Private XML past `max_bytes` is `not-acceptable` (type `modify`) and nothing of the set is
/// stored; a replacement counts its new size less the old one; removing a fragment frees its
/// bytes for the next set.
#[tokio::test]
async fn private_xml_is_refused_past_the_byte_quota_until_space_is_freed() -> anyhow::Result<()> {
    let server = server_with("[modules.private]\nmax_bytes = 2000\n").await?;
    let mut alice = online(&server, "alice", "laptop", 0).await?;
    let one = fragment("urn:q:1", "a");
    let two = fragment("urn:q:2", "b");
    let three = fragment("urn:q:3", "c");
    let answer = private(&mut alice, "set", "s1", &format!("{one}{two}")).await?;
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");

    // A third passes 2,000 bytes: refused, and so is a set holding a small one beside it.
    let answer = private(&mut alice, "set", "s2", &three).await?;
    assert_eq!(
        error_of(&answer),
        (Some("modify".to_owned()), Some("not-acceptable".to_owned()))
    );
    let small = "<g xmlns='urn:q:4'>small</g>";
    let answer = private(&mut alice, "set", "s3", &format!("{small}{three}")).await?;
    assert_eq!(error_of(&answer).1.as_deref(), Some("not-acceptable"));
    assert!(!stored(&mut alice, "g3", "urn:q:3").await?);
    let answer = private(&mut alice, "get", "g4", "<g xmlns='urn:q:4'/>").await?;
    assert!(!answer.to_string().contains("small"), "{answer}");

    // Replacing a fragment by a smaller one counts the difference.
    let answer = private(&mut alice, "set", "s4", &fragment("urn:q:1", "")).await?;
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    // Removing one (an empty element) frees its bytes: the third fits now.
    let answer = private(&mut alice, "set", "s5", "<f xmlns='urn:q:2'/>").await?;
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    let answer = private(&mut alice, "set", "s6", &three).await?;
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    assert!(stored(&mut alice, "g6", "urn:q:3").await?);
    assert!(!stored(&mut alice, "g7", "urn:q:2").await?);
    Ok(())
}
