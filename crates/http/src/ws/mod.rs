//! XMPP over WebSocket (RFC 7395).
//!
//! The opening handshake (RFC 6455 §4.2) is answered here, in the HTTP router: a WebSocket
//! upgrade with the `xmpp` subprotocol (RFC 7395 "WebSocket Handshake": the server must not accept the
//! connection without it, so a request that does not offer it gets 400 and no upgrade). The
//! upgraded connection then runs in [`conn`], which drives the same transport-independent
//! client session as TCP: same negotiation (SASL, bind, stream management), same XML reader
//! and limits, the framing of [`framing`] and the frames of [`frame`] in between.

pub mod conn;
pub mod frame;
pub mod framing;
mod io;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha1::{Digest as _, Sha1};
use tracing::{Instrument as _, debug, info_span};

use crate::proxy::ClientAddr;
use crate::{ConnInfo, HttpContext};

/// The subprotocol of RFC 7395 "WebSocket Handshake".
pub const SUBPROTOCOL: &str = "xmpp";

/// RFC 6455 §1.3: the GUID hashed with the client's key.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

fn refuse(status: StatusCode, why: &'static str) -> Response {
    debug!(%status, why, "WebSocket upgrade refused");
    (status, format!("{why}\n")).into_response()
}

fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(ACCEPT_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Answers a WebSocket opening handshake and starts the session on the upgraded connection.
pub(crate) async fn upgrade(State(ctx): State<Arc<HttpContext>>, mut req: Request) -> Response {
    let headers = req.headers();
    if !has_token(headers, header::CONNECTION, "upgrade")
        || !has_token(headers, header::UPGRADE, "websocket")
    {
        return refuse(StatusCode::BAD_REQUEST, "this is a WebSocket endpoint");
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        let mut response = refuse(StatusCode::UPGRADE_REQUIRED, "WebSocket version 13 only");
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY).map(|k| k.as_bytes());
    let key_ok = key.is_some_and(|k| {
        base64::engine::general_purpose::STANDARD
            .decode(k)
            .is_ok_and(|raw| raw.len() == 16)
    });
    let Some(key) = key.filter(|_| key_ok) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Key is missing or malformed",
        );
    };
    if !has_token(headers, header::SEC_WEBSOCKET_PROTOCOL, SUBPROTOCOL) {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the xmpp subprotocol is required (RFC 7395)",
        );
    }
    let accept = accept_key(key);
    let (Some(conn), Some(client)) = (
        req.extensions().get::<Arc<ConnInfo>>().cloned(),
        req.extensions().get::<ClientAddr>().cloned(),
    ) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if ctx.c2s.settings().policy.require_tls && !client.secure {
        return refuse(
            StatusCode::FORBIDDEN,
            "this server requires TLS: connect with wss://",
        );
    }
    // A client behind a proxy is counted here; a direct one already is, by its connection.
    let proxied_guard = if client.via_proxy {
        match ctx.per_ip.connect(client.ip) {
            Some(guard) => Some(guard),
            None => {
                return refuse(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many connections from this address",
                );
            }
        }
    } else {
        None
    };
    let on_upgrade = hyper::upgrade::on(&mut req);
    let conn_id = ctx.c2s.conn_id();
    let span = info_span!("ws", conn = conn_id, client = %client.ip, jid = tracing::field::Empty);
    let tracker = ctx.tracker.clone();
    tracker.spawn(
        async move {
            let upgraded = match on_upgrade.await {
                Ok(upgraded) => upgraded,
                Err(e) => return debug!(error = %e, "WebSocket upgrade failed"),
            };
            // Channel binding binds to our TLS; through a proxy there is none of ours.
            let cb = if client.via_proxy {
                Default::default()
            } else {
                conn.channel_binding.clone()
            };
            let link = conn::Link {
                client_ip: client.ip,
                tls: client.secure,
                channel_binding: cb,
                read_rate: conn.read_rate,
            };
            conn::run(upgraded, ctx, conn_id, link).await;
            drop(proxied_guard);
            drop(conn);
            tracing::info!("WebSocket closed");
        }
        .instrument(span),
    );
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = response.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    h.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(SUBPROTOCOL),
    );
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn accept_key_of_rfc6455() {
        // RFC 6455 §1.3's example.
        assert_eq!(
            super::accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
