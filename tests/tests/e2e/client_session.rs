//! The client session is independent of its transport: an in-memory transport (bytes in,
//! bytes out, no socket) negotiates, binds and exchanges stanzas with a client on a real TLS
//! socket, and a session detached from one transport keeps receiving and is attached to
//! another.

use crate::common;

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use common::{CLIENT, add_users, body, online, password};
use xmppd_core::{ClientSession, ClientStream, Next, Router, StreamAction};
use xmppd_proto::stream_limits::StreamLimits;
use xmppd_stream::sasl::ChannelBindingData;
use xmppd_stream::{C2sPolicy, C2sResponder};
use xmppd_testkit::TestServer;
use xmppd_xml::{Limits, Reader};

/// A transport that is two byte buffers: what the client wrote, what the server answered.
struct MemoryTransport {
    stream: ClientStream,
    reader: Reader,
    written: String,
}

impl MemoryTransport {
    /// A stream over an already secure channel (as a TLS-terminating proxy would give).
    fn new(router: Arc<Router>, conn_id: u64) -> Self {
        let policy = C2sPolicy {
            hosts: Arc::new(["localhost".to_owned()].into_iter().collect()),
            require_tls: true,
            max_auth_failures: 3,
            fake_salt_secret: [9; 32],
            bound_features: Arc::new(HashMap::new()),
            registration: Arc::default(),
            invites: Arc::default(),
            disabled_mechanisms: Arc::from([]),
            limits_before_auth: StreamLimits::default(),
            limits_after_auth: StreamLimits::default(),
        };
        let responder = C2sResponder::new(policy, true, ChannelBindingData::none());
        MemoryTransport {
            stream: ClientStream::new(router, responder, conn_id, 64),
            reader: Reader::new(Limits::default()),
            written: String::new(),
        }
    }

    /// Feeds the client's bytes and carries out every action; returns what the server wrote.
    async fn client_sends(&mut self, xml: &str) -> anyhow::Result<String> {
        self.reader.feed(xml.as_bytes());
        let mut out = String::new();
        while let Some(event) = self.reader.next_event()? {
            let mut actions = Vec::new();
            self.stream.handle_event(event, &mut actions).await;
            for action in actions {
                match action {
                    StreamAction::Send(bytes) => out.push_str(&String::from_utf8(bytes)?),
                    StreamAction::Restart => self.reader.reset(),
                    StreamAction::Bound => {}
                    StreamAction::Close(bytes) => {
                        out.push_str(&String::from_utf8(bytes)?);
                        anyhow::bail!("the stream was closed: {out}");
                    }
                    other => anyhow::bail!("unexpected {other:?}"),
                }
            }
        }
        self.written.push_str(&out);
        Ok(out)
    }

    /// What the session's queue holds now, as the transport would write it.
    fn drain(&mut self) -> String {
        let mut out = String::new();
        if let Some(session) = self.stream.session_mut() {
            while let Next::Item(item) = session.next_now() {
                out.push_str(&String::from_utf8_lossy(&item.bytes));
            }
        }
        out
    }

    /// Opens the stream and authenticates `user` with PLAIN.
    async fn authenticate(&mut self, user: &str) -> anyhow::Result<()> {
        let features = self
            .client_sends("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
            .await?;
        assert!(features.contains("PLAIN"), "{features}");
        let creds = base64::engine::general_purpose::STANDARD
            .encode(format!("\0{user}\0{}", password(user)));
        let success = self
            .client_sends(&format!(
                "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{creds}</auth>"
            ))
            .await?;
        assert!(success.contains("<success"), "{success}");
        let features = self
            .client_sends("<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>")
            .await?;
        assert!(
            features.contains("urn:ietf:params:xml:ns:xmpp-bind"),
            "{features}"
        );
        Ok(())
    }
}

async fn within<T>(f: impl Future<Output = T>) -> anyhow::Result<T> {
    Ok(tokio::time::timeout(std::time::Duration::from_secs(5), f).await?)
}

/// Waits until the session's queue has something (or a bounded time passes).
async fn drain_soon(transport: &mut MemoryTransport) -> anyhow::Result<String> {
    for _ in 0..50 {
        let out = transport.drain();
        if !out.is_empty() {
            return Ok(out);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    anyhow::bail!("nothing was queued for the session")
}

#[tokio::test]
async fn an_in_memory_transport_carries_a_whole_session() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let router = server.server.router.clone();
    let mut bob = online(&server, "bob", "tcp", 0).await?;

    let mut alice = MemoryTransport::new(router.clone(), 1_000_001);
    within(alice.authenticate("alice")).await??;
    let bound = within(alice.client_sends(
        "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>memory</resource></bind></iq>",
    ))
    .await??;
    assert!(bound.contains("alice@localhost/memory"), "{bound}");
    within(alice.client_sends("<presence/>")).await??;
    let own = drain_soon(&mut alice).await?;
    assert!(
        own.contains("from=\"alice@localhost/memory\""),
        "own presence echoed: {own}"
    );

    // In-memory → TCP.
    within(alice.client_sends(
        "<message to='bob@localhost/tcp' type='chat'><body>from memory</body></message>",
    ))
    .await??;
    let msg = bob
        .expect("alice's message", |e| e.is("message", CLIENT))
        .await?;
    assert_eq!(msg.attr("from"), Some("alice@localhost/memory"));
    assert_eq!(body(&msg).as_deref(), Some("from memory"));

    // TCP → in-memory.
    bob.send("<message to='alice@localhost/memory' type='chat'><body>to memory</body></message>")
        .await?;
    let got = drain_soon(&mut alice).await?;
    assert!(
        got.contains("to memory") && got.contains("from=\"bob@localhost/tcp\""),
        "{got}"
    );

    // A forged sender ends the stream, whatever the transport.
    let forged = alice
        .client_sends(
            "<message from='bob@localhost' to='bob@localhost/tcp'><body>x</body></message>",
        )
        .await;
    assert!(
        forged
            .as_ref()
            .is_err_and(|e| e.to_string().contains("invalid-from")),
        "{forged:?}"
    );
    alice.stream.end().await;
    assert!(
        router
            .sessions()
            .get(&"alice@localhost/memory".parse()?)
            .is_none()
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_detached_session_keeps_receiving_and_moves_to_a_new_transport() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob", "mallory"]).await?;
    let router = server.server.router.clone();
    let mut bob = online(&server, "bob", "tcp", 0).await?;

    let mut first = MemoryTransport::new(router.clone(), 2_000_001);
    within(first.authenticate("alice")).await??;
    within(first.client_sends(
        "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>phone</resource></bind></iq>",
    ))
    .await??;
    within(first.client_sends("<presence/>")).await??;
    drain_soon(&mut first).await?;

    // The transport dies; the session is detached, not ended.
    let session: ClientSession = first
        .stream
        .detach()
        .ok_or_else(|| anyhow::anyhow!("no session to detach"))?;
    drop(first);
    assert!(
        router
            .sessions()
            .get(&"alice@localhost/phone".parse()?)
            .is_some()
    );
    bob.send("<message to='alice@localhost/phone' type='chat'><body>while away</body></message>")
        .await?;

    // Another account cannot take it.
    let mut stranger = MemoryTransport::new(router.clone(), 2_000_002);
    within(stranger.authenticate("mallory")).await??;
    let session = match stranger.stream.attach(session).await {
        Ok(()) => anyhow::bail!("another account took over the session"),
        Err(session) => session,
    };

    // The same account on a new transport gets it, with what arrived meanwhile.
    let mut second = MemoryTransport::new(router.clone(), 2_000_003);
    within(second.authenticate("alice")).await??;
    if second.stream.attach(session).await.is_err() {
        anyhow::bail!("the account's own new stream could not take its session");
    }
    let got = drain_soon(&mut second).await?;
    assert!(got.contains("while away"), "{got}");
    within(second.client_sends("<message to='bob@localhost/tcp'><body>back</body></message>"))
        .await??;
    let msg = bob.expect("the reply", |e| e.is("message", CLIENT)).await?;
    assert_eq!(msg.attr("from"), Some("alice@localhost/phone"));
    second.stream.end().await;
    server.stop().await;
    Ok(())
}
