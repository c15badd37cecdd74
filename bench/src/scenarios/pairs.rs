//! Pairs of sessions exchanging chat messages: the machinery of the throughput and latency
//! scenarios (windowed or paced sends, in-order accounting, stream management acks).

use super::*;

/// How a pair sends.
#[derive(Clone, Copy, Debug)]
pub(super) enum Plan {
    /// Keep `window` messages in flight in each direction.
    Window(u64),
    /// One message each way every `interval`.
    Rate(Duration),
}

#[derive(Debug, Default)]
pub(super) struct PairResult {
    delivered: u64,
    pub(super) latencies_us: Vec<u32>,
    out_of_order: u64,
    errors: u64,
    /// Stream management, over the whole run of the pair (warm-up included).
    sm: SmTotals,
}

/// What the pairs' ends did for stream management.
#[derive(Debug, Default, Clone, Copy)]
struct SmTotals {
    /// `<r/>` received from the server.
    requests_received: u64,
    /// `<a/>` sent (answers and the last one before closing).
    acks_sent: u64,
    /// `<r/>` sent by the ends.
    requests_sent: u64,
    /// `<a/>` received in answer.
    acks_received: u64,
}

impl SmTotals {
    fn add(&mut self, o: SmTotals) {
        self.requests_received += o.requests_received;
        self.acks_sent += o.acks_sent;
        self.requests_sent += o.requests_sent;
        self.acks_received += o.acks_received;
    }
}

/// One end's receive side: scanner, read buffer and the flow of messages coming in.
struct End {
    session: Session,
    scanner: Scanner,
    buf: Vec<u8>,
    incoming: Flow,
    out: Vec<u8>,
    /// Messages sent since this end's last `<r/>` (stream management).
    unrequested: u64,
    sm: SmTotals,
}

impl End {
    fn new(session: Session, sm: bool) -> Self {
        End {
            session,
            scanner: if sm {
                Scanner::with_sm()
            } else {
                Scanner::new()
            },
            buf: vec![0; 16 * 1024],
            incoming: Flow::default(),
            out: Vec::with_capacity(4096),
            unrequested: 0,
            sm: SmTotals::default(),
        }
    }

    /// Before closing: acknowledges everything received, so that nothing the server sent is
    /// left unacknowledged by a clean close.
    async fn last_ack(&mut self) {
        if let Some(sm) = self.scanner.sm() {
            self.out.clear();
            scan::write_ack(&mut self.out, sm.handled);
            self.sm.acks_sent += 1;
            let _ = self.session.io.write_all(&self.out).await;
        }
    }

    fn sm_totals(&self) -> SmTotals {
        let seen = self.scanner.sm().unwrap_or_default();
        SmTotals {
            requests_received: seen.requests,
            acks_received: seen.acks,
            ..self.sm
        }
    }
}

/// Records what arrived in `n` bytes at `end`.
fn receive(ctx: &Ctx, end: &mut End, n: usize, window: (u64, u64), result: &mut PairResult) {
    let now = ctx.now_ns();
    let in_window = now >= window.0 && now < window.1;
    let End {
        scanner,
        buf,
        incoming,
        ..
    } = end;
    scanner.feed(&buf[..n], |d| {
        incoming.arrived(d);
        if in_window {
            result.delivered += 1;
            let us = now.saturating_sub(d.sent_ns) / 1000;
            result
                .latencies_us
                .push(u32::try_from(us).unwrap_or(u32::MAX));
        }
    });
}

/// Sends `count` messages from `from` to `to`, after the answer to an ack request `from`
/// received (stream management), and followed by `from`'s own ack request when it is due.
async fn send(ctx: &Ctx, from: &mut End, to: &mut End, count: u64) -> bool {
    from.out.clear();
    if let Some(handled) = from.scanner.take_request() {
        scan::write_ack(&mut from.out, handled);
        from.sm.acks_sent += 1;
    }
    let now = ctx.now_ns();
    for _ in 0..count {
        let seq = to.incoming.next_seq();
        scan::write_message(&mut from.out, &to.session.jid, seq, now);
    }
    let every = ctx.sm.request_every;
    if every > 0 && from.scanner.sm().is_some() {
        from.unrequested += count;
        if from.unrequested >= every {
            from.out.extend_from_slice(scan::SM_REQUEST);
            from.unrequested = 0;
            from.sm.requests_sent += 1;
        }
    }
    if from.out.is_empty() {
        return true;
    }
    let io = &mut from.session.io;
    io.write_all(&from.out).await.is_ok() && io.flush().await.is_ok()
}

async fn run_pair(ctx: Ctx, a: Session, b: Session, plan: Plan, window: (u64, u64)) -> PairResult {
    let sm = ctx.sm.enabled && ctx.target.protocol.is_xmpp();
    let mut a = End::new(a, sm);
    let mut b = End::new(b, sm);
    let mut result = PairResult::default();
    let end_at = ctx.epoch + Duration::from_nanos(window.1);
    let mut tick = match plan {
        Plan::Rate(interval) => {
            // Spread the pairs' ticks over the interval.
            let offset = interval.mul_f64(rand_fraction(&a.session.jid));
            Some(tokio::time::interval_at(
                tokio::time::Instant::now() + offset,
                interval,
            ))
        }
        Plan::Window(_) => None,
    };
    if let Some(t) = tick.as_mut() {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    }
    loop {
        // At a fixed rate only the answers to ack requests go out here.
        let (ab, ba) = match plan {
            Plan::Window(w) => (
                w.saturating_sub(b.incoming.in_flight()),
                w.saturating_sub(a.incoming.in_flight()),
            ),
            Plan::Rate(_) => (0, 0),
        };
        if (matches!(plan, Plan::Window(_)) || sm)
            && (!send(&ctx, &mut a, &mut b, ab).await || !send(&ctx, &mut b, &mut a, ba).await)
        {
            result.errors += 1;
            break;
        }
        tokio::select! {
            r = a.session.io.read(&mut a.buf) => match r {
                Ok(n) if n > 0 => receive(&ctx, &mut a, n, window, &mut result),
                _ => { result.errors += 1; break; }
            },
            r = b.session.io.read(&mut b.buf) => match r {
                Ok(n) if n > 0 => receive(&ctx, &mut b, n, window, &mut result),
                _ => { result.errors += 1; break; }
            },
            _ = async { match tick.as_mut() { Some(t) => { t.tick().await; } None => std::future::pending().await } } => {
                if !send(&ctx, &mut a, &mut b, 1).await || !send(&ctx, &mut b, &mut a, 1).await {
                    result.errors += 1;
                    break;
                }
            },
            _ = tokio::time::sleep_until(end_at.into()) => break,
        }
        if a.scanner.closed() || b.scanner.closed() {
            result.errors += 1;
            break;
        }
    }
    result.out_of_order = a.incoming.out_of_order + b.incoming.out_of_order;
    if sm {
        a.last_ack().await;
        b.last_ack().await;
        result.sm = a.sm_totals();
        result.sm.add(b.sm_totals());
    }
    let protocol = ctx.target.protocol;
    a.session.close(protocol).await;
    b.session.close(protocol).await;
    result
}

/// A stable fraction in [0, 1) from a name, to stagger the pairs.
fn rand_fraction(name: &str) -> f64 {
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    (h % 10_000) as f64 / 10_000.0
}

pub(super) async fn run_pairs(
    ctx: &Ctx,
    first: usize,
    pairs: usize,
    plan: Plan,
    warmup: Duration,
    secs: Duration,
) -> (Value, PairResult) {
    let sm = ctx.sm.enabled && ctx.target.protocol.is_xmpp();
    let (sessions, failed) = ctx
        .login_many_opts(first..first + pairs * 2, b"<presence/>", sm)
        .await;
    if failed > 0 || sessions.len() != pairs * 2 {
        return (json!({"failed_logins": failed}), PairResult::default());
    }
    let start = ctx.now_ns();
    let window = (
        start + u64::try_from(warmup.as_nanos()).unwrap_or(0),
        start + u64::try_from((warmup + secs).as_nanos()).unwrap_or(0),
    );
    let mut set = tokio::task::JoinSet::new();
    let mut it = sessions.into_iter();
    while let (Some(a), Some(b)) = (it.next(), it.next()) {
        set.spawn(run_pair(ctx.clone(), a, b, plan, window));
    }
    tokio::time::sleep(warmup).await;
    let before = ctx.cpu();
    tokio::time::sleep(secs).await;
    let after = ctx.cpu();
    let mut total = PairResult::default();
    while let Some(r) = set.join_next().await {
        if let Ok(r) = r {
            total.delivered += r.delivered;
            total.latencies_us.extend(r.latencies_us);
            total.out_of_order += r.out_of_order;
            total.errors += r.errors;
            total.sm.add(r.sm);
        }
    }
    let (wall, server, generator) = usage(before, after);
    let rate = total.delivered as f64 / wall;
    (
        json!({
            "pairs": pairs, "secs": wall, "delivered": total.delivered,
            "msgs_per_s": rate, "out_of_order": total.out_of_order, "errors": total.errors,
            "server_cpu_s": server,
            "server_us_per_msg": per(server, total.delivered as f64, 1e6),
            "server_cpu_s_per_1k_msgs": per(server, total.delivered as f64, 1e3),
            "gen_cpu_s": generator,
            "sm": sm,
            "sm_requests_received": sm.then_some(total.sm.requests_received),
            "sm_acks_sent": sm.then_some(total.sm.acks_sent),
            "sm_requests_sent": sm.then_some(total.sm.requests_sent),
            "sm_acks_received": sm.then_some(total.sm.acks_received),
        }),
        total,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn fractions_are_in_range() {
        for n in ["a", "b@localhost/x", ""] {
            let f = super::rand_fraction(n);
            assert!((0.0..1.0).contains(&f));
        }
    }
}
