//! Retention for archives that receive nothing.
//!
//! Appends trim their own archive (`keep_last`, `expire_before_us`), but an account that
//! stops receiving messages would keep its expired ones forever, though queries no longer
//! show them. With `retention_days` set, a task deletes every expired record of the `mam`
//! store at start and then hourly, in rounds of [`ROUND`] records so that no transaction
//! holds the write lock for long. It ends once the module is gone.
//!
//! The sweep cuts by time, archive by archive the oldest first; only a clock that went
//! backwards between two appends could make it remove a record before an older-numbered one,
//! which XEP-0313 §3.2 ("no holes") would otherwise forbid.

use std::sync::Weak;
use std::time::Duration;

use tracing::{debug, warn};

use super::{Inner, STORE, now_us};

/// Between two sweeps.
const EVERY: Duration = Duration::from_secs(3600);
/// Records deleted per statement.
const ROUND: u32 = 1000;

/// Starts the sweeper of `inner`'s archives, if it has a retention period.
pub(crate) fn spawn(inner: Weak<Inner>, runtime: &tokio::runtime::Handle) {
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(inner) = inner.upgrade() else {
                return;
            };
            // No retention period (now): nothing to sweep until a reload sets one.
            let Some(before) = inner.settings.get().expire_before_us(now_us()) else {
                continue;
            };
            sweep(&inner, before).await;
        }
    });
}

/// Deletes every record older than `before_us`, round by round.
pub(crate) async fn sweep(inner: &Inner, before_us: i64) {
    let mut total = 0;
    loop {
        match inner.storage.archive.expire(STORE, before_us, ROUND).await {
            Ok(n) => {
                total += n;
                if n < u64::from(ROUND) {
                    break;
                }
                // Let waiting writers (the group commit) in between rounds.
                tokio::task::yield_now().await;
            }
            Err(e) => {
                warn!(error = %e, "archive retention sweep failed; retried at the next one");
                break;
            }
        }
    }
    debug!(deleted = total, "archive retention sweep");
}
