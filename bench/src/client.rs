//! A minimal, fast XMPP client: TCP, STARTTLS, SCRAM-SHA-1, bind, initial presence, or the same
//! over WebSocket (RFC 7395: TLS from the first byte, the upgrade, `<open/>`) — and the raw
//! relay's equivalent (TLS and a pairing line).
//!
//! Negotiation goes through our own XML reader; once a session is bound the reader is dropped
//! and incoming bytes are only scanned for message bodies ([`crate::scan`]), so the generator
//! spends as little as possible per delivered message.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use xmppd_stream::sasl::{ClientChannelBinding, ClientKeys, ScramClient, ScramHash};
use xmppd_xml::{Element, Limits, Reader, StreamEvent};

pub use crate::conn::Conn;

/// The TLS stream every session ends up on.
pub type Tls = tokio_rustls::client::TlsStream<TcpStream>;

/// What the generator talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// An XMPP server with STARTTLS on the port.
    Xmpp,
    /// The raw TLS relay: TLS from the first byte, then `PAIR <id>\n`.
    Relay,
    /// XMPP over WebSocket over TLS (`wss://`, RFC 7395) at [`Target::ws_path`].
    WebSocket,
}

impl Protocol {
    /// Whether sessions speak XMPP (over TCP or WebSocket), not the relay's pairing.
    pub fn is_xmpp(self) -> bool {
        self != Protocol::Relay
    }
}

/// One server under test.
#[derive(Clone)]
pub struct Target {
    /// Its listener.
    pub addr: SocketAddr,
    /// The XMPP domain (also the TLS server name).
    pub domain: String,
    /// XMPP, XMPP over WebSocket or relay.
    pub protocol: Protocol,
    /// The WebSocket endpoint's path (`/xmpp-websocket`), for [`Protocol::WebSocket`].
    pub ws_path: String,
    /// Client TLS configuration trusting the benchmark CA, without resumption.
    pub tls: Arc<rustls::ClientConfig>,
    /// Password of every benchmark account.
    pub password: String,
    /// SCRAM keys from earlier logins, by username (RFC 5802 §5.1 client caching).
    pub keys: Arc<Mutex<HashMap<String, ClientKeys>>>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("addr", &self.addr)
            .field("domain", &self.domain)
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

/// A client TLS configuration trusting only the certificates in `ca_pem`; session resumption
/// is off so that every login pays a full handshake, as a fresh client does.
pub fn tls_config(ca_pem: &Path) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let pem = std::fs::read(ca_pem).with_context(|| format!("reading {}", ca_pem.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// A logged-in session: the TLS stream or WebSocket and the JID it is bound to.
pub struct Session {
    /// The stream.
    pub io: Conn,
    /// Full JID (XMPP) or `pair-<id>` (relay).
    pub jid: String,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("jid", &self.jid).finish()
    }
}

impl Session {
    /// Closes the stream politely and drops the connection.
    pub async fn close(mut self, protocol: Protocol) {
        if protocol.is_xmpp() {
            let _ = self.io.write_all(self.close_element()).await;
        }
        let _ = self.io.shutdown().await;
    }

    /// Logs out as a client that waits for the server does (RFC 6120 §4.4): sends
    /// `</stream:stream>`, then reads until the server's own closing tag and the end of the
    /// connection, at most `wait`. The server closing first also puts the connection's
    /// TIME_WAIT on its side, not on this address's ports. An error says the server did not
    /// close the stream properly in time.
    /// Over WebSocket the closing element is `<close/>` (RFC 7395 §3.6), and the server's
    /// own `<close/>` ends the stream.
    pub async fn logout(mut self, wait: Duration) -> anyhow::Result<()> {
        let close = self.close_element();
        let end: &[u8] = if self.io.is_websocket() {
            b"<close"
        } else {
            STREAM_CLOSE
        };
        let closing = async {
            self.io.write_all(close).await?;
            self.io.flush().await?;
            let mut buf = [0u8; 2048];
            // The end of what was read so far, long enough to find a closing tag split
            // between two reads.
            let mut tail = Vec::with_capacity(buf.len() + end.len());
            let mut closed = false;
            loop {
                let n = match self.io.read(&mut buf).await {
                    Ok(n) => n,
                    // A server may drop the TCP connection without TLS close_notify once its
                    // closing tag is out; that is an end, not a failure.
                    Err(_) if closed => 0,
                    Err(e) => return Err(anyhow::Error::from(e).context("reading the logout")),
                };
                if n == 0 {
                    if closed {
                        return Ok(());
                    }
                    bail!("the server ended the connection without closing the stream");
                }
                if !closed {
                    tail.extend_from_slice(&buf[..n]);
                    closed = memchr::memmem::find(&tail, end).is_some();
                    let keep_from = tail.len().saturating_sub(end.len() - 1);
                    tail.drain(..keep_from);
                }
            }
        };
        tokio::time::timeout(wait, closing)
            .await
            .with_context(|| format!("the server did not close the stream within {wait:?}"))?
    }

    /// What ends the stream: `</stream:stream>`, or `<close/>` over WebSocket.
    fn close_element(&self) -> &'static [u8] {
        if self.io.is_websocket() {
            WS_CLOSE
        } else {
            STREAM_CLOSE
        }
    }
}

/// The closing tag of a stream (RFC 6120 §4.4).
const STREAM_CLOSE: &[u8] = b"</stream:stream>";

/// The end of a stream over WebSocket (RFC 7395 §3.6).
const WS_CLOSE: &[u8] = b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>";

/// What the reader of a WebSocket's negotiation is fed before the server's first frame: each
/// frame then holds one element of this pretend stream (RFC 7395 §3.3.3), `<open/>` included.
const WS_STREAM_HEAD: &[u8] = b"<stream:stream xmlns='jabber:client' \
    xmlns:stream='http://etherx.jabber.org/streams'>";

/// Negotiation I/O: a stream with our XML reader on top.
struct Negotiation<S> {
    io: S,
    reader: Reader,
    buf: Vec<u8>,
    /// RFC 7395 framing: `<open/>` instead of a stream header.
    websocket: bool,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Negotiation<S> {
    fn new(io: S) -> Self {
        Negotiation {
            io,
            reader: Reader::new(Limits::default()),
            buf: vec![0; 4096],
            websocket: false,
        }
    }

    async fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await?;
        Ok(())
    }

    async fn event(&mut self) -> anyhow::Result<StreamEvent> {
        loop {
            if let Some(ev) = self.reader.next_event()? {
                return Ok(ev);
            }
            let n = self.io.read(&mut self.buf).await?;
            if n == 0 {
                bail!("server closed the connection during negotiation");
            }
            self.reader.feed(&self.buf[..n]);
        }
    }

    async fn stanza(&mut self) -> anyhow::Result<Element> {
        loop {
            match self.event().await? {
                StreamEvent::Stanza(el) => {
                    if el.name() == "error" {
                        bail!(
                            "stream error: {:?}",
                            el.children().next().map(Element::name)
                        );
                    }
                    return Ok(el);
                }
                StreamEvent::Open(_) => {}
                StreamEvent::Close => bail!("server closed the stream during negotiation"),
            }
        }
    }

    /// Opens a stream and returns `<stream:features/>`. Over WebSocket the stream opens with
    /// `<open/>`, answered with `<open/>` before the features (RFC 7395 §3.4).
    async fn open(&mut self, domain: &str) -> anyhow::Result<Element> {
        self.reader.reset();
        let header = if self.websocket {
            self.reader.feed(WS_STREAM_HEAD);
            format!("<open xmlns='{NS_FRAMING}' to='{domain}' version='1.0'/>")
        } else {
            format!(
                "<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' \
                 xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>"
            )
        };
        self.send(header.as_bytes()).await?;
        let mut features = self.stanza().await?;
        if self.websocket {
            if features.name() != "open" {
                bail!("expected <open/>, got <{}>", features.name());
            }
            features = self.stanza().await?;
        }
        if features.name() != "features" {
            bail!("expected stream features, got <{}>", features.name());
        }
        Ok(features)
    }
}

const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const NS_BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
const NS_SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
const NS_SM: &str = "urn:xmpp:sm:3";
const NS_FRAMING: &str = crate::ws::NS_FRAMING;

/// Connects to `addr`, from `source` when given (bound before connecting, port chosen by the
/// kernel): each loopback source address has its own ephemeral ports, which a soak that opens
/// hundreds of connections per second, or holds tens of thousands, runs out of on one.
async fn tcp(addr: SocketAddr, source: Option<IpAddr>) -> anyhow::Result<TcpStream> {
    let tcp = match source {
        None => TcpStream::connect(addr).await.context("connect")?,
        Some(ip) => {
            let socket = if ip.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket
                .bind(SocketAddr::new(ip, 0))
                .with_context(|| format!("binding a socket to {ip}"))?;
            socket
                .connect(addr)
                .await
                .with_context(|| format!("connect from {ip}"))?
        }
    };
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

async fn tls_handshake(target: &Target, tcp: TcpStream) -> anyhow::Result<Tls> {
    let name = ServerName::try_from(target.domain.clone())?;
    let tls = TlsConnector::from(target.tls.clone())
        .connect(name, tcp)
        .await
        .context("TLS handshake")?;
    Ok(tls)
}

/// Connects over TCP, upgrades with STARTTLS and returns the features of the TLS stream.
async fn connect_starttls(
    target: &Target,
    source: Option<IpAddr>,
) -> anyhow::Result<(Negotiation<Conn>, Element)> {
    let mut plain = Negotiation::new(tcp(target.addr, source).await?);
    let features = plain.open(&target.domain).await?;
    if !features.has_child("starttls", NS_TLS) {
        bail!("server does not offer STARTTLS");
    }
    plain
        .send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await?;
    let proceed = plain.stanza().await?;
    if proceed.name() != "proceed" {
        bail!("STARTTLS refused: <{}>", proceed.name());
    }
    let tls = tls_handshake(target, plain.io).await?;
    let mut neg = Negotiation::new(Conn::Tls(Box::new(tls)));
    let features = neg.open(&target.domain).await?;
    Ok((neg, features))
}

/// Connects with TLS from the first byte, upgrades to a WebSocket with the `xmpp`
/// subprotocol at the target's path and returns the features of the stream opened with
/// `<open/>` (RFC 7395 §3.2-3.4; no STARTTLS over WebSocket, §3.8).
async fn connect_websocket(
    target: &Target,
    source: Option<IpAddr>,
) -> anyhow::Result<(Negotiation<Conn>, Element)> {
    let tls = tls_handshake(target, tcp(target.addr, source).await?).await?;
    let host = format!("{}:{}", target.domain, target.addr.port());
    let ws = crate::ws::connect(tls, &host, &target.ws_path)
        .await
        .context("WebSocket upgrade")?;
    let mut neg = Negotiation::new(Conn::Ws(Box::new(ws)));
    neg.websocket = true;
    let features = neg.open(&target.domain).await?;
    Ok((neg, features))
}

/// Logs `user` in: TCP, STARTTLS, SCRAM-SHA-1, bind and initial presence (XMPP), or TLS and
/// the pairing line (relay, where `user` is the pair id).
pub async fn login(target: &Target, user: &str) -> anyhow::Result<Session> {
    login_with(target, user, b"<presence/>").await
}

/// [`login`] with `presence` as the initial presence (XMPP; the relay has none). The presence
/// is the last thing written, so the server sends nothing in answer before this returns: the
/// caller's byte scanner sees every stanza the presence causes.
pub async fn login_with(target: &Target, user: &str, presence: &[u8]) -> anyhow::Result<Session> {
    login_opts(target, user, presence, false).await
}

/// [`login_with`], and with `sm` stream management (XEP-0198) enabled after bind, resumable
/// (`<enable resume='true'/>`, `<enabled/>` expected), before the initial presence: every
/// stanza the server sends afterwards counts in its `h`. The relay ignores `sm`.
pub async fn login_opts(
    target: &Target,
    user: &str,
    presence: &[u8],
    sm: bool,
) -> anyhow::Result<Session> {
    login_from(target, user, presence, sm, None).await
}

/// [`login_opts`] from the local address `source` (the kernel's choice when `None`).
pub async fn login_from(
    target: &Target,
    user: &str,
    presence: &[u8],
    sm: bool,
    source: Option<IpAddr>,
) -> anyhow::Result<Session> {
    match target.protocol {
        Protocol::Relay => {
            let mut io = tls_handshake(target, tcp(target.addr, source).await?).await?;
            io.write_all(format!("PAIR {user}\n").as_bytes()).await?;
            io.flush().await?;
            Ok(Session {
                io: Conn::Tls(Box::new(io)),
                jid: user.to_owned(),
            })
        }
        Protocol::Xmpp | Protocol::WebSocket => {
            login_xmpp(target, user, presence, sm, source).await
        }
    }
}

async fn login_xmpp(
    target: &Target,
    user: &str,
    presence: &[u8],
    sm: bool,
    source: Option<IpAddr>,
) -> anyhow::Result<Session> {
    let (mut neg, features) = if target.protocol == Protocol::WebSocket {
        connect_websocket(target, source).await?
    } else {
        connect_starttls(target, source).await?
    };
    let offers_sha1 = features
        .child("mechanisms", NS_SASL)
        .is_some_and(|m| m.children().any(|c| c.text() == "SCRAM-SHA-1"));
    if !offers_sha1 {
        bail!("server does not offer SCRAM-SHA-1");
    }
    let cached = target.keys.lock().ok().and_then(|k| k.get(user).cloned());
    let mut scram = ScramClient::new(
        ScramHash::Sha1,
        user,
        &target.password,
        ClientChannelBinding::None,
        None,
    )?;
    if let Some(keys) = cached {
        scram = scram.with_keys(keys);
    }
    let auth = format!(
        "<auth xmlns='{NS_SASL}' mechanism='SCRAM-SHA-1'>{}</auth>",
        STANDARD.encode(scram.first_message())
    );
    neg.send(auth.as_bytes()).await?;
    let challenge = neg.stanza().await?;
    if challenge.name() != "challenge" {
        bail!("authentication of {user} failed: <{}>", challenge.name());
    }
    let server_first = STANDARD.decode(challenge.text().trim())?;
    let client_final = scram.handle_challenge(&server_first)?;
    let response = format!(
        "<response xmlns='{NS_SASL}'>{}</response>",
        STANDARD.encode(client_final)
    );
    neg.send(response.as_bytes()).await?;
    let success = neg.stanza().await?;
    if success.name() != "success" {
        bail!("authentication of {user} failed: <{}>", success.name());
    }
    scram.verify_success(&STANDARD.decode(success.text().trim())?)?;
    if let (Some(keys), Ok(mut cache)) = (scram.keys(), target.keys.lock()) {
        cache.entry(user.to_owned()).or_insert_with(|| keys.clone());
    }

    let features = neg.open(&target.domain).await?;
    if !features.has_child("bind", NS_BIND) {
        bail!("server does not offer resource binding");
    }
    neg.send(
        format!("<iq type='set' id='b'><bind xmlns='{NS_BIND}'><resource>b</resource></bind></iq>")
            .as_bytes(),
    )
    .await?;
    let bound = neg.stanza().await?;
    let jid = bound
        .child("bind", NS_BIND)
        .and_then(|b| b.children().find(|c| c.name() == "jid"))
        .map(Element::text)
        .filter(|_| bound.attr("type") == Some("result"))
        .with_context(|| format!("binding a resource for {user} failed"))?;
    // RFC 3921 session establishment, only where a server still requires it.
    if features
        .child("session", NS_SESSION)
        .is_some_and(|s| !s.children().any(|c| c.name() == "optional"))
    {
        neg.send(format!("<iq type='set' id='s'><session xmlns='{NS_SESSION}'/></iq>").as_bytes())
            .await?;
        neg.stanza().await?;
    }
    if sm {
        if !features.has_child("sm", NS_SM) {
            bail!("server does not offer stream management ({NS_SM})");
        }
        neg.send(format!("<enable xmlns='{NS_SM}' resume='true'/>").as_bytes())
            .await?;
        // Stanzas routed to the new resource before the server handled `<enable/>` (messages
        // given back by an earlier session of the account) come first and count in no `h`.
        let mut enabled = neg.stanza().await?;
        while matches!(enabled.name(), "message" | "presence" | "iq") {
            enabled = neg.stanza().await?;
        }
        if enabled.name() != "enabled" {
            bail!(
                "enabling stream management for {user} failed: <{}>",
                enabled.name()
            );
        }
    }
    neg.send(presence).await?;
    Ok(Session { io: neg.io, jid })
}

/// Creates `user` by in-band registration (XEP-0077) after STARTTLS. An account that already
/// exists counts as success.
pub async fn register(target: &Target, user: &str) -> anyhow::Result<()> {
    let (mut neg, _) = connect_starttls(target, None).await?;
    let iq = format!(
        "<iq type='set' id='r'><query xmlns='jabber:iq:register'><username>{user}</username>\
         <password>{}</password></query></iq>",
        target.password
    );
    neg.send(iq.as_bytes()).await?;
    let reply = neg.stanza().await?;
    let conflict = reply
        .child("error", "jabber:client")
        .is_some_and(|e| e.children().any(|c| c.name() == "conflict"));
    if reply.attr("type") != Some("result") && !conflict {
        bail!("registering {user} failed");
    }
    let _ = neg.send(b"</stream:stream>").await;
    Ok(())
}
