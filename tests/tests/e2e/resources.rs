//! Resource binding (RFC 6120 §7): a second login with the same resource replaces the first
//! (`conflict`, §7.7.2.2), and the server picks a resource when the client names none.

use crate::common;

use std::time::Duration;

use common::{add_users, expect_message, expect_presence, online};
use xmppd_testkit::TestServer;

#[tokio::test]
async fn same_resource_login_replaces_the_old_session_with_conflict() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut old = online(&server, "bob", "desk", 0).await?;
    let mut new = server
        .login("bob", &common::password("bob"), "desk")
        .await?;
    assert_eq!(old.expect_stream_error().await?, "conflict");
    old.expect_closed().await?;

    // The new session owns the full JID.
    let mut alice = online(&server, "alice", "phone", 0).await?;
    alice
        .send("<message to='bob@localhost/desk' type='chat' id='m1'><body>new you</body></message>")
        .await?;
    expect_message(
        &mut new,
        "alice@localhost/phone",
        "bob@localhost/desk",
        "new you",
    )
    .await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn bind_without_resource_gets_a_server_generated_one() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut client = xmppd_testkit::TestClient::connect(server.starttls_addr()).await?;
    client.open_stream("localhost").await?;
    client
        .starttls(server.tls_client_config(), "localhost")
        .await?;
    client
        .authenticate("SCRAM-SHA-256", "bob", &common::password("bob"))
        .await?;
    let first = client.bind(None).await?;
    assert_eq!(first.to_bare().as_str(), "bob@localhost");
    assert!(!first.resource().as_str().is_empty());

    // A second one differs, and the generated JID is reachable.
    let mut other = xmppd_testkit::TestClient::connect(server.starttls_addr()).await?;
    other.open_stream("localhost").await?;
    other
        .starttls(server.tls_client_config(), "localhost")
        .await?;
    other
        .authenticate("SCRAM-SHA-256", "bob", &common::password("bob"))
        .await?;
    let second = other.bind(None).await?;
    assert_ne!(first, second);

    let mut alice = online(&server, "alice", "phone", 0).await?;
    alice
        .send(&format!(
            "<message to='{first}' type='chat' id='m1'><body>found you</body></message>"
        ))
        .await?;
    expect_message(
        &mut client,
        "alice@localhost/phone",
        first.as_str(),
        "found you",
    )
    .await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn replaced_session_is_announced_unavailable_before_the_new_one_is_available()
-> anyhow::Result<()> {
    // The old phone has stopped reading (a dead network): the server's writes to it block
    // until the write timeout. Its replacement must not be reported offline afterwards.
    // The replacement must itself read the 12 MB within the timeout, or it too is ended
    // (and its messages go to the laptop): 3 s leaves room for a loaded machine, where 1 s
    // failed about one run in three with six copies running at once.
    let write_timeout = Duration::from_secs(3);
    let server = TestServer::start_with(|c| c.limits.write_timeout = write_timeout).await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "desk", 0).await?;
    let mut laptop = online(&server, "bob", "laptop", 1).await?;
    let mut old_phone = online(&server, "bob", "phone", 0).await?;
    expect_presence(&mut old_phone, "bob@localhost/laptop", None).await?;
    expect_presence(&mut laptop, "bob@localhost/phone", None).await?;

    // Fill the socket buffers towards the old phone (about 12 MB it never reads).
    let big = "x".repeat(200 * 1024);
    for i in 0..60 {
        alice
            .send(&format!(
                "<message to='bob@localhost/phone' id='f{i}'><body>{big}</body></message>"
            ))
            .await?;
    }

    let mut new_phone = server
        .login("bob", &common::password("bob"), "phone")
        .await?;
    new_phone.available(0).await?;
    // The new phone reads what comes to it, including the messages the old one never took
    // (they were sent to this full JID).
    let reading = tokio::spawn(async move {
        for _ in 0..100_000 {
            match new_phone.next_event_within(Duration::from_secs(5)).await {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    });
    expect_presence(&mut laptop, "bob@localhost/phone", Some("unavailable")).await?;
    expect_presence(&mut laptop, "bob@localhost/phone", None).await?;
    // Nothing more, even once the old session's write has timed out and it is gone.
    laptop.expect_silence(write_timeout * 2).await?;
    drop(old_phone);
    server.stop().await;
    reading.abort();
    Ok(())
}
