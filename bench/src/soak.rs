//! The soak scenario's arithmetic, without I/O (the I/O is `scenarios/soak.rs`).
//!
//! **Cycles.** Connect, STARTTLS, SCRAM login, bind, presence, logout, over and over: when the
//! server's RSS is read, where the verdict comes from, and what stops a run. The RSS is read at
//! checkpoints, each time with nothing in flight and the server quiet: after a first batch
//! (every account has logged in and out once, as in the `warm` scenario, so whatever a server
//! keeps per account or warms up once is in the first level), then at every multiple of the
//! reporting interval, and at the end. The verdict compares the end with the first level:
//! memory that a login leaves behind grows with the cycles, memory that a peak leaves
//! behind does not.
//!
//! **Idle.** How many idle sessions this machine lets one generator and one server hold:
//! every session is a socket in each process and a local port of one of the generator's
//! source addresses.

/// The end RSS may exceed the first level by this many percent.
pub const RSS_TOLERANCE_PERCENT: u64 = 10;

/// Files each process keeps for other uses than the sessions (listeners, the store and its
/// journal, the runtime, logs): the idle sessions get the rest of its open-file limit.
pub const FILE_MARGIN: u64 = 64;

/// The cycle counts after which the RSS is read: `first`, then every multiple of `every`
/// above it, then `total` (each once, ascending). `first` or `every` of 0: only `total`.
pub fn checkpoints(total: u64, first: u64, every: u64) -> Vec<u64> {
    let mut at = Vec::new();
    if first > 0 && first < total {
        at.push(first);
        if let Some(multiples) = first.checked_div(every) {
            let mut next = (multiples + 1) * every;
            while next < total {
                at.push(next);
                next += every;
            }
        }
    }
    if total > 0 {
        at.push(total);
    }
    at
}

/// The outcome of a cycles run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    /// Every cycle done, the end RSS within [`RSS_TOLERANCE_PERCENT`] of the first level.
    Pass,
    /// Every cycle done, the end RSS above the first level by more than the tolerance (the
    /// growth as a fraction).
    Grew(f64),
    /// A cycle failed (a login, or a logout the server did not finish): an error, whatever the
    /// memory did.
    Failed,
    /// The time limit (or too many failures) stopped the run before all cycles: not a pass.
    Incomplete,
    /// The server's RSS could not be read (no PID, or it is gone).
    Unmeasured,
}

impl Verdict {
    /// Judges a run.
    pub fn of(run: &CyclesOutcome) -> Verdict {
        if run.failed > 0 {
            return Verdict::Failed;
        }
        if run.completed < run.requested {
            return Verdict::Incomplete;
        }
        let (Some(first), Some(end)) = (run.rss_first_kib.filter(|f| *f > 0), run.rss_end_kib)
        else {
            return Verdict::Unmeasured;
        };
        // In whole KiB, so that exactly 10 % more is still within.
        if end * 100 <= first * (100 + RSS_TOLERANCE_PERCENT) {
            Verdict::Pass
        } else {
            Verdict::Grew(growth(Some(first), Some(end)).unwrap_or(f64::INFINITY))
        }
    }

    /// Its name in the JSON row.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Grew(_) => "grew",
            Verdict::Failed => "error",
            Verdict::Incomplete => "incomplete",
            Verdict::Unmeasured => "unmeasured",
        }
    }
}

/// What a cycles run did, for its [`Verdict`].
#[derive(Clone, Copy, Debug)]
pub struct CyclesOutcome {
    /// Cycles asked for.
    pub requested: u64,
    /// Cycles that logged in and out.
    pub completed: u64,
    /// Cycles that failed.
    pub failed: u64,
    /// RSS at the first checkpoint.
    pub rss_first_kib: Option<u64>,
    /// RSS at the end, quiet.
    pub rss_end_kib: Option<u64>,
}

/// `end` over `first`, minus one (0.05: 5 % more).
pub fn growth(first: Option<u64>, end: Option<u64>) -> Option<f64> {
    let (first, end) = (first.filter(|f| *f > 0)?, end?);
    Some(end as f64 / first as f64 - 1.0)
}

/// What bounds the idle sessions on this machine, as read from `/proc`.
#[derive(Clone, Copy, Debug, Default)]
pub struct IdleLimits {
    /// The generator's open-file limit and the files it has open.
    pub generator_files: Option<(u64, u64)>,
    /// The server's, when its PID is known and it is another process.
    pub server_files: Option<(u64, u64)>,
    /// The server runs in the generator's process (the tests): every session is two sockets
    /// of the one process.
    pub same_process: bool,
    /// Local ports per source address (`net.ipv4.ip_local_port_range`).
    pub ports_per_source: Option<u64>,
    /// Source addresses the sessions are spread over (at least one: the kernel's choice).
    pub sources: usize,
}

/// How many of `requested` idle sessions fit, and what lowered the number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdleCapacity {
    /// Sessions to open.
    pub sessions: usize,
    /// Why fewer than asked, naming the limit and its value; `None` when all fit.
    pub limited_by: Option<String>,
}

impl IdleLimits {
    /// The sessions that fit under every limit, at most `requested`.
    pub fn capacity(&self, requested: usize) -> IdleCapacity {
        let free = |(limit, open): (u64, u64)| limit.saturating_sub(open + FILE_MARGIN);
        let mut bounds: Vec<(u64, String)> = Vec::new();
        if let Some(files) = self.generator_files {
            let per_session = if self.same_process { 2 } else { 1 };
            let what = if self.same_process {
                "open files of the generator and server process"
            } else {
                "the generator's open files"
            };
            bounds.push((
                free(files) / per_session,
                format!("{what} (limit {}, {} open)", files.0, files.1),
            ));
        }
        if let Some(files) = self.server_files.filter(|_| !self.same_process) {
            bounds.push((
                free(files),
                format!(
                    "the server's open files (limit {}, {} open)",
                    files.0, files.1
                ),
            ));
        }
        if let Some(ports) = self.ports_per_source {
            let sources = self.sources.max(1) as u64;
            bounds.push((
                ports * sources,
                format!("local ports ({ports} per source address, {sources} addresses)"),
            ));
        }
        let requested_u64 = requested as u64;
        match bounds.into_iter().min_by_key(|(n, _)| *n) {
            Some((n, why)) if n < requested_u64 => IdleCapacity {
                sessions: usize::try_from(n).unwrap_or(requested),
                limited_by: Some(why),
            },
            _ => IdleCapacity {
                sessions: requested,
                limited_by: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_after_the_first_batch_every_interval_and_at_the_end() {
        let million = checkpoints(1_000_000, 10_000, 100_000);
        assert_eq!(million.len(), 11);
        assert_eq!(million[..3], [10_000, 100_000, 200_000]);
        assert_eq!(million[10], 1_000_000);
        // An end on a multiple of the interval is read once.
        assert_eq!(checkpoints(300, 50, 100), [50, 100, 200, 300]);
        assert_eq!(checkpoints(250, 50, 100), [50, 100, 200, 250]);
        // A first batch on a multiple: the next multiple follows.
        assert_eq!(checkpoints(300, 100, 100), [100, 200, 300]);
        // Fewer cycles than the first batch, or no interval.
        assert_eq!(checkpoints(40, 50, 100), [40]);
        assert_eq!(checkpoints(50, 50, 100), [50]);
        assert_eq!(checkpoints(300, 50, 0), [50, 300]);
        assert_eq!(checkpoints(300, 0, 100), [300]);
        assert!(checkpoints(0, 50, 100).is_empty());
    }

    fn outcome(completed: u64, failed: u64, first: u64, end: u64) -> CyclesOutcome {
        CyclesOutcome {
            requested: 1000,
            completed,
            failed,
            rss_first_kib: Some(first),
            rss_end_kib: Some(end),
        }
    }

    #[test]
    fn verdict_needs_every_cycle_and_the_rss_back_within_ten_percent() {
        assert_eq!(
            Verdict::of(&outcome(1000, 0, 10_000, 11_000)),
            Verdict::Pass
        );
        assert_eq!(Verdict::of(&outcome(1000, 0, 10_000, 9_000)), Verdict::Pass);
        let Verdict::Grew(g) = Verdict::of(&outcome(1000, 0, 10_000, 11_001)) else {
            panic!("11,001 over 10,000 is more than 10 %");
        };
        assert!((g - 0.1001).abs() < 1e-9, "{g}");
        // A failure is an error even with flat memory, and wins over a short run.
        assert_eq!(
            Verdict::of(&outcome(999, 1, 10_000, 10_000)),
            Verdict::Failed
        );
        assert_eq!(
            Verdict::of(&outcome(500, 0, 10_000, 10_000)),
            Verdict::Incomplete
        );
        let mut unread = outcome(1000, 0, 10_000, 10_000);
        unread.rss_end_kib = None;
        assert_eq!(Verdict::of(&unread), Verdict::Unmeasured);
        assert_eq!(Verdict::Grew(0.2).name(), "grew");
        assert_eq!(Verdict::Failed.name(), "error");
    }

    #[test]
    fn idle_capacity_is_the_tightest_limit_named() {
        let limits = IdleLimits {
            generator_files: Some((20_000, 36)),
            server_files: Some((20_000, 100)),
            same_process: false,
            ports_per_source: Some(28_232),
            sources: 8,
        };
        assert_eq!(
            limits.capacity(100_000),
            IdleCapacity {
                sessions: 20_000 - 100 - 64,
                limited_by: Some("the server's open files (limit 20000, 100 open)".into()),
            }
        );
        assert_eq!(limits.capacity(5_000).limited_by, None);
        assert_eq!(limits.capacity(5_000).sessions, 5_000);
        // One source address: its ports bound the sessions first.
        let one_source = IdleLimits {
            generator_files: Some((1_000_000, 36)),
            server_files: Some((1_000_000, 100)),
            sources: 1,
            ..limits
        };
        let c = one_source.capacity(100_000);
        assert_eq!(c.sessions, 28_232);
        assert!(c.limited_by.is_some_and(|w| w.starts_with("local ports")));
        // Server and generator in one process: two sockets per session.
        let together = IdleLimits {
            generator_files: Some((1_064, 0)),
            server_files: Some((1_064, 0)),
            same_process: true,
            ..limits
        };
        assert_eq!(together.capacity(10_000).sessions, 500);
        // Nothing known: as asked.
        assert_eq!(IdleLimits::default().capacity(7).sessions, 7);
    }
}
