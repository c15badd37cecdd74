//! A WebSocket XMPP client for the end-to-end tests (RFC 7395), on tokio-tungstenite: an
//! implementation of RFC 6455 independent of the server's. Every message the server sends is
//! parsed as a document of its own, with no namespace inherited from anywhere, so a message
//! that does not declare its namespaces (RFC 7395 "XMPP Framing") fails the test.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::{SinkExt as _, StreamExt as _};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use xmppd_stream::sasl::{ClientChannelBinding, ScramClient, ScramHash};
use xmppd_testkit::TestServer;
use xmppd_xml::{Element, Limits, Reader, StreamEvent};

pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const STREAM: &str = "http://etherx.jabber.org/streams";
pub const STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";

/// The TLS connection a WebSocket runs on.
pub type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// What came from the server.
#[derive(Debug)]
pub enum Received {
    /// A text message, parsed.
    Element(Element),
    /// A close frame and its code.
    Closed(Option<u16>),
}

/// A TLS connection to `addr` for `sni`, trusting the test CA.
pub async fn tls(
    server: &TestServer,
    addr: SocketAddr,
    sni: &str,
) -> anyhow::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned())?;
    Ok(TlsConnector::from(server.tls_client_config())
        .connect(name, tcp)
        .await?)
}

/// The WebSocket handshake over `io` for `url`, offering `protocol` (none when `None`).
pub async fn handshake<S>(
    io: S,
    url: &str,
    protocol: Option<&str>,
) -> Result<WebSocketStream<S>, WsError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut request = url.into_client_request()?;
    if let Some(p) = protocol {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(p).map_err(|e| WsError::HttpFormat(e.into()))?,
        );
    }
    let (ws, _response) = tokio_tungstenite::client_async(request, io).await?;
    Ok(ws)
}

/// A wss connection to the server's HTTPS listener for its (first) domain with the `xmpp`
/// subprotocol.
pub async fn connect(server: &TestServer, addr: SocketAddr) -> anyhow::Result<Wss> {
    let domain = server.domain();
    let io = tls(server, addr, domain).await?;
    let url = format!("wss://{domain}:{}/xmpp-websocket", addr.port());
    handshake(io, &url, Some("xmpp"))
        .await
        .context("WebSocket handshake")
}

/// Parses one message as a standalone document.
pub fn parse_message(text: &str) -> anyhow::Result<Element> {
    let mut reader = Reader::new(Limits::default());
    reader.feed(b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'>");
    reader.feed(text.as_bytes());
    match reader.next_event() {
        Ok(Some(StreamEvent::Open(_))) => {}
        other => bail!("wrapper: {other:?}"),
    }
    match reader.next_event() {
        Ok(Some(StreamEvent::Stanza(el))) => {
            if reader.buffered() > 0 {
                bail!("more than one element in a message: {text}");
            }
            Ok(el)
        }
        other => bail!("not one complete element: {text} ({other:?})"),
    }
}

/// Sends one text message.
pub async fn send(ws: &mut Wss, xml: &str) -> anyhow::Result<()> {
    ws.send(Message::text(xml)).await?;
    Ok(())
}

/// The next message or close, within a few seconds.
pub async fn recv(ws: &mut Wss) -> anyhow::Result<Received> {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .context("nothing from the server")?;
        match next {
            Some(Ok(Message::Text(text))) => return Ok(Received::Element(parse_message(&text)?)),
            Some(Ok(Message::Close(frame))) => {
                return Ok(Received::Closed(
                    frame.map(|f: CloseFrame| u16::from(f.code)),
                ));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(other)) => bail!("unexpected message {other:?}"),
            Some(Err(e)) => bail!("WebSocket error: {e}"),
            None => bail!("connection ended"),
        }
    }
}

/// The next element (a close is an error).
pub async fn recv_el(ws: &mut Wss) -> anyhow::Result<Element> {
    match recv(ws).await? {
        Received::Element(el) => Ok(el),
        Received::Closed(code) => bail!("closed with {code:?}"),
    }
}

/// The next element that `pred` accepts, skipping others.
pub async fn expect(
    ws: &mut Wss,
    what: &str,
    pred: impl Fn(&Element) -> bool,
) -> anyhow::Result<Element> {
    for _ in 0..50 {
        let el = recv_el(ws)
            .await
            .with_context(|| format!("waiting for {what}"))?;
        if pred(&el) {
            return Ok(el);
        }
    }
    bail!("no {what}")
}

/// Sends `<open/>` and takes the server's `<open/>` and features.
pub async fn open(ws: &mut Wss, domain: &str) -> anyhow::Result<(Element, Element)> {
    send(
        ws,
        &format!("<open xmlns='{FRAMING}' to='{domain}' version='1.0'/>"),
    )
    .await?;
    let open = recv_el(ws).await?;
    if !open.is("open", FRAMING) {
        bail!("expected <open/>, got {open}");
    }
    let features = recv_el(ws).await?;
    if !features.is("features", STREAM) {
        bail!("expected features, got {features}");
    }
    Ok((open, features))
}

/// SCRAM over the WebSocket (`-PLUS` binds to this TLS connection), then the new `<open/>`.
pub async fn authenticate(
    ws: &mut Wss,
    mechanism: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<()> {
    let hash = if mechanism.starts_with("SCRAM-SHA-256") {
        ScramHash::Sha256
    } else {
        ScramHash::Sha1
    };
    let cb = if mechanism.ends_with("-PLUS") {
        let conn = ws.get_ref().get_ref().1;
        let exporter = conn.export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)?;
        ClientChannelBinding::TlsExporter(exporter.to_vec())
    } else {
        ClientChannelBinding::None
    };
    let mut scram =
        ScramClient::new(hash, user, password, cb, None).map_err(|e| anyhow!("{e:?}"))?;
    let first = BASE64.encode(scram.first_message());
    send(
        ws,
        &format!("<auth xmlns='{SASL}' mechanism='{mechanism}'>{first}</auth>"),
    )
    .await?;
    let challenge = recv_el(ws).await?;
    if !challenge.is("challenge", SASL) {
        bail!("expected a challenge, got {challenge}");
    }
    let last = scram
        .handle_challenge(&BASE64.decode(challenge.text().trim())?)
        .map_err(|e| anyhow!("{e:?}"))?;
    send(
        ws,
        &format!(
            "<response xmlns='{SASL}'>{}</response>",
            BASE64.encode(last)
        ),
    )
    .await?;
    let success = recv_el(ws).await?;
    if !success.is("success", SASL) {
        bail!("expected success, got {success}");
    }
    scram
        .verify_success(&BASE64.decode(success.text().trim())?)
        .map_err(|e| anyhow!("server signature: {e:?}"))?;
    Ok(())
}

/// Logs in over WebSocket and binds `resource`; the features after authentication come back.
pub async fn login(
    server: &TestServer,
    addr: SocketAddr,
    user: &str,
    password: &str,
    resource: &str,
) -> anyhow::Result<(Wss, Element)> {
    let mut ws = connect(server, addr).await?;
    open(&mut ws, server.domain()).await?;
    authenticate(&mut ws, "SCRAM-SHA-256", user, password).await?;
    let (_, features) = open(&mut ws, server.domain()).await?;
    bind(&mut ws, resource).await?;
    Ok((ws, features))
}

/// Binds `resource`.
pub async fn bind(ws: &mut Wss, resource: &str) -> anyhow::Result<()> {
    send(
        ws,
        &format!("<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"),
    )
    .await?;
    let result = recv_el(ws).await?;
    if !(result.is("iq", "jabber:client") && result.attr("type") == Some("result")) {
        bail!("bind failed: {result}");
    }
    Ok(())
}

/// The stream error condition and then the `<close/>` and close frame that must follow it
/// (RFC 7395 "Stream Errors").
pub async fn expect_stream_error(ws: &mut Wss) -> anyhow::Result<String> {
    let error = expect(ws, "a stream error", |e| e.is("error", STREAM)).await?;
    let condition = error
        .children()
        .find(|c| c.ns() == STREAMS && c.name() != "text")
        .map(|c| c.name().to_owned())
        .ok_or_else(|| anyhow!("no condition in {error}"))?;
    let close = recv_el(ws).await?;
    if !close.is("close", FRAMING) {
        bail!("expected <close/> after the error, got {close}");
    }
    match recv(ws).await? {
        Received::Closed(_) => Ok(condition),
        other => bail!("expected a close frame, got {other:?}"),
    }
}

/// A masked client frame (for frames tungstenite would not send).
pub fn raw_frame(fin: bool, opcode: u8, payload: &[u8], announced: Option<u64>) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    let len = announced.unwrap_or(payload.len() as u64);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// A plain HTTP/1.1 request over `io` with `Connection: close`; status, headers (lowercase
/// names) and body.
pub async fn http_request<S>(
    mut io: S,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<(u16, Vec<(String, String)>, String)>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    io.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), io.read_to_end(&mut response)).await;
    match read {
        Ok(Ok(_)) => {}
        // rustls reports a peer that closed without close_notify; what was read is complete.
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => bail!("no response to {method} {path}"),
    }
    let (status, headers, body) = parse_response(&response)?;
    Ok((status, headers, String::from_utf8(body)?))
}

/// An HTTP response: status, headers (names in lowercase) and body bytes.
pub type Response = (u16, Vec<(String, String)>, Vec<u8>);

/// A whole HTTP/1.1 response.
pub fn parse_response(response: &[u8]) -> anyhow::Result<Response> {
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no head: {}", String::from_utf8_lossy(response)))?;
    let head = String::from_utf8_lossy(&response[..split]);
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line: {head}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, headers, response[split + 4..].to_vec()))
}

/// A header of a response.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Turns WebSocket off for `host` (`[[http.host]] websocket = false`).
pub fn without_websocket(config: &mut xmppd::Config, host: &str) {
    let web = xmppd_http::HostWeb {
        websocket: false,
        ..Default::default()
    };
    config.http.hosts.insert(host.to_owned(), web);
}

/// The TLS client configuration of the test CA (re-exported for one-off connections).
pub fn tls_config(server: &TestServer) -> Arc<rustls::ClientConfig> {
    server.tls_client_config()
}
