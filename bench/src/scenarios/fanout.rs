//! Presence fan-out: "users with 100-contact rosters log in; presence stanzas delivered/s".
//!
//! **Groups.** The users form `count` disjoint cliques of `size` consecutive accounts: in a
//! group everyone has every other member as a contact with subscription `both`, so with 101
//! members each roster holds 100 contacts. Groups keep the rosters realistic (everyone's
//! contacts come online around them) while the number of accounts stays small.
//!
//! **Setup (untimed).** The rosters are built over the protocol, so that the same bytes build them
//! on xmppd, Prosody and ejabberd: all members log in and ask for their roster; if every roster
//! already holds the whole group with `both` (an earlier run), nothing is done. If no roster holds
//! any member, every pair `(a, b)` with `a < b` goes through RFC 6121 §3.1 both ways: `a` sends
//! `subscribe`, `b` answers `subscribed` and sends `subscribe` back, `a` answers `subscribed`
//! ([`Handshake`], a few of its own requests unanswered at a time). Requests never cross, so the
//! state machines of the three servers walk the same path. A user is done when roster pushes have
//! shown every other member with `both`; the wait is bounded, then everyone logs out and the server
//! is given time to go quiet. A partial clique (an interrupted setup) is an error: rebuilding it
//! would need unsubscriptions first, and fresh accounts are simpler (`--fanout-first`).
//!
//! **Measured.** All members of all groups log in at the generator's fixed login concurrency and
//! send initial presence with priority 0. The server then sends each user's presence to its online
//! contacts (broadcast) and answers the user's probes with the presence of the contacts already
//! online (RFC 6121 §4.2). Whichever way it comes, each user should get the available presence of
//! every other online member: `n × (n − 1)` per group with `n` members online
//! ([`ordered_pairs`](crate::clique::ordered_pairs)). The receive side ([`Tally`]) counts, per
//! user, the first available presence from each contact; the clock runs from the first login to the
//! last of those (or a bounded timeout), and the figures are the distinct arrivals per second and
//! the server's CPU per arrival. What else arrives is reported, not counted: a second available
//! presence from the same contact (when a broadcast and a probe answer cross, both carry it),
//! `unavailable` answers to probes of contacts not online yet, and the user's own presence.
//!
//! The server's CPU in this window includes the logins themselves (TLS, SCRAM, bind): one
//! login per 100 presences at 101 members, and a login costs a server as much as tens of
//! presences. So before the measured phase the same users log in without presence and out
//! again (`login_cost`); the result is also reported with that CPU taken out.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

use super::{Ctx, per, usage};
use crate::client::{self, Protocol, Session};
use crate::clique::{Arrival, Groups, Tally, account_of};
use crate::handshake::{Existing, Handshake, Plan, SetupError, plan};
use crate::scan::{Seen, StanzaScanner, roster_items};

/// The scenario's settings.
#[derive(Clone, Copy, Debug)]
pub struct FanoutSettings {
    /// The cliques.
    pub groups: Groups,
    /// Bound on building the rosters.
    pub setup_timeout: Duration,
    /// Bound on the measured phase, from the first login.
    pub timeout: Duration,
}

/// The initial presence of the measured logins.
const PRESENCE: &[u8] = b"<presence><priority>0</priority></presence>";

/// The id of the roster request of the setup.
const ROSTER_ID: &[u8] = b"fanout-roster";

/// A session with the stanza scanner on its receive side and an output buffer.
pub(crate) struct Conn {
    pub(crate) session: Session,
    pub(crate) scanner: StanzaScanner,
    pub(crate) buf: Vec<u8>,
    pub(crate) out: Vec<u8>,
}

impl Conn {
    pub(crate) fn new(session: Session) -> Self {
        Conn {
            session,
            scanner: StanzaScanner::new(),
            buf: vec![0; 16 * 1024],
            out: Vec::new(),
        }
    }

    /// Writes what is in `out`; false if the connection failed.
    pub(crate) async fn flush(&mut self) -> bool {
        if self.out.is_empty() {
            return true;
        }
        let io = &mut self.session.io;
        let ok = io.write_all(&self.out).await.is_ok() && io.flush().await.is_ok();
        self.out.clear();
        ok
    }

    /// Reads once and feeds the scanner; false at the end of the stream or on an error.
    /// Dropped before the read returns (a `select!` branch that lost), it has taken nothing.
    pub(crate) async fn receive(&mut self, on: impl FnMut(Seen<'_>)) -> bool {
        match self.session.io.read(&mut self.buf).await {
            Ok(n) if n > 0 => {
                self.scanner.feed(&self.buf[..n], on);
                !self.scanner.closed()
            }
            _ => false,
        }
    }

    /// [`Conn::receive`] until `deadline`; false at the deadline too.
    pub(crate) async fn read(&mut self, deadline: Instant, on: impl FnMut(Seen<'_>)) -> bool {
        tokio::time::timeout_at(deadline.into(), self.receive(on))
            .await
            .unwrap_or(false)
    }
}

/// Asks for the roster and counts `me`'s contacts in it; `None` if no result came.
async fn existing_roster(
    conn: &mut Conn,
    me: usize,
    groups: Groups,
    prefix: &str,
    deadline: Instant,
) -> Option<Existing> {
    conn.out.extend_from_slice(b"<iq type='get' id='");
    conn.out.extend_from_slice(ROSTER_ID);
    conn.out
        .extend_from_slice(b"'><query xmlns='jabber:iq:roster'/></iq>");
    if !conn.flush().await {
        return None;
    }
    let mut found = None;
    while found.is_none() {
        let on = |seen: Seen<'_>| {
            if let Seen::Iq {
                id: Some(ROSTER_ID),
                kind,
                inner,
                ..
            } = seen
            {
                let mut e = Existing::default();
                for item in roster_items(inner) {
                    let member = account_of(item.jid, prefix.as_bytes())
                        .filter(|a| groups.is_contact(me, *a));
                    if member.is_some() {
                        e.any += 1;
                        e.both += usize::from(item.subscription == Some(b"both"));
                    }
                }
                found = Some((kind == Some(b"result")).then_some(e));
            }
        };
        if !conn.read(deadline, on).await && found.is_none() {
            return None;
        }
    }
    found.flatten()
}

/// Runs one user's handshake until it is complete and `stop` says everyone is (or the
/// deadline); a complete user keeps reading so that the server never waits on it.
async fn drive(
    mut conn: Conn,
    mut hs: Handshake,
    remaining: Arc<AtomicUsize>,
    stop: watch::Sender<bool>,
    deadline: Instant,
) -> (Conn, Handshake, bool) {
    let mut stopped = stop.subscribe();
    hs.start(&mut conn.out);
    let mut counted = false;
    loop {
        if !conn.flush().await {
            return (conn, hs, true);
        }
        if hs.complete() && !counted {
            counted = true;
            if remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
                stop.send_replace(true);
            }
        }
        let Conn {
            session,
            scanner,
            buf,
            out,
        } = &mut conn;
        tokio::select! {
            r = tokio::time::timeout_at(deadline.into(), session.io.read(buf)) => match r {
                Ok(Ok(n)) if n > 0 => {
                    scanner.feed(&buf[..n], |seen| hs.on(seen, out));
                    if scanner.closed() {
                        return (conn, hs, true);
                    }
                }
                Ok(_) => return (conn, hs, true),
                Err(_) => return (conn, hs, false),
            },
            _ = stopped.wait_for(|s| *s) => return (conn, hs, false),
        }
    }
}

/// Builds the groups' rosters unless they exist; returns what was done.
pub(crate) async fn setup(
    ctx: &Ctx,
    groups: Groups,
    timeout: Duration,
) -> Result<Plan, SetupError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let accounts = groups.accounts();
    let (sessions, failed) = ctx.login_many(accounts.clone()).await;
    if failed > 0 || sessions.len() != accounts.len() {
        ctx.close_all(sessions).await;
        return Err(SetupError::Logins {
            failed,
            total: accounts.len(),
        });
    }
    let mut fetches = JoinSet::new();
    for (account, session) in accounts.clone().zip(sessions) {
        let prefix = ctx.prefix.clone();
        fetches.spawn(async move {
            let mut conn = Conn::new(session);
            let e = existing_roster(&mut conn, account, groups, &prefix, deadline).await;
            (account, conn, e)
        });
    }
    let mut conns = Vec::new();
    let mut existing = Vec::new();
    let mut no_result = 0;
    while let Some(r) = fetches.join_next().await {
        if let Ok((account, conn, e)) = r {
            match e {
                Some(e) => existing.push((e, groups.contacts_of(account))),
                None => no_result += 1,
            }
            conns.push((account, conn));
        } else {
            no_result += 1;
        }
    }
    let decided = if no_result > 0 {
        Err(SetupError::RosterFetch { users: no_result })
    } else {
        plan(&existing)
    };
    if decided.as_ref().ok() != Some(&Plan::Build) {
        close(ctx, conns.into_iter().map(|(_, c)| c)).await;
        return decided;
    }

    let (stop, _) = watch::channel(false);
    let remaining = Arc::new(AtomicUsize::new(conns.len()));
    let mut drivers = JoinSet::new();
    for (account, conn) in conns {
        let Some(hs) = Handshake::in_groups(account, &groups, &ctx.prefix, &ctx.target.domain)
        else {
            continue;
        };
        drivers.spawn(drive(conn, hs, remaining.clone(), stop.clone(), deadline));
    }
    // A server that rewrites a whole roster per change (Prosody's file storage) takes minutes
    // here: say how far it got every 30 s, so a long setup is not mistaken for a hang.
    let mut all_done = stop.subscribe();
    let total = remaining.load(Ordering::Acquire);
    loop {
        let until = deadline.min(Instant::now() + Duration::from_secs(30));
        let waited = tokio::time::timeout_at(until.into(), all_done.wait_for(|s| *s)).await;
        if waited.is_ok() || Instant::now() >= deadline {
            break;
        }
        let done = total - remaining.load(Ordering::Acquire);
        eprintln!(
            "fanout setup: {done} of {total} users have every contact with subscription both \
             after {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    stop.send_replace(true);
    let (mut users, mut contacts, mut closed) = (0, 0, 0);
    let mut conns = Vec::new();
    while let Some(r) = drivers.join_next().await {
        let Ok((conn, hs, was_closed)) = r else {
            users += 1;
            continue;
        };
        if !hs.complete() {
            users += 1;
            contacts += hs.missing();
        }
        closed += usize::from(was_closed);
        conns.push(conn);
    }
    close(ctx, conns).await;
    if users > 0 {
        return Err(SetupError::Incomplete {
            users,
            contacts,
            closed,
            secs: started.elapsed().as_secs_f64(),
        });
    }
    Ok(Plan::Build)
}

pub(crate) async fn close(ctx: &Ctx, conns: impl IntoIterator<Item = Conn>) {
    ctx.close_all(conns.into_iter().map(|c| c.session).collect())
        .await;
}

/// Progress of the measured phase, shared by the receive tasks.
#[derive(Debug, Default)]
struct Progress {
    /// Distinct arrivals so far.
    distinct: AtomicU64,
    /// When the last of them arrived, in ns since the first login.
    last_ns: AtomicU64,
}

/// One user's receive side in the measured phase: counts until `stop` or the deadline.
async fn receive(
    mut conn: Conn,
    mut tally: Tally,
    prefix: Arc<str>,
    progress: Arc<Progress>,
    start: Instant,
    mut stop: watch::Receiver<bool>,
    deadline: Instant,
) -> (Session, Tally, bool) {
    let mut closed = false;
    loop {
        // The time of arrival, taken once per read.
        let mut now = None;
        let on = |seen: Seen<'_>| {
            if let Seen::Presence { from, kind, .. } = seen {
                let from = from.and_then(|f| account_of(f, prefix.as_bytes()));
                if tally.record(from, kind) == Arrival::New {
                    let now = *now.get_or_insert_with(|| {
                        u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
                    });
                    progress.distinct.fetch_add(1, Ordering::Relaxed);
                    progress.last_ns.fetch_max(now, Ordering::Relaxed);
                }
            }
        };
        tokio::select! {
            alive = conn.receive(on) => if !alive {
                closed = true;
                break;
            },
            _ = stop.wait_for(|s| *s) => break,
            _ = tokio::time::sleep_until(deadline.into()) => break,
        }
    }
    (conn.session, tally, closed)
}

/// Sums of the users' tallies.
#[derive(Debug, Default)]
struct Totals {
    distinct: u64,
    repeats: u64,
    unavailable: u64,
    other: u64,
    own: u64,
    strangers: u64,
    from_contacts: u64,
    closed: u64,
}

impl Totals {
    fn add(&mut self, t: &Tally, closed: bool) {
        self.distinct += t.distinct;
        self.repeats += t.repeats;
        self.unavailable += t.unavailable;
        self.other += t.other;
        self.own += t.own;
        self.strangers += t.strangers;
        self.from_contacts += t.from_contacts();
        self.closed += u64::from(closed);
    }
}

/// The measured phase: everyone logs in and sends initial presence.
async fn measure(ctx: &Ctx, groups: Groups, timeout: Duration) -> Value {
    let accounts = groups.accounts();
    let failed: Arc<Vec<AtomicUsize>> =
        Arc::new((0..groups.count).map(|_| AtomicUsize::new(0)).collect());
    let progress = Arc::new(Progress::default());
    let prefix: Arc<str> = Arc::from(ctx.prefix.as_str());
    let next = Arc::new(AtomicUsize::new(accounts.start));
    let workers_left = Arc::new(AtomicUsize::new(ctx.concurrency.max(1)));
    let (receivers_tx, mut receivers) = mpsc::unbounded_channel::<JoinHandle<_>>();
    let (stop, stopped) = watch::channel(false);

    let before = ctx.cpu();
    let start = before.at;
    let deadline = start + timeout;
    let mut workers = JoinSet::new();
    for _ in 0..ctx.concurrency.max(1) {
        let (ctx, failed, progress, prefix) = (
            ctx.clone(),
            failed.clone(),
            progress.clone(),
            prefix.clone(),
        );
        let (next, workers_left, receivers_tx, stopped) = (
            next.clone(),
            workers_left.clone(),
            receivers_tx.clone(),
            stopped.clone(),
        );
        workers.spawn(async move {
            let mut first_error = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(group) = groups.group_of(i) else {
                    break;
                };
                let user = ctx.user(i);
                let until = deadline.min(Instant::now() + Duration::from_secs(60));
                let login = client::login_with(&ctx.target, &user, PRESENCE);
                match tokio::time::timeout_at(until.into(), login).await {
                    Ok(Ok(session)) => {
                        let tally = Tally::new(i, group);
                        let task = receive(
                            Conn::new(session),
                            tally,
                            prefix.clone(),
                            progress.clone(),
                            start,
                            stopped.clone(),
                            deadline,
                        );
                        let _ = receivers_tx.send(tokio::spawn(task));
                    }
                    Ok(Err(e)) => {
                        failed[(i - groups.first) / groups.size].fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert_with(|| format!("{e:#}"));
                    }
                    Err(_) => {
                        failed[(i - groups.first) / groups.size].fetch_add(1, Ordering::Relaxed);
                        first_error.get_or_insert_with(|| "login timed out".to_owned());
                    }
                }
            }
            if let Some(e) = first_error {
                eprintln!("fanout login error (first of its worker): {e}");
            }
            workers_left.fetch_sub(1, Ordering::AcqRel);
        });
    }
    drop(receivers_tx);

    // Wait for the expected total, which logins that failed make smaller.
    let online = || -> Vec<usize> {
        failed
            .iter()
            .map(|f| groups.size.saturating_sub(f.load(Ordering::Relaxed)))
            .collect()
    };
    loop {
        let logins_done = workers_left.load(Ordering::Acquire) == 0;
        let complete = progress.distinct.load(Ordering::Relaxed) >= groups.expected(&online());
        if (logins_done && complete) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let after = ctx.cpu();
    stop.send_replace(true);
    workers.shutdown().await;

    let mut totals = Totals::default();
    let mut sessions = Vec::new();
    while let Some(handle) = receivers.recv().await {
        if let Ok((session, tally, closed)) = handle.await {
            totals.add(&tally, closed);
            sessions.push(session);
        }
    }
    let logins_ok = sessions.len();
    ctx.close_all(sessions).await;

    let users = groups.count * groups.size;
    let expected = groups.expected(&online());
    let (window, server, generator) = usage(before, after);
    let last = progress.last_ns.load(Ordering::Relaxed) as f64 / 1e9;
    let secs = if totals.distinct > 0 { last } else { window };
    json!({
        "scenario": "fanout", "groups": groups.count, "group_size": groups.size,
        "contacts": groups.size - 1, "users": users, "n": users,
        "first_account": groups.first, "concurrency": ctx.concurrency,
        // Failed, or not finished before the timeout.
        "logins_ok": logins_ok, "failed": users - logins_ok,
        "expected": expected, "delivered": totals.distinct,
        "fraction": (expected > 0).then(|| totals.distinct as f64 / expected as f64),
        "repeats": totals.repeats, "unavailable": totals.unavailable,
        "other_from_contacts": totals.other, "presence_from_contacts": totals.from_contacts,
        "own_presence": totals.own, "strangers": totals.strangers,
        "closed_by_server": totals.closed,
        "secs": secs, "presences_per_s": (secs > 0.0).then(|| totals.distinct as f64 / secs),
        "window_secs": window, "timed_out": totals.distinct < expected,
        "server_cpu_s": server,
        "server_us_per_presence": per(server, totals.distinct as f64, 1e6),
        "gen_cpu_s": generator,
    })
}

/// The server CPU of the measured phase's logins alone: the same users log in the same way
/// but send no presence (so nothing is broadcast or probed), then out again.
///
/// The measured window includes the logins, and a login costs a server as much as tens of
/// presences (Prosody about 5 ms of CPU); subtracting this shows the presence work itself.
async fn login_cost(ctx: &Ctx, groups: Groups) -> Option<f64> {
    let before = ctx.cpu();
    let (sessions, failed) = ctx.login_many_with(groups.accounts(), b"").await;
    let after = ctx.cpu();
    ctx.close_all(sessions).await;
    let (_, server, _) = usage(before, after);
    server.filter(|_| failed == 0)
}

/// Builds the rosters (unless present), lets the server go quiet, measures the logins alone,
/// then the logins with presence.
pub async fn fanout(ctx: &Ctx, settings: &FanoutSettings) -> Value {
    let groups = settings.groups;
    if ctx.target.protocol == Protocol::Relay {
        return json!({"scenario": "fanout", "skipped": "the raw relay has no presence"});
    }
    if groups.size < 2 || groups.count == 0 {
        return json!({"scenario": "fanout", "error": "need at least one group of two"});
    }
    let started = Instant::now();
    let setup = setup(ctx, groups, settings.setup_timeout).await;
    let setup_secs = started.elapsed().as_secs_f64();
    let plan = match setup {
        Ok(plan) => plan,
        Err(e) => {
            return json!({
                "scenario": "fanout", "groups": groups.count, "group_size": groups.size,
                "error": format!("setup: {e}"), "setup_secs": setup_secs,
            });
        }
    };
    ctx.settled_cpu(Duration::from_secs(15)).await;
    let logins_cpu = login_cost(ctx, groups).await;
    ctx.settled_cpu(Duration::from_secs(15)).await;
    let mut v = measure(ctx, groups, settings.timeout).await;
    let presence_cpu = v["server_cpu_s"]
        .as_f64()
        .zip(logins_cpu)
        .map(|(s, l)| s - l);
    let delivered = v["delivered"].as_u64().unwrap_or(0) as f64;
    v["logins_cpu_s"] = json!(logins_cpu);
    v["server_us_per_presence_excl_logins"] =
        json!(per(presence_cpu.filter(|c| *c > 0.0), delivered, 1e6));
    v["setup"] = json!(match plan {
        Plan::Build => "built",
        Plan::Present => "present",
    });
    v["setup_secs"] = json!(setup_secs);
    v
}
