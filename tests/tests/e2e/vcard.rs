//! vcard-temp (XEP-0054) and server-side vCard-based avatars (XEP-0153): one's own vCard set
//! and read back, another user's read by anyone and written by nobody, the size limits, and
//! the photo hash the server puts in the user's presence.

use crate::common;

use std::sync::Arc;

use common::*;
use xmppd_testkit::{TestClient, TestServer};
use xmppd_xml::Element;

const VCARD: &str = "vcard-temp";
const UPDATE: &str = "vcard-temp:x:update";
const ALICE: &str = "alice@localhost";
/// base64 of "hello".
const PHOTO: &str = "aGVs\n bG8=";
/// SHA-1 of "hello".
const PHOTO_HASH: &str = "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d";
/// base64 of "world" and its SHA-1.
const PHOTO2: &str = "d29ybGQ=";
const PHOTO2_HASH: &str = "7c211433f02071597741e6ff5a8ea34789abbf43";

fn vcard(name: &str, photo: Option<&str>) -> String {
    let photo = photo
        .map(|p| format!("<PHOTO><TYPE>image/png</TYPE><BINVAL>{p}</BINVAL></PHOTO>"))
        .unwrap_or_default();
    format!("<vCard xmlns='{VCARD}'><FN>{name}</FN><NICKNAME>{name}</NICKNAME>{photo}</vCard>")
}

/// Sends a vCard set (`to`: none, or this JID) and returns the answer, skipping the
/// user's own presence the server may announce again first (a new photo hash).
async fn set(
    client: &mut TestClient,
    to: Option<&str>,
    id: &str,
    body: &str,
) -> anyhow::Result<Element> {
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    client
        .send(&format!("<iq type='set' id='{id}'{to}>{body}</iq>"))
        .await?;
    loop {
        let el = client.recv().await?;
        if el.is("iq", CLIENT) && el.attr("id") == Some(id) {
            return Ok(el);
        }
        anyhow::ensure!(
            el.is("presence", CLIENT),
            "expected the answer to {id}, got {el}"
        );
    }
}

/// Sends a vCard get and returns the answer.
async fn get(client: &mut TestClient, to: Option<&str>, id: &str) -> anyhow::Result<Element> {
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    client
        .send(&format!(
            "<iq type='get' id='{id}'{to}><vCard xmlns='{VCARD}'/></iq>"
        ))
        .await?;
    client
        .expect(&format!("answer to {id}"), |e| {
            e.is("iq", CLIENT) && e.attr("id") == Some(id)
        })
        .await
}

fn fn_of(answer: &Element) -> Option<String> {
    answer
        .child("vCard", VCARD)
        .and_then(|v| v.child("FN", VCARD))
        .map(Element::text)
}

/// The photo of a presence's update element: `None` without one, `Some("")` when empty.
fn photo_of(presence: &Element) -> Option<String> {
    let updates: Vec<_> = presence.children().filter(|c| c.is("x", UPDATE)).collect();
    assert!(updates.len() <= 1, "one update element at most: {presence}");
    updates.first()?.child("photo", UPDATE).map(Element::text)
}

#[tokio::test]
async fn own_vcard_is_set_and_read_back_and_others_read_it() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob", "carol"]).await?;
    let mut alice = server.login("alice", &password("alice"), "home").await?;
    let mut bob = server.login("bob", &password("bob"), "desk").await?;

    // No vCard yet: one's own is an empty <vCard/> (§3.1), another's service-unavailable
    // (§3.3), like a user that does not exist.
    let empty = get(&mut alice, None, "g0").await?;
    assert_eq!(empty.attr("type"), Some("result"));
    let v = empty
        .child("vCard", VCARD)
        .ok_or_else(|| anyhow::anyhow!("an empty vCard: {empty}"))?;
    assert!(v.nodes().is_empty());
    get(&mut bob, Some(ALICE), "g1").await?;
    for (to, id) in [(ALICE, "g1b"), ("nobody@localhost", "g1c")] {
        let answer = get(&mut bob, Some(to), id).await?;
        assert_eq!(
            xmppd_testkit::stanza_error_condition(&answer).as_deref(),
            Some("service-unavailable"),
            "{answer}"
        );
    }

    // Set with no 'to', then with 'to' the own bare JID; read back both ways.
    let ok = set(&mut alice, None, "s1", &vcard("Alice", None)).await?;
    assert_eq!(ok.attr("type"), Some("result"), "{ok}");
    assert_eq!(
        fn_of(&get(&mut alice, None, "g2").await?).as_deref(),
        Some("Alice")
    );
    let ok = set(&mut alice, Some(ALICE), "s2", &vcard("Alice Liddell", None)).await?;
    assert_eq!(ok.attr("type"), Some("result"), "{ok}");
    let own = get(&mut alice, Some(ALICE), "g3").await?;
    assert_eq!(fn_of(&own).as_deref(), Some("Alice Liddell"));

    // Another user reads it from the bare JID, answered by the server (§3.3).
    let seen = get(&mut bob, Some(ALICE), "g4").await?;
    assert_eq!(seen.attr("type"), Some("result"));
    assert_eq!(seen.attr("from"), Some(ALICE));
    assert_eq!(fn_of(&seen).as_deref(), Some("Alice Liddell"));

    // Nobody but alice may change it (§3.2).
    expect_set_error(
        &mut bob,
        Some(ALICE),
        "s3",
        &vcard("Mallory", None),
        "forbidden",
    )
    .await?;
    assert_eq!(
        fn_of(&get(&mut bob, Some(ALICE), "g5").await?).as_deref(),
        Some("Alice Liddell")
    );

    // A photo that is not base64 is a bad request.
    expect_set_error(
        &mut alice,
        None,
        "s4",
        &vcard("A", Some("*not base64*")),
        "bad-request",
    )
    .await?;

    // The server advertises vcard-temp.
    alice
        .send("<iq type='get' to='localhost' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await?;
    let info = expect_result(&mut alice, "d1", "localhost").await?;
    let features: Vec<String> = info
        .child("query", "http://jabber.org/protocol/disco#info")
        .map(|q| {
            q.children()
                .filter_map(|f| f.attr("var").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert!(features.iter().any(|f| f == VCARD), "{features:?}");
    server.stop().await;
    Ok(())
}

async fn expect_set_error(
    client: &mut TestClient,
    to: Option<&str>,
    id: &str,
    body: &str,
    condition: &str,
) -> anyhow::Result<Element> {
    let answer = set(client, to, id, body).await?;
    assert_eq!(answer.attr("type"), Some("error"), "{answer}");
    assert_eq!(
        xmppd_testkit::stanza_error_condition(&answer).as_deref(),
        Some(condition),
        "{answer}"
    );
    Ok(answer)
}

#[tokio::test]
async fn an_oversize_vcard_is_refused_and_one_past_the_stanza_limit_ends_the_stream()
-> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.text = Some(Arc::from("[modules.vcard]\nmax_size = 4096\n"));
    })
    .await?;
    add_users(&server, &["alice"]).await?;
    let mut alice = server.login("alice", &password("alice"), "home").await?;
    // Past [modules.vcard] max_size, within the stream's stanza limit: not-acceptable, and
    // the vCard is unchanged.
    set(&mut alice, None, "s1", &vcard("Alice", None)).await?;
    let big = "A".repeat(8 * 1024);
    let answer =
        expect_set_error(&mut alice, None, "s2", &vcard(&big, None), "not-acceptable").await?;
    let text = answer
        .child("error", CLIENT)
        .and_then(|e| e.child("text", "urn:ietf:params:xml:ns:xmpp-stanzas"))
        .map(Element::text)
        .unwrap_or_default();
    assert!(text.contains("4096"), "the error names the limit: {text}");
    assert_eq!(
        fn_of(&get(&mut alice, None, "g1").await?).as_deref(),
        Some("Alice")
    );

    // 10 MB: the stream's stanza limit (256 KiB) comes first, with a stream error rather
    // than a silent drop. The server stops reading at the limit, so the rest of the write
    // may fail; what matters is what the client reads.
    let huge = vcard(&"B".repeat(10 * 1024 * 1024), None);
    let _ = alice
        .send(&format!("<iq type='set' id='s3'>{huge}</iq>"))
        .await;
    assert_eq!(alice.expect_stream_error().await?, "policy-violation");
    server.stop().await;
    Ok(())
}

/// alice (online as `home`) and bob (online as `desk`) subscribed to each other; each has
/// taken the other's presence.
async fn friends(server: &TestServer) -> anyhow::Result<(TestClient, TestClient)> {
    add_users(server, &["alice", "bob"]).await?;
    let mut alice = online_with_roster(server, "alice", "home", 1).await?;
    let mut bob = online_with_roster(server, "bob", "desk", 1).await?;
    befriend(&mut alice, "alice", &mut bob, "bob").await?;
    Ok((alice, bob))
}

#[tokio::test]
async fn presence_carries_the_photo_hash_and_a_vcard_update_announces_the_new_one()
-> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (mut alice, mut bob) = friends(&server).await?;

    // No vCard: an empty <photo/> (XEP-0153 §4.1 rule 3), also over a hash the client
    // forged.
    alice
        .send(&format!(
            "<presence><show>away</show><x xmlns='{UPDATE}'><photo>{PHOTO2_HASH}</photo></x></presence>"
        ))
        .await?;
    let own = expect_presence(&mut alice, "alice@localhost/home", None).await?;
    assert_eq!(photo_of(&own).as_deref(), Some(""));
    let seen = expect_presence(&mut bob, "alice@localhost/home", None).await?;
    assert_eq!(photo_of(&seen).as_deref(), Some(""), "{seen}");
    assert!(seen.has_child("show", CLIENT), "the rest is kept: {seen}");

    // A vCard with a photo: the server announces alice's presence again with its hash.
    alice
        .send(&format!(
            "<iq type='set' id='s1'>{}</iq>",
            vcard("Alice", Some(PHOTO))
        ))
        .await?;
    let own = expect_presence(&mut alice, "alice@localhost/home", None).await?;
    assert_eq!(photo_of(&own).as_deref(), Some(PHOTO_HASH), "{own}");
    alice
        .expect("the result of s1", |e| {
            e.is("iq", CLIENT) && e.attr("id") == Some("s1") && e.attr("type") == Some("result")
        })
        .await?;
    let seen = expect_presence(&mut bob, "alice@localhost/home", None).await?;
    assert_eq!(photo_of(&seen).as_deref(), Some(PHOTO_HASH), "{seen}");
    assert!(
        seen.has_child("show", CLIENT),
        "the same presence, re-sent: {seen}"
    );

    // The same photo again changes nothing: no presence.
    set(&mut alice, None, "s2", &vcard("Alice L.", Some(PHOTO))).await?;
    bob.expect_silence(SILENCE).await?;

    // A forged hash in a later presence is replaced by the real one.
    alice
        .send(&format!(
            "<presence><x xmlns='{UPDATE}'><photo>{PHOTO2_HASH}</photo></x><x xmlns='{UPDATE}'/></presence>"
        ))
        .await?;
    let seen = expect_presence(&mut bob, "alice@localhost/home", None).await?;
    assert_eq!(photo_of(&seen).as_deref(), Some(PHOTO_HASH), "{seen}");

    // Directed presence is stamped too (§4.1 rule 1).
    alice.send("<presence to='bob@localhost/desk'/>").await?;
    let seen = expect_presence(&mut bob, "alice@localhost/home", None).await?;
    assert_eq!(photo_of(&seen).as_deref(), Some(PHOTO_HASH), "{seen}");

    // A new photo, then none.
    set(&mut alice, None, "s3", &vcard("Alice", Some(PHOTO2))).await?;
    let seen = expect_presence(&mut bob, "alice@localhost/home", None).await?;
    assert_eq!(photo_of(&seen).as_deref(), Some(PHOTO2_HASH), "{seen}");
    set(&mut alice, None, "s4", &vcard("Alice", None)).await?;
    let seen = expect_presence(&mut bob, "alice@localhost/home", None).await?;
    assert_eq!(photo_of(&seen).as_deref(), Some(""), "{seen}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_hash_is_known_after_a_restart_and_the_vcard_goes_with_the_account()
-> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let (mut alice, bob) = friends(&server).await?;
    set(&mut alice, None, "s1", &vcard("Alice", Some(PHOTO))).await?;
    alice.close().await?;
    bob.close().await?;

    let server = server.restart().await?;
    let mut bob = online_with_roster(&server, "bob", "desk", 1).await?;
    expect_presence(&mut bob, ALICE, Some("unavailable")).await?;
    let _alice = online_with_roster(&server, "alice", "home", 1).await?;
    let seen = expect_presence(&mut bob, "alice@localhost/home", None).await?;
    assert_eq!(photo_of(&seen).as_deref(), Some(PHOTO_HASH), "{seen}");
    drop(_alice);
    expect_presence(&mut bob, "alice@localhost/home", Some("unavailable")).await?;

    // Account removal deletes the vCard: a new account of the same name has none.
    let jid = jid::BareJid::new(ALICE)?;
    server.server.router.accounts().delete(&jid).await?;
    server.add_user("alice", &password("alice")).await?;
    let answer = get(&mut bob, Some(ALICE), "g1").await?;
    assert_eq!(
        xmppd_testkit::stanza_error_condition(&answer).as_deref(),
        Some("service-unavailable"),
        "{answer}"
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_remote_users_query_through_federation_is_answered() -> anyhow::Result<()> {
    use common::federation::{Auth, next_matching, two_servers};
    let (_pki, a, b) = two_servers(Auth::Certificates).await?;
    let mut alice = a.login("alice", &password("alice"), "res").await?;
    let ok = set(&mut alice, None, "s1", &vcard("Alice of A", Some(PHOTO))).await?;
    assert_eq!(ok.attr("type"), Some("result"), "{ok}");
    let mut bob = b.login("bob", &password("bob"), "res").await?;
    bob.send(&format!(
        "<iq type='get' id='r1' to='alice@a.test'><vCard xmlns='{VCARD}'/></iq>"
    ))
    .await?;
    let answer = next_matching(&mut bob, "the remote vCard", |e| {
        e.is("iq", CLIENT) && e.attr("id") == Some("r1")
    })
    .await?;
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    assert_eq!(answer.attr("from"), Some("alice@a.test"));
    assert_eq!(fn_of(&answer).as_deref(), Some("Alice of A"));
    // A remote user may not write it either.
    bob.send(&format!(
        "<iq type='set' id='r2' to='alice@a.test'>{}</iq>",
        vcard("Mallory", None)
    ))
    .await?;
    let answer = next_matching(&mut bob, "the refusal", |e| {
        e.is("iq", CLIENT) && e.attr("id") == Some("r2")
    })
    .await?;
    assert_eq!(
        xmppd_testkit::stanza_error_condition(&answer).as_deref(),
        Some("forbidden"),
        "{answer}"
    );
    a.stop().await;
    b.stop().await;
    Ok(())
}
