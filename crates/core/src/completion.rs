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

/// Waited on by the stanza's sender, or merely looked at without waiting. `None` once seen
/// done (a receiver must not be polled after it completed).
#[derive(Debug)]
pub struct Completion(Option<oneshot::Receiver<()>>);

impl Completion {
    /// Whether the handling is over. A completer dropped without completing (its task ended
    /// on shutdown) counts as over too: whatever it held was logged where it ended, and a
    /// session must not wait for it forever.
    pub fn is_done(&mut self) -> bool {
        let Some(rx) = self.0.as_mut() else {
            return true;
        };
        if matches!(rx.try_recv(), Err(TryRecvError::Empty)) {
            return false;
        }
        self.0 = None;
        true
    }

    /// Returns once the handling is over (or its completer is gone).
    pub async fn done(self) {
        if let Some(rx) = self.0 {
            let _ = rx.await;
        }
    }
}

/// A completion and its completer.
pub fn completion() -> (Completer, Completion) {
    let (tx, rx) = oneshot::channel();
    (Completer(tx), Completion(Some(rx)))
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
}
