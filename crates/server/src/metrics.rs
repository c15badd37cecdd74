//! What `/metrics` reads at scrape time: bound and resumable sessions, queue depths, the
//! archive stores' sizes and the process's memory and descriptors (from `/proc/self`, on
//! Linux; zero elsewhere). Everything else is counted as it happens (`xmppd_core::metrics`).

use std::sync::Arc;

use async_trait::async_trait;
use xmppd_core::Router;
use xmppd_core::metrics::Scraped;
use xmppd_core::storage::ArchiveStore;

/// The server's exposition for the `metrics` listener.
pub struct ServerExposition {
    /// Sessions, queues and the metrics themselves.
    pub router: Arc<Router>,
    /// The archive shape (offline messages, MAM, room archives).
    pub archive: Arc<dyn ArchiveStore>,
}

#[async_trait]
impl xmppd_http::metrics::Exposition for ServerExposition {
    async fn render(&self, openmetrics: bool) -> String {
        let archives = match self.archive.count_by_store().await {
            Ok(counts) => counts,
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot count the archives");
                Vec::new()
            }
        };
        let (resident_bytes, virtual_bytes) = memory();
        let scraped = Scraped {
            bound_sessions: count(self.router.sessions().len()),
            resumable_sessions: count(self.router.stream_management().resumable()),
            client_queue: count(self.router.sessions().queued()),
            s2s_queue: count(self.router.remote_queue()),
            archives,
            resident_bytes,
            virtual_bytes,
            open_fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| count(d.count())),
        };
        self.router.metrics().encode(&scraped, openmetrics)
    }
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// Resident and virtual memory in bytes, from `VmRSS` and `VmSize` of /proc/self/status
/// (in kB there, whatever the page size).
fn memory() -> (u64, u64) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (0, 0);
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or(0, |kb| kb.saturating_mul(1024))
    };
    (field("VmRSS:"), field("VmSize:"))
}
