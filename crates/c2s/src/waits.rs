//! What the connection loop waits on, each as a plain future its `select!` polls: the
//! socket's readiness (or the read shaper's pause), the session's queue, the connection's
//! timer.

use std::pin::Pin;

use tokio::time::Instant;
use xmppd_core::QueueSignal;

use super::Timer;
use super::transport::Transport;

/// Resolves when the socket is worth a read: at once when `now`, else when it is readable —
/// or, while the read shaper holds the connection back, when `paused_until` has come.
pub(super) async fn readable_or_now<S: Transport>(
    io: &S,
    now: bool,
    paused_until: Option<Instant>,
) -> std::io::Result<()> {
    if let Some(resume) = paused_until {
        // Boxed: only a client over its rate waits here, and inline the timer would make the
        // task of every connection larger.
        Box::pin(tokio::time::sleep_until(resume)).await;
        return Ok(());
    }
    if now { Ok(()) } else { io.readable().await }
}

/// The wait on a session's queue; no session, no wake-ups.
pub(super) async fn queue_wait(signal: Option<QueueSignal>) {
    match signal {
        Some(signal) => signal.notified().await,
        None => std::future::pending().await,
    }
}

/// Ends at once when the queue is worth a look now, else when the wait ends (`true`).
pub(super) async fn queue_or_now<F: Future<Output = ()>>(wait: Pin<&mut F>, now: bool) -> bool {
    if now {
        false
    } else {
        wait.await;
        true
    }
}

/// Resolves when the connection's timer (the authentication deadline or the keepalive) fires.
pub(super) async fn expired(timer: &mut Pin<Box<Timer>>) {
    timer.as_mut().project().sleep.await;
}
