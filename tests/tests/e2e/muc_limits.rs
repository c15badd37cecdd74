//! XEP-0045 §16 and the service's limits: room creation by rate, size and configured
//! creators, and each occupant's rate of what a room broadcasts (messages, presence updates,
//! nickname changes).

use crate::common;

use anyhow::Context;

use common::muc::*;
use common::*;
use xmppd_testkit::{TestClient, stanza_error_condition};

#[tokio::test]
async fn the_service_limits_creation_rate_and_size() -> anyhow::Result<()> {
    let server = server_with("max_rooms_per_user = 1\nmessages_per_second = 0.01\nmessage_burst = 2\nmax_message_bytes = 400").await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    create_instant(&mut alice, ROOM, "Alice").await?;
    alice
        .send(&format!(
            "<presence to='second@{SERVICE}/Alice' id='c2'><x xmlns='{MUC}'/></presence>"
        ))
        .await?;
    expect_error(
        &mut alice,
        "presence",
        "c2",
        &format!("second@{SERVICE}/Alice"),
        "not-allowed",
    )
    .await?;
    let big = "x".repeat(500);
    alice
        .send(&format!(
            "<message to='{ROOM}' type='groupchat' id='big'><body>{big}</body></message>"
        ))
        .await?;
    expect_error(&mut alice, "message", "big", ROOM, "policy-violation").await?;
    for n in 0..2 {
        say(&mut alice, ROOM, &format!("r{n}"), "quick").await?;
        expect_groupchat(&mut alice, &occupant("Alice"), "quick").await?;
    }
    say(&mut alice, ROOM, "r2", "too quick").await?;
    let refused = expect_error(&mut alice, "message", "r2", ROOM, "resource-constraint").await?;
    assert!(refused.to_string().contains("type=\"wait\""), "{refused}");
    server.stop().await;
    Ok(())
}

/// Sends `presence` and expects its refusal, `resource-constraint` saying `why`, after
/// whatever the room reflected before it.
async fn refused_too_fast(
    client: &mut TestClient,
    presence: &str,
    id: &str,
    why: &str,
) -> anyhow::Result<()> {
    client.send(presence).await?;
    let seen = collect_until(client, "the refusal", 20, |e| {
        e.attr("id") == Some(id) && e.attr("type") == Some("error")
    })
    .await?;
    let refused = seen.last().context("nothing")?;
    assert_eq!(
        stanza_error_condition(refused).as_deref(),
        Some("resource-constraint")
    );
    assert!(refused.to_string().contains(why), "{refused}");
    Ok(())
}

/// Presence updates and nickname changes are broadcast to every occupant like messages, and
/// share their rate: past the burst they are `resource-constraint` and nobody sees them.
#[tokio::test]
async fn presence_and_nickname_floods_are_held_to_the_message_rate() -> anyhow::Result<()> {
    let server = server_with("messages_per_second = 0.01\nmessage_burst = 2").await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    create_instant(&mut alice, ROOM, "Alice").await?;
    let mut bob = online(&server, "bob", "pc", 0).await?;
    enter(&mut bob, ROOM, "Bob", "").await?;
    expect_presence_from(&mut alice, &occupant("Bob")).await?;
    for n in 0..2 {
        bob.send(&format!(
            "<presence to='{ROOM}/Bob' id='u{n}'><status>busy {n}</status></presence>"
        ))
        .await?;
        expect_presence_from(&mut alice, &occupant("Bob")).await?;
    }
    // Bob's own updates come back to him first; then the refusals.
    let update = format!("<presence to='{ROOM}/Bob' id='u2'><status>again</status></presence>");
    refused_too_fast(&mut bob, &update, "u2", "changing your presence too fast").await?;
    let change = format!("<presence to='{ROOM}/Robert' id='n1'/>");
    refused_too_fast(&mut bob, &change, "n1", "changing your nickname too fast").await?;
    // Alice saw neither: the next thing she gets is Bob's message once he may speak again.
    alice
        .expect_silence(std::time::Duration::from_millis(300))
        .await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn only_the_configured_users_create_rooms() -> anyhow::Result<()> {
    let server = server_with("create_rooms = \"admins\"\nadmins = [\"carol@localhost\"]").await?;
    let mut alice = online(&server, "alice", "pc", 0).await?;
    alice
        .send(&format!(
            "<presence to='{ROOM}/Alice' id='c1'><x xmlns='{MUC}'/></presence>"
        ))
        .await?;
    expect_error(
        &mut alice,
        "presence",
        "c1",
        &occupant("Alice"),
        "not-allowed",
    )
    .await?;
    let mut carol = online(&server, "carol", "pc", 0).await?;
    create_instant(&mut carol, ROOM, "Carol").await?;
    let entry = enter(&mut alice, ROOM, "Alice", "").await?;
    assert_eq!(item(own_presence(&entry)?).unwrap().0, "none");
    server.stop().await;
    Ok(())
}
