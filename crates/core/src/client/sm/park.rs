//! A resumable session whose transport is gone waits here for a stream to resume it
//! (XEP-0198 §5).
//!
//! It stays bound, keeps its presence (contacts see no change) and keeps receiving into its
//! queue; the queue's bound still applies, and a full queue ends the session as it would a
//! connected one. The task ends in one of four ways: a stream claims the session (it is handed
//! over), the window passes or something ends the session (another bind of its resource, a
//! full queue: it ends, and its unacknowledged stanzas go where an ended session's go), or the
//! server shuts down (it is saved to be restored at the next start).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{Instrument, debug, info_span};
use xmppd_proto::StreamErrorCondition;

use crate::client::ClientSession;
use crate::hooks::SessionEvent;
use crate::router::Router;

/// Holds `session` for at most `window` until it is resumed, expires or the server stops;
/// returns at once after spawning the task.
pub(crate) async fn park(router: Arc<Router>, mut session: ClientSession, window: Duration) {
    let account = session.jid().to_bare();
    if !router.stream_management().reserve_waiting(&account) {
        debug!("too many sessions of the account wait already; this one ends");
        return Box::pin(session.end(&router)).await;
    }
    router
        .session_event(session.as_ref(), SessionEvent::Detached)
        .await;
    let span = info_span!("waiting", jid = %session.jid());
    let deadline = Instant::now() + window;
    session.set_resume_deadline(deadline);
    let sm = router.stream_management().clone();
    sm.spawn(
        async move {
            wait(router.clone(), session, deadline).await;
            router.stream_management().release_waiting(&account);
        }
        .instrument(span),
    );
}

async fn wait(router: Arc<Router>, mut session: ClientSession, deadline: Instant) {
    debug!("waiting to be resumed");
    let signal = session.signal();
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(deadline) => {
                debug!("resumption window passed");
                break;
            }
            () = signal.clone().notified() => {
                session = match session.hand_over() {
                    None => return,
                    Some(kept) => kept,
                };
                if let Some(reason) = session.kicked() {
                    if reason.condition == StreamErrorCondition::SystemShutdown {
                        Box::pin(session.save_or_end(&router)).await;
                        return;
                    }
                    debug!(reason = reason.condition.as_str(), "ended while waiting");
                    break;
                }
            }
        }
    }
    // Boxed, like the save above: inline, these deep futures would size the task of every
    // waiting session for them (3.8 KiB instead of a few hundred bytes).
    Box::pin(session.end(&router)).await;
}
