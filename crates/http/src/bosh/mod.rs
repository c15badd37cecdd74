//! XMPP over BOSH (XEP-0124, XEP-0206) at `POST [http] bosh_path` (`/http-bind`).
//!
//! The HTTP side is here: a request's body is read (at most `bosh_max_body_bytes`, else 413)
//! and parsed ([`body`]); without a `sid` it creates a session (on a host that has BOSH,
//! within the per-address session limit), with one it is handed to that session's task
//! ([`session`]), whose answer becomes the HTTP response. The protocol's core — the `rid`
//! window, held requests, retransmissions — is the sans-IO [`window`]; the stream is the
//! same [`ClientStream`] as TCP and WebSocket clients have.
//!
//! Every answer is `200 OK` with a `<body/>`: XEP-0124 §17.1 keeps HTTP error codes for
//! clients that do not understand the terminal conditions, which the body then carries
//! (`bad-request`, `item-not-found`, `host-unknown`, `policy-violation`). The exceptions are
//! the limits that apply before a body is read: 413 for a body over the limit (its session,
//! if its start names one, ends with `policy-violation`), 429 for a request rate or session
//! count over an address's budget, 403 for plain HTTP where TLS is required.
//!
//! Responses carry the CORS headers of the configured origin, and `OPTIONS` answers the
//! preflight, so that a web client served from another origin can use the endpoint.

pub mod body;
mod session;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use dashmap::DashMap;
use futures::StreamExt as _;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument as _, debug, info_span};
use xmppd_core::ClientStream;
use xmppd_core::metrics::ConnectionKind;
use xmppd_stream::C2sResponder;
use xmppd_xml::Limits;

use crate::per_ip::PerIp;
use crate::proxy::ClientAddr;
use crate::{ConnInfo, HttpContext};
use body::Request;
use session::{Incoming, Task, Terms};

/// The version of XEP-0124 implemented.
const VERSION: (u32, u32) = (1, 11);

/// Content type of the answers when the client names none (XEP-0124 §7.1 `content`).
const CONTENT_TYPE: &str = "text/xml; charset=utf-8";

/// A running session, as the HTTP handler reaches it.
#[derive(Debug)]
struct Handle {
    tx: mpsc::Sender<Incoming>,
    /// The `Content-Type` of every answer (the client's `content`, §7.1).
    content_type: HeaderValue,
    /// Ends the session with `policy-violation` (a body over the limit).
    kill: CancellationToken,
}

/// The BOSH sessions of every HTTP listener.
#[derive(Debug)]
pub struct Sessions {
    by_sid: DashMap<String, Handle>,
    /// Sessions per client address.
    per_ip: Arc<PerIp>,
}

impl Sessions {
    /// No sessions yet; at most `max_sessions_per_ip` sessions per client address.
    pub(crate) fn new(max_sessions_per_ip: usize) -> Self {
        Sessions {
            by_sid: DashMap::new(),
            per_ip: PerIp::new(max_sessions_per_ip, u32::MAX, u32::MAX),
        }
    }

    /// Sessions now.
    pub fn len(&self) -> usize {
        self.by_sid.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_sid.is_empty()
    }
}

/// A new session id: 160 random bits (XEP-0124 §7.2 and §19.3: unpredictable).
fn new_sid() -> Option<String> {
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn cors(ctx: &HttpContext, response: &mut Response) {
    crate::routes::allow_origin(ctx, response.headers_mut(), "POST, OPTIONS", "Content-Type");
}

fn xml(ctx: &HttpContext, status: StatusCode, content_type: HeaderValue, body: Bytes) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    cors(ctx, &mut response);
    response
}

fn ok(ctx: &HttpContext, body: Bytes) -> Response {
    xml(
        ctx,
        StatusCode::OK,
        HeaderValue::from_static(CONTENT_TYPE),
        body,
    )
}

fn status(ctx: &HttpContext, status: StatusCode, text: &'static str) -> Response {
    debug!(%status, text, "BOSH request refused");
    let mut response = (status, format!("{text}\n")).into_response();
    cors(ctx, &mut response);
    response
}

/// The endpoint: `POST` a body, or the CORS preflight.
pub(crate) async fn handle(State(ctx): State<Arc<HttpContext>>, req: HttpRequest) -> Response {
    if req.method() == Method::OPTIONS {
        let mut response = StatusCode::NO_CONTENT.into_response();
        cors(&ctx, &mut response);
        response.headers_mut().insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        return response;
    }
    if req.method() != Method::POST {
        let mut response = status(&ctx, StatusCode::METHOD_NOT_ALLOWED, "POST a <body/> here");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
        return response;
    }
    let (Some(conn), Some(client)) = (
        req.extensions().get::<Arc<ConnInfo>>().cloned(),
        req.extensions().get::<ClientAddr>().cloned(),
    ) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    drop(conn);
    if ctx.c2s.settings().policy.require_tls && !client.secure {
        return status(
            &ctx,
            StatusCode::FORBIDDEN,
            "this server requires TLS: use https://",
        );
    }
    let limits = body_limits(&ctx);
    let bytes = match read_body(req.into_body(), ctx.settings.bosh_max_body_bytes).await {
        Ok(bytes) => bytes,
        Err(Some(prefix)) => {
            // §17.1 413; a session the body names ends (§17.2 policy-violation).
            if let Some(sid) = body::sid_of_prefix(&prefix, limits)
                && let Some(handle) = ctx.bosh.by_sid.get(&sid)
            {
                handle.kill.cancel();
            }
            return status(&ctx, StatusCode::PAYLOAD_TOO_LARGE, "body too large");
        }
        Err(None) => return status(&ctx, StatusCode::BAD_REQUEST, "the body did not arrive"),
    };
    let req = match body::parse(&bytes, limits) {
        Ok(req) => req,
        Err(e) => {
            debug!(error = %e, "bad BOSH body");
            return ok(&ctx, body::terminate("bad-request"));
        }
    };
    match req.sid.clone() {
        None => create(ctx, req, client).await,
        Some(sid) => forward(ctx, &sid, req, client).await,
    }
}

/// The reader limits of a body: the whole body is one element, one level deeper than a
/// stanza.
fn body_limits(ctx: &HttpContext) -> Limits {
    let settings = ctx.c2s.settings();
    let l = &settings.limits;
    Limits {
        max_stanza_bytes: usize::try_from(ctx.settings.bosh_max_body_bytes).unwrap_or(usize::MAX),
        max_depth: l.max_depth + 1,
        max_attrs: l.max_attrs,
    }
}

/// The body, at most `limit` bytes; over it, `Err(Some(first bytes))`; a broken upload
/// `Err(None)`.
async fn read_body(body: Body, limit: u64) -> Result<Bytes, Option<Bytes>> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| None)?;
        if buf.len() + chunk.len() > limit {
            let room = limit.saturating_sub(buf.len()).min(chunk.len());
            buf.extend_from_slice(chunk.get(..room).unwrap_or_default());
            return Err(Some(buf.freeze()));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// A request of an existing session: its answer, when the session gives one.
async fn forward(ctx: Arc<HttpContext>, sid: &str, req: Request, client: ClientAddr) -> Response {
    let Some((tx, content_type)) = ctx
        .bosh
        .by_sid
        .get(sid)
        .map(|h| (h.tx.clone(), h.content_type.clone()))
    else {
        debug!("unknown sid");
        return ok(&ctx, body::terminate("item-not-found"));
    };
    let (reply, answer) = oneshot::channel();
    let incoming = Incoming {
        req,
        client_ip: client.ip,
        reply,
    };
    match tx.try_send(incoming) {
        Ok(()) => {}
        // The session is ending.
        Err(mpsc::error::TrySendError::Closed(_)) => {
            return ok(&ctx, body::terminate("item-not-found"));
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            // More requests at once than the session allows (§11 overactivity).
            if let Some(handle) = ctx.bosh.by_sid.get(sid) {
                handle.kill.cancel();
            }
            return ok(&ctx, body::terminate("policy-violation"));
        }
    }
    let answer = answer
        .await
        .unwrap_or_else(|_| body::terminate("item-not-found"));
    xml(&ctx, StatusCode::OK, content_type, answer)
}

/// What the server offers a new session, within what the client asked (§7.1).
fn terms(ctx: &HttpContext, req: &Request) -> Result<Terms, body::BodyError> {
    let s = &ctx.settings;
    let wait = req
        .number("wait")?
        .map_or(s.bosh_max_wait, Duration::from_secs)
        .min(s.bosh_max_wait);
    let hold = req
        .number("hold")?
        .map_or(1, |h| u32::try_from(h).unwrap_or(u32::MAX))
        .min(s.bosh_max_hold);
    Ok(Terms {
        wait,
        hold,
        requests: hold + 1,
        inactivity: s.bosh_inactivity,
        max_pause: s.bosh_max_pause,
        polling: s.bosh_polling,
        acks: req.attrs.attr("ack") == Some("1"),
    })
}

/// `ver`: the client's, when lower than ours (§7.2).
fn version(req: &Request) -> String {
    let ours = VERSION;
    let theirs = req.attrs.attr("ver").and_then(|v| {
        let (major, minor) = v.trim().split_once('.')?;
        Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?))
    });
    let (major, minor) = theirs.map_or(ours, |t| t.min(ours));
    format!("{major}.{minor}")
}

/// The `content` the client asked for (§7.1), when it is a plausible media type.
fn content_type(req: &Request) -> HeaderValue {
    req.attrs
        .attr("content")
        .filter(|c| c.len() <= 100 && c.contains('/') && c.bytes().all(|b| (32..127).contains(&b)))
        .and_then(|c| HeaderValue::from_str(c).ok())
        .unwrap_or_else(|| HeaderValue::from_static(CONTENT_TYPE))
}

/// A session creation request.
async fn create(ctx: Arc<HttpContext>, req: Request, client: ClientAddr) -> Response {
    let host = req.attrs.attr("to").unwrap_or_default().to_owned();
    let policy = ctx.bosh_policy();
    if !policy.hosts.contains(host.as_str()) {
        debug!(%host, "BOSH session for a host without BOSH");
        return ok(&ctx, body::terminate("host-unknown"));
    }
    let terms = match terms(&ctx, &req) {
        Ok(terms) => terms,
        Err(_) => return ok(&ctx, body::terminate("bad-request")),
    };
    let Some(guard) = ctx.bosh.per_ip.connect(client.ip) else {
        debug!(client = %client.ip, "too many BOSH sessions from this address");
        return status(
            &ctx,
            StatusCode::TOO_MANY_REQUESTS,
            "too many sessions from this address",
        );
    };
    let Some(sid) = new_sid() else {
        return ok(&ctx, body::terminate("internal-server-error"));
    };
    let conn_id = ctx.c2s.conn_id();
    let span = info_span!("bosh", conn = conn_id, client = %client.ip, jid = tracing::field::Empty);
    let responder = C2sResponder::bosh(policy, client.secure);
    let stream = ClientStream::new(
        ctx.c2s.router.clone(),
        responder,
        conn_id,
        ctx.c2s.settings().limits.session_queue,
    );
    let secs = |d: Duration| d.as_secs().to_string();
    let mut attrs = vec![
        ("sid", sid.clone()),
        ("wait", secs(terms.wait)),
        ("requests", terms.requests.to_string()),
        ("hold", terms.hold.to_string()),
        ("inactivity", secs(terms.inactivity)),
        ("polling", secs(terms.polling)),
        ("maxpause", secs(terms.max_pause)),
        ("ver", version(&req)),
        ("from", host.clone()),
        ("xmpp:version", "1.0".to_owned()),
        ("xmpp:restartlogic", "true".to_owned()),
    ];
    if terms.acks {
        // §9.1: a session whose answers carry `ack` says so in its creation response.
        attrs.push(("ack", req.rid.to_string()));
    }
    let kill = CancellationToken::new();
    let created = Task::create(
        ctx.clone(),
        stream,
        terms,
        &req,
        &attrs,
        client.ip,
        kill.clone(),
    )
    .instrument(span.clone())
    .await;
    let (task, answer) = match created {
        Ok(created) => created,
        Err(answer) => return ok(&ctx, answer),
    };
    let content_type = content_type(&req);
    // At most `requests` open at once, and a pause or terminate beyond them (§11).
    let capacity = usize::try_from(terms.requests).unwrap_or(1) + 1;
    let (tx, rx) = mpsc::channel(capacity);
    ctx.bosh.by_sid.insert(
        sid.clone(),
        Handle {
            tx,
            content_type: content_type.clone(),
            kill,
        },
    );
    tracing::info!(parent: &span, "BOSH session created");
    let ctx2 = ctx.clone();
    ctx.tracker.spawn(
        async move {
            let _connection = ctx2.c2s.router.metrics().connection(ConnectionKind::Bosh);
            task.run(rx).await;
            ctx2.bosh.by_sid.remove(&sid);
            drop(guard);
            tracing::info!("BOSH session ended");
        }
        .instrument(span),
    );
    xml(&ctx, StatusCode::OK, content_type, answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(xml: &str) -> Request {
        body::parse(xml.as_bytes(), Limits::default()).unwrap()
    }

    #[test]
    fn the_lower_version_is_answered() {
        let ns = "xmlns='http://jabber.org/protocol/httpbind'";
        assert_eq!(
            version(&req(&format!("<body rid='1' ver='1.6' {ns}/>"))),
            "1.6"
        );
        assert_eq!(
            version(&req(&format!("<body rid='1' ver='1.20' {ns}/>"))),
            "1.11"
        );
        assert_eq!(
            version(&req(&format!("<body rid='1' ver='2.0' {ns}/>"))),
            "1.11"
        );
        assert_eq!(version(&req(&format!("<body rid='1' {ns}/>"))), "1.11");
    }

    #[test]
    fn the_content_attribute_is_the_content_type() {
        let ns = "xmlns='http://jabber.org/protocol/httpbind'";
        let c = content_type(&req(&format!("<body rid='1' content='text/html' {ns}/>")));
        assert_eq!(c, "text/html");
        let c = content_type(&req(&format!("<body rid='1' content='nonsense' {ns}/>")));
        assert_eq!(c, CONTENT_TYPE);
    }

    #[test]
    fn session_ids_are_long_and_differ() {
        let a = new_sid().unwrap();
        let b = new_sid().unwrap();
        assert_eq!(a.len(), 40);
        assert_ne!(a, b);
    }
}
