//! The queue of stanzas waiting for one client session's task.
//!
//! Why not a tokio `mpsc` channel: a bounded tokio channel allocates its first block of 32
//! slots (about 1.3 KiB for [`Outbound`]) when it is created, plus 0.5 KiB of channel state,
//! and keeps them for the life of the session. Most sessions are idle most of the time, so
//! that was a seventh of an idle session's memory. This queue allocates only while something
//! is queued: a mutex-guarded `VecDeque` that is released whenever the session's task drains
//! it and goes back to waiting, woken through a [`Notify`].
//!
//! There is exactly one receiver (the session's task), so `Notify::notify_one`'s stored
//! permit is enough to never miss a wake-up: a stanza queued between the receiver's check and
//! its wait leaves a permit that ends the wait at once.
//!
//! A sender that must not lose what it queues (an error owed to the session for a stanza it
//! sent, bounced by another task) can wait for room with [`QueueSender::room_for`]; the
//! receiver wakes such waiters as it takes stanzas, and costs nothing more when none waits.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::outbound::Outbound;

/// Why [`QueueSender::try_send`] did not queue a stanza; the stanza comes back.
#[derive(Debug)]
pub enum TrySendError {
    /// The queue holds its capacity.
    Full(Outbound),
    /// The receiver closed the queue or is gone.
    Closed(Outbound),
}

#[derive(Debug)]
struct State {
    items: VecDeque<Outbound>,
    /// No more stanzas are accepted (receiver closed or dropped).
    closed: bool,
    senders: usize,
    /// Senders waiting in [`QueueSender::room_for`].
    room_waiters: usize,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    ready: Notify,
    /// Wakes the senders waiting for room.
    room: Notify,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; if something ever did, the queue's state
        // (a deque and two fields) is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes the oldest stanza, waking the senders that wait for room.
    fn pop(&self) -> Option<Outbound> {
        self.pop_locked(&mut self.lock())
    }

    /// [`Shared::pop`] under a lock the caller already holds.
    fn pop_locked(&self, state: &mut State) -> Option<Outbound> {
        let item = state.items.pop_front();
        if item.is_some() && state.room_waiters > 0 {
            // The waiters take the lock only once polled, after this one is released.
            self.room.notify_waiters();
        }
        item
    }
}

/// A bounded queue for one session: [`QueueSender`]s for the router, one [`QueueReceiver`]
/// for the session's task.
pub fn session_queue(capacity: usize) -> (QueueSender, QueueReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            items: VecDeque::new(),
            closed: false,
            senders: 1,
            room_waiters: 0,
        }),
        ready: Notify::new(),
        room: Notify::new(),
        capacity: capacity.max(1),
    });
    (
        QueueSender {
            shared: shared.clone(),
        },
        QueueReceiver { shared },
    )
}

/// The sending side; cloning it adds a sender, and [`QueueReceiver::recv`] ends once all are
/// dropped.
#[derive(Debug)]
pub struct QueueSender {
    shared: Arc<Shared>,
}

impl QueueSender {
    /// Queues `outbound` unless the queue is full or closed.
    pub fn try_send(&self, outbound: Outbound) -> Result<(), TrySendError> {
        {
            let mut state = self.shared.lock();
            if state.closed {
                return Err(TrySendError::Closed(outbound));
            }
            if state.items.len() >= self.shared.capacity {
                return Err(TrySendError::Full(outbound));
            }
            state.items.push_back(outbound);
        }
        self.shared.ready.notify_one();
        Ok(())
    }

    /// How many stanzas are queued now.
    pub fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many more stanzas fit right now.
    pub fn free_slots(&self) -> usize {
        let state = self.shared.lock();
        self.shared.capacity.saturating_sub(state.items.len())
    }

    /// How many stanzas the queue holds at most.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Waits until at least `free` stanzas fit (at most the capacity); `false` when the queue
    /// was closed instead. Not bounded in time: the caller puts a timeout around it.
    pub async fn room_for(&self, free: usize) -> bool {
        let free = free.clamp(1, self.shared.capacity);
        loop {
            let notified = self.shared.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a stanza taken between the check and the wait
            // still wakes it.
            notified.as_mut().enable();
            {
                let mut state = self.shared.lock();
                if state.closed {
                    return false;
                }
                if self.shared.capacity.saturating_sub(state.items.len()) >= free {
                    return true;
                }
                state.room_waiters += 1;
            }
            let _waiting = RoomWaiter(&self.shared);
            notified.await;
        }
    }
}

/// One sender counted in [`State::room_waiters`] while it waits (also when its wait is
/// cancelled).
struct RoomWaiter<'a>(&'a Shared);

impl Drop for RoomWaiter<'_> {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.room_waiters = state.room_waiters.saturating_sub(1);
    }
}

impl Clone for QueueSender {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        QueueSender {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for QueueSender {
    fn drop(&mut self) {
        let last = {
            let mut state = self.shared.lock();
            state.senders -= 1;
            state.senders == 0
        };
        if last {
            self.shared.ready.notify_one();
        }
    }
}

/// The receiving side, owned by the session's task.
#[derive(Debug)]
pub struct QueueReceiver {
    shared: Arc<Shared>,
}

/// What [`QueueReceiver::next_now`] found.
#[derive(Debug)]
pub enum Next {
    /// The oldest queued stanza.
    Item(Outbound),
    /// Nothing queued now.
    Empty,
    /// Nothing queued and nothing more will come: every sender is gone or the queue was
    /// closed.
    Finished,
}

/// Wakes the receiver's task, or waits for a wake-up, without borrowing the receiver: for a
/// task that waits on its queue while it reads and writes, and for waking it for other
/// reasons than a stanza (a kick), so that it needs one waiter instead of several.
#[derive(Clone, Debug)]
pub struct QueueSignal {
    shared: Arc<Shared>,
}

impl QueueSignal {
    /// Ends the receiver's current or next wait.
    pub fn notify(&self) {
        self.shared.ready.notify_one();
    }

    /// Resolves at the next wake-up: a stanza queued, the last sender gone, or
    /// [`QueueSignal::notify`]. A wake-up that came while nobody waited is kept (there is one
    /// receiver), so checking [`QueueReceiver::next_now`] and then waiting misses nothing.
    pub async fn notified(self) {
        self.shared.ready.notified().await;
    }
}

impl QueueReceiver {
    /// The handle to wait on this queue, or wake its task, from elsewhere.
    pub fn signal(&self) -> QueueSignal {
        QueueSignal {
            shared: self.shared.clone(),
        }
    }

    /// The next stanza without waiting. When nothing is queued, the queue's memory is given
    /// back (the task is about to wait).
    pub fn next_now(&mut self) -> Next {
        // One lock for the look and the release of the memory: a stanza queued between two
        // locks would be dropped with the emptied deque.
        let mut state = self.shared.lock();
        if let Some(outbound) = self.shared.pop_locked(&mut state) {
            return Next::Item(outbound);
        }
        if state.senders == 0 || state.closed {
            return Next::Finished;
        }
        state.items = VecDeque::new();
        Next::Empty
    }

    /// The next stanza; `None` once every sender is gone (or the queue was closed) and
    /// nothing is left.
    pub async fn recv(&mut self) -> Option<Outbound> {
        loop {
            match self.next_now() {
                Next::Item(outbound) => return Some(outbound),
                Next::Finished => return None,
                Next::Empty => self.shared.ready.notified().await,
            }
        }
    }

    /// The next stanza if one is queued.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        self.shared.pop()
    }

    /// How many stanzas are queued.
    pub fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many stanzas the queue holds at most.
    pub fn capacity(&self) -> usize {
        self.shared.capacity
    }

    /// Accepts nothing more; what is queued can still be taken with
    /// [`QueueReceiver::try_recv`]. Senders waiting for room give up.
    pub fn close(&mut self) {
        self.shared.lock().closed = true;
        self.shared.room.notify_waiters();
    }
}

impl Drop for QueueReceiver {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.closed = true;
            state.items = VecDeque::new();
        }
        self.shared.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bytes::Bytes;

    use super::*;

    fn out(text: &'static str) -> Outbound {
        Outbound {
            bytes: Bytes::from_static(text.as_bytes()),
            reroute: None,
        }
    }

    fn text(o: Option<Outbound>) -> Option<Bytes> {
        o.map(|o| o.bytes)
    }

    #[tokio::test]
    async fn order_capacity_and_free_slots() {
        let (tx, mut rx) = session_queue(2);
        assert_eq!(tx.free_slots(), 2);
        tx.try_send(out("a")).unwrap();
        tx.try_send(out("b")).unwrap();
        assert_eq!(tx.free_slots(), 0);
        assert!(matches!(tx.try_send(out("c")), Err(TrySendError::Full(o)) if o.bytes == "c"));
        assert_eq!(text(rx.recv().await), Some(Bytes::from_static(b"a")));
        assert_eq!(text(rx.try_recv()), Some(Bytes::from_static(b"b")));
        assert!(rx.try_recv().is_none());
        assert_eq!(tx.free_slots(), 2);
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_a_send_from_another_task() {
        let (tx, mut rx) = session_queue(4);
        let waiter = tokio::spawn(async move { text(rx.recv().await) });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.try_send(out("x")).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert_eq!(got.unwrap().unwrap(), Some(Bytes::from_static(b"x")));
    }

    /// A recv future dropped while waiting (another select! branch won) loses nothing.
    #[tokio::test]
    async fn a_cancelled_wait_loses_no_stanza() {
        let (tx, mut rx) = session_queue(4);
        for _ in 0..3 {
            let timed_out = tokio::time::timeout(Duration::from_millis(5), rx.recv()).await;
            assert!(timed_out.is_err());
        }
        tx.try_send(out("y")).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(text(got.unwrap()), Some(Bytes::from_static(b"y")));
    }

    #[tokio::test]
    async fn recv_ends_when_every_sender_is_gone_after_draining() {
        let (tx, mut rx) = session_queue(4);
        let tx2 = tx.clone();
        tx.try_send(out("1")).unwrap();
        drop(tx);
        tx2.try_send(out("2")).unwrap();
        drop(tx2);
        assert_eq!(text(rx.recv().await), Some(Bytes::from_static(b"1")));
        assert_eq!(text(rx.recv().await), Some(Bytes::from_static(b"2")));
        let end = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert!(end.unwrap().is_none());
    }

    /// The end of a session: closed first, so nothing new is accepted, then drained; every
    /// stanza is either drained or refused, never lost.
    #[tokio::test]
    async fn close_refuses_new_stanzas_and_keeps_queued_ones() {
        let (tx, mut rx) = session_queue(4);
        tx.try_send(out("kept")).unwrap();
        rx.close();
        assert!(matches!(
            tx.try_send(out("new")),
            Err(TrySendError::Closed(_))
        ));
        assert_eq!(text(rx.try_recv()), Some(Bytes::from_static(b"kept")));
        assert!(rx.try_recv().is_none());
        drop(rx);
        assert!(matches!(
            tx.try_send(out("late")),
            Err(TrySendError::Closed(_))
        ));
    }

    /// Many senders on other threads and one receiver: every stanza arrives exactly once and
    /// in each sender's order.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_senders_deliver_everything_in_order() {
        const SENDERS: usize = 4;
        const EACH: usize = 2_000;
        let (tx, mut rx) = session_queue(16);
        let mut tasks = Vec::new();
        for s in 0..SENDERS {
            let tx = tx.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = 0;
                while i < EACH {
                    let o = Outbound {
                        bytes: Bytes::from(format!("{s}:{i}")),
                        reroute: None,
                    };
                    match tx.try_send(o) {
                        Ok(()) => i += 1,
                        Err(TrySendError::Full(_)) => tokio::task::yield_now().await,
                        Err(TrySendError::Closed(_)) => panic!("closed"),
                    }
                }
            }));
        }
        drop(tx);
        let mut next = [0usize; SENDERS];
        let received = tokio::time::timeout(Duration::from_secs(30), async {
            let mut n = 0;
            while let Some(o) = rx.recv().await {
                let text = std::str::from_utf8(&o.bytes).unwrap().to_owned();
                let (s, i) = text.split_once(':').unwrap();
                let (s, i): (usize, usize) = (s.parse().unwrap(), i.parse().unwrap());
                assert_eq!(i, next[s], "sender {s} out of order");
                next[s] += 1;
                n += 1;
            }
            n
        })
        .await
        .unwrap();
        assert_eq!(received, SENDERS * EACH);
        for t in tasks {
            t.await.unwrap();
        }
    }

    /// A sender waiting for room is woken as the receiver takes stanzas, and gives up when
    /// the queue is closed.
    #[tokio::test]
    async fn room_for_waits_until_the_receiver_takes_enough() {
        let (tx, mut rx) = session_queue(4);
        for i in 0..4 {
            tx.try_send(out(["0", "1", "2", "3"][i])).unwrap();
        }
        assert!(
            tokio::time::timeout(Duration::from_millis(20), tx.room_for(2))
                .await
                .is_err()
        );
        let waiter = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.room_for(2).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(rx.try_recv().is_some());
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "one free slot is not two");
        assert!(matches!(rx.next_now(), Next::Item(_)));
        let woke = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(woke.unwrap().unwrap());
        assert_eq!(tx.free_slots(), 2);
        // Closed while waiting: the wait ends with false.
        tx.try_send(out("4")).unwrap();
        tx.try_send(out("5")).unwrap();
        let waiter = {
            let tx = tx.clone();
            tokio::spawn(async move { tx.room_for(1).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        rx.close();
        let woke = tokio::time::timeout(Duration::from_secs(5), waiter).await;
        assert!(!woke.unwrap().unwrap());
        assert_eq!(tx.shared.lock().room_waiters, 0);
    }

    #[tokio::test]
    async fn next_now_and_the_signal_miss_nothing() {
        let (tx, mut rx) = session_queue(4);
        assert!(matches!(rx.next_now(), Next::Empty));
        // Queued between the check and the wait: the wait ends at once.
        tx.try_send(out("1")).unwrap();
        tokio::time::timeout(Duration::from_secs(5), rx.signal().notified())
            .await
            .expect("the queued stanza's wake-up was kept");
        assert!(matches!(rx.next_now(), Next::Item(o) if o.bytes == Bytes::from_static(b"1")));
        // A wake-up without a stanza.
        let signal = rx.signal();
        let waiting = tokio::spawn(signal.clone().notified());
        tokio::task::yield_now().await;
        signal.notify();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("notify ends the wait")
            .unwrap();
        assert!(matches!(rx.next_now(), Next::Empty));
        // The last sender leaving ends the queue, after what is queued.
        tx.try_send(out("2")).unwrap();
        drop(tx);
        tokio::time::timeout(Duration::from_secs(5), rx.signal().notified())
            .await
            .unwrap();
        assert!(matches!(rx.next_now(), Next::Item(_)));
        assert!(matches!(rx.next_now(), Next::Finished));
    }
}
