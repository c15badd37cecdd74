//! A BOSH client for the end-to-end tests (XEP-0124, XEP-0206): each request is an HTTP/1.1
//! POST on a connection of its own (TLS with the test CA, or plain), its answer parsed as a
//! standalone document, so an answer that does not declare its namespaces fails the test.
//! The session creation request is the one Strophe.js (Converse.js's library) sends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use xmppd_stream::sasl::{ClientChannelBinding, ScramClient, ScramHash};
use xmppd_testkit::TestServer;
use xmppd_xml::Element;

use super::ws::{parse_message, parse_response};

pub const HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
pub const XBOSH: &str = "urn:xmpp:xbosh";
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub const STREAM: &str = "http://etherx.jabber.org/streams";

/// Where BOSH requests go.
#[derive(Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// TLS with the test CA (`None`: plain HTTP).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub path: String,
}

/// An HTTP answer: status, headers (lowercase names), body.
pub type Answer = (u16, Vec<(String, String)>, Vec<u8>);

impl Endpoint {
    /// The HTTPS (`tls`) or plain listener of the server, at `/http-bind`.
    pub fn of(server: &TestServer, tls: bool) -> anyhow::Result<Self> {
        let kind = if tls {
            xmppd_http::HttpKind::Tls
        } else {
            xmppd_http::HttpKind::Plain
        };
        let addr = server
            .server
            .http_addr(kind)
            .ok_or_else(|| anyhow!("no {kind:?} listener"))?;
        Ok(Endpoint {
            addr,
            tls: tls.then(|| server.tls_client_config()),
            path: "/http-bind".to_owned(),
        })
    }

    /// One HTTP request with `body`; the answer within `within`.
    pub async fn http(
        &self,
        method: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        within: Duration,
    ) -> anyhow::Result<Answer> {
        let mut request = format!(
            "{method} {} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.path,
            self.addr.port(),
            body.len()
        );
        for (k, v) in headers {
            request.push_str(&format!("{k}: {v}\r\n"));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        let tcp = TcpStream::connect(self.addr).await?;
        let mut response = Vec::new();
        let exchange = async {
            match &self.tls {
                Some(config) => {
                    let name = ServerName::try_from("localhost")?;
                    let mut io = TlsConnector::from(config.clone())
                        .connect(name, tcp)
                        .await?;
                    io.write_all(&bytes).await?;
                    read_all(&mut io, &mut response).await
                }
                None => {
                    let mut io = tcp;
                    io.write_all(&bytes).await?;
                    read_all(&mut io, &mut response).await
                }
            }
        };
        tokio::time::timeout(within, exchange)
            .await
            .with_context(|| format!("no answer to {method} within {within:?}"))??;
        parse_response(&response)
    }

    /// POSTs a `<body/>` and parses the answer, which must be `200 OK` with a text/xml body.
    pub async fn post(&self, body: &str, within: Duration) -> anyhow::Result<Element> {
        let (status, headers, bytes) = self
            .http(
                "POST",
                &[("Content-Type", "text/xml; charset=utf-8")],
                body.as_bytes(),
                within,
            )
            .await?;
        let text = String::from_utf8(bytes)?;
        if status != 200 {
            bail!("status {status}: {text}");
        }
        let content_type = header(&headers, "content-type");
        if content_type != Some("text/xml; charset=utf-8") {
            bail!("Content-Type {content_type:?}");
        }
        let el = parse_message(&text)?;
        if !el.is("body", HTTPBIND) {
            bail!("not a body: {text}");
        }
        Ok(el)
    }
}

async fn read_all<S: tokio::io::AsyncRead + Unpin>(
    io: &mut S,
    out: &mut Vec<u8>,
) -> anyhow::Result<()> {
    match io.read_to_end(out).await {
        Ok(_) => Ok(()),
        // rustls reports a peer that closed without close_notify; what was read is complete.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A header's value.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A terminating answer's condition (`Some("")` for a plain `type='terminate'`).
pub fn terminated(body: &Element) -> Option<String> {
    (body.attr("type") == Some("terminate"))
        .then(|| body.attr("condition").unwrap_or_default().to_owned())
}

/// A session, as a client keeps it.
#[derive(Clone)]
pub struct Session {
    pub endpoint: Endpoint,
    pub sid: String,
    /// The last rid used.
    pub rid: u64,
    /// How long a request may be held (the `wait` granted, plus a margin).
    pub within: Duration,
}

impl Session {
    /// Creates a session on `to` as Strophe.js does, asking for `wait` seconds; the creation
    /// answer comes back too.
    pub async fn create(
        endpoint: &Endpoint,
        to: &str,
        wait: u64,
    ) -> anyhow::Result<(Self, Element)> {
        let rid = 1_000_000 + u64::from(rand_u16());
        let answer = endpoint
            .post(&creation_body(rid, to, wait), Duration::from_secs(10))
            .await?;
        let sid = answer
            .attr("sid")
            .ok_or_else(|| anyhow!("no sid in {answer}"))?
            .to_owned();
        let session = Session {
            endpoint: endpoint.clone(),
            sid,
            rid,
            within: Duration::from_secs(wait + 10),
        };
        Ok((session, answer))
    }

    /// The body of request `rid` with `attrs` (written as is) and `payload`.
    pub fn body(&self, rid: u64, attrs: &str, payload: &str) -> String {
        format!(
            "<body rid='{rid}' sid='{}' xmlns='{HTTPBIND}' xmlns:xmpp='{XBOSH}' {attrs}>{payload}</body>",
            self.sid
        )
    }

    /// The next request: the next rid, `attrs` and `payload`; its answer.
    pub async fn send(&mut self, attrs: &str, payload: &str) -> anyhow::Result<Element> {
        self.rid += 1;
        let body = self.body(self.rid, attrs, payload);
        self.endpoint.post(&body, self.within).await
    }

    /// Sends `payload` and polls until an answer carries something; the elements carried.
    pub async fn exchange(&mut self, payload: &str) -> anyhow::Result<Vec<Element>> {
        let mut answer = self.send("", payload).await?;
        for _ in 0..5 {
            if let Some(c) = terminated(&answer) {
                bail!("terminated: {c:?}");
            }
            if answer.children().next().is_some() {
                return Ok(answer.children().cloned().collect());
            }
            answer = self.send("", "").await?;
        }
        bail!("nothing came back")
    }

    /// Polls until an element `pred` accepts arrives (at most `polls` requests).
    pub async fn expect(
        &mut self,
        what: &str,
        polls: usize,
        pred: impl Fn(&Element) -> bool,
    ) -> anyhow::Result<Element> {
        for _ in 0..polls {
            let answer = self.send("", "").await?;
            if let Some(c) = terminated(&answer) {
                bail!("terminated ({c:?}) waiting for {what}");
            }
            if let Some(el) = answer.children().find(|c| pred(c)) {
                return Ok(el.clone());
            }
        }
        bail!("no {what}")
    }
}

/// The session creation request of Strophe.js 1.6 (XEP-0206 §4).
pub fn creation_body(rid: u64, to: &str, wait: u64) -> String {
    format!(
        "<body rid='{rid}' xmlns='{HTTPBIND}' to='{to}' xml:lang='en' wait='{wait}' hold='1' \
         content='text/xml; charset=utf-8' ver='1.6' xmpp:version='1.0' xmlns:xmpp='{XBOSH}'/>"
    )
}

fn rand_u16() -> u16 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    (nanos % 60_000) as u16
}

/// The SASL mechanisms in an answer's features.
pub fn mechanisms(answer: &Element) -> Vec<String> {
    answer
        .child("features", STREAM)
        .and_then(|f| f.child("mechanisms", SASL))
        .map(|m| m.children().map(|c| c.text()).collect())
        .unwrap_or_default()
}

/// Creates a session on the server's domain, logs in with SCRAM-SHA-256, restarts
/// (`xmpp:restart`), binds `resource`; the features after the restart come back too.
pub async fn login(
    endpoint: &Endpoint,
    domain: &str,
    user: &str,
    password: &str,
    resource: &str,
) -> anyhow::Result<(Session, Element)> {
    let (mut s, features) = authenticated(endpoint, domain, user, password).await?;
    let got = s
        .exchange(&format!(
            "<iq xmlns='jabber:client' type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{resource}</resource></bind></iq>"
        ))
        .await?;
    if !got
        .iter()
        .any(|e| e.is("iq", "jabber:client") && e.attr("type") == Some("result"))
    {
        bail!("bind failed: {got:?}");
    }
    Ok((s, features))
}

/// Creates a session on `domain`, logs in with SCRAM-SHA-256 and restarts the stream
/// (`xmpp:restart`, XEP-0206 §5); the features after the restart come back too.
pub async fn authenticated(
    endpoint: &Endpoint,
    domain: &str,
    user: &str,
    password: &str,
) -> anyhow::Result<(Session, Element)> {
    let (mut s, created) = Session::create(endpoint, domain, 5).await?;
    if !mechanisms(&created).iter().any(|m| m == "SCRAM-SHA-256") {
        bail!("no SCRAM-SHA-256 in {created}");
    }
    let mut scram = ScramClient::new(
        ScramHash::Sha256,
        user,
        password,
        ClientChannelBinding::None,
        None,
    )
    .map_err(|e| anyhow!("{e:?}"))?;
    let first = BASE64.encode(scram.first_message());
    let got = s
        .exchange(&format!(
            "<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{first}</auth>"
        ))
        .await?;
    let challenge = got
        .iter()
        .find(|e| e.is("challenge", SASL))
        .ok_or_else(|| anyhow!("no challenge: {got:?}"))?;
    let last = scram
        .handle_challenge(&BASE64.decode(challenge.text().trim())?)
        .map_err(|e| anyhow!("{e:?}"))?;
    let got = s
        .exchange(&format!(
            "<response xmlns='{SASL}'>{}</response>",
            BASE64.encode(last)
        ))
        .await?;
    let success = got
        .iter()
        .find(|e| e.is("success", SASL))
        .ok_or_else(|| anyhow!("no success: {got:?}"))?;
    scram
        .verify_success(&BASE64.decode(success.text().trim())?)
        .map_err(|e| anyhow!("server signature: {e:?}"))?;
    let restarted = s
        .send(
            &format!("to='{domain}' xml:lang='en' xmpp:restart='true'"),
            "",
        )
        .await?;
    let features = restarted
        .child("features", STREAM)
        .cloned()
        .ok_or_else(|| anyhow!("no features after the restart: {restarted}"))?;
    Ok((s, features))
}
