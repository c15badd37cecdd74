//! The count of stanzas a client sent that the server handled (XEP-0198 `h`), when some are
//! still being handled after the session read on (see [`crate::completion`]).
//!
//! `h` says the first `h` stanzas are handled (§4: "handled" for a message is delivered or
//! stored), so it counts a prefix: a stanza handled at once behind one whose completion is
//! pending is counted only with it. Each pending completion carries the stanzas counted
//! after it (itself included), and the count moves on as completions at the front are done.

use std::collections::VecDeque;

use crate::completion::Completion;

/// Pending completions a session keeps before it waits for the oldest.
pub(crate) const MAX_WAITING: usize = 1024;

/// `h`, and the completions it waits for.
#[derive(Debug, Default)]
pub(crate) struct HandledCount {
    /// Handled, in order, with nothing pending before them (wrapping at 2^32).
    settled: u32,
    /// Pending completions, oldest first, each with the stanzas counted behind it. Boxed
    /// and absent while nothing waits: it costs an idle session one word, not four.
    #[expect(
        clippy::box_collection,
        reason = "one word in every idle session's state"
    )]
    waiting: Option<Box<VecDeque<(Completion, u32)>>>,
}

impl HandledCount {
    /// Starts at `settled` (a restored session's `h`).
    pub(crate) fn at(settled: u32) -> Self {
        HandledCount {
            settled,
            waiting: None,
        }
    }

    /// One more stanza handled: counted now, or with the pending completion before it.
    pub(crate) fn count(&mut self) {
        match self.waiting.as_mut().and_then(|w| w.back_mut()) {
            Some((_, behind)) => *behind += 1,
            None => self.settled = self.settled.wrapping_add(1),
        }
    }

    /// The next stanza's handling ends with `completion`; the stanza itself is counted (by
    /// [`HandledCount::count`]) behind it.
    pub(crate) fn wait_for(&mut self, completion: Completion) {
        self.waiting
            .get_or_insert_with(Box::default)
            .push_back((completion, 0));
    }

    /// Pending completions.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.as_ref().map_or(0, |w| w.len())
    }

    /// `h` now: the completions at the front that are done are counted first.
    pub(crate) fn settle(&mut self) -> u32 {
        if let Some(waiting) = self.waiting.as_mut() {
            while let Some((completion, behind)) = waiting.front_mut() {
                if !completion.is_done() {
                    break;
                }
                self.settled = self.settled.wrapping_add(*behind);
                waiting.pop_front();
            }
            if waiting.is_empty() {
                self.waiting = None;
            }
        }
        self.settled
    }

    /// Waits for the oldest pending completion, if any, and counts what it held back.
    pub(crate) async fn wait_oldest(&mut self) {
        let Some(waiting) = self.waiting.as_mut() else {
            return;
        };
        if let Some((completion, behind)) = waiting.pop_front() {
            completion.done().await;
            self.settled = self.settled.wrapping_add(behind);
        }
        if waiting.is_empty() {
            self.waiting = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::completion::completion;

    #[tokio::test]
    async fn counts_only_the_prefix_that_is_done() {
        let mut h = HandledCount::at(u32::MAX);
        h.count();
        assert_eq!(h.settle(), 0);
        let (first, c1) = completion();
        h.wait_for(c1);
        h.count();
        h.count(); // an iq answered at once, behind the pending message
        let (second, c2) = completion();
        h.wait_for(c2);
        h.count();
        assert_eq!((h.settle(), h.waiting()), (0, 2));
        second.complete();
        assert_eq!(h.settle(), 0, "the second waits for the first");
        first.complete();
        assert_eq!((h.settle(), h.waiting()), (3, 0));
        h.count();
        assert_eq!(h.settle(), 4);

        let (third, c3) = completion();
        h.wait_for(c3);
        h.count();
        drop(third);
        h.wait_oldest().await;
        assert_eq!((h.settle(), h.waiting()), (5, 0));
    }
}
