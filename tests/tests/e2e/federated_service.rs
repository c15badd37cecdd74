//! An in-process service federates like any domain of its server: a user on another server
//! reaches `echo.a.test` through federation and gets its answer back the same way
//! (dialback authenticates the service's own domain in both directions).

use crate::common;

use common::echo::echo_modules;
use common::federation::{Auth, next_matching, online, two_servers_with};
use common::{CLIENT, body};

#[tokio::test]
async fn a_service_is_reached_from_another_server() -> anyhow::Result<()> {
    let (_pki, a, b) =
        two_servers_with(Auth::Dialback, Some(echo_modules()), &["echo.a.test"]).await?;
    assert!(a.server.router.is_served_domain("echo.a.test"));
    let mut bob = online(&b, "bob").await?;
    bob.send("<message to='room@echo.a.test' id='e1'><body>across</body></message>")
        .await?;
    let echo = next_matching(&mut bob, "the echo from a.test's service", |e| {
        e.is("message", CLIENT) && e.attr("from") == Some("room@echo.a.test")
    })
    .await?;
    assert_eq!(body(&echo).as_deref(), Some("echo: across"), "{echo}");
    b.stop().await;
    a.stop().await;
    Ok(())
}
