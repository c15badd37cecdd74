//! The walking skeleton: two users log in and chat.

use xmppd_testkit::TestServer;

#[tokio::test]
async fn two_users_log_in_and_exchange_messages() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    server.add_user("alice", "alice-pw").await?;
    server.add_user("bob", "bob-pw").await?;
    let mut alice = server.login("alice", "alice-pw", "phone").await?;
    let mut bob = server.login("bob", "bob-pw", "laptop").await?;
    alice.available(0).await?;
    bob.available(0).await?;
    alice
        .expect("own presence", |e| e.name() == "presence")
        .await?;
    bob.expect("own presence", |e| e.name() == "presence")
        .await?;

    alice
        .send(
            "<message to='bob@localhost/laptop' type='chat' id='m1'><body>hi bob</body></message>",
        )
        .await?;
    let msg = bob
        .expect("alice's message", |e| e.name() == "message")
        .await?;
    assert_eq!(msg.attr("from"), Some("alice@localhost/phone"));
    assert_eq!(
        msg.child("body", "jabber:client").map(|b| b.text()),
        Some("hi bob".into())
    );

    bob.send("<message to='alice@localhost' type='chat' id='m2'><body>hi alice</body></message>")
        .await?;
    let msg = alice
        .expect("bob's reply", |e| e.name() == "message")
        .await?;
    assert_eq!(msg.attr("from"), Some("bob@localhost/laptop"));
    alice.close().await?;
    bob.close().await?;
    server.stop().await;
    Ok(())
}
