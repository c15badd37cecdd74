//! XEP-0191 Blocking Command: managing the list with its pushes (§3.2–§3.5), what a block
//! does to stanzas both ways (§3.3), presence on block and unblock, and a list that outlives
//! the server process.

use crate::common;

use common::*;
use xmppd_testkit::{TestClient, TestServer, stanza_error_condition};
use xmppd_xml::Element;

const BLOCKING: &str = "urn:xmpp:blocking";
const BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";

/// Sends an iq with `payload` and no `to` (§3: handled by the user's server).
async fn iq(client: &mut TestClient, ty: &str, id: &str, payload: &str) -> anyhow::Result<()> {
    client
        .send(&format!("<iq type='{ty}' id='{id}'>{payload}</iq>"))
        .await
}

/// Expects the result of iq `id`.
async fn expect_result(client: &mut TestClient, id: &str) -> anyhow::Result<Element> {
    client
        .expect(&format!("result {id}"), |e| {
            e.is("iq", CLIENT) && e.attr("type") == Some("result") && e.attr("id") == Some(id)
        })
        .await
}

/// The JIDs of the `<item/>` children of `payload` in an iq.
fn item_jids(iq: &Element, payload: &str) -> Vec<String> {
    iq.child(payload, BLOCKING)
        .map(|p| {
            p.children()
                .filter_map(|i| i.attr("jid").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Fetches the block list (marking the session as one that receives pushes).
async fn blocklist(client: &mut TestClient) -> anyhow::Result<Vec<String>> {
    iq(
        client,
        "get",
        "bl",
        &format!("<blocklist xmlns='{BLOCKING}'/>"),
    )
    .await?;
    let result = expect_result(client, "bl").await?;
    Ok(item_jids(&result, "blocklist"))
}

/// Expects a `<block/>` or `<unblock/>` push with these items, and answers it.
async fn expect_push_of(
    client: &mut TestClient,
    payload: &str,
    jids: &[&str],
) -> anyhow::Result<()> {
    let push = client
        .expect(&format!("{payload} push of {jids:?}"), |e| {
            e.is("iq", CLIENT)
                && e.attr("type") == Some("set")
                && e.child(payload, BLOCKING).is_some()
                && item_jids(e, payload) == jids
        })
        .await?;
    let id = push.attr("id").unwrap_or_default();
    client.send(&format!("<iq type='result' id='{id}'/>")).await
}

async fn block(client: &mut TestClient, id: &str, jids: &[&str]) -> anyhow::Result<()> {
    let items: String = jids.iter().map(|j| format!("<item jid='{j}'/>")).collect();
    iq(
        client,
        "set",
        id,
        &format!("<block xmlns='{BLOCKING}'>{items}</block>"),
    )
    .await
}

async fn unblock(client: &mut TestClient, id: &str, jids: &[&str]) -> anyhow::Result<()> {
    let items: String = jids.iter().map(|j| format!("<item jid='{j}'/>")).collect();
    iq(
        client,
        "set",
        id,
        &format!("<unblock xmlns='{BLOCKING}'>{items}</unblock>"),
    )
    .await
}

/// Expects an iq error `id` with `condition` from the user's server.
async fn expect_iq_error(client: &mut TestClient, id: &str, condition: &str) -> anyhow::Result<()> {
    client
        .expect(&format!("iq error {condition} for {id}"), |e| {
            e.attr("type") == Some("error")
                && e.attr("id") == Some(id)
                && stanza_error_condition(e).as_deref() == Some(condition)
        })
        .await?;
    Ok(())
}

/// Bob's message to alice/laptop comes back `service-unavailable` (§3.3: as from an offline
/// user).
async fn bob_is_refused(bob: &mut TestClient) -> anyhow::Result<()> {
    bob.send("<message to='alice@localhost/laptop' id='m1' type='chat'><body>hi?</body></message>")
        .await?;
    let (to, condition) = ("alice@localhost/laptop", "service-unavailable");
    expect_error(bob, "message", "m1", to, condition).await?;
    Ok(())
}

#[tokio::test]
async fn list_is_managed_and_pushed_to_resources_that_asked() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    let mut laptop = online(&server, "alice", "laptop", 1).await?;
    let mut phone = online(&server, "alice", "phone", 0).await?;
    expect_presence(&mut laptop, "alice@localhost/phone", None).await?;
    expect_presence(&mut phone, "alice@localhost/laptop", None).await?;
    let mut tablet = server.login("alice", &password("alice"), "tablet").await?;

    // §3.1: the server announces the feature.
    laptop
        .send("<iq type='get' to='localhost' id='d1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await?;
    let info = expect_result(&mut laptop, "d1").await?;
    assert!(info.to_string().contains(BLOCKING), "{info}");

    // §3.2: empty list; asking makes laptop and phone receive pushes, not tablet.
    assert_eq!(blocklist(&mut laptop).await?, Vec::<String>::new());
    assert_eq!(blocklist(&mut phone).await?, Vec::<String>::new());

    // §3.3: a block with two items, normalised, pushed to both (the requester first gets the
    // push, then its result).
    block(&mut laptop, "b1", &["Bob@localhost", "eve@example.org"]).await?;
    expect_push_of(&mut laptop, "block", &["bob@localhost", "eve@example.org"]).await?;
    expect_result(&mut laptop, "b1").await?;
    expect_push_of(&mut phone, "block", &["bob@localhost", "eve@example.org"]).await?;
    tablet.expect_silence(SILENCE).await?;
    assert_eq!(
        blocklist(&mut phone).await?,
        vec!["bob@localhost", "eve@example.org"]
    );

    // §3.3: no item is bad-request; a malformed JID jid-malformed.
    block(&mut laptop, "b2", &[]).await?;
    expect_iq_error(&mut laptop, "b2", "bad-request").await?;
    block(&mut laptop, "b3", &["@nobody"]).await?;
    expect_iq_error(&mut laptop, "b3", "jid-malformed").await?;

    // §3.4: unblock one.
    unblock(&mut phone, "u1", &["bob@localhost"]).await?;
    expect_push_of(&mut phone, "unblock", &["bob@localhost"]).await?;
    expect_result(&mut phone, "u1").await?;
    expect_push_of(&mut laptop, "unblock", &["bob@localhost"]).await?;
    assert_eq!(blocklist(&mut laptop).await?, vec!["eve@example.org"]);

    // §3.5: an empty unblock clears the list, and is pushed empty.
    unblock(&mut laptop, "u2", &[]).await?;
    expect_push_of(&mut laptop, "unblock", &[]).await?;
    expect_result(&mut laptop, "u2").await?;
    expect_push_of(&mut phone, "unblock", &[]).await?;
    assert_eq!(blocklist(&mut laptop).await?, Vec::<String>::new());
    tablet.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn another_account_cannot_read_a_list() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    bob.send(&format!(
        "<iq type='get' id='x1' to='alice@localhost'><blocklist xmlns='{BLOCKING}'/></iq>"
    ))
    .await?;
    expect_iq_error(&mut bob, "x1", "forbidden").await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_block_stops_stanzas_both_ways_until_unblocked() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online_with_roster(&server, "alice", "laptop", 1).await?;
    let mut bob = online_with_roster(&server, "bob", "desk", 1).await?;
    befriend(&mut alice, "alice", &mut bob, "bob").await?;

    // §3.3: bob, subscribed to alice, sees her go unavailable.
    block(&mut alice, "b1", &["bob@localhost"]).await?;
    expect_result(&mut alice, "b1").await?;
    expect_presence(&mut bob, "alice@localhost/laptop", Some("unavailable")).await?;

    // Bob's message is not delivered; he gets service-unavailable, as from an offline user.
    bob_is_refused(&mut bob).await?;
    // An iq get too.
    bob.send(
        "<iq to='alice@localhost/laptop' id='p1' type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
    )
    .await?;
    expect_error(
        &mut bob,
        "iq",
        "p1",
        "alice@localhost/laptop",
        "service-unavailable",
    )
    .await?;
    // Presence is dropped without an answer.
    bob.send("<presence><show>away</show></presence>").await?;
    bob.expect("own presence", |e| {
        e.name() == "presence" && e.attr("from") == Some("bob@localhost/desk")
    })
    .await?;
    alice.expect_silence(SILENCE).await?;
    bob.expect_silence(SILENCE).await?;

    // Alice's own message to bob comes back not-acceptable with <blocked/>.
    alice
        .send("<message to='bob@localhost' id='m2' type='chat'><body>hello</body></message>")
        .await?;
    let bounce = expect_error(
        &mut alice,
        "message",
        "m2",
        "bob@localhost",
        "not-acceptable",
    )
    .await?;
    let error = bounce.child("error", CLIENT).expect("an error child");
    assert!(error.has_child("blocked", BLOCKING_ERRORS), "{bounce}");
    bob.expect_silence(SILENCE).await?;

    // §3.4: unblocking sends alice's presence to bob again, and delivery resumes.
    unblock(&mut alice, "u1", &["bob@localhost"]).await?;
    expect_result(&mut alice, "u1").await?;
    expect_presence(&mut bob, "alice@localhost/laptop", None).await?;
    bob.send("<message to='alice@localhost/laptop' type='chat'><body>back</body></message>")
        .await?;
    expect_message(
        &mut alice,
        "bob@localhost/desk",
        "alice@localhost/laptop",
        "back",
    )
    .await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_list_survives_a_restart() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "laptop", 1).await?;
    block(&mut alice, "b1", &["bob@localhost"]).await?;
    expect_result(&mut alice, "b1").await?;
    drop(alice);

    let server = server.restart().await?;
    let mut alice = online(&server, "alice", "laptop", 1).await?;
    let mut bob = online(&server, "bob", "desk", 1).await?;
    assert_eq!(blocklist(&mut alice).await?, vec!["bob@localhost"]);
    bob_is_refused(&mut bob).await?;
    alice.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_blocked_contact_cannot_leave_offline_messages() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "laptop", 1).await?;
    block(&mut alice, "b1", &["bob@localhost"]).await?;
    expect_result(&mut alice, "b1").await?;
    alice.close().await?;

    // Alice is offline: her list is read from storage for bob's message, which is refused
    // instead of stored.
    let mut bob = online(&server, "bob", "desk", 1).await?;
    bob.send("<message to='alice@localhost' id='off1' type='chat'><body>later</body></message>")
        .await?;
    expect_error(
        &mut bob,
        "message",
        "off1",
        "alice@localhost",
        "service-unavailable",
    )
    .await?;
    let mut alice = online(&server, "alice", "laptop", 1).await?;
    alice.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_list_is_limited_by_the_modules_setting() -> anyhow::Result<()> {
    let server = TestServer::start_with(|config| {
        config.text = Some("[modules.blocking]\nmax_items = 2\n".into());
    })
    .await?;
    add_users(&server, &["alice"]).await?;
    let mut alice = online(&server, "alice", "laptop", 1).await?;
    block(&mut alice, "b1", &["a@example.org", "b@example.org"]).await?;
    expect_result(&mut alice, "b1").await?;
    block(&mut alice, "b2", &["c@example.org"]).await?;
    expect_iq_error(&mut alice, "b2", "not-allowed").await?;
    assert_eq!(
        blocklist(&mut alice).await?,
        vec!["a@example.org", "b@example.org"]
    );
    server.stop().await;
    Ok(())
}
