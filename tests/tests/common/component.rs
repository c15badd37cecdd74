//! A XEP-0114 component connected to the test server over TCP.

use xmppd_stream::component::{COMPONENT_NS, handshake_digest};
use xmppd_testkit::{TestClient, TestServer};
use xmppd_xml::StreamEvent;

/// Opens a component stream for `name`; returns the client and the stream id.
pub async fn open_component(
    server: &TestServer,
    name: &str,
) -> anyhow::Result<(TestClient, String)> {
    let mut component = TestClient::connect(server.server.component_listeners[0]).await?;
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
    component
        .send(&format!(
            "<handshake>{}</handshake>",
            handshake_digest(&id, secret)
        ))
        .await?;
    component
        .expect("empty handshake", |e| {
            e.is("handshake", COMPONENT_NS) && e.nodes().is_empty()
        })
        .await?;
    Ok(component)
}
