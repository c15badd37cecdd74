//! The `metrics` listener: `GET /metrics` in the Prometheus text format (0.0.4), or in
//! OpenMetrics 1.0 when the scraper's `Accept` asks for `application/openmetrics-text` (as
//! Prometheus does). Plain HTTP on its own socket, loopback by default: the numbers say who
//! is busy and how much is stored, which is for the operator only.
//!
//! Few scrapers are expected, so the listener serves at most [`MAX_CONNECTIONS`] at once,
//! each with a header deadline; anything but `GET /metrics` is 404 (or 405).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::debug;
use xmppd_core::listener::accept_permitted;

/// Scrapers served at once; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 16;
/// Time a scraper has to send its request head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What renders the exposition: reads the values that are read at scrape time, then encodes.
#[async_trait]
pub trait Exposition: Send + Sync {
    /// The whole exposition, in OpenMetrics when `openmetrics`, else Prometheus text.
    async fn render(&self, openmetrics: bool) -> String;
}

/// Serves `/metrics` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    exposition: Arc<dyn Exposition>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let router = Router::new()
        .route("/metrics", get(metrics))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(exposition);
    while let Some((permit, socket, _peer)) = accept_permitted(&listener, &permits, &shutdown).await
    {
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let conn = builder.serve_connection(TokioIo::new(socket), service);
            tokio::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        debug!(error = %e, "metrics connection ended with an error");
                    }
                }
                _ = shutdown.cancelled() => conn.as_mut().graceful_shutdown(),
            }
        });
    }
}

async fn metrics(State(exposition): State<Arc<dyn Exposition>>, headers: HeaderMap) -> Response {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let body = exposition.render(openmetrics).await;
    let content_type = if openmetrics {
        OPENMETRICS_TEXT
    } else {
        PROMETHEUS_TEXT
    };
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
