//! Group chat (XEP-0045): "rooms of 10, 100 and 1,000 occupants, a fixed set of senders
//! posting; copies delivered per second and server CPU per delivered copy".
//!
//! **Room (untimed).** One room per call, with a name of its own (`bench<size>-<time>`), so a
//! room left by an earlier run never answers. The first account logs in, joins without
//! history ([`Room::join`]), sees status 201 and submits the configuration (an instant room,
//! or the archiving field set on or off, [`Room::configure`]). Only then do the other
//! occupants log in and join, `concurrency` joins unanswered at a time; every occupant reads
//! its stream from its own join to the end, so the presence broadcasts of later joins never
//! back up in the server. The wait is bounded (`setup_timeout`, progress every 30 s), then the
//! run waits for the server's CPU to go quiet.
//!
//! **Measured.** The first `senders` occupants post 100-byte groupchat messages. A sender
//! keeps at most `window` messages on their way: it sends message `n` only once every
//! occupant has received its message `n − window`. So a room has at most about `in_flight`
//! copies on their way ([`room::window_messages`]), and no occupant is ever more than
//! `senders × window` messages behind, which keeps every server's queue for a slow reader
//! (xmppd: `[limits] session_queue`, 1,024 stanzas) out of play. After a warm-up, the copies
//! received in `secs` give the deliveries per second, and the server's CPU over the same
//! window divided by them the CPU per delivered copy.
//!
//! **Checked.** Then the senders stop and the run waits (bounded by `timeout`) until every
//! occupant has every message; [`room::verify`] compares each occupant's count per sender with
//! what the sender sent. A missing, extra or refused copy, a refused join or a session the
//! server closed makes the result a failure (`error`) without figures. Finally the owner asks
//! the room's archive (XEP-0313) for its count: with archiving asked for, an empty or absent
//! archive is a failure too, and with archiving off a non-empty one is.

mod occupant;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::fanout::{Conn, close};
use super::{Ctx, per, usage};
use crate::client::Protocol;
use crate::room::{self, Archiving, Room, Tally, Verdict};
use occupant::{ArchiveFound, Flow, Phase, Shared, archive_count, create, nick, occupant};

/// The scenario's settings (the room size is given per call).
#[derive(Clone, Debug)]
pub struct MucSettings {
    /// The first occupant's account (the room's owner); the others follow it.
    pub first: usize,
    /// Occupants that post, the owner first.
    pub senders: usize,
    /// Copies on their way in the whole room that the senders' windows aim at.
    pub in_flight: u64,
    /// Sending before the measured window.
    pub warmup: Duration,
    /// The measured window.
    pub secs: Duration,
    /// The MUC service's domain.
    pub service: String,
    /// Room archiving, as the owner configures it.
    pub archiving: Archiving,
    /// Bound on creating the room and all joins.
    pub setup_timeout: Duration,
    /// Bound on receiving every copy after the senders stop (and on the archive query).
    pub timeout: Duration,
}

/// A room name no earlier run used.
fn room_name(occupants: usize) -> String {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("bench{occupants}-{ms}")
}

/// Waits (bounded) until every joiner has joined or given up, saying how far it got every
/// 30 s.
async fn wait_for_joins(shared: &Shared, joiners: usize, started: Instant, deadline: Instant) {
    let mut report = Instant::now() + Duration::from_secs(30);
    loop {
        let joined = shared.joined.load(Ordering::SeqCst);
        let done = joined + shared.refused.load(Ordering::SeqCst);
        if done >= joiners || Instant::now() >= deadline || shared.closed.load(Ordering::SeqCst) > 0
        {
            return;
        }
        if Instant::now() >= report {
            report += Duration::from_secs(30);
            eprintln!(
                "muc setup: {} of {joiners} occupants joined {} after {:.0} s",
                joined + 1,
                shared.room.jid(),
                started.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Creates a room of `occupants`, measures and checks it as the module docs say.
pub async fn muc(ctx: &Ctx, settings: &MucSettings, occupants: usize) -> Value {
    let mut v = json!({
        "scenario": "muc", "n": occupants, "occupants": occupants, "senders": settings.senders,
        "archive": if settings.archiving.on { "on" } else { "off" },
        "archive_field": settings.archiving.field,
    });
    let fail = |mut v: Value, e: String| {
        v["error"] = json!(e);
        v
    };
    if ctx.target.protocol == Protocol::Relay {
        v["skipped"] = json!("the raw relay has no group chat");
        return v;
    }
    if settings.senders == 0 || settings.senders > occupants {
        return fail(
            v,
            format!("{} senders in a room of {occupants}", settings.senders),
        );
    }
    let started = Instant::now();
    let setup_deadline = started + settings.setup_timeout;
    let room = Room::new(&room_name(occupants), &settings.service);
    v["room"] = json!(room.jid());
    let window = room::window_messages(settings.in_flight, settings.senders, occupants);
    v["window"] = json!(window);
    let first = settings.first;

    let Some(owner) = ctx.login_many(first..first + 1).await.0.pop() else {
        return fail(v, "the owner's login failed".to_owned());
    };
    let mut owner = Conn::new(owner);
    let archiving = &settings.archiving;
    if let Err(e) = create(&mut owner, &room, &nick(0), archiving, setup_deadline).await {
        close(ctx, [owner]).await;
        return fail(v, format!("creating the room: {e}"));
    }
    let (sessions, failed) = ctx.login_many(first + 1..first + occupants).await;
    if failed > 0 {
        close(
            ctx,
            std::iter::once(owner).chain(sessions.into_iter().map(Conn::new)),
        )
        .await;
        return fail(v, format!("{failed} of {} logins failed", occupants - 1));
    }

    let shared = Arc::new(Shared {
        room: room.clone(),
        occupants: occupants as u64,
        flows: (0..settings.senders).map(|_| Flow::new(window)).collect(),
        start_ns: AtomicU64::new(u64::MAX),
        end_ns: AtomicU64::new(u64::MAX),
        joined: AtomicUsize::new(0),
        refused: AtomicUsize::new(0),
        closed: AtomicUsize::new(0),
        first_error: Mutex::new(None),
        joins: Semaphore::new(ctx.concurrency.max(1)),
        epoch: ctx.epoch,
    });
    let (phase, phases) = watch::channel(Phase::Join);
    let mut tasks = JoinSet::new();
    let sender_of = |i: usize| (i < settings.senders).then_some(i);
    let conns = std::iter::once(owner).chain(sessions.into_iter().map(Conn::new));
    for (i, conn) in conns.enumerate() {
        let (shared, phases) = (shared.clone(), phases.clone());
        let task = occupant(i, conn, sender_of(i), i > 0, shared, phases, setup_deadline);
        tasks.spawn(task);
    }
    wait_for_joins(&shared, occupants - 1, started, setup_deadline).await;
    let joined = shared.joined.load(Ordering::SeqCst) + 1;
    let setup_secs = started.elapsed().as_secs_f64();
    v["setup_secs"] = json!(setup_secs);
    v["joined"] = json!(joined);

    let mut measured = None;
    if joined == occupants && shared.closed.load(Ordering::SeqCst) == 0 {
        ctx.settled_cpu(Duration::from_secs(15)).await;
        phase.send_replace(Phase::Send);
        tokio::time::sleep(settings.warmup).await;
        let before = ctx.cpu();
        shared.start_ns.store(shared.now_ns(), Ordering::SeqCst);
        tokio::time::sleep(settings.secs).await;
        shared.end_ns.store(shared.now_ns(), Ordering::SeqCst);
        let after = ctx.cpu();
        phase.send_replace(Phase::Drain);
        let drain_deadline = Instant::now() + settings.timeout;
        while !shared.drained()
            && shared.closed.load(Ordering::SeqCst) == 0
            && Instant::now() < drain_deadline
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        measured = Some((before, after));
    }
    phase.send_replace(Phase::Stop);

    let mut ended = Vec::with_capacity(occupants);
    while let Some(r) = tasks.join_next().await {
        if let Ok(e) = r {
            ended.push(e);
        }
    }
    ended.sort_by_key(|e| e.index);
    let archive = match ended.first_mut() {
        Some(owner) if owner.index == 0 && !owner.closed && measured.is_some() => {
            let deadline = Instant::now() + settings.timeout;
            archive_count(&mut owner.conn, &room, deadline).await
        }
        _ => ArchiveFound::default(),
    };
    let sent: Vec<u64> = shared
        .flows
        .iter()
        .map(|f| f.sent.load(Ordering::SeqCst))
        .collect();
    let tallies: Vec<Tally> = ended.iter().map(|e| e.tally.clone()).collect();
    let in_window: u64 = ended.iter().map(|e| e.in_window).sum();
    let closed = ended.iter().filter(|e| e.closed).count();
    close(ctx, ended.into_iter().map(|e| e.conn)).await;
    // The leave broadcasts of a large room take a while on some servers; the next room
    // starts on a quiet server.
    ctx.settled_cpu(Duration::from_secs(30)).await;

    let verdict = room::verify(&tallies, &sent, occupants);
    report(
        v,
        Report {
            settings,
            verdict: &verdict,
            tallies: &tallies,
            sent: &sent,
            in_window,
            closed,
            measured,
            archive,
            first_error: shared.first_error.lock().ok().and_then(|e| e.clone()),
        },
    )
}

/// Everything the result is made of.
struct Report<'a> {
    settings: &'a MucSettings,
    verdict: &'a Verdict,
    tallies: &'a [Tally],
    sent: &'a [u64],
    in_window: u64,
    closed: usize,
    measured: Option<(super::Cpu, super::Cpu)>,
    archive: ArchiveFound,
    first_error: Option<String>,
}

/// The JSON line: figures only when every check passed, `error` otherwise.
fn report(mut v: Value, r: Report<'_>) -> Value {
    let errors: u64 = r.tallies.iter().map(|t| t.errors).sum();
    let first_stanza_error = r.tallies.iter().find_map(|t| t.first_error.clone());
    let messages: u64 = r.sent.iter().sum();
    let verdict = r.verdict;
    v["warmup_secs"] = json!(r.settings.warmup.as_secs_f64());
    v["sent"] = json!(messages);
    v["expected"] = json!(verdict.expected);
    v["delivered"] = json!(verdict.received);
    v["missing"] = json!(verdict.missing);
    v["extra"] = json!(verdict.extra);
    v["occupants_short"] = json!(verdict.occupants_short);
    v["fraction"] = json!(
        (verdict.expected > 0)
            .then(|| { (verdict.received - verdict.extra) as f64 / verdict.expected as f64 })
    );
    v["out_of_order"] = json!(r.tallies.iter().map(|t| t.out_of_order).sum::<u64>());
    v["strays"] = json!(r.tallies.iter().map(|t| t.strays).sum::<u64>());
    v["errors"] = json!(errors);
    v["first_stanza_error"] = json!(first_stanza_error);
    v["closed_by_server"] = json!(r.closed);
    v["archived"] = json!(r.archive.count);
    v["archive_results"] = json!(r.archive.results);
    v["archived_fraction"] = json!(
        r.archive
            .count
            .filter(|_| messages > 0)
            .map(|c| c as f64 / messages as f64)
    );
    v["archive_query_error"] = json!(r.archive.error);
    let Some((before, after)) = r.measured else {
        let e = r
            .first_error
            .unwrap_or_else(|| format!("{} of {} occupants joined", v["joined"], v["occupants"]));
        v["error"] = json!(format!("setup: {e}"));
        return v;
    };
    let (secs, server, generator) = usage(before, after);
    v["secs"] = json!(secs);
    v["in_window"] = json!(r.in_window);
    v["server_cpu_s"] = json!(server);
    v["gen_cpu_s"] = json!(generator);
    let problem = if r.closed > 0 {
        Some(format!(
            "the server closed {} occupants' sessions",
            r.closed
        ))
    } else if !verdict.complete() {
        Some(format!(
            "{} of {} copies missing ({} occupants short), {} extra",
            verdict.missing, verdict.expected, verdict.occupants_short, verdict.extra
        ))
    } else if errors > 0 {
        Some(format!(
            "{errors} error messages: {}",
            v["first_stanza_error"]
        ))
    } else if r.in_window == 0 {
        Some("no copy arrived in the measured window".to_owned())
    } else if r.settings.archiving.on && !r.archive.holds_any() {
        Some(format!(
            "archiving on, but the room's archive shows nothing (count {:?}, {})",
            r.archive.count,
            r.archive.error.as_deref().unwrap_or("no error")
        ))
    } else if !r.settings.archiving.on && r.archive.holds_any() {
        Some(format!(
            "archiving off, but the room's archive holds messages (count {:?})",
            r.archive.count
        ))
    } else {
        None
    };
    if let Some(e) = problem {
        v["error"] = json!(e);
        return v;
    }
    let delivered = r.in_window as f64;
    v["deliveries_per_s"] = json!(delivered / secs);
    v["messages_per_s"] = json!(delivered / secs / v["occupants"].as_f64().unwrap_or(1.0));
    v["server_us_per_delivery"] = json!(per(server, delivered, 1e6));
    v
}
