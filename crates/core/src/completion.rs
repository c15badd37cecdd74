//! The end of a stanza's handling, when it comes after its handler returned.
//!
//! A room message with archiving on is committed and sent by the room's own task, in order,
//! after the sender's stanza was taken (`xmppd_muc`'s outbox). The sender's stream must not
//! count it as handled (XEP-0198 `h`) before that commit, but it need not stop reading
//! either: waiting there would let each client have one message in the archive's commit at a
//! time, and a commit (one fsync) would carry a handful of messages instead of all that
//! arrived meanwhile. So the handler returns a [`Completion`], the session counts the stanza
//! once it is done (see `client::sm::handled`), and reads on. What the completion stands for
//! (the delivery, or the error bounce to the sender) is done by whoever holds the
//! [`Completer`]; the completion itself carries nothing but the fact.

use std::cell::RefCell;

use tokio::sync::oneshot;
use tokio::sync::oneshot::error::TryRecvError;

/// Told when the handling of a stanza is over: delivered, committed or bounced.
#[derive(Debug)]
pub struct Completer(oneshot::Sender<()>);

impl Completer {
    /// The stanza's handling is over.
    pub fn complete(self) {
        // Nobody waiting (the sender's session ended) is fine: there is nothing to count.
        let _ = self.0.send(());
    }
}

/// Waited on by the stanza's sender, or merely looked at without waiting: done when every
/// completer it joins is (see [`Completion::and`]).
#[derive(Debug)]
pub struct Completion {
    /// `None` once seen done (a receiver must not be polled after it completed).
    first: Option<oneshot::Receiver<()>>,
    /// Joined completions not yet seen done; empty (no allocation) for one.
    more: Vec<oneshot::Receiver<()>>,
}

impl Completion {
    /// Whether the handling is over. A completer dropped without completing (its task ended
    /// on shutdown) counts as over too: whatever it held was logged where it ended, and a
    /// session must not wait for it forever.
    pub fn is_done(&mut self) -> bool {
        if let Some(rx) = self.first.as_mut() {
            if matches!(rx.try_recv(), Err(TryRecvError::Empty)) {
                return false;
            }
            self.first = None;
        }
        self.more
            .retain_mut(|rx| matches!(rx.try_recv(), Err(TryRecvError::Empty)));
        self.more.is_empty()
    }

    /// Returns once the handling is over (or its completers are gone).
    pub async fn done(self) {
        if let Some(rx) = self.first {
            let _ = rx.await;
        }
        for rx in self.more {
            let _ = rx.await;
        }
    }

    /// Done when both this and `other` are.
    pub fn and(mut self, other: Completion) -> Completion {
        self.more.extend(other.first);
        self.more.extend(other.more);
        self
    }
}

tokio::task_local! {
    /// What the stanza being routed waits for besides its handler (see [`defer`]).
    static DEFERRED: RefCell<Option<Completion>>;
}

/// Runs `routing` (a client stanza's hooks and routing), collecting the completions that
/// hooks [`defer`] its acknowledgement to.
pub async fn collecting_deferred<F: Future>(routing: F) -> (F::Output, Option<Completion>) {
    DEFERRED
        .scope(RefCell::new(None), async move {
            let out = routing.await;
            let deferred = DEFERRED.with(|d| d.borrow_mut().take());
            (out, deferred)
        })
        .await
}

/// Whether a hook running now may [`defer`]: it runs while a client stanza is routed.
pub fn deferring() -> bool {
    DEFERRED.try_with(|_| ()).is_ok()
}

/// The stanza being routed counts as handled only once `completion` is done too, while its
/// routing goes on: an archive hook sends a message on while its commit runs, and only the
/// sender's acknowledgement (XEP-0198 `h`) waits for the commit. Gives `completion` back
/// when no client stanza is being routed ([`deferring`] is false): the caller waits itself.
pub fn defer(completion: Completion) -> Result<(), Completion> {
    let mut completion = Some(completion);
    let _ = DEFERRED.try_with(|deferred| {
        let mut deferred = deferred.borrow_mut();
        if let Some(c) = completion.take() {
            *deferred = Some(match deferred.take() {
                Some(earlier) => earlier.and(c),
                None => c,
            });
        }
    });
    match completion {
        None => Ok(()),
        Some(c) => Err(c),
    }
}

/// A completion and its completer.
pub fn completion() -> (Completer, Completion) {
    let (tx, rx) = oneshot::channel();
    (
        Completer(tx),
        Completion {
            first: Some(rx),
            more: Vec::new(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn done_once_completed_or_abandoned() {
        let (completer, mut first) = completion();
        assert!(!first.is_done());
        completer.complete();
        assert!(first.is_done());

        let (completer, mut second) = completion();
        drop(completer);
        assert!(second.is_done());
        second.done().await;
    }

    #[tokio::test]
    async fn a_joined_completion_is_done_when_all_are() {
        let (a, first) = completion();
        let (b, second) = completion();
        let (c, third) = completion();
        let mut all = first.and(second.and(third));
        assert!(!all.is_done());
        b.complete();
        assert!(!all.is_done());
        a.complete();
        assert!(!all.is_done());
        c.complete();
        assert!(all.is_done());
    }

    #[tokio::test]
    async fn hooks_defer_only_while_a_stanza_is_routed() {
        let (outside, c) = completion();
        assert!(!deferring());
        assert!(defer(c).is_err());
        drop(outside);
        let ((), deferred) = collecting_deferred(async {
            assert!(deferring());
            let (a, first) = completion();
            let (b, second) = completion();
            assert!(defer(first).is_ok());
            assert!(defer(second).is_ok());
            a.complete();
            tokio::spawn(async move { b.complete() });
        })
        .await;
        let deferred = deferred.expect("collected");
        deferred.done().await;
        let ((), none) = collecting_deferred(async {}).await;
        assert!(none.is_none());
    }
}
