//! The attack suite's target and its entry paths (`tests/SECURITY.md`): one server with every
//! kind of listener — client STARTTLS and direct TLS, federation, a component — and a way to
//! bring a connection on each path to the point where an attack's bytes go.

use std::net::SocketAddr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use xmppd::config::{ComponentConfig, ListenConfig};
use xmppd_c2s::{ChannelBinding, ListenerKind};
use xmppd_stream::component::COMPONENT_NS;
use xmppd_testkit::{TestClient, TestPki, TestServer};
use xmppd_xml::StreamEvent;

use super::federation::{A, B, client_config, free_port, open_server_stream, peer_authenticated};
use super::{add_users, password};

/// The component the target serves.
pub const IRC: &str = "irc.b.test";
/// Its secret.
pub const IRC_SECRET: &str = "gateway-secret";

const STREAM_NS: &str = "http://etherx.jabber.org/streams";
const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const SASL_NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// b.test with alice and bob, a direct-TLS client listener beside the STARTTLS one, a
/// federation listener whose peers may authenticate with the test CA's certificates (a.test
/// has one), and the component `irc.b.test`. Per-address connection attempts are not limited
/// (the suite opens hundreds of connections from 127.0.0.1; `address_limits.rs` tests them).
pub struct Target {
    pub pki: TestPki,
    pub server: TestServer,
}

impl Target {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Like [`Target::start`], letting the test adjust the configuration last.
    pub async fn start_with(adjust: impl FnOnce(&mut xmppd::Config)) -> anyhow::Result<Self> {
        let pki = TestPki::new(&[A, B])?;
        let server = TestServer::start_federated(B, &pki, free_port([127, 0, 0, 2])?, true, |c| {
            c.listen.push(ListenConfig {
                kind: ListenerKind::DirectTls,
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
                channel_binding: ChannelBinding::Offered,
                read_rate: None,
            });
            c.components = vec![ComponentConfig {
                name: IRC.into(),
                secret: IRC_SECRET.into(),
                addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            }];
            c.limits.per_address.attempts = 1_000_000;
            adjust(c);
        })
        .await?;
        add_users(&server, &["alice", "bob"]).await?;
        Ok(Target { pki, server })
    }
}

/// Where an attack enters: a listener and how far the connection got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// Client STARTTLS listener, before TLS.
    C2sPlain,
    /// Client STARTTLS listener, after TLS, before SASL.
    C2sStartTls,
    /// Client direct-TLS listener (XEP-0368), before SASL.
    C2sDirectTls,
    /// Client stream after SASL and resource binding.
    C2sAuthenticated,
    /// Federation listener, before TLS.
    S2sPlain,
    /// Federation listener, after TLS, before authentication.
    S2sStartTls,
    /// Federation stream authenticated as a.test (SASL EXTERNAL).
    S2sAuthenticated,
    /// Component listener, before the handshake.
    ComponentHandshake,
    /// Component stream after the handshake.
    ComponentAuthenticated,
}

impl Path {
    /// Every path.
    pub const ALL: [Path; 9] = [
        Path::C2sPlain,
        Path::C2sStartTls,
        Path::C2sDirectTls,
        Path::C2sAuthenticated,
        Path::S2sPlain,
        Path::S2sStartTls,
        Path::S2sAuthenticated,
        Path::ComponentHandshake,
        Path::ComponentAuthenticated,
    ];

    /// Whether a peer starts a stream (again) on this path: a connection's first bytes, the
    /// restart after TLS and after SASL (a component's handshake restarts nothing).
    pub fn starts_a_stream(self) -> bool {
        self != Path::ComponentAuthenticated
    }

    /// The stream header this path's peer sends.
    pub fn header(self) -> String {
        let (ns, from) = match self {
            Path::C2sPlain | Path::C2sStartTls | Path::C2sDirectTls | Path::C2sAuthenticated => {
                ("jabber:client", String::new())
            }
            Path::S2sPlain | Path::S2sStartTls | Path::S2sAuthenticated => {
                ("jabber:server", format!(" from='{A}'"))
            }
            Path::ComponentHandshake | Path::ComponentAuthenticated => {
                return format!(
                    "<stream:stream xmlns='{COMPONENT_NS}' xmlns:stream='{STREAM_NS}' to='{IRC}'>"
                );
            }
        };
        format!(
            "<stream:stream xmlns='{ns}' xmlns:stream='{STREAM_NS}'{from} to='{B}' version='1.0'>"
        )
    }

    /// The start tag of a message to bob this path's peer could send.
    pub fn message_start(self) -> &'static str {
        match self {
            Path::S2sPlain | Path::S2sStartTls | Path::S2sAuthenticated => {
                "<message from='alice@a.test/x' to='bob@b.test'>"
            }
            Path::ComponentHandshake | Path::ComponentAuthenticated => {
                "<message from='bot@irc.b.test' to='bob@b.test'>"
            }
            _ => "<message to='bob@b.test'>",
        }
    }

    /// Whether the peer on this path has authenticated (its stanza limit is the larger one).
    pub fn authenticated(self) -> bool {
        matches!(
            self,
            Path::C2sAuthenticated | Path::S2sAuthenticated | Path::ComponentAuthenticated
        )
    }
}

/// A connection on `path` with its stream open, where the next bytes are the attack's.
pub async fn reach(t: &Target, path: Path) -> anyhow::Result<TestClient> {
    let server = &t.server;
    if path == Path::C2sAuthenticated {
        return server.login("alice", &password("alice"), "attack").await;
    }
    if path == Path::S2sAuthenticated {
        return peer_authenticated(server, &t.pki, A).await;
    }
    let mut client = before_header(t, path).await?;
    client.send(&path.header()).await?;
    let StreamEvent::Open(header) = client.next_event().await? else {
        anyhow::bail!("no stream header on {path:?}");
    };
    if !matches!(
        path,
        Path::ComponentHandshake | Path::ComponentAuthenticated
    ) {
        client
            .expect("stream features", |e| e.is("features", STREAM_NS))
            .await?;
    }
    if path == Path::ComponentAuthenticated {
        let id = header.attr("id").unwrap_or_default().to_owned();
        super::component::complete_handshake(&mut client, &id, IRC_SECRET).await?;
    }
    Ok(client)
}

/// A connection on `path` at the point where the peer's next bytes start a stream: a new
/// connection, or the restart after TLS or after SASL.
pub async fn before_header(t: &Target, path: Path) -> anyhow::Result<TestClient> {
    let server = &t.server;
    match path {
        Path::C2sPlain => TestClient::connect(server.starttls_addr()).await,
        Path::C2sStartTls => c2s_after_starttls(server).await,
        Path::C2sDirectTls => {
            let addr = server
                .server
                .addr(ListenerKind::DirectTls)
                .ok_or_else(|| anyhow::anyhow!("no direct-TLS listener"))?;
            TestClient::connect_tls(addr, server.tls_client_config(), B).await
        }
        Path::C2sAuthenticated => {
            let mut client = c2s_after_starttls(server).await?;
            client.open_stream(B).await?;
            let plain = BASE64.encode(format!("\0alice\0{}", password("alice")));
            client
                .send(&format!(
                    "<auth xmlns='{SASL_NS}' mechanism='PLAIN'>{plain}</auth>"
                ))
                .await?;
            client
                .expect("success", |e| e.is("success", SASL_NS))
                .await?;
            client.restart_stream();
            Ok(client)
        }
        Path::S2sPlain => TestClient::connect(server.s2s_addr()).await,
        Path::S2sStartTls => s2s_after_starttls(t).await,
        Path::S2sAuthenticated => {
            let mut peer = s2s_after_starttls(t).await?;
            open_server_stream(&mut peer, A, B).await?;
            let authzid = BASE64.encode(A);
            peer.send(&format!(
                "<auth xmlns='{SASL_NS}' mechanism='EXTERNAL'>{authzid}</auth>"
            ))
            .await?;
            peer.expect("success", |e| e.is("success", SASL_NS)).await?;
            peer.restart_stream();
            Ok(peer)
        }
        Path::ComponentHandshake | Path::ComponentAuthenticated => {
            TestClient::connect(server.server.component_listeners[0]).await
        }
    }
}

/// A client connection right after the STARTTLS handshake.
async fn c2s_after_starttls(server: &TestServer) -> anyhow::Result<TestClient> {
    let mut client = TestClient::connect(server.starttls_addr()).await?;
    client.open_stream(B).await?;
    client
        .send(&format!("<starttls xmlns='{TLS_NS}'/>"))
        .await?;
    client
        .expect("proceed", |e| e.is("proceed", TLS_NS))
        .await?;
    client.upgrade(server.tls_client_config(), B).await?;
    Ok(client)
}

/// A federation connection from a.test right after the STARTTLS handshake (in which it
/// presented its certificate).
async fn s2s_after_starttls(t: &Target) -> anyhow::Result<TestClient> {
    let mut peer = TestClient::connect(t.server.s2s_addr()).await?;
    open_server_stream(&mut peer, A, B).await?;
    peer.send(&format!("<starttls xmlns='{TLS_NS}'/>")).await?;
    peer.expect("proceed", |e| e.is("proceed", TLS_NS)).await?;
    peer.upgrade(client_config(&t.pki, Some(A))?, B).await?;
    Ok(peer)
}

/// Sends `bytes` and expects the stream to end with `condition` and the connection to close
/// (each within the test timeout, so a server that hangs fails).
pub async fn expect_refused(
    client: &mut TestClient,
    bytes: &[u8],
    condition: &str,
    what: &str,
) -> anyhow::Result<()> {
    // The server may cut the connection while the bytes are still being written.
    let _ = client.send_raw(bytes).await;
    let got = client
        .expect_stream_error()
        .await
        .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    anyhow::ensure!(got == condition, "{what}: got {got}, expected {condition}");
    client
        .expect_closed()
        .await
        .map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

/// `template` with every `{m}` replaced by `message_start`.
pub fn fill(template: &[u8], message_start: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(at) = rest.windows(3).position(|w| w == b"{m}") {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(message_start.as_bytes());
        rest = &rest[at + 3..];
    }
    out.extend_from_slice(rest);
    out
}
