//! The server's own lifecycle: a graceful stop tells clients `system-shutdown`, and accounts
//! survive a restart on the same data dir.

use crate::common;

use common::{add_users, online};
use xmppd_testkit::TestServer;

#[tokio::test]
async fn stop_sends_system_shutdown_to_logged_in_clients() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let mut bob = server
        .login("bob", &common::password("bob"), "desk")
        .await?;
    server.stop().await;
    assert_eq!(alice.expect_stream_error().await?, "system-shutdown");
    assert_eq!(bob.expect_stream_error().await?, "system-shutdown");
    alice.expect_closed().await?;
    bob.expect_closed().await?;
    Ok(())
}

#[tokio::test]
async fn accounts_survive_a_restart() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    server.add_user("alice", "before the restart").await?;
    let data_dir = server.config.data_dir.clone();
    let server = server.restart().await?;
    assert_eq!(server.config.data_dir, data_dir);
    let mut alice = server.login("alice", "before the restart", "phone").await?;
    assert_eq!(
        alice.jid.as_ref().map(|j| j.as_str()),
        Some("alice@localhost/phone")
    );
    // And the password is still checked.
    let wrong = server.login("alice", "something else", "phone").await;
    let error = wrong.err().map(|e| e.to_string());
    assert_eq!(error.as_deref(), Some("sasl failure: not-authorized"));
    alice
        .send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    alice
        .expect("pong", |e| {
            e.attr("id") == Some("p") && e.attr("type") == Some("result")
        })
        .await?;
    server.stop().await;
    Ok(())
}
