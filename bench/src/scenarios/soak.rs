//! Soak: many login and logout cycles with the server's memory read along the way, then as
//! many idle TLS sessions as this machine lets one generator and one server hold.
//!
//! **Cycles.** Each cycle is what a client does from start to end: TCP (from one of the
//! source addresses in turn), STARTTLS, SCRAM-SHA-1 with the client keys cached after the
//! account's first login, bind, initial presence, then `</stream:stream>` and a wait for the
//! server's closing tag and the end of the connection ([`Session::logout`]). The concurrency
//! of the other scenarios' logins is the number of cycles in flight. A cycle counts when the
//! server closed the stream; a login refused, a logout the server did not finish within
//! 10 s or anything that timed out is a failure, and a run with one failure is an error. The
//! cycles run in batches between the checkpoints of [`checkpoints`]; at each, nothing is in
//! flight, and the server's RSS is read once its CPU has gone quiet, so the readings compare
//! like with like. The wall-clock limit stops new cycles (those in flight finish); a run it
//! stops reports how far it got and is not a pass.
//!
//! **Idle.** The idle scenario's sessions (accounts `0..n`, initial presence, nothing read
//! afterwards) from the source addresses in turn, `n` as asked or fewer when the open-file
//! limit of either process or the local ports of the source addresses allow fewer
//! ([`IdleLimits`]): the row names the limit. RSS per session is the loaded RSS minus the
//! RSS read just before the logins (the server quiet after the cycles), over the sessions
//! held.
//!
//! [`Session::logout`]: crate::client::Session::logout

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{Ctx, per, usage};
use crate::client;
use crate::procstat;
use crate::soak::{CyclesOutcome, IdleLimits, Verdict, checkpoints, growth};

/// The scenario's settings.
#[derive(Clone, Copy, Debug)]
pub struct SoakSettings {
    /// Login and logout cycles (0: none).
    pub cycles: u64,
    /// Wall-clock bound on the cycles, from the first, checkpoints included.
    pub time_limit: Duration,
    /// Cycle `i` logs in account `i % accounts`.
    pub accounts: usize,
    /// The first RSS reading comes after this many cycles.
    pub first_batch: u64,
    /// Then one at every multiple of this many cycles.
    pub report_every: u64,
    /// Idle sessions asked for (0: none).
    pub idle: usize,
    /// Bound on each wait for the server's CPU to go quiet before an RSS reading (and on the
    /// wait for its RSS to settle, at most 10 s).
    pub quiet_timeout: Duration,
}

impl SoakSettings {
    /// Bound on a wait for the server's RSS to stop changing.
    fn rss_wait(&self) -> Duration {
        self.quiet_timeout.min(RSS_WAIT)
    }
}

/// Bound on a login, as in the other scenarios.
const LOGIN_WAIT: Duration = Duration::from_secs(60);

/// Bound on a logout: the server's closing tag and the end of the connection.
const LOGOUT_WAIT: Duration = Duration::from_secs(10);

/// Bound on a wait for the server's RSS to stop changing, at most.
const RSS_WAIT: Duration = Duration::from_secs(10);

/// Failures after which no more cycles start: the run is an error already, and a server
/// that refuses logins would otherwise be hammered until the time limit.
const MAX_FAILURES: u64 = 100;

/// What one batch of cycles did.
#[derive(Default)]
struct Batch {
    done: u64,
    failed: u64,
    first_error: Option<String>,
}

/// Runs the cycles and reports the RSS at every checkpoint and the verdict.
pub async fn soak_cycles(ctx: &Ctx, settings: &SoakSettings) -> Value {
    if !ctx.target.protocol.is_xmpp() || settings.accounts == 0 {
        return json!({
            "scenario": "soak_cycles", "n": settings.cycles,
            "error": "needs an XMPP server and at least one account",
        });
    }
    ctx.settled_cpu(settings.quiet_timeout).await;
    let rss_empty = ctx.settled_rss(settings.rss_wait()).await;
    let started = Instant::now();
    let deadline = started + settings.time_limit;
    let failures = Arc::new(AtomicU64::new(0));
    let in_use: AccountLocks = (0..settings.accounts).map(|_| Mutex::new(())).collect();
    let in_use = Arc::new(in_use);
    let mut total = Batch::default();
    let (mut cycling, mut server_cpu, mut gen_cpu) = (Duration::ZERO, Some(0.0), Some(0.0));
    let mut samples = Vec::new();
    let mut time_wait_max = None;
    let mut from = 0;
    for at in checkpoints(settings.cycles, settings.first_batch, settings.report_every) {
        let before = ctx.cpu();
        let batch = run_batch(ctx, settings, from..at, deadline, &failures, &in_use).await;
        let after = ctx.cpu();
        let (wall, server, generator) = usage(before, after);
        cycling += Duration::from_secs_f64(wall);
        server_cpu = server_cpu.zip(server).map(|(a, b)| a + b);
        gen_cpu = gen_cpu.zip(generator).map(|(a, b)| a + b);
        // Right after the batch, before the quiet wait lets them expire: the most TIME_WAIT
        // sockets the cycles had at once, about.
        let time_wait = procstat::time_wait_sockets();
        time_wait_max = time_wait_max.max(time_wait);
        total.done += batch.done;
        total.failed += batch.failed;
        total.first_error = total.first_error.or(batch.first_error);
        ctx.settled_cpu(settings.quiet_timeout).await;
        let rss = ctx.settled_rss(settings.rss_wait()).await;
        let cycles = total.done + total.failed;
        eprintln!(
            "soak: {cycles} cycles ({} failed), {:.0}/s in this batch, RSS {} KiB, {} TIME_WAIT",
            total.failed,
            (batch.done + batch.failed) as f64 / wall.max(1e-9),
            rss.map_or_else(|| "?".to_owned(), |r| r.to_string()),
            time_wait.map_or_else(|| "?".to_owned(), |t| t.to_string()),
        );
        samples.push(json!({
            "cycles": cycles, "rss_kib": rss, "secs": started.elapsed().as_secs_f64(),
            "batch_cycles_per_s": (batch.done + batch.failed) as f64 / wall.max(1e-9),
            "time_wait": time_wait,
        }));
        from = at;
        if cycles < at {
            break;
        }
    }
    let rss_at = |i: Option<&Value>| i.and_then(|s| s["rss_kib"].as_u64());
    let outcome = CyclesOutcome {
        requested: settings.cycles,
        completed: total.done,
        failed: total.failed,
        rss_first_kib: rss_at(samples.first()),
        rss_end_kib: rss_at(samples.last()),
    };
    let verdict = Verdict::of(&outcome);
    let stopped_by =
        (total.done + total.failed < settings.cycles).then_some(if total.failed >= MAX_FAILURES {
            "failures"
        } else {
            "time limit"
        });
    let cycling = cycling.as_secs_f64();
    json!({
        "scenario": "soak_cycles", "n": settings.cycles, "completed": total.done,
        "failed": total.failed, "error": total.first_error,
        "not_started": settings.cycles - total.done - total.failed,
        "stopped_by": stopped_by, "time_limit_s": settings.time_limit.as_secs_f64(),
        "concurrency": ctx.concurrency, "accounts": settings.accounts,
        "sources": sources(ctx), "secs": cycling, "elapsed_s": started.elapsed().as_secs_f64(),
        "cycles_per_s": per(Some(total.done as f64), cycling, 1.0),
        "server_cpu_s": server_cpu,
        "server_us_per_cycle": per(server_cpu, total.done as f64, 1e6),
        "gen_cpu_s": gen_cpu, "gen_us_per_cycle": per(gen_cpu, total.done as f64, 1e6),
        "rss_empty_kib": rss_empty, "first_batch": settings.first_batch,
        "rss_first_kib": outcome.rss_first_kib, "rss_end_kib": outcome.rss_end_kib,
        "rss_growth": growth(outcome.rss_first_kib, outcome.rss_end_kib),
        "rss_samples": samples, "time_wait_max": time_wait_max,
        "verdict": verdict.name(),
    })
}

/// One lock per account, held for the account's cycle: a cycle whose account is still in
/// another (a slow first login, which computes the client keys, lets the next round of
/// accounts catch up) waits for it, as the same resource logged in twice would replace
/// the first session (RFC 6120 §7.7.2.2) and fail its logout.
type AccountLocks = Vec<Mutex<()>>;

/// Cycles `range` with the context's concurrency until done, the deadline, or too many
/// failures; every cycle started is finished and counted.
async fn run_batch(
    ctx: &Ctx,
    settings: &SoakSettings,
    range: Range<u64>,
    deadline: Instant,
    failures: &Arc<AtomicU64>,
    in_use: &Arc<AccountLocks>,
) -> Batch {
    let next = Arc::new(AtomicU64::new(range.start));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..ctx.concurrency.max(1) {
        let (ctx, next, failures) = (ctx.clone(), next.clone(), failures.clone());
        let in_use = in_use.clone();
        let (end, accounts) = (range.end, settings.accounts as u64);
        workers.spawn(async move {
            let mut batch = Batch::default();
            while Instant::now() < deadline && failures.load(Ordering::Relaxed) < MAX_FAILURES {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    break;
                }
                // Both below `accounts` and the number of cycles, which came from usizes.
                let account = usize::try_from(i % accounts).unwrap_or(0);
                let source = ctx.source(usize::try_from(i).unwrap_or(0));
                let user = ctx.user(account);
                let Some(lock) = in_use.get(account) else {
                    break;
                };
                let _account = lock.lock().await;
                match cycle(&ctx, &user, source).await {
                    Ok(()) => batch.done += 1,
                    Err(e) => {
                        batch.failed += 1;
                        failures.fetch_add(1, Ordering::Relaxed);
                        batch
                            .first_error
                            .get_or_insert_with(|| format!("{user}: {e:#}"));
                    }
                }
            }
            batch
        });
    }
    let mut total = Batch::default();
    while let Some(joined) = workers.join_next().await {
        let batch = joined.unwrap_or_else(|e| Batch {
            failed: 1,
            first_error: Some(format!("a cycle worker ended: {e}")),
            ..Batch::default()
        });
        total.done += batch.done;
        total.failed += batch.failed;
        total.first_error = total.first_error.or(batch.first_error);
    }
    total
}

/// One login and logout of `user` from `source`.
async fn cycle(ctx: &Ctx, user: &str, source: Option<std::net::IpAddr>) -> anyhow::Result<()> {
    let login = client::login_from(&ctx.target, user, b"<presence/>", false, source);
    let session = tokio::time::timeout(LOGIN_WAIT, login)
        .await
        .context("login timed out")??;
    session.logout(LOGOUT_WAIT).await.context("logout")
}

/// Holds as many of the asked idle sessions as this machine allows; RSS per session.
pub async fn soak_idle(ctx: &Ctx, settings: &SoakSettings) -> Value {
    let files = |pid| procstat::open_files_limit(pid).zip(procstat::open_files(pid));
    let limits = IdleLimits {
        generator_files: files(None),
        server_files: ctx.server_pid.and_then(|pid| files(Some(pid))),
        same_process: ctx.server_pid == Some(std::process::id()),
        ports_per_source: procstat::local_ports(),
        sources: ctx.sources.len(),
    };
    let capacity = limits.capacity(settings.idle);
    let n = capacity.sessions;
    ctx.settled_cpu(settings.quiet_timeout).await;
    let rss_before = ctx.settled_rss(settings.rss_wait()).await;
    let before = ctx.cpu();
    let (sessions, failed) = ctx.login_many(0..n).await;
    let after = ctx.cpu();
    let ok = sessions.len();
    ctx.settled_cpu(settings.quiet_timeout).await;
    let rss_loaded = ctx.settled_rss(settings.rss_wait()).await;
    let server_files_loaded = ctx
        .server_pid
        .and_then(|pid| procstat::open_files(Some(pid)));
    // What holding the sessions costs besides the server: the generator's side (a rustls
    // client each) and the kernel's socket buffers (both ends, and what nobody read).
    let generator_rss_loaded = procstat::rss_kib(std::process::id());
    let kernel_tcp_loaded = procstat::kernel_tcp_kib();
    ctx.close_all(sessions).await;
    ctx.settled_cpu(settings.quiet_timeout).await;
    let rss_after = ctx.settled_rss(settings.rss_wait()).await;
    let (wall, server, _) = usage(before, after);
    let per_session = rss_loaded
        .zip(rss_before)
        .filter(|_| ok > 0)
        .map(|(loaded, empty)| (loaded as f64 - empty as f64) / ok as f64);
    json!({
        "scenario": "soak_idle", "n": n, "requested": settings.idle,
        "limited_by": capacity.limited_by, "ok": ok, "failed": failed,
        "sources": sources(ctx), "login_secs": wall,
        "logins_per_s": per(Some(ok as f64), wall, 1.0),
        "server_us_per_login": per(server, ok as f64, 1e6),
        "rss_before_kib": rss_before, "rss_loaded_kib": rss_loaded,
        "kib_per_session": per_session, "rss_after_logout_kib": rss_after,
        "server_open_files_loaded": server_files_loaded,
        "generator_rss_loaded_kib": generator_rss_loaded,
        "kernel_tcp_kib_loaded": kernel_tcp_loaded,
        "generator_open_files_limit": limits.generator_files.map(|(limit, _)| limit),
        "server_open_files_limit": limits.server_files.map(|(limit, _)| limit),
    })
}

fn sources(ctx: &Ctx) -> Vec<String> {
    ctx.sources.iter().map(ToString::to_string).collect()
}
