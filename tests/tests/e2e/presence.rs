//! The account's own presence across its resources (RFC 6121 §4.2, §4.5): initial presence
//! is echoed and broadcast, a new resource learns the others', and going away — cleanly or
//! by losing the socket — is announced.

use crate::common;

use common::{SILENCE, add_users, expect_presence, online};
use xmppd_testkit::TestServer;

#[tokio::test]
async fn initial_presence_is_echoed_and_broadcast_to_own_available_resources() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    let mut laptop = online(&server, "alice", "laptop", 1).await?;
    let mut quiet = server
        .login("alice", &common::password("alice"), "quiet")
        .await?;

    let mut phone = server
        .login("alice", &common::password("alice"), "phone")
        .await?;
    phone
        .send("<presence><show>away</show><priority>3</priority></presence>")
        .await?;
    // The sender gets its own presence back...
    let echo = expect_presence(&mut phone, "alice@localhost/phone", None).await?;
    let show = echo.child("show", common::CLIENT).map(|s| s.text());
    assert_eq!(show.as_deref(), Some("away"));
    // ...and every other available resource gets it; a bound resource without presence
    // does not.
    let seen = expect_presence(&mut laptop, "alice@localhost/phone", None).await?;
    assert_eq!(seen.attr("to"), None);
    quiet.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn new_resource_receives_the_presence_of_the_other_available_resources() -> anyhow::Result<()>
{
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    let mut laptop = online(&server, "alice", "laptop", 1).await?;
    laptop
        .send("<presence><status>at work</status></presence>")
        .await?;
    expect_presence(&mut laptop, "alice@localhost/laptop", None).await?;

    let mut phone = online(&server, "alice", "phone", 0).await?;
    let laptops = expect_presence(&mut phone, "alice@localhost/laptop", None).await?;
    // The latest presence of the laptop, not its first one.
    let status = laptops.child("status", common::CLIENT).map(|s| s.text());
    assert_eq!(status.as_deref(), Some("at work"));
    phone.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn clean_logout_is_announced_as_unavailable() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    let mut laptop = online(&server, "alice", "laptop", 1).await?;
    let mut phone = online(&server, "alice", "phone", 0).await?;
    expect_presence(&mut phone, "alice@localhost/laptop", None).await?;
    expect_presence(&mut laptop, "alice@localhost/phone", None).await?;

    phone.close().await?;
    expect_presence(&mut laptop, "alice@localhost/phone", Some("unavailable")).await?;
    laptop.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn explicit_unavailable_is_announced_once() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    let mut laptop = online(&server, "alice", "laptop", 1).await?;
    let mut phone = online(&server, "alice", "phone", 0).await?;
    expect_presence(&mut phone, "alice@localhost/laptop", None).await?;
    expect_presence(&mut laptop, "alice@localhost/phone", None).await?;

    phone
        .send("<presence type='unavailable'><status>bye</status></presence>")
        .await?;
    let gone = expect_presence(&mut laptop, "alice@localhost/phone", Some("unavailable")).await?;
    let status = gone.child("status", common::CLIENT).map(|s| s.text());
    assert_eq!(status.as_deref(), Some("bye"));
    // Closing the stream afterwards does not announce it a second time.
    phone.close().await?;
    laptop.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn abrupt_disconnect_is_announced_as_unavailable() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    let mut laptop = online(&server, "alice", "laptop", 1).await?;
    let mut phone = online(&server, "alice", "phone", 0).await?;
    expect_presence(&mut phone, "alice@localhost/laptop", None).await?;
    expect_presence(&mut laptop, "alice@localhost/phone", None).await?;

    // The phone loses its socket: no </stream:stream>, no TLS close_notify.
    drop(phone);
    expect_presence(&mut laptop, "alice@localhost/phone", Some("unavailable")).await?;
    server.stop().await;
    Ok(())
}
