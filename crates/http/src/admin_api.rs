//! The HTTP admin API: the admin verbs (the same [`xmppd_admin::request::dispatch`] as the
//! local socket) as `POST /admin/api/v1/VERB` with a JSON object of the verb's arguments.
//!
//! On only when `[admin] api_tokens` lists tokens; otherwise its paths are 404 like any
//! unknown path. Every request needs `Authorization: Bearer TOKEN`: without it, or with a
//! token that is not listed, 401 (with `WWW-Authenticate: Bearer`). Tokens are compared in
//! constant time: the SHA-256 of the presented token against each listed token's with
//! `subtle`, every listed token compared, so neither the time nor the order tells which
//! bytes matched. Then: an unknown verb is 404, another method than POST 405, a body that is
//! not a JSON object of the verb's fields (or a bad JID, an unknown host, an empty
//! password) 422, a missing account or session 404, an existing account 409; a created
//! account 201, anything else done 200, with a JSON answer. Bodies are bounded by
//! [`MAX_BODY_BYTES`]. Neither tokens nor bodies are logged.

use std::sync::Arc;

use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use xmppd_admin::Admin;
use xmppd_admin::request::{ErrorClass, Request as Verb, VERBS, dispatch};

use crate::HttpContext;

/// The route of every verb.
pub(crate) const ROUTE: &str = "/admin/api/v1/{verb}";

/// The longest request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The verbs and the tokens that may call them.
pub struct AdminApi {
    admin: Admin,
    /// SHA-256 of each token.
    tokens: Vec<[u8; 32]>,
}

impl std::fmt::Debug for AdminApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminApi")
            .field("tokens", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

impl AdminApi {
    /// The API over `admin` for these tokens; `None` when there is none (the API is off).
    pub fn new(admin: Admin, tokens: &[String]) -> Option<Self> {
        if tokens.is_empty() {
            return None;
        }
        Some(AdminApi {
            admin,
            tokens: tokens.iter().map(|t| Sha256::digest(t).into()).collect(),
        })
    }

    /// Whether `presented` is one of the tokens, compared in constant time.
    fn admits(&self, presented: &str) -> bool {
        let presented: [u8; 32] = Sha256::digest(presented).into();
        let mut found = subtle::Choice::from(0);
        for token in &self.tokens {
            found |= token.ct_eq(&presented);
        }
        found.into()
    }
}

fn answer(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, format!("{body}\n")).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, class: &str, message: &str) -> Response {
    answer(status, &json!({ "error": class, "message": message }))
}

fn unauthorized() -> Response {
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "an admin API token is required: Authorization: Bearer TOKEN",
    );
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"xmppd admin\""),
    );
    response
}

/// `POST /admin/api/v1/VERB`.
pub(crate) async fn handle(
    State(ctx): State<Arc<HttpContext>>,
    Path(verb): Path<String>,
    req: Request,
) -> Response {
    let Some(api) = &ctx.admin_api else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if !presented.is_some_and(|t| api.admits(t.trim())) {
        tracing::info!("admin API request without a valid token");
        return unauthorized();
    }
    if !VERBS.contains(&verb.as_str()) {
        return error(StatusCode::NOT_FOUND, "not_found", "no such verb");
    }
    if req.method() != Method::POST {
        let mut response = error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "every verb is a POST",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let body = match axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the request body is too large",
            );
        }
    };
    let request = match parse(&verb, &body) {
        Ok(r) => r,
        Err(message) => return error(StatusCode::UNPROCESSABLE_ENTITY, "invalid", &message),
    };
    let created = matches!(request, Verb::AddUser { .. });
    match dispatch(&api.admin, &ctx.c2s.router, request).await {
        Ok(result) if created => answer(StatusCode::CREATED, &result),
        Ok(result) => answer(StatusCode::OK, &result),
        Err(e) => {
            let class = ErrorClass::of(&e);
            let status = match class {
                ErrorClass::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
                ErrorClass::NotFound => StatusCode::NOT_FOUND,
                ErrorClass::Conflict => StatusCode::CONFLICT,
                ErrorClass::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            };
            error(status, class.as_str(), &e.to_string())
        }
    }
}

/// The body (a JSON object, or nothing for a verb without arguments) as the verb's request.
fn parse(verb: &str, body: &[u8]) -> Result<Verb, String> {
    let mut fields = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(fields)) => fields,
            Ok(_) => return Err("the body must be a JSON object".into()),
            Err(e) => return Err(format!("the body is not JSON: {e}")),
        }
    };
    if fields.contains_key("verb") {
        return Err("the verb is the path, not a field".into());
    }
    fields.insert("verb".into(), Value::String(verb.to_owned()));
    serde_json::from_value(Value::Object(fields)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_become_requests_and_bad_ones_are_explained() {
        assert_eq!(parse("stats", b""), Ok(Verb::Stats {}));
        assert_eq!(
            parse("delete_user", br#"{"jid":"a@b"}"#),
            Ok(Verb::DeleteUser { jid: "a@b".into() })
        );
        assert!(parse("delete_user", b"{}").is_err());
        assert!(parse("delete_user", b"[1]").is_err());
        assert!(parse("delete_user", b"{").is_err());
        assert!(parse("stats", br#"{"verb":"kick"}"#).is_err());
    }
}
