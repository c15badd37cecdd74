//! A XEP-0114 component connected to the test server over TCP.

use xmppd_stream::component::{COMPONENT_NS, handshake_digest};
use xmppd_testkit::{TestClient, TestServer};
use xmppd_xml::StreamEvent;

/// Opens a component stream for `name`; returns the client and the stream id.
pub async fn open_component(
    server: &TestServer,
    name: &str,
) -> anyhow::Result<(TestClient, String)> {
    let component = TestClient::connect(server.server.component_listeners[0]).await?;
    open_component_on(component, name).await
}

/// Like [`open_component`], from another address (`source`, e.g. 127.0.0.2).
pub async fn open_component_from(
    server: &TestServer,
    name: &str,
    source: std::net::IpAddr,
) -> anyhow::Result<(TestClient, String)> {
    let component = TestClient::connect_from(server.server.component_listeners[0], source).await?;
    open_component_on(component, name).await
}

async fn open_component_on(
    mut component: TestClient,
    name: &str,
) -> anyhow::Result<(TestClient, String)> {
    component
        .send(&format!(
            "<stream:stream xmlns='{COMPONENT_NS}' xmlns:stream='http://etherx.jabber.org/streams' to='{name}'>"
        ))
        .await?;
    let StreamEvent::Open(header) = component.next_event().await? else {
        anyhow::bail!("expected the server's stream header");
    };
    let id = header.attr("id").unwrap_or_default().to_owned();
    Ok((component, id))
}

/// A component `name` that completed the handshake with `secret`.
pub async fn connect_component(
    server: &TestServer,
    name: &str,
    secret: &str,
) -> anyhow::Result<TestClient> {
    let (mut component, id) = open_component(server, name).await?;
    complete_handshake(&mut component, &id, secret).await?;
    Ok(component)
}

/// Sends the handshake of `secret` for the stream `id`.
pub async fn send_handshake(
    component: &mut TestClient,
    id: &str,
    secret: &str,
) -> anyhow::Result<()> {
    let digest = handshake_digest(id, secret);
    component
        .send(&format!("<handshake>{digest}</handshake>"))
        .await
}

/// Sends the handshake of `secret` for the stream `id` and expects the empty one that
/// accepts it.
pub async fn complete_handshake(
    component: &mut TestClient,
    id: &str,
    secret: &str,
) -> anyhow::Result<()> {
    send_handshake(component, id, secret).await?;
    component
        .expect("empty handshake", |e| {
            e.is("handshake", COMPONENT_NS) && e.nodes().is_empty()
        })
        .await?;
    Ok(())
}
