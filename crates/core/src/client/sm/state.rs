//! A session's stream management counters and the stanzas it sent but the client has not
//! acknowledged (XEP-0198 §4).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;

use super::handled::HandledCount;
use crate::client::ClientSession;
use crate::outbound::Outbound;

/// Where a session that another stream resumes is handed over: the resuming stream puts a
/// sender here and wakes the session's owner (its connection, or the task that holds it
/// while it waits), which sends the session through it instead of ending it.
#[derive(Debug, Default)]
pub(crate) struct Handoff {
    claim: Mutex<Option<oneshot::Sender<ClientSession>>>,
}

impl Handoff {
    /// Asks for the session; the previous claim, if any, is dropped (its claimant gives up).
    pub(crate) fn claim(&self, to: oneshot::Sender<ClientSession>) {
        *self.claim.lock().unwrap_or_else(PoisonError::into_inner) = Some(to);
    }

    /// Whether a stream waits for the session.
    pub(crate) fn requested(&self) -> bool {
        self.claim
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|tx| !tx.is_closed())
    }

    /// The claimant's sender, taken.
    pub(crate) fn take(&self) -> Option<oneshot::Sender<ClientSession>> {
        self.claim
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// The acknowledgement `h` of the client was more than the server sent (§6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandledCountTooHigh {
    /// The client's `h`.
    pub h: u32,
    /// What the server sent.
    pub sent: u32,
}

/// Stream management of one session, from `<enable/>` on.
#[derive(Debug)]
pub(crate) struct SmState {
    /// The SM-ID when the session can be resumed.
    pub(crate) id: Option<Arc<str>>,
    /// How long the session waits to be resumed after its transport is lost.
    pub(crate) window: Duration,
    /// Shared with the resumption table's entry.
    pub(crate) handoff: Arc<Handoff>,
    /// Unacknowledged stanzas allowed (`[sm] max_unacked`).
    pub(crate) max_unacked: usize,
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
    pub(crate) fn new(id: Option<Arc<str>>, window: Duration) -> Self {
        SmState {
            id,
            window,
            handoff: Arc::default(),
            max_unacked: usize::MAX,
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
        id: Arc<str>,
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
        let mut sm = SmState::restored(Arc::from("x"), Duration::ZERO, 0, u32::MAX - 1, [].into());
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
