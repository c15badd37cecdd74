//! The routes, and what every request goes through first.
//!
//! [`admit`] reads the client's address through the trusted proxies, charges the request to
//! that address's rate, refuses bodies over the limit by their announced length, and resolves
//! the `Host` header to a configured host ([`Site`]) for the handlers that serve one host's
//! documents. Discovery documents carry the configured CORS origin (XEP-0156 §4: on these
//! documents only).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use xmppd_proto::host_meta::{HostMeta, REL_BOSH, REL_WEBSOCKET};

use crate::proxy::ClientAddr;
use crate::{ConnInfo, HostWeb, HttpContext};

/// The configured host a request's `Host` header names, with what it offers.
#[derive(Clone, Debug)]
pub(crate) struct Site {
    pub(crate) host: String,
    pub(crate) web: HostWeb,
}

/// The router of every HTTP listener.
pub(crate) fn router(ctx: Arc<HttpContext>) -> Router {
    let ws_path = ctx.settings.websocket_path.clone();
    let bosh_path = ctx.settings.bosh_path.clone();
    Router::new()
        .route(
            "/.well-known/host-meta",
            get(host_meta_xrd).options(preflight),
        )
        .route(
            "/.well-known/host-meta.json",
            get(host_meta_jrd).options(preflight),
        )
        .route(&ws_path, get(crate::ws::upgrade))
        .route(&bosh_path, any(crate::bosh::handle))
        .route(crate::upload::ROUTE, any(crate::upload::handle))
        .route(crate::admin_api::ROUTE, any(crate::admin_api::handle))
        .route(crate::invite::ROUTE, get(crate::invite::page))
        .fallback(not_found)
        // Bodies sent without a length are cut off at the same limit by the extractors that
        // read them (upload); BOSH reads its bodies under its own limit.
        .layer(DefaultBodyLimit::max(
            usize::try_from(ctx.settings.max_body_bytes).unwrap_or(usize::MAX),
        ))
        .layer(middleware::from_fn_with_state(ctx.clone(), admit))
        .with_state(ctx)
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// Address, rate, body size and host, before any handler.
async fn admit(State(ctx): State<Arc<HttpContext>>, mut req: Request, next: Next) -> Response {
    let Some(conn) = req.extensions().get::<Arc<ConnInfo>>().cloned() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let client = ctx
        .settings
        .trusted_proxies
        .client(conn.peer.ip(), conn.tls, req.headers());
    if !ctx.per_ip.request(client.ip) {
        tracing::debug!(client = %client.ip, "request rate exceeded");
        let mut response = (StatusCode::TOO_MANY_REQUESTS, "too many requests\n").into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // An upload's body is bounded by its slot, checked by the upload handler.
    let upload = ctx.upload.is_some() && req.uri().path().starts_with(crate::upload::PREFIX);
    if !upload && announced.is_some_and(|len| len > ctx.settings.max_body_bytes) {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response();
    }
    if let Some(site) = site(&ctx, req.headers(), &client) {
        req.extensions_mut().insert(site);
    }
    req.extensions_mut().insert(client);
    next.run(req).await
}

/// The configured host named by the request (the proxy's `X-Forwarded-Host`/`host=`, else
/// `Host`), without its port.
fn site(ctx: &HttpContext, headers: &HeaderMap, client: &ClientAddr) -> Option<Site> {
    let authority = requested_authority(headers, client)?;
    let host = strip_port(&authority).to_ascii_lowercase();
    ctx.c2s
        .settings()
        .policy
        .hosts
        .contains(host.as_str())
        .then(|| Site {
            web: ctx.settings.host(&host),
            host,
        })
}

fn requested_authority(headers: &HeaderMap, client: &ClientAddr) -> Option<String> {
    client.forwarded_host.clone().or_else(|| {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
    })
}

fn strip_port(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .split_once(']')
            .map_or(authority, |(h, _)| h.trim_start_matches('['));
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// The host's host-meta, or `None` (404) for a host we do not serve.
fn host_meta(ctx: &HttpContext, req: &Request) -> Option<HostMeta> {
    let site = req.extensions().get::<Site>()?;
    tracing::debug!(host = %site.host, "host-meta");
    let client = req.extensions().get::<ClientAddr>()?;
    let mut meta = HostMeta::default();
    let link = |configured: &Option<String>, schemes: (&str, &str), path: &str| {
        if let Some(url) = configured {
            return Some(url.clone());
        }
        let authority = requested_authority(req.headers(), client)?;
        let scheme = if client.secure { schemes.0 } else { schemes.1 };
        Some(format!("{scheme}://{authority}{path}"))
    };
    let settings = &ctx.settings;
    if site.web.websocket {
        let url = link(
            &site.web.websocket_url,
            ("wss", "ws"),
            &settings.websocket_path,
        )?;
        meta = meta.with_link(REL_WEBSOCKET, &url);
    }
    if site.web.bosh {
        let url = link(&site.web.bosh_url, ("https", "http"), &settings.bosh_path)?;
        meta = meta.with_link(REL_BOSH, &url);
    }
    Some(meta)
}

async fn host_meta_xrd(State(ctx): State<Arc<HttpContext>>, req: Request) -> Response {
    match host_meta(&ctx, &req) {
        Some(meta) => discovery(&ctx, "application/xrd+xml", meta.to_xrd()),
        None => not_found().await,
    }
}

async fn host_meta_jrd(State(ctx): State<Arc<HttpContext>>, req: Request) -> Response {
    match host_meta(&ctx, &req) {
        Some(meta) => discovery(&ctx, "application/json", meta.to_jrd().into_bytes()),
        None => not_found().await,
    }
}

/// A discovery document with its CORS headers.
fn discovery(ctx: &HttpContext, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    cors(ctx, headers);
    response
}

fn cors(ctx: &HttpContext, headers: &mut HeaderMap) {
    allow_origin(ctx, headers, "GET, OPTIONS", "Content-Type");
}

/// The CORS headers of a response: the configured origin, the `methods` and request
/// `request_headers` it allows.
pub(crate) fn allow_origin(
    ctx: &HttpContext,
    headers: &mut HeaderMap,
    methods: &'static str,
    request_headers: &'static str,
) {
    if let Ok(origin) = HeaderValue::from_str(&ctx.settings.allow_origin) {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(request_headers),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
}

/// A CORS preflight for a discovery document.
async fn preflight(State(ctx): State<Arc<HttpContext>>, method: Method) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if method == Method::OPTIONS {
        cors(&ctx, response.headers_mut());
        response.headers_mut().insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::strip_port;

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("example.org:5443"), "example.org");
        assert_eq!(strip_port("example.org"), "example.org");
        assert_eq!(strip_port("[::1]:443"), "::1");
    }
}
