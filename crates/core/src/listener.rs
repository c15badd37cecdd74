//! The accept step every listener (clients, servers, components) shares.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::warn;

/// How long a listener pauses after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The next accepted connection, or `None` once `shutdown` is cancelled.
///
/// A failed accept (typically EMFILE, out of file descriptors) is logged and retried after a
/// pause instead of in a tight loop: the condition lasts until connections close.
pub async fn accept_next(
    listener: &TcpListener,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return None,
            a = listener.accept() => a,
        };
        match accepted {
            Ok(a) => return Some(a),
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::select! {
                    _ = shutdown.cancelled() => return None,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
}

/// A place among `permits` (waiting for one while the listener is full), then the next
/// accepted connection; `None` once `shutdown` is cancelled. The permit is the connection's
/// for as long as it lives.
pub async fn accept_permitted(
    listener: &TcpListener,
    permits: &Arc<Semaphore>,
    shutdown: &CancellationToken,
) -> Option<(OwnedSemaphorePermit, TcpStream, SocketAddr)> {
    let permit = tokio::select! {
        _ = shutdown.cancelled() => return None,
        p = permits.clone().acquire_owned() => p.ok()?,
    };
    let (socket, peer) = accept_next(listener, shutdown).await?;
    Some((permit, socket, peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_connections_then_none_after_shutdown() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let client = TcpStream::connect(addr).await.unwrap();
        let (_, peer) = accept_next(&listener, &shutdown).await.unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        shutdown.cancel();
        assert!(accept_next(&listener, &shutdown).await.is_none());
    }
}
