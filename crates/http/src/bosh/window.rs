//! The request window of one BOSH session (XEP-0124 §14, §11, §12), sans-IO.
//!
//! A client may have up to `requests` requests open at once, and they may arrive out of order.
//! [`Window`] decides, for every request that arrives, what happens to it:
//!
//! * its payload is processed now, in `rid` order, together with any requests that arrived
//!   early and were waiting for it ([`Arrival::Process`], §14.2: "forward the payloads … in
//!   the order specified by their 'rid' attributes");
//! * it waits for the requests before it ([`Arrival::Early`]), when it is ahead of the next
//!   expected `rid` but within the window;
//! * it is a retransmission of a request already answered, which gets the very same answer
//!   again ([`Arrival::Repeat`], §14.3); the last `requests` answers are kept;
//! * it repeats a request still being held, which is answered at once with a recoverable
//!   error while the new copy takes its place ([`Arrival::Replaces`], §14.3);
//! * anything else — a `rid` too far in the future, or from the past beyond the kept answers
//!   — ends the session with `item-not-found` ([`Arrival::NotFound`], §14.2, §14.3: "the
//!   error is the same whether the 'rid' is too large or too small").
//!
//! Processed requests are *held* (§7: the answer waits for payloads, at most `wait`
//! seconds, and no more than `hold` requests wait at once). [`Window::answer_due`] tells the
//! driver which held request to answer now: the oldest, when there is something to send, when
//! more than `hold` wait, or when the oldest has waited `wait`. Time is passed in, so the
//! whole state machine is tested in memory.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// How long after an answer was sent a client's `ack` that still misses it is taken for a
/// lost answer (XEP-0124 §9.2 "e.g., if some time has passed since it responded"): sooner,
/// the request may simply have crossed the answer on the way.
pub const REPORT_AFTER: Duration = Duration::from_secs(1);

/// What to do with a request that arrived.
#[derive(Debug, PartialEq, Eq)]
pub enum Arrival<T> {
    /// Process these payloads now, in this order (the arrived one and the early ones it
    /// unblocked); each request is held from now on.
    Process(Vec<(u64, T)>),
    /// The request is ahead of a missing one: it waits for it.
    Early,
    /// A retransmission of an answered request: send this answer again.
    Repeat(Bytes),
    /// A repeat of a request still held: answer the older copy with a recoverable error
    /// (`type='error'`); the new copy is held in its place.
    Replaces,
    /// Out of the window: the session ends with `item-not-found`.
    NotFound,
}

/// Why a held request is answered now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// There are payloads for the client.
    Payloads,
    /// More than `hold` requests are waiting: the oldest is answered, empty if need be.
    OverHold,
    /// It waited `wait` seconds: an empty answer.
    Expired,
}

/// The request window and the held requests of one session.
#[derive(Debug)]
pub struct Window<T> {
    /// Most requests open at once (the `requests` of the creation response).
    requests: u64,
    /// Most requests held at once.
    hold: usize,
    /// Longest a request is held.
    wait: Duration,
    /// The next `rid` to process.
    next: u64,
    /// Requests ahead of `next`, waiting for the gap to fill (at most `requests`).
    early: BTreeMap<u64, (T, Instant)>,
    /// Processed requests not answered yet, oldest first, with the time they were held.
    held: VecDeque<(u64, Instant)>,
    /// The last answers sent, oldest first (at most `requests`), for retransmissions, with
    /// when each was sent.
    answered: VecDeque<(u64, Bytes, Instant)>,
}

impl<T> Window<T> {
    /// The window after the session creation request `first_rid` (answered at once, so the
    /// next request is `first_rid + 1`).
    pub fn new(first_rid: u64, requests: u32, hold: u32, wait: Duration) -> Self {
        Window {
            requests: u64::from(requests.max(1)),
            hold: usize::try_from(hold).unwrap_or(usize::MAX),
            wait,
            next: first_rid.saturating_add(1),
            early: BTreeMap::new(),
            held: VecDeque::new(),
            answered: VecDeque::new(),
        }
    }

    /// A request `rid` with `payload` arrived at `now`.
    pub fn arrive(&mut self, rid: u64, payload: T, now: Instant) -> Arrival<T> {
        if rid < self.next {
            if let Some((_, answer, _)) = self.answered.iter().find(|(r, ..)| *r == rid) {
                return Arrival::Repeat(answer.clone());
            }
            if let Some(held) = self.held.iter_mut().find(|(r, _)| *r == rid) {
                held.1 = now;
                return Arrival::Replaces;
            }
            return Arrival::NotFound;
        }
        if rid - self.next >= self.requests {
            return Arrival::NotFound;
        }
        if rid > self.next {
            // A copy of a request still waiting for its turn: the newer copy waits instead.
            return match self.early.insert(rid, (payload, now)) {
                Some(_) => Arrival::Replaces,
                None => Arrival::Early,
            };
        }
        let mut ready = vec![(rid, payload)];
        self.held.push_back((rid, now));
        self.next = rid + 1;
        while let Some((payload, at)) = self.early.remove(&self.next) {
            ready.push((self.next, payload));
            self.held.push_back((self.next, at.max(now)));
            self.next += 1;
        }
        Arrival::Process(ready)
    }

    /// The held request to answer now, and why: the oldest one, when `payloads` wait for the
    /// client, when more than `hold` are held, or when it has waited `wait`.
    pub fn answer_due(&self, payloads: bool, now: Instant) -> Option<(u64, Due)> {
        let &(rid, since) = self.held.front()?;
        if payloads {
            Some((rid, Due::Payloads))
        } else if self.held.len() > self.hold {
            Some((rid, Due::OverHold))
        } else if now >= since + self.wait {
            Some((rid, Due::Expired))
        } else {
            None
        }
    }

    /// The held request `rid` was answered with `answer` at `now` (kept for a retransmission
    /// unless `keep` is false: pause answers are not kept, §14.3).
    pub fn answered(&mut self, rid: u64, answer: Bytes, keep: bool, now: Instant) {
        self.held.retain(|(r, _)| *r != rid);
        if keep {
            self.answered.push_back((rid, answer, now));
            while self.answered.len() as u64 > self.requests {
                self.answered.pop_front();
            }
        }
    }

    /// The highest `rid` received with every lower one (XEP-0124 §9.1: the `ack` of an
    /// answer, when the client asked for acknowledgements).
    pub fn received_through(&self) -> u64 {
        self.next - 1
    }

    /// The answer a client's `ack` says it has not received (§9.2): the one to `ack + 1`,
    /// when that request was answered at least [`REPORT_AFTER`] ago (an answer still on its
    /// way is no loss) and its copy is kept, with how long ago it was sent.
    pub fn missed(&self, client_ack: u64, now: Instant) -> Option<(u64, Duration)> {
        let missing = client_ack.checked_add(1)?;
        let &(_, _, sent) = self.answered.iter().find(|(r, ..)| *r == missing)?;
        let ago = now.saturating_duration_since(sent);
        (ago >= REPORT_AFTER).then_some((missing, ago))
    }

    /// The held requests, oldest first.
    pub fn held(&self) -> impl Iterator<Item = u64> + '_ {
        self.held.iter().map(|(r, _)| *r)
    }

    /// Whether requests wait for an answer (held) or for their turn (early).
    pub fn is_open(&self) -> bool {
        !self.held.is_empty() || !self.early.is_empty()
    }

    /// Whether requests are held.
    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// When the next held or early request must be answered (its `wait` ends).
    pub fn next_deadline(&self) -> Option<Instant> {
        let held = self.held.front().map(|(_, at)| *at + self.wait);
        let early = self.early.values().map(|(_, at)| *at + self.wait).min();
        match (held, early) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Early requests that waited `wait` for the request before them: they are given up (to
    /// be answered with a recoverable error, so that the client sends them again).
    pub fn expire_early(&mut self, now: Instant) -> Vec<u64> {
        let wait = self.wait;
        let gone: Vec<u64> = self
            .early
            .iter()
            .filter(|(_, (_, at))| now >= *at + wait)
            .map(|(rid, _)| *rid)
            .collect();
        for rid in &gone {
            self.early.remove(rid);
        }
        gone
    }

    /// Every early request, given up (the session ends).
    pub fn drain_early(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.early).into_keys().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_secs(60);

    fn window() -> (Window<&'static str>, Instant) {
        // Created by rid 100; requests = 2, hold = 1.
        (Window::new(100, 2, 1, WAIT), Instant::now())
    }

    #[test]
    fn acks_name_the_highest_rid_received_without_a_gap() {
        let (mut w, t) = window();
        assert_eq!(w.received_through(), 100);
        assert!(matches!(w.arrive(102, "b", t), Arrival::Early));
        assert_eq!(w.received_through(), 100, "101 is missing");
        assert!(matches!(w.arrive(101, "a", t), Arrival::Process(_)));
        assert_eq!(w.received_through(), 102);
    }

    #[test]
    fn an_answer_is_reported_missed_once_it_had_time_to_arrive() {
        let (mut w, t) = window();
        assert!(matches!(w.arrive(101, "a", t), Arrival::Process(_)));
        w.answered(101, Bytes::from_static(b"<body/>"), true, t);
        // The client's ack of 100 says it has not got 101's answer.
        assert_eq!(
            w.missed(100, t + Duration::from_millis(10)),
            None,
            "still on its way"
        );
        let later = t + REPORT_AFTER + Duration::from_millis(500);
        assert_eq!(
            w.missed(100, later),
            Some((101, REPORT_AFTER + Duration::from_millis(500)))
        );
        assert_eq!(w.missed(101, later), None, "nothing missed");
        assert_eq!(w.missed(u64::MAX, later), None);
    }

    #[test]
    fn in_order_requests_are_processed_and_held() {
        let (mut w, t) = window();
        assert_eq!(w.arrive(101, "a", t), Arrival::Process(vec![(101, "a")]));
        assert_eq!(w.answer_due(false, t), None);
        assert_eq!(w.answer_due(true, t), Some((101, Due::Payloads)));
        assert_eq!(w.arrive(102, "b", t), Arrival::Process(vec![(102, "b")]));
        // Two held with hold = 1: the older is answered, empty if need be.
        assert_eq!(w.answer_due(false, t), Some((101, Due::OverHold)));
        w.answered(101, Bytes::from_static(b"<body/>"), true, t);
        assert_eq!(w.answer_due(false, t), None);
        assert_eq!(w.held().collect::<Vec<_>>(), vec![102]);
    }

    #[test]
    fn out_of_order_requests_wait_for_the_gap_and_go_in_rid_order() {
        let (mut w, t) = window();
        assert_eq!(w.arrive(102, "second", t), Arrival::Early);
        assert!(w.is_open() && !w.has_held());
        assert_eq!(
            w.arrive(101, "first", t),
            Arrival::Process(vec![(101, "first"), (102, "second")])
        );
        assert_eq!(w.held().collect::<Vec<_>>(), vec![101, 102]);
    }

    #[test]
    fn a_retransmission_gets_the_same_answer() {
        let (mut w, t) = window();
        let _ = w.arrive(101, "a", t);
        w.answered(101, Bytes::from_static(b"<body>one</body>"), true, t);
        assert_eq!(
            w.arrive(101, "a", t),
            Arrival::Repeat(Bytes::from_static(b"<body>one</body>"))
        );
    }

    #[test]
    fn only_the_last_requests_answers_are_kept() {
        let (mut w, t) = window();
        for rid in 101..=104 {
            assert!(matches!(w.arrive(rid, "x", t), Arrival::Process(_)));
            w.answered(rid, Bytes::from(format!("{rid}")), true, t);
        }
        assert_eq!(w.arrive(104, "x", t), Arrival::Repeat(Bytes::from("104")));
        assert_eq!(w.arrive(103, "x", t), Arrival::Repeat(Bytes::from("103")));
        // Beyond the kept answers: the past is not found.
        assert_eq!(w.arrive(102, "x", t), Arrival::NotFound);
        assert_eq!(w.arrive(100, "x", t), Arrival::NotFound);
    }

    #[test]
    fn a_pause_answer_is_not_kept() {
        let (mut w, t) = window();
        let _ = w.arrive(101, "pause", t);
        w.answered(101, Bytes::from_static(b"<body/>"), false, t);
        assert_eq!(w.arrive(101, "pause", t), Arrival::NotFound);
    }

    #[test]
    fn the_far_future_is_not_found() {
        let (mut w, t) = window();
        // requests = 2: 101 and 102 are in the window, 103 is not.
        assert_eq!(w.arrive(103, "x", t), Arrival::NotFound);
        assert_eq!(w.arrive(u64::MAX, "x", t), Arrival::NotFound);
        assert_eq!(w.arrive(102, "x", t), Arrival::Early);
    }

    #[test]
    fn a_repeat_of_a_held_request_replaces_it() {
        let (mut w, t) = window();
        let _ = w.arrive(101, "a", t);
        assert_eq!(w.arrive(101, "a", t), Arrival::Replaces);
        assert_eq!(w.held().collect::<Vec<_>>(), vec![101]);
        assert_eq!(w.arrive(102, "b", t), Arrival::Process(vec![(102, "b")]));
        assert_eq!(w.arrive(103, "c", t), Arrival::Process(vec![(103, "c")]));
    }

    #[test]
    fn held_requests_expire_after_wait() {
        let (mut w, t) = window();
        let _ = w.arrive(101, "a", t);
        assert_eq!(w.next_deadline(), Some(t + WAIT));
        assert_eq!(w.answer_due(false, t + WAIT / 2), None);
        assert_eq!(w.answer_due(false, t + WAIT), Some((101, Due::Expired)));
    }

    #[test]
    fn early_requests_are_given_up_after_wait() {
        let (mut w, t) = window();
        assert_eq!(w.arrive(102, "b", t), Arrival::Early);
        assert_eq!(w.next_deadline(), Some(t + WAIT));
        assert!(w.expire_early(t + WAIT / 2).is_empty());
        assert_eq!(w.expire_early(t + WAIT), vec![102]);
        assert!(!w.is_open());
        // Sent again later, it waits again.
        assert_eq!(w.arrive(102, "b", t + WAIT), Arrival::Early);
    }

    #[test]
    fn polling_sessions_answer_at_once() {
        // hold = 0 (XEP-0124 §12): no request is held.
        let t = Instant::now();
        let mut w: Window<()> = Window::new(1, 1, 0, WAIT);
        assert_eq!(w.arrive(2, (), t), Arrival::Process(vec![(2, ())]));
        assert_eq!(w.answer_due(false, t), Some((2, Due::OverHold)));
    }
}
