//! A plain XMPP client for tests: raw sends, and expectations on what comes back.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jid::FullJid;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use xmppd_stream::sasl::{ClientChannelBinding, ScramClient, ScramHash, plain_initial_response};
use xmppd_xml::{Element, Limits, Reader, StreamEvent};

use crate::EXPECT_TIMEOUT;

const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";

/// The client's transport.
pub enum Conn {
    /// Before STARTTLS.
    Plain(TcpStream),
    /// After the TLS handshake.
    Tls(Box<TlsStream<TcpStream>>),
    /// Transiently, during the upgrade.
    Upgrading,
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Conn::Upgrading => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Conn::Upgrading => Poll::Ready(Err(std::io::ErrorKind::NotConnected.into())),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Conn::Upgrading => Poll::Ready(Ok(())),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Conn::Upgrading => Poll::Ready(Ok(())),
        }
    }
}

/// A test client connection.
pub struct TestClient {
    conn: Conn,
    reader: Reader,
    /// The bound JID, once bound.
    pub jid: Option<FullJid>,
    /// The last stream features received.
    pub features: Option<Element>,
    domain: String,
}

fn client_limits() -> Limits {
    Limits {
        max_stanza_bytes: 1 << 24,
        max_depth: 128,
        max_attrs: 1024,
    }
}

impl TestClient {
    /// Opens a TCP connection.
    pub async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let tcp = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        Self::over(tcp)
    }

    /// Opens a TCP connection from `source` (another loopback address, such as 127.0.0.2,
    /// to be another client address to the server).
    pub async fn connect_from(addr: SocketAddr, source: IpAddr) -> anyhow::Result<Self> {
        let socket = match source {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket
            .bind(SocketAddr::new(source, 0))
            .with_context(|| format!("binding to {source}"))?;
        let tcp = socket
            .connect(addr)
            .await
            .with_context(|| format!("connecting to {addr} from {source}"))?;
        Self::over(tcp)
    }

    fn over(tcp: TcpStream) -> anyhow::Result<Self> {
        tcp.set_nodelay(true)?;
        Ok(TestClient {
            conn: Conn::Plain(tcp),
            reader: Reader::new(client_limits()),
            jid: None,
            features: None,
            domain: String::new(),
        })
    }

    /// Opens a TLS connection right away (XEP-0368 direct TLS).
    pub async fn connect_tls(
        addr: SocketAddr,
        tls: Arc<rustls::ClientConfig>,
        domain: &str,
    ) -> anyhow::Result<Self> {
        let mut client = Self::connect(addr).await?;
        client.upgrade(tls, domain).await?;
        Ok(client)
    }

    /// Runs the TLS handshake on the plain connection (after `<proceed/>`, or for direct TLS)
    /// and starts a fresh XML reader: nothing read before the handshake carries over.
    pub async fn upgrade(
        &mut self,
        tls: Arc<rustls::ClientConfig>,
        domain: &str,
    ) -> anyhow::Result<()> {
        let Conn::Plain(tcp) = std::mem::replace(&mut self.conn, Conn::Upgrading) else {
            bail!("TLS is already established");
        };
        let name = ServerName::try_from(domain.to_owned())?;
        let stream = TlsConnector::from(tls)
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        self.conn = Conn::Tls(Box::new(stream));
        self.reader = Reader::new(client_limits());
        Ok(())
    }

    /// Parses what follows as a new stream (after SASL success, RFC 6120 §6.4.6).
    pub fn restart_stream(&mut self) {
        self.reader.reset();
    }

    /// The raw transport (for tests that misbehave on purpose).
    pub fn conn(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// The DER of the certificate the server presented (its end-entity certificate), once TLS
    /// is up; what a client hashes for `tls-server-end-point` channel binding (RFC 5929).
    pub fn server_certificate(&self) -> Option<Vec<u8>> {
        let Conn::Tls(tls) = &self.conn else {
            return None;
        };
        let certs = tls.get_ref().1.peer_certificates()?;
        certs.first().map(|c| c.as_ref().to_vec())
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.conn.write_all(bytes).await?;
        self.conn.flush().await?;
        Ok(())
    }

    /// Sends XML text.
    pub async fn send(&mut self, xml: &str) -> anyhow::Result<()> {
        self.send_raw(xml.as_bytes()).await
    }

    /// The next stream event, failing after [`EXPECT_TIMEOUT`] or when the connection closes.
    pub async fn next_event(&mut self) -> anyhow::Result<StreamEvent> {
        self.next_event_within(EXPECT_TIMEOUT)
            .await?
            .ok_or_else(|| anyhow!("timed out waiting for data"))
    }

    /// The next stream event, or `None` when nothing arrives within `within`.
    pub async fn next_event_within(
        &mut self,
        within: Duration,
    ) -> anyhow::Result<Option<StreamEvent>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut buf = [0u8; 8192];
        loop {
            if let Some(event) = self
                .reader
                .next_event()
                .map_err(|e| anyhow!("server sent bad XML: {e}"))?
            {
                return Ok(Some(event));
            }
            let read = tokio::time::timeout_at(deadline, self.conn.read(&mut buf)).await;
            match read {
                Err(_) => return Ok(None),
                Ok(Ok(0)) => bail!("the server closed the connection"),
                Ok(Ok(n)) => self.reader.feed(&buf[..n]),
                Ok(Err(e)) => bail!("read failed: {e}"),
            }
        }
    }

    /// The next top-level element.
    pub async fn recv(&mut self) -> anyhow::Result<Element> {
        match self.next_event().await? {
            StreamEvent::Stanza(el) => Ok(el),
            other => bail!("expected a stanza, got {other:?}"),
        }
    }

    /// The next element, which must satisfy `check` (described by `what` in the failure).
    pub async fn expect(
        &mut self,
        what: &str,
        check: impl Fn(&Element) -> bool,
    ) -> anyhow::Result<Element> {
        let el = self
            .recv()
            .await
            .with_context(|| format!("waiting for {what}"))?;
        if !check(&el) {
            bail!("expected {what}, got {el}");
        }
        Ok(el)
    }

    /// Asserts that no element arrives within `within`.
    pub async fn expect_silence(&mut self, within: Duration) -> anyhow::Result<()> {
        match self.next_event_within(within).await? {
            None => Ok(()),
            Some(event) => bail!("expected nothing, got {event:?}"),
        }
    }

    /// Expects a stream error and the end of the stream; returns the condition.
    pub async fn expect_stream_error(&mut self) -> anyhow::Result<String> {
        loop {
            match self.next_event().await {
                Ok(StreamEvent::Stanza(el)) if el.is("error", xmppd_xml::STREAM_NS) => {
                    let condition = el
                        .children()
                        .find(|c| c.ns() == STREAMS && c.name() != "text")
                        .map(|c| c.name().to_owned())
                        .ok_or_else(|| anyhow!("stream error without condition: {el}"))?;
                    match self.next_event().await {
                        Ok(StreamEvent::Close) | Err(_) => return Ok(condition),
                        Ok(other) => {
                            bail!("expected the stream to end after the error, got {other:?}")
                        }
                    }
                }
                // A header may come first when the error is about the header itself.
                Ok(StreamEvent::Open(_)) => continue,
                Ok(other) => bail!("expected a stream error, got {other:?}"),
                Err(e) => bail!("expected a stream error: {e}"),
            }
        }
    }

    /// Like [`TestClient::expect_stream_error`], skipping the stanzas that come first (at most
    /// 10,000).
    pub async fn expect_stream_error_skipping(&mut self) -> anyhow::Result<String> {
        for _ in 0..10_000 {
            match self.next_event().await {
                Ok(StreamEvent::Stanza(el)) if el.is("error", xmppd_xml::STREAM_NS) => {
                    return el
                        .children()
                        .find(|c| c.ns() == STREAMS && c.name() != "text")
                        .map(|c| c.name().to_owned())
                        .ok_or_else(|| anyhow!("stream error without condition: {el}"));
                }
                Ok(StreamEvent::Stanza(_) | StreamEvent::Open(_)) => continue,
                Ok(other) => bail!("expected a stream error, got {other:?}"),
                Err(e) => bail!("expected a stream error: {e}"),
            }
        }
        bail!("no stream error after 10,000 stanzas")
    }

    /// Asserts the server closes the connection (EOF or reset) within the timeout.
    pub async fn expect_closed(&mut self) -> anyhow::Result<()> {
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + EXPECT_TIMEOUT;
        loop {
            match tokio::time::timeout_at(deadline, self.conn.read(&mut buf)).await {
                Err(_) => bail!("the connection is still open"),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(()),
                Ok(Ok(_)) => continue,
            }
        }
    }

    /// Sends a stream header and reads the server's header and features.
    pub async fn open_stream(&mut self, domain: &str) -> anyhow::Result<Element> {
        self.domain = domain.to_owned();
        let header = format!(
            "<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
             xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>"
        );
        self.send(&header).await?;
        match self.next_event().await? {
            StreamEvent::Open(_) => {}
            other => bail!("expected a stream header, got {other:?}"),
        }
        let features = self
            .expect("stream features", |e| {
                e.is("features", xmppd_xml::STREAM_NS)
            })
            .await?;
        self.features = Some(features.clone());
        Ok(features)
    }

    /// The mechanisms in the last features.
    pub fn mechanisms(&self) -> Vec<String> {
        self.features
            .as_ref()
            .and_then(|f| f.child("mechanisms", SASL))
            .map(|m| m.children().map(Element::text).collect())
            .unwrap_or_default()
    }

    /// Negotiates STARTTLS and reopens the stream.
    pub async fn starttls(
        &mut self,
        tls: Arc<rustls::ClientConfig>,
        domain: &str,
    ) -> anyhow::Result<Element> {
        self.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            .await?;
        self.expect("<proceed/>", |e| e.name() == "proceed").await?;
        self.upgrade(tls, domain).await?;
        self.open_stream(domain).await
    }

    fn channel_binding(&self, mechanism: &str) -> anyhow::Result<ClientChannelBinding> {
        if !mechanism.ends_with("-PLUS") {
            return Ok(ClientChannelBinding::None);
        }
        let Conn::Tls(tls) = &self.conn else {
            bail!("-PLUS needs TLS")
        };
        let conn = tls.get_ref().1;
        let exporter = conn.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)?;
        Ok(ClientChannelBinding::TlsExporter(exporter.to_vec()))
    }

    /// SASL with `mechanism` (SCRAM-SHA-1/256[-PLUS] or PLAIN); on success reopens the stream.
    /// A SASL failure is returned as `Err` whose message starts with `sasl failure: <condition>`.
    pub async fn authenticate(
        &mut self,
        mechanism: &str,
        user: &str,
        password: &str,
    ) -> anyhow::Result<()> {
        let cb = self.channel_binding(mechanism)?;
        self.authenticate_with(mechanism, user, password, cb).await
    }

    /// SASL with an explicit channel binding (to test server-end-point or wrong bindings).
    pub async fn authenticate_with(
        &mut self,
        mechanism: &str,
        user: &str,
        password: &str,
        cb: ClientChannelBinding,
    ) -> anyhow::Result<()> {
        if mechanism == "PLAIN" {
            let initial = BASE64.encode(plain_initial_response(None, user, password));
            self.send(&format!(
                "<auth xmlns='{SASL}' mechanism='PLAIN'>{initial}</auth>"
            ))
            .await?;
        } else {
            let hash = if mechanism.starts_with("SCRAM-SHA-256") {
                ScramHash::Sha256
            } else {
                ScramHash::Sha1
            };
            let mut scram =
                ScramClient::new(hash, user, password, cb, None).map_err(|e| anyhow!("{e:?}"))?;
            let first = BASE64.encode(scram.first_message());
            self.send(&format!(
                "<auth xmlns='{SASL}' mechanism='{mechanism}'>{first}</auth>"
            ))
            .await?;
            let challenge = self.recv().await?;
            check_failure(&challenge)?;
            let data = BASE64.decode(challenge.text().trim())?;
            let last = scram
                .handle_challenge(&data)
                .map_err(|e| anyhow!("{e:?}"))?;
            self.send(&format!(
                "<response xmlns='{SASL}'>{}</response>",
                BASE64.encode(last)
            ))
            .await?;
            let success = self.recv().await?;
            check_failure(&success)?;
            let data = BASE64.decode(success.text().trim())?;
            scram
                .verify_success(&data)
                .map_err(|e| anyhow!("server signature: {e:?}"))?;
            return self.reopen_after_success().await;
        }
        let reply = self.recv().await?;
        check_failure(&reply)?;
        self.reopen_after_success().await
    }

    async fn reopen_after_success(&mut self) -> anyhow::Result<()> {
        self.reader.reset();
        let domain = self.domain.clone();
        self.open_stream(&domain).await?;
        Ok(())
    }

    /// Binds a resource (server-generated when `None`).
    pub async fn bind(&mut self, resource: Option<&str>) -> anyhow::Result<FullJid> {
        let inner = resource
            .map(|r| format!("<resource>{r}</resource>"))
            .unwrap_or_default();
        self.send(&format!(
            "<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{inner}</bind></iq>"
        ))
        .await?;
        let result = self
            .expect("bind result", |e| {
                e.name() == "iq" && e.attr("id") == Some("bind1")
            })
            .await?;
        let jid = result
            .child("bind", "urn:ietf:params:xml:ns:xmpp-bind")
            .and_then(|b| b.child("jid", "urn:ietf:params:xml:ns:xmpp-bind"))
            .map(Element::text)
            .ok_or_else(|| anyhow!("bind failed: {result}"))?;
        let jid = FullJid::new(&jid)?;
        self.jid = Some(jid.clone());
        Ok(jid)
    }

    /// Sends initial presence with a priority.
    pub async fn available(&mut self, priority: i8) -> anyhow::Result<()> {
        self.send(&format!(
            "<presence><priority>{priority}</priority></presence>"
        ))
        .await
    }

    /// Closes the stream cleanly and waits for the server's closing tag.
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.send("</stream:stream>").await?;
        loop {
            match self.next_event().await {
                Ok(StreamEvent::Close) | Err(_) => return Ok(()),
                Ok(_) => continue,
            }
        }
    }
}

/// The defined condition of a stanza error (`<error><item-not-found/></error>` gives
/// `item-not-found`), or `None` when `el` carries no `<error/>`.
pub fn stanza_error_condition(el: &Element) -> Option<String> {
    let error = el.child("error", "jabber:client")?;
    error
        .children()
        .find(|c| c.ns() == STANZAS && c.name() != "text")
        .map(|c| c.name().to_owned())
}

fn check_failure(el: &Element) -> anyhow::Result<()> {
    if el.is("failure", SASL) {
        let condition = el
            .children()
            .find(|c| c.name() != "text")
            .map(|c| c.name().to_owned())
            .unwrap_or_default();
        bail!("sasl failure: {condition}");
    }
    Ok(())
}
