//! XEP-0363 over HTTP: `PUT /upload/ID/NAME?o=…&e=…&s=…` with the signed slot, and
//! `GET`/`HEAD /upload/ID/NAME` of the stored file ([`xmppd_upload`] holds the rules).
//!
//! - **PUT**: 403 for a missing, wrong or expired signature; 413 when the announced length
//!   or the body is larger than the slot; 400 when it is shorter, or the Content-Type is not
//!   the one the slot was requested with (§6: SHOULD reject); 409 when the slot's file is
//!   already there; 201 once the file is complete on disk. The body is streamed to disk a
//!   chunk at a time, so memory does not grow with the file.
//! - **GET/HEAD**: the declared Content-Type (else `application/octet-stream`),
//!   `Content-Disposition: attachment` unless the type is an image, video or audio (a browser
//!   must not render uploaded HTML or SVG scripts in our origin), `nosniff`, the CSP of §10.1,
//!   and `Cache-Control: public, max-age=…, immutable` (a slot's bytes never change); 404 for
//!   an unknown, expired or removed file.
//! - **CORS** (§8) on all of them, and an OPTIONS preflight, so web clients on another origin
//!   can upload and fetch.
//!
//! Anything under `/upload/` that is not `ID/NAME` (an id that is not 32 hex digits, a `..`
//! or a separator in the name) is refused before the file system is touched.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use xmppd_upload::{PutError, Uploads, slot};

use crate::HttpContext;

/// The route of uploaded files (the slot URLs are `<base_url>/upload/ID/NAME`).
pub(crate) const ROUTE: &str = "/upload/{id}/{name}";
/// Every path under it: excluded from the listener's general body limit (a slot has its own).
pub(crate) const PREFIX: &str = "/upload/";

/// The signed part of a PUT URL.
#[derive(Debug, Default)]
pub(crate) struct Signature {
    /// The owner's bare JID.
    o: Option<String>,
    /// Expiry, Unix seconds.
    e: Option<u64>,
    /// HMAC-SHA-256, hex.
    s: Option<String>,
}

impl Signature {
    /// Reads `o`, `e` and `s` from a query string (other parameters are ignored; a value
    /// that does not decode is left out, and the PUT is refused as unsigned).
    fn parse(query: Option<&str>) -> Signature {
        let mut sig = Signature::default();
        for pair in query.unwrap_or("").split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let Ok(value) = percent_encoding::percent_decode_str(value).decode_utf8() else {
                continue;
            };
            match key {
                "o" => sig.o = Some(value.into_owned()),
                "e" => sig.e = value.parse().ok(),
                "s" => sig.s = Some(value.into_owned()),
                _ => {}
            }
        }
        sig
    }
}

fn plain(status: StatusCode, text: &str) -> Response {
    (status, format!("{text}\n")).into_response()
}

fn status_of(e: &PutError) -> StatusCode {
    match e {
        PutError::Forbidden => StatusCode::FORBIDDEN,
        PutError::Conflict => StatusCode::CONFLICT,
        PutError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        PutError::BadRequest(_) => StatusCode::BAD_REQUEST,
        PutError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn uploads(ctx: &HttpContext) -> Option<&Arc<Uploads>> {
    ctx.upload.as_ref()
}

fn with_cors(ctx: &HttpContext, mut response: Response) -> Response {
    let headers = response.headers_mut();
    crate::routes::allow_origin(
        ctx,
        headers,
        "OPTIONS, HEAD, GET, PUT",
        "Authorization, Content-Type",
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Content-Length, Content-Type, Content-Disposition"),
    );
    response
}

/// Every method on an upload path.
pub(crate) async fn handle(
    State(ctx): State<Arc<HttpContext>>,
    method: Method,
    Path((id, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(uploads) = uploads(&ctx) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    if slot::check_filename(&name).is_err() {
        return with_cors(&ctx, plain(StatusCode::BAD_REQUEST, "not an upload path"));
    }
    let response = match method {
        Method::PUT => {
            let sig = Signature::parse(query.as_deref());
            put(uploads, &id, &name, sig, &headers, body).await
        }
        Method::GET | Method::HEAD => get(uploads, &id, &name, method == Method::HEAD).await,
        Method::OPTIONS => {
            let mut r = StatusCode::NO_CONTENT.into_response();
            r.headers_mut().insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static("86400"),
            );
            r
        }
        _ => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            r.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("OPTIONS, HEAD, GET, PUT"),
            );
            r
        }
    };
    with_cors(&ctx, response)
}

async fn put(
    uploads: &Uploads,
    id: &str,
    name: &str,
    sig: Signature,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let (Some(owner), Some(expires), Some(signature)) = (sig.o, sig.e, sig.s) else {
        return plain(StatusCode::FORBIDDEN, "the URL is not signed");
    };
    let refused = |e: PutError| {
        if let PutError::Internal(reason) = &e {
            tracing::warn!(%reason, "upload failed");
        }
        plain(status_of(&e), &e.to_string())
    };
    let (owner, record) = match uploads
        .authorize_put(id, name, &owner, expires, &signature)
        .await
    {
        Ok(granted) => granted,
        Err(e) => return refused(e),
    };
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match announced {
        Some(n) if n > record.size => return refused(PutError::TooLarge),
        Some(n) if n != record.size => {
            return refused(PutError::BadRequest(format!(
                "Content-Length {n} is not the slot's size {}",
                record.size
            )));
        }
        _ => {}
    }
    if let Some(want) = &record.content_type {
        let sent = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        if sent.as_deref() != Some(want.as_str()) {
            return refused(PutError::BadRequest(format!(
                "the Content-Type must be the slot's, {want}"
            )));
        }
    }
    match uploads
        .store(id, &owner, record, body.into_data_stream())
        .await
    {
        Ok(()) => plain(StatusCode::CREATED, "created"),
        Err(e) => refused(e),
    }
}

/// Whether a browser may show the type inline: only media, never documents that can run
/// scripts (HTML, SVG, PDF).
fn inline(content_type: &str) -> bool {
    content_type != "image/svg+xml"
        && ["image/", "video/", "audio/"]
            .iter()
            .any(|p| content_type.starts_with(p))
}

async fn get(uploads: &Uploads, id: &str, name: &str, head: bool) -> Response {
    let (meta, path) = match uploads.lookup(id, name).await {
        Ok(Some(found)) => found,
        Ok(None) => return plain(StatusCode::NOT_FOUND, "not found"),
        Err(reason) => {
            tracing::warn!(%reason, "an upload could not be read");
            return plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the file could not be read",
            );
        }
    };
    let body = if head {
        Body::empty()
    } else {
        match tokio::fs::File::open(&path).await {
            Ok(file) => Body::from_stream(tokio_util::io::ReaderStream::new(file)),
            Err(_) => return plain(StatusCode::NOT_FOUND, "not found"),
        }
    };
    let content_type = meta
        .content_type
        .clone()
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    let disposition = if inline(&content_type) {
        "inline"
    } else {
        "attachment"
    };
    let max_age = match uploads.settings().expire_days {
        0 => 31_536_000,
        days => u64::from(days) * 86_400,
    };
    let mut response = Response::new(body);
    let h = response.headers_mut();
    let mut set = |name: header::HeaderName, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    set(header::CONTENT_TYPE, content_type);
    set(header::CONTENT_LENGTH, meta.size.to_string());
    set(
        header::CONTENT_DISPOSITION,
        format!(
            "{disposition}; filename*=UTF-8''{}",
            slot::encode(&meta.name)
        ),
    );
    set(
        header::CACHE_CONTROL,
        format!("public, max-age={max_age}, immutable"),
    );
    set(header::X_CONTENT_TYPE_OPTIONS, "nosniff".to_owned());
    set(
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none';".to_owned(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::{Signature, inline};

    #[test]
    fn the_signature_is_read_from_the_query() {
        let sig = Signature::parse(Some("o=alice%40example.org&e=17&s=ab&x=1"));
        assert_eq!(sig.o.as_deref(), Some("alice@example.org"));
        assert_eq!(sig.e, Some(17));
        assert_eq!(sig.s.as_deref(), Some("ab"));
        let none = Signature::parse(None);
        assert!(none.o.is_none() && none.e.is_none() && none.s.is_none());
        assert_eq!(Signature::parse(Some("e=soon")).e, None);
    }

    #[test]
    fn only_media_is_shown_inline() {
        for t in ["image/png", "video/mp4", "audio/ogg"] {
            assert!(inline(t), "{t}");
        }
        for t in [
            "image/svg+xml",
            "text/html",
            "application/pdf",
            "application/octet-stream",
        ] {
            assert!(!inline(t), "{t}");
        }
    }
}
