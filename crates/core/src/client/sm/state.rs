//! A session's stream management counters and the stanzas it sent but the client has not
//! acknowledged (XEP-0198 §4).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::handled::HandledCount;
use super::id::SmId;
use crate::outbound::Outbound;

/// The acknowledgement `h` of the client was more than the server sent (§6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandledCountTooHigh {
    /// The client's `h`.
    pub h: u32,
    /// What the server sent.
    pub sent: u32,
}

/// Stream management of one session, from `<enable/>` on.
///
/// Every resumable session of a busy server keeps one, mostly idle: the fields are sized so
/// that the box stays within 128 bytes (an allocator size class; it was 144 in the next one).
#[derive(Debug)]
pub(crate) struct SmState {
    /// The SM-ID when the session can be resumed.
    pub(crate) id: Option<SmId>,
    /// How long the session waits to be resumed after its transport is lost, in seconds
    /// (what `<enabled max=.../>` says; the settings and clients give whole seconds).
    window_secs: u32,
    /// Unacknowledged stanzas allowed (`[sm] max_unacked`, at most `u32::MAX`).
    max_unacked: u32,
    /// Set when the session must end rather than wait (too many unacknowledged stanzas, a
    /// count that cannot be right).
    pub(crate) no_resume: bool,
    /// When a session waiting for resumption expires.
    pub(crate) deadline: Option<Instant>,
    /// Stanzas from the client handled (its `h`, wrapping at 2^32).
    pub(crate) handled: HandledCount,
    /// Stanzas the client acknowledged.
    acked: u32,
    /// Written (or about to be), not yet acknowledged, oldest first.
    unacked: VecDeque<Outbound>,
    /// Written since the server last sent `<r/>`.
    unrequested: u32,
    /// When the oldest of those was written.
    unrequested_since: Option<Instant>,
}

impl SmState {
    pub(crate) fn new(id: Option<SmId>, window: Duration) -> Self {
        SmState {
            id,
            // Rounded up: a window is never shorter than asked.
            window_secs: u32::try_from(
                window
                    .as_secs()
                    .saturating_add(u64::from(window.subsec_nanos() > 0)),
            )
            .unwrap_or(u32::MAX),
            max_unacked: u32::MAX,
            no_resume: false,
            deadline: None,
            handled: HandledCount::default(),
            acked: 0,
            unacked: VecDeque::new(),
            unrequested: 0,
            unrequested_since: None,
        }
    }

    /// A session brought back from storage: `acked` stanzas acknowledged, then `unacked`.
    pub(crate) fn restored(
        id: SmId,
        window: Duration,
        handled: u32,
        acked: u32,
        unacked: VecDeque<Outbound>,
    ) -> Self {
        SmState {
            handled: HandledCount::at(handled),
            acked,
            unacked,
            ..SmState::new(Some(id), window)
        }
    }

    /// How long the session waits to be resumed after its transport is lost.
    pub(crate) fn window(&self) -> Duration {
        Duration::from_secs(u64::from(self.window_secs))
    }

    /// Sets the number of unacknowledged stanzas allowed.
    pub(crate) fn set_max_unacked(&mut self, max: usize) {
        self.max_unacked = u32::try_from(max).unwrap_or(u32::MAX);
    }

    /// Whether more stanzas are unacknowledged than allowed.
    pub(crate) fn over_max_unacked(&self) -> bool {
        self.unacked_len() > self.max_unacked as usize
    }

    /// Counts a stanza handed to the transport.
    pub(crate) fn sent(&mut self, outbound: &Outbound) {
        self.unacked.push_back(outbound.clone());
        self.unrequested += 1;
        self.unrequested_since.get_or_insert_with(Instant::now);
    }

    /// Stanzas sent on this session, wrapping like `h`.
    pub(crate) fn sent_count(&self) -> u32 {
        self.acked.wrapping_add(self.unacked.len() as u32)
    }

    /// Stanzas sent and not acknowledged.
    pub(crate) fn unacked_len(&self) -> usize {
        self.unacked.len()
    }

    /// The client handled `h` stanzas: those leave the queue.
    pub(crate) fn ack(&mut self, h: u32) -> Result<(), HandledCountTooHigh> {
        let newly = h.wrapping_sub(self.acked) as usize;
        if newly > self.unacked.len() {
            return Err(HandledCountTooHigh {
                h,
                sent: self.sent_count(),
            });
        }
        self.unacked.drain(..newly);
        if self.unacked.is_empty() {
            // A burst is over: give its memory back.
            self.unacked.shrink_to(0);
        }
        self.acked = h;
        Ok(())
    }

    /// Whether an `<r/>` is due after a write: `every` stanzas since the last one.
    pub(crate) fn request_due(&self, every: u32) -> bool {
        self.unrequested >= every.max(1)
    }

    /// When stanzas written but not yet requested make an `<r/>` due, given `after`.
    pub(crate) fn request_deadline(&self, after: Duration) -> Option<Instant> {
        self.unrequested_since.map(|since| since + after)
    }

    /// An `<r/>` was written.
    pub(crate) fn requested(&mut self) {
        self.unrequested = 0;
        self.unrequested_since = None;
    }

    /// The stanzas not acknowledged, oldest first (to send again on resumption; they stay
    /// unacknowledged).
    pub(crate) fn unacked(&self) -> impl Iterator<Item = &Outbound> {
        self.unacked.iter()
    }

    /// Takes the stanzas not acknowledged, when the session ends.
    pub(crate) fn take_unacked(&mut self) -> VecDeque<Outbound> {
        std::mem::take(&mut self.unacked)
    }

    /// Stanzas acknowledged so far.
    pub(crate) fn acked(&self) -> u32 {
        self.acked
    }

    /// Queues stanzas that were never written at the end of the unacknowledged ones (a
    /// session saved across a restart: on resumption they are sent after the others, and
    /// counting them as sent keeps the counters consistent with the client's).
    pub(crate) fn append_unsent(&mut self, more: impl IntoIterator<Item = Outbound>) {
        self.unacked.extend(more);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn out(n: u8) -> Outbound {
        Outbound {
            bytes: Bytes::from(vec![n]),
            reroute: None,
        }
    }

    #[test]
    fn acks_release_stanzas_and_wrap_at_two_to_the_32() {
        let id = SmId::generate().unwrap();
        let mut sm = SmState::restored(id, Duration::ZERO, 0, u32::MAX - 1, [].into());
        for n in 0..4 {
            sm.sent(&out(n));
        }
        assert_eq!(sm.sent_count(), 2);
        assert_eq!(sm.ack(u32::MAX), Ok(()));
        assert_eq!(sm.unacked_len(), 3);
        assert_eq!(sm.ack(1), Ok(()));
        assert_eq!(sm.unacked().map(|o| o.bytes[0]).collect::<Vec<_>>(), [3]);
        assert_eq!(sm.ack(3), Err(HandledCountTooHigh { h: 3, sent: 2 }));
        // An old h (below what was acknowledged) is "too high" modulo 2^32.
        assert!(sm.ack(0).is_err());
        assert_eq!(sm.ack(2), Ok(()));
        assert_eq!(sm.unacked_len(), 0);
    }

    #[test]
    fn the_state_fits_in_128_bytes() {
        assert!(std::mem::size_of::<SmState>() <= 128);
    }

    #[test]
    fn requests_follow_writes() {
        let mut sm = SmState::new(None, Duration::ZERO);
        assert!(sm.request_deadline(Duration::from_secs(5)).is_none());
        sm.sent(&out(1));
        assert!(!sm.request_due(2));
        assert!(sm.request_deadline(Duration::from_secs(5)).is_some());
        sm.sent(&out(2));
        assert!(sm.request_due(2));
        sm.requested();
        assert!(!sm.request_due(2));
        assert!(sm.request_deadline(Duration::from_secs(5)).is_none());
    }
}
