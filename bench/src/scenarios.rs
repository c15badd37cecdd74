//! The scenarios. Each returns one JSON object with its figures, the server's CPU seconds and
//! RSS (read from `/proc/<server-pid>`) and the generator's own CPU seconds.

pub mod fanout;
pub mod muc;
mod pairs;
pub mod pep;
pub mod soak;

pub use crate::clique::{Groups, Shape};
pub use fanout::{FanoutSettings, fanout};
pub use muc::{MucSettings, muc};
use pairs::{Plan, run_pairs};
pub use pep::{PepSettings, pep};
pub use soak::{SoakSettings, soak_cycles, soak_idle};

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::{self, Protocol, Session, Target};
use crate::procstat;
use crate::scan::{self, Flow, Scanner};

/// Everything the scenarios share.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// The server under test.
    pub target: Target,
    /// Its process, for CPU and RSS.
    pub server_pid: Option<u32>,
    /// Accounts are `<prefix><i>`.
    pub prefix: String,
    /// Logins in progress at once.
    pub concurrency: usize,
    /// Time origin of message timestamps.
    pub epoch: Instant,
    /// Stream management on the sessions of the idle, throughput and latency scenarios.
    pub sm: Sm,
    /// Local addresses the logins connect from, account `i` from `sources[i % len]` (empty:
    /// the kernel's choice). Each has its own ephemeral ports (see the soak scenario).
    pub sources: Vec<IpAddr>,
}

/// Stream management (XEP-0198) on the generator's sessions.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sm {
    /// Enabled after bind, resumable; every `<r/>` of the server answered with `<a h/>`
    /// counting the stanzas received.
    pub enabled: bool,
    /// Each end also sends its own `<r/>` after this many messages sent (0: never).
    pub request_every: u64,
}

/// CPU of the server and of the generator at one moment.
#[derive(Clone, Copy, Debug)]
struct Cpu {
    at: Instant,
    server: Option<f64>,
    generator: Option<f64>,
}

impl Ctx {
    /// The name of account `i`.
    pub fn user(&self, i: usize) -> String {
        match self.target.protocol {
            Protocol::Xmpp | Protocol::WebSocket => format!("{}{i}", self.prefix),
            // On the relay both ends of pair k name the pair.
            Protocol::Relay => format!("pair-{}", i / 2),
        }
    }

    /// The local address account `i` connects from.
    pub fn source(&self, i: usize) -> Option<IpAddr> {
        (!self.sources.is_empty()).then(|| self.sources[i % self.sources.len()])
    }

    fn cpu(&self) -> Cpu {
        Cpu {
            at: Instant::now(),
            server: self.server_pid.and_then(|p| procstat::cpu_seconds(Some(p))),
            generator: procstat::cpu_seconds(None),
        }
    }

    /// Server RSS in KiB.
    pub fn rss(&self) -> Option<u64> {
        self.server_pid.and_then(procstat::rss_kib)
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Logs in accounts `range` with `self.concurrency` logins in flight; returns the sessions
    /// (in account order) and the number of failed logins.
    pub async fn login_many(&self, range: std::ops::Range<usize>) -> (Vec<Session>, usize) {
        self.login_many_with(range, b"<presence/>").await
    }

    /// [`Ctx::login_many`] with `presence` as every session's initial presence (empty: none).
    pub async fn login_many_with(
        &self,
        range: std::ops::Range<usize>,
        presence: &'static [u8],
    ) -> (Vec<Session>, usize) {
        self.login_many_opts(range, presence, false).await
    }

    /// [`Ctx::login_many_with`], with stream management enabled on every session when `sm`.
    pub async fn login_many_opts(
        &self,
        range: std::ops::Range<usize>,
        presence: &'static [u8],
        sm: bool,
    ) -> (Vec<Session>, usize) {
        let next = Arc::new(AtomicUsize::new(range.start));
        let end = range.end;
        let mut workers = Vec::new();
        for _ in 0..self.concurrency.max(1) {
            let next = next.clone();
            let ctx = self.clone();
            workers.push(tokio::spawn(async move {
                let mut got = Vec::new();
                let mut failed = 0usize;
                let mut first_error = None;
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= end {
                        break;
                    }
                    let user = ctx.user(i);
                    let login = client::login_from(&ctx.target, &user, presence, sm, ctx.source(i));
                    match tokio::time::timeout(Duration::from_secs(60), login).await {
                        Ok(Ok(s)) => got.push((i, s)),
                        Ok(Err(e)) => {
                            failed += 1;
                            first_error.get_or_insert_with(|| format!("{e:#}"));
                        }
                        Err(_) => {
                            failed += 1;
                            first_error.get_or_insert_with(|| "login timed out".to_owned());
                        }
                    }
                }
                (got, failed, first_error)
            }));
        }
        let mut all = Vec::new();
        let mut failed = 0;
        for w in workers {
            if let Ok((got, f, err)) = w.await {
                all.extend(got);
                failed += f;
                if let Some(e) = err {
                    eprintln!("login error (first of its worker): {e}");
                }
            }
        }
        all.sort_by_key(|(i, _)| *i);
        (all.into_iter().map(|(_, s)| s).collect(), failed)
    }

    /// Closes sessions, several at a time.
    pub async fn close_all(&self, sessions: Vec<Session>) {
        let protocol = self.target.protocol;
        let mut set = tokio::task::JoinSet::new();
        for s in sessions {
            set.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), s.close(protocol)).await;
            });
        }
        while set.join_next().await.is_some() {}
    }

    /// Waits until the server is quiet (at most `max`): its CPU time advanced by at most two
    /// clock ticks in the last 250 ms. Without a PID there is nothing to wait for.
    async fn settled_cpu(&self, max: Duration) {
        let until = Instant::now() + max;
        let mut last = self.cpu().server;
        while let Some(before) = last {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.cpu().server;
            let quiet = now.is_some_and(|n| n - before <= 0.02);
            if quiet || Instant::now() >= until {
                return;
            }
            last = now;
        }
    }

    /// Waits until the server's RSS stops changing (at most `max`), then returns it.
    async fn settled_rss(&self, max: Duration) -> Option<u64> {
        let until = Instant::now() + max;
        let mut last = self.rss();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = self.rss();
            if now == last || Instant::now() >= until {
                return now;
            }
            last = now;
        }
    }
}

fn per(total: Option<f64>, count: f64, unit: f64) -> Option<f64> {
    total.filter(|_| count > 0.0).map(|t| t / count * unit)
}

fn usage(before: Cpu, after: Cpu) -> (f64, Option<f64>, Option<f64>) {
    let wall = after.at.duration_since(before.at).as_secs_f64();
    let server = after.server.zip(before.server).map(|(a, b)| a - b);
    let generator = after.generator.zip(before.generator).map(|(a, b)| a - b);
    (wall, server, generator)
}

/// Logs in `n` accounts once and out again (fills the client key cache, so later logins skip
/// PBKDF2 on the generator side); reports the server's RSS before and after.
pub async fn warm(ctx: &Ctx, n: usize) -> Value {
    let rss_empty = ctx.rss();
    let before = ctx.cpu();
    let (sessions, failed) = ctx.login_many(0..n).await;
    let after = ctx.cpu();
    ctx.close_all(sessions).await;
    let rss_after = ctx.settled_rss(Duration::from_secs(10)).await;
    let (wall, server, generator) = usage(before, after);
    json!({
        "scenario": "warm", "n": n, "failed": failed, "secs": wall,
        "server_cpu_s": server, "gen_cpu_s": generator,
        "rss_empty_kib": rss_empty, "rss_after_logout_kib": rss_after,
    })
}

/// Logs in `n` clients with fixed concurrency and keeps them until all are in.
pub async fn login(ctx: &Ctx, n: usize) -> Value {
    let rss_before = ctx.rss();
    let before = ctx.cpu();
    let (sessions, failed) = ctx.login_many(0..n).await;
    let after = ctx.cpu();
    let ok = sessions.len();
    ctx.close_all(sessions).await;
    let rss_after = ctx.settled_rss(Duration::from_secs(10)).await;
    let (wall, server, generator) = usage(before, after);
    json!({
        "scenario": "login", "n": n, "ok": ok, "failed": failed,
        "concurrency": ctx.concurrency, "secs_all_in": wall,
        "logins_per_s": ok as f64 / wall,
        "server_cpu_s": server, "server_us_per_login": per(server, ok as f64, 1e6),
        "gen_cpu_s": generator,
        "rss_before_kib": rss_before, "rss_after_logout_kib": rss_after,
    })
}

/// Holds `n` authenticated idle TLS sessions and reports the server's RSS per session. With
/// stream management the sessions are resumable, and each acknowledges what it received at
/// login (its presence echo) before the RSS is read, so that the server holds no
/// unacknowledged stanza: the steady state of an idle resumable session.
pub async fn idle(ctx: &Ctx, n: usize, rss_empty: Option<u64>) -> Value {
    let sm = ctx.sm.enabled && ctx.target.protocol.is_xmpp();
    let (mut sessions, failed) = ctx.login_many_opts(0..n, b"<presence/>", sm).await;
    let mut acked = 0;
    if sm {
        let mut set = tokio::task::JoinSet::new();
        for s in sessions {
            set.spawn(ack_received(s));
        }
        sessions = Vec::with_capacity(n);
        while let Some(r) = set.join_next().await {
            if let Ok((s, ok)) = r {
                acked += usize::from(ok);
                sessions.push(s);
            }
        }
    }
    let ok = sessions.len();
    let rss_loaded = ctx.settled_rss(Duration::from_secs(10)).await;
    ctx.close_all(sessions).await;
    let rss_after = ctx.settled_rss(Duration::from_secs(10)).await;
    let per_session = rss_loaded
        .zip(rss_empty)
        .filter(|_| ok > 0)
        .map(|(l, e)| (l as f64 - e as f64) / ok as f64);
    json!({
        "scenario": "idle", "n": n, "ok": ok, "failed": failed,
        "rss_empty_kib": rss_empty, "rss_loaded_kib": rss_loaded,
        "kib_per_session": per_session, "rss_after_logout_kib": rss_after,
        "sm": sm, "sm_acked_sessions": sm.then_some(acked),
    })
}

/// Reads what the server sent a new stream-managed session (at least one stanza, then until
/// 300 ms pass quietly; 5 s at most) and acknowledges all of it, answering any `<r/>`.
/// Returns the session and whether anything was acknowledged.
async fn ack_received(mut s: Session) -> (Session, bool) {
    let mut scanner = Scanner::with_sm();
    let mut buf = [0u8; 2048];
    let mut acked = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let handled = scanner.sm().map_or(0, |sm| sm.handled);
        let wait = if handled > 0 {
            tokio::time::Instant::now() + Duration::from_millis(300)
        } else {
            deadline
        };
        let read = tokio::time::timeout_at(wait.min(deadline), s.io.read(&mut buf)).await;
        let Ok(Ok(n @ 1..)) = read else { break };
        scanner.feed(&buf[..n], |_| {});
        let requested = scanner.take_request().is_some();
        let handled = scanner.sm().map_or(0, |sm| sm.handled);
        if requested || handled > acked {
            let mut out = Vec::with_capacity(48);
            scan::write_ack(&mut out, handled);
            if s.io.write_all(&out).await.is_err() || s.io.flush().await.is_err() {
                break;
            }
            acked = handled;
        }
    }
    (s, acked > 0)
}

/// `pairs` pairs exchange 100-byte chat messages both ways with `window` in flight each way.
pub async fn throughput(ctx: &Ctx, pairs: usize, window: u64, secs: Duration) -> Value {
    let (mut v, _) = run_pairs(
        ctx,
        0,
        pairs,
        Plan::Window(window),
        Duration::from_secs(2),
        secs,
    )
    .await;
    v["scenario"] = json!("throughput");
    v["window"] = json!(window);
    v
}

/// A fixed total `rate` (msg/s) over `pairs` pairs, both ways; end-to-end latency percentiles.
/// The pairs use accounts from `first` on, so that messages still in flight when an earlier
/// scenario ended (which a server with offline storage delivers at the next login) do not
/// count here.
pub async fn latency(ctx: &Ctx, first: usize, rate: u64, pairs: usize, secs: Duration) -> Value {
    let per_direction = rate as f64 / (pairs as f64 * 2.0);
    let interval = Duration::from_secs_f64(1.0 / per_direction.max(0.001));
    let (mut v, mut total) = run_pairs(
        ctx,
        first,
        pairs,
        Plan::Rate(interval),
        Duration::from_secs(2),
        secs,
    )
    .await;
    total.latencies_us.sort_unstable();
    let pct = |p: f64| -> Option<f64> {
        let n = total.latencies_us.len();
        (n > 0).then(|| {
            let i = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
            f64::from(total.latencies_us[i]) / 1000.0
        })
    };
    v["scenario"] = json!("latency");
    v["target_rate"] = json!(rate);
    v["p50_ms"] = json!(pct(0.50));
    v["p99_ms"] = json!(pct(0.99));
    v["p999_ms"] = json!(pct(0.999));
    v["max_ms"] = json!(pct(1.0));
    v
}
