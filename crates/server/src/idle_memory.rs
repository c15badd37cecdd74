//! Giving freed memory back to the system when runtime workers go idle.
//!
//! mimalloc gives a block freed on another thread back to its page only when the page's owner
//! next allocates or collects, and keeps one empty page per size class "retired" for reuse
//! until sixteen more collections have passed. A worker that goes idle after a peak does
//! neither, so both stay resident: with two workers, RSS stayed at 208 MiB after 10k sessions
//! logged in and out without any collection, and the retired pages alone held about 1 MiB
//! after the peak (one 64 KiB page for each size class the login path uses).
//!
//! So every worker collects when it parks: a cheap collection (the thread's free lists, at
//! most once per [`COLLECT_INTERVAL`]) and a full one that also frees the retired pages, at
//! most once per [`FULL_COLLECT_INTERVAL`]. The full one is rate-limited because a freed page
//! costs page faults when the next allocation of its size class needs it again: at 2,000
//! messages/s, where a worker parks after nearly every message, a full collection on every
//! park raised server CPU per message by half.
//!
//! A worker that parks while its full collection is held back by the interval owes one. The
//! worker may then sleep for hours, so the collector's thread wakes the runtime once the
//! interval has passed: it spawns one empty task per owing worker, the woken workers park
//! again and collect. The runtime hands such a task to an idle worker of its choosing, so
//! with several workers an owing worker may miss its wake-up; it collects the next time it
//! runs, and meanwhile holds at most its retired pages.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// mimalloc's `mi_option_purge_delay`: its position in the option enum of mimalloc 3.3 (the
/// version libmimalloc-sys =0.1.49 builds), which the -sys crate names no constant for. The
/// test `purge_delay_is_the_option_we_set` checks it against mimalloc's own default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The environment variable through which mimalloc reads the same option.
const PURGE_DELAY_ENV: &str = "MIMALLOC_PURGE_DELAY";

/// How long mimalloc keeps a freed page before giving it back to the system, unless the
/// administrator set `MIMALLOC_PURGE_DELAY`: [`FULL_COLLECT_INTERVAL`].
///
/// Not mimalloc's default (a second): that delay only runs out while the process keeps
/// allocating, which an idle server does not, and RSS stayed up after every peak. Not 0
/// either: then every page freed under load went back to the system at once and the next
/// allocation of its size class faulted it in again. A room archive hands out each commit's
/// messages together, so copies come and go in bursts, and with a delay of 0 a room of 100
/// took 60,000 page faults a second and 1.4x the CPU per copy (`bench/README.md`, issue 15).
/// Idle memory still falls back: the full collection a worker makes when it parks
/// ([`Collector::before_park`]) purges every freed page whatever its delay.
pub fn set_purge_delay() {
    if std::env::var_os(PURGE_DELAY_ENV).is_some() {
        return;
    }
    let delay = std::ffi::c_long::try_from(FULL_COLLECT_INTERVAL.as_millis()).unwrap_or(0);
    // SAFETY: setting an option takes no pointers; mimalloc reads options atomically.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, delay);
    }
}

/// The shortest time between two cheap collections on one worker thread.
const COLLECT_INTERVAL: Duration = Duration::from_millis(1);

/// The shortest time between two full collections on one worker thread.
const FULL_COLLECT_INTERVAL: Duration = Duration::from_millis(100);

/// How many times the collector's thread wakes the runtime for one owed collection before
/// it leaves the rest to the owing workers' next run.
const WAKE_ATTEMPTS: u32 = 10;

thread_local! {
    static LAST_COLLECT: Cell<Option<Instant>> = const { Cell::new(None) };
    static LAST_FULL_COLLECT: Cell<Option<Instant>> = const { Cell::new(None) };
    /// Whether this worker woke up since its last full collection (true at start: starting
    /// the server allocates too).
    static RAN_SINCE_FULL_COLLECT: Cell<bool> = const { Cell::new(true) };
    /// Whether this worker is counted in [`Collector::owing`].
    static OWES_FULL_COLLECT: Cell<bool> = const { Cell::new(false) };
}

/// The state the runtime's park hooks share with the collector's thread.
#[derive(Debug, Default)]
pub struct Collector {
    /// Workers that parked with a full collection held back by the interval.
    owing: AtomicUsize,
    /// The thread that wakes the runtime for them.
    waker: OnceLock<Thread>,
    stopped: AtomicBool,
    full_collections: AtomicU64,
    owed_collections: AtomicU64,
}

impl Collector {
    /// Runs on a worker each time it runs out of work.
    pub fn before_park(&self) {
        let now = Instant::now();
        if RAN_SINCE_FULL_COLLECT.get() {
            let due = LAST_FULL_COLLECT
                .get()
                .is_none_or(|last| now.duration_since(last) >= FULL_COLLECT_INTERVAL);
            if due {
                collect(true);
                LAST_FULL_COLLECT.set(Some(now));
                LAST_COLLECT.set(Some(now));
                RAN_SINCE_FULL_COLLECT.set(false);
                if OWES_FULL_COLLECT.replace(false) {
                    self.owing.fetch_sub(1, Ordering::AcqRel);
                    self.owed_collections.fetch_add(1, Ordering::Relaxed);
                }
                self.full_collections.fetch_add(1, Ordering::Relaxed);
                return;
            }
            if !OWES_FULL_COLLECT.replace(true) {
                self.owing.fetch_add(1, Ordering::AcqRel);
                if let Some(waker) = self.waker.get() {
                    waker.unpark();
                }
            }
        }
        if LAST_COLLECT
            .get()
            .is_none_or(|last| now.duration_since(last) >= COLLECT_INTERVAL)
        {
            LAST_COLLECT.set(Some(now));
            collect(false);
        }
    }

    /// Runs on a worker each time it wakes up.
    pub fn after_unpark(&self) {
        RAN_SINCE_FULL_COLLECT.set(true);
    }

    /// Full collections done so far, on all workers.
    #[cfg(test)]
    fn full_collections(&self) -> u64 {
        self.full_collections.load(Ordering::Relaxed)
    }

    /// Full collections done so far that a worker owed.
    #[cfg(test)]
    fn owed_collections(&self) -> u64 {
        self.owed_collections.load(Ordering::Relaxed)
    }

    /// Starts the thread that wakes `runtime` for owed collections; it ends with the returned
    /// guard.
    pub fn start_waker(
        self: &Arc<Self>,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<WakerGuard> {
        let collector = Arc::clone(self);
        let thread = std::thread::Builder::new()
            .name("xmppd-memory".into())
            .spawn(move || collector.wake_owing_workers(&runtime))?;
        // Set once, here, before any hook can see an owing worker without a waker: one that
        // owes before this line is woken by the thread's first check below.
        let _ = self.waker.set(thread.thread().clone());
        thread.thread().unpark();
        Ok(WakerGuard {
            collector: Arc::clone(self),
            thread: Some(thread),
        })
    }

    fn wake_owing_workers(&self, runtime: &tokio::runtime::Handle) {
        while !self.stopped.load(Ordering::Acquire) {
            std::thread::park();
            for _ in 0..WAKE_ATTEMPTS {
                if self.stopped.load(Ordering::Acquire) || self.owing.load(Ordering::Acquire) == 0 {
                    break;
                }
                std::thread::sleep(FULL_COLLECT_INTERVAL);
                for _ in 0..self.owing.load(Ordering::Acquire) {
                    // An empty task: running it wakes a worker, which parks again right after.
                    drop(runtime.spawn(async {}));
                }
            }
        }
    }
}

/// Stops the collector's thread when dropped.
#[derive(Debug)]
pub struct WakerGuard {
    collector: Arc<Collector>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WakerGuard {
    fn drop(&mut self) {
        self.collector.stopped.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// Collects the calling thread's heap; `full` also frees its retired pages.
fn collect(full: bool) {
    // SAFETY: `mi_collect` takes no pointers and only touches the calling thread's own heap
    // and the process-wide arenas, which mimalloc synchronises itself.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_collect(full);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-worker runtime with the collector's hooks, and the collector's waking thread
    /// (stopped first when the pair is dropped).
    fn collecting_runtime(collector: &Arc<Collector>) -> (WakerGuard, tokio::runtime::Runtime) {
        let park = Arc::clone(collector);
        let unpark = Arc::clone(collector);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .on_thread_park(move || park.before_park())
            .on_thread_unpark(move || unpark.after_unpark())
            .build()
            .expect("runtime");
        let waker = collector
            .start_waker(runtime.handle().clone())
            .expect("waker");
        (waker, runtime)
    }

    fn purge_delay() -> std::ffi::c_long {
        // SAFETY: reading an option takes no pointers.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY)
        }
    }

    #[test]
    fn purge_delay_is_the_option_we_set() {
        if std::env::var_os(PURGE_DELAY_ENV).is_some() {
            return; // mimalloc took the administrator's value; the default cannot be checked
        }
        // mimalloc 3.3's default purge delay, 1000 ms, identifies the option (no other
        // option defaults to 1000); the other tests of this binary leave it alone.
        assert_eq!(purge_delay(), 1000);
        set_purge_delay();
        assert_eq!(purge_delay(), 100);
    }

    /// Allocates and frees on the worker, like a burst of sessions would.
    async fn burst() {
        let boxes: Vec<Vec<u8>> = (0..2_000).map(|i| vec![0u8; 16 + i % 2_000]).collect();
        drop(std::hint::black_box(boxes));
    }

    /// Waits (bounded) until `count` returns more than `than`.
    fn wait_for_more(count: impl Fn() -> u64, than: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(1);
        while Instant::now() < deadline {
            if count() > than {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }

    #[test]
    fn a_worker_that_goes_idle_collects_fully_and_then_stays_asleep() {
        let collector = Arc::new(Collector::default());
        let (_waker, runtime) = collecting_runtime(&collector);
        runtime.block_on(async { tokio::spawn(burst()).await.expect("burst") });
        assert!(wait_for_more(|| collector.full_collections(), 0));
        // Once any owed collection is done, nothing may wake the idle worker any more: no
        // collection for three intervals in a row, within a bounded number of tries.
        let settled = (0..20).any(|_| {
            let before = collector.full_collections();
            std::thread::sleep(FULL_COLLECT_INTERVAL * 3);
            collector.full_collections() == before && collector.owing.load(Ordering::Acquire) == 0
        });
        assert!(settled, "the idle worker kept collecting");
    }

    #[test]
    fn an_owed_collection_is_done_though_the_worker_sleeps() {
        let collector = Arc::new(Collector::default());
        let (_waker, runtime) = collecting_runtime(&collector);
        // A burst, and its park's full collection; then, right after that collection, another
        // burst, whose park comes within the interval: that worker owes a collection, and
        // nothing else wakes it. (A stall of the test machine longer than the interval makes
        // the park due instead; the next burst tries again.)
        runtime.block_on(async { tokio::spawn(burst()).await.expect("burst") });
        assert!(wait_for_more(|| collector.full_collections(), 0));
        let owed_done = (0..10).any(|_| {
            runtime.block_on(async { tokio::spawn(burst()).await.expect("burst") });
            wait_for_more(|| collector.owed_collections(), 0)
        });
        assert!(
            owed_done,
            "the owed collection never ran: {} full collections, {} owing",
            collector.full_collections(),
            collector.owing.load(Ordering::Acquire)
        );
    }
}
