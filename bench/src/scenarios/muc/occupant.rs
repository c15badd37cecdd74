//! The occupants of the group chat scenario: the state they share with the run, the owner's
//! requests (creating the room, asking its archive), and the task each occupant runs from its
//! join to the end.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{Notify, Semaphore, watch};

use super::super::fanout::Conn;
use crate::room::{self, Archiving, Joined, Room, Tally};
use crate::scan::Seen;

/// What the occupants are doing; the run moves it forward.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Join,
    Send,
    Drain,
    Stop,
}

/// One sender's messages on their way.
#[derive(Debug)]
pub(super) struct Flow {
    /// Messages sent.
    pub(super) sent: AtomicU64,
    /// Copies of them received, by all occupants together.
    pub(super) copies: AtomicU64,
    /// Messages every occupant has received. Copies from one sender arrive in order (RFC
    /// 6120 §10.1), so these are its first `completed` messages.
    completed: AtomicU64,
    /// Per message on its way, in slot `n % window`: the occupants that have it. A slot is
    /// used again only once its message is complete, since at most `window` are on their
    /// way.
    slots: Vec<AtomicU64>,
    /// The sender waits for room in its window.
    waiting: AtomicBool,
    /// Wakes the sender when a message is complete.
    wake: Notify,
}

impl Flow {
    /// A sender that may have `window` messages on their way.
    pub(super) fn new(window: u64) -> Self {
        Flow {
            sent: AtomicU64::new(0),
            copies: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            slots: (0..window.max(1)).map(|_| AtomicU64::new(0)).collect(),
            waiting: AtomicBool::new(false),
            wake: Notify::new(),
        }
    }

    /// Whether another message fits in the window: the oldest on its way, `window` back,
    /// has reached every occupant.
    fn has_room(&self) -> bool {
        let on_their_way = self
            .sent
            .load(Ordering::SeqCst)
            .saturating_sub(self.completed.load(Ordering::SeqCst));
        on_their_way < self.slots.len() as u64
    }

    /// Counts a copy of message `n` in a room of `occupants`, waking the sender if that
    /// completed a message it waits for.
    fn copy_arrived(&self, n: u64, occupants: u64) {
        self.copies.fetch_add(1, Ordering::SeqCst);
        let slot = &self.slots[(n % self.slots.len() as u64) as usize];
        if slot.fetch_add(1, Ordering::SeqCst) + 1 != occupants {
            return;
        }
        slot.store(0, Ordering::SeqCst);
        self.completed.fetch_add(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst)
            && self.has_room()
            && self.waiting.swap(false, Ordering::SeqCst)
        {
            self.wake.notify_one();
        }
    }
}

/// What the occupants' tasks share.
pub(super) struct Shared {
    pub(super) room: Room,
    pub(super) occupants: u64,
    pub(super) flows: Vec<Flow>,
    /// The measured window, in ns since `epoch` (`u64::MAX` until set).
    pub(super) start_ns: AtomicU64,
    pub(super) end_ns: AtomicU64,
    pub(super) joined: AtomicUsize,
    pub(super) refused: AtomicUsize,
    pub(super) closed: AtomicUsize,
    pub(super) first_error: Mutex<Option<String>>,
    pub(super) joins: Semaphore,
    pub(super) epoch: Instant,
}

impl Shared {
    pub(super) fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Whether a copy that arrived at `at` counts in the measured window.
    fn in_window(&self, at: u64) -> bool {
        at >= self.start_ns.load(Ordering::Relaxed) && at < self.end_ns.load(Ordering::Relaxed)
    }

    fn error(&self, e: String) {
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(e);
        }
    }

    /// Every copy of every message sent has arrived (or more).
    pub(super) fn drained(&self) -> bool {
        self.flows.iter().all(|f| {
            f.copies.load(Ordering::SeqCst) >= f.sent.load(Ordering::SeqCst) * self.occupants
        })
    }
}

/// Reads until `f` finds its answer in a stanza; an error at the deadline or the end of the
/// stream. Stanzas before the answer, and after it in the same read, are dropped: this is
/// used only while no copies are on their way.
async fn until<T>(
    conn: &mut Conn,
    deadline: Instant,
    mut f: impl FnMut(Seen<'_>) -> Option<T>,
) -> Result<T, String> {
    if !conn.flush().await {
        return Err("the connection failed".to_owned());
    }
    loop {
        let mut found = None;
        let alive = conn
            .read(deadline, |seen| {
                if found.is_none() {
                    found = f(seen);
                }
            })
            .await;
        if let Some(t) = found {
            return Ok(t);
        }
        if !alive {
            return Err(if Instant::now() >= deadline {
                "no answer in time".to_owned()
            } else {
                "the server closed the stream".to_owned()
            });
        }
    }
}

/// Joins as `nick`; whether the join created the room.
async fn join(conn: &mut Conn, room: &Room, nick: &str, deadline: Instant) -> Result<bool, String> {
    room.join(nick, &mut conn.out);
    match until(conn, deadline, |seen| room.own_presence(nick, &seen)).await? {
        Joined::Yes { created } => Ok(created),
        Joined::Refused(e) => Err(format!("join refused: {e}")),
    }
}

/// The owner's part: joins, which must create the room, and configures it.
pub(super) async fn create(
    conn: &mut Conn,
    room: &Room,
    nick: &str,
    archiving: &Archiving,
    deadline: Instant,
) -> Result<(), String> {
    if !join(conn, room, nick, deadline).await? {
        return Err(format!(
            "{} existed before this run (no status 201), so its configuration is not ours",
            room.jid()
        ));
    }
    room.configure(archiving, &mut conn.out);
    let (ok, reply) = until(conn, deadline, |seen| match seen {
        Seen::Iq {
            id: Some(room::CONFIG_ID),
            kind,
            inner,
            ..
        } => Some((kind == Some(b"result"), room::excerpt(inner))),
        _ => None,
    })
    .await?;
    if ok {
        Ok(())
    } else {
        Err(format!("the room's configuration was refused: {reply}"))
    }
}

/// What the room's archive holds, as the owner finds it.
#[derive(Debug, Default)]
pub(super) struct ArchiveFound {
    /// The `<count>` of the answer, if the server gives one (XEP-0059 §2.6 leaves it
    /// optional).
    pub(super) count: Option<u64>,
    /// Archived messages sent back (at most one is asked for).
    pub(super) results: u64,
    /// The query's error or failure, if it got no result.
    pub(super) error: Option<String>,
}

impl ArchiveFound {
    /// Whether the archive shows at least one message.
    pub(super) fn holds_any(&self) -> bool {
        self.count.unwrap_or(0) > 0 || self.results > 0
    }
}

/// Asks the room's archive for one message and its count.
pub(super) async fn archive_count(conn: &mut Conn, room: &Room, deadline: Instant) -> ArchiveFound {
    room.count_query(&mut conn.out);
    let mut found = ArchiveFound::default();
    let answer = until(conn, deadline, |seen| match seen {
        Seen::Message { inner, .. } => {
            found.results += u64::from(room::is_archive_result(inner));
            None
        }
        Seen::Iq {
            id: Some(room::COUNT_ID),
            kind,
            inner,
            ..
        } => Some((kind == Some(b"result"), inner.to_vec())),
        _ => None,
    })
    .await;
    match answer {
        Ok((true, inner)) => found.count = room::archive_count(&inner),
        Ok((false, inner)) => found.error = Some(room::excerpt(&inner)),
        Err(e) => found.error = Some(e),
    }
    found
}

/// The nickname of the room's `index`th occupant (the owner is 0).
pub(super) fn nick(index: usize) -> String {
    format!("n{index}")
}

/// One occupant as its task ends.
pub(super) struct Ended {
    pub(super) index: usize,
    pub(super) conn: Conn,
    pub(super) tally: Tally,
    /// Copies received inside the measured window.
    pub(super) in_window: u64,
    pub(super) closed: bool,
}

/// One occupant: joins (unless it is the owner, who already has), then reads everything and,
/// if it is a sender, posts while the phase says so.
pub(super) async fn occupant(
    index: usize,
    mut conn: Conn,
    sender: Option<usize>,
    join_first: bool,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
    deadline: Instant,
) -> Ended {
    let nick = nick(index);
    let mut tally = Tally::new(shared.flows.len());
    let (mut in_window, mut closed) = (0u64, false);
    if join_first {
        let joining = async {
            match shared.joins.acquire().await {
                Ok(_permit) => join(&mut conn, &shared.room, &nick, deadline).await,
                Err(_) => Err("the join permits are gone".to_owned()),
            }
        };
        // A run that gives up (another occupant's session closed) stops the joins too.
        let joined = tokio::select! {
            r = joining => r,
            _ = phase.wait_for(|p| *p == Phase::Stop) => Err("the run stopped".to_owned()),
        };
        if let Err(e) = joined {
            shared.refused.fetch_add(1, Ordering::SeqCst);
            shared.error(format!("{nick}: {e}"));
            return Ended {
                index,
                conn,
                tally,
                in_window,
                closed,
            };
        }
        shared.joined.fetch_add(1, Ordering::SeqCst);
    }
    let mut next = 0u64;
    loop {
        let now = *phase.borrow_and_update();
        if now == Phase::Stop {
            break;
        }
        let mut waiting = false;
        if let (Some(s), Phase::Send) = (sender, now) {
            let flow = &shared.flows[s];
            loop {
                while flow.has_room() {
                    shared
                        .room
                        .message(room::seq(s, next), shared.now_ns(), &mut conn.out);
                    next += 1;
                    flow.sent.store(next, Ordering::SeqCst);
                }
                // Say so before looking again, so that a copy arriving in between wakes us.
                flow.waiting.store(true, Ordering::SeqCst);
                if !flow.has_room() {
                    waiting = true;
                    break;
                }
                flow.waiting.store(false, Ordering::SeqCst);
            }
        }
        if !conn.flush().await {
            closed = true;
            break;
        }
        // Whether this read's copies count in the measured window, decided once per read.
        let mut counts = None;
        let on = |seen: Seen<'_>| {
            if let Some((s, n)) = tally.record(&shared.room, &seen) {
                let counts = *counts.get_or_insert_with(|| shared.in_window(shared.now_ns()));
                in_window += u64::from(counts);
                shared.flows[s].copy_arrived(n, shared.occupants);
            }
        };
        let wake = async {
            match sender {
                Some(s) if waiting => shared.flows[s].wake.notified().await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            alive = conn.receive(on) => if !alive {
                closed = true;
                break;
            },
            changed = phase.changed() => if changed.is_err() { break },
            () = wake => {}
        }
    }
    if closed {
        shared.closed.fetch_add(1, Ordering::SeqCst);
    }
    Ended {
        index,
        conn,
        tally,
        in_window,
        closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_waits_for_its_oldest_message_to_reach_everyone() {
        // Two messages on their way at most, three occupants.
        let flow = Flow::new(2);
        assert!(flow.has_room());
        flow.sent.store(2, Ordering::SeqCst);
        assert!(!flow.has_room());
        // Two of the three occupants have both messages: no room yet.
        for _ in 0..2 {
            flow.copy_arrived(0, 3);
            flow.copy_arrived(1, 3);
        }
        assert!(!flow.has_room());
        flow.copy_arrived(0, 3);
        assert!(flow.has_room());
        // Message 2 takes message 0's slot, emptied when message 0 was complete.
        flow.sent.store(3, Ordering::SeqCst);
        assert!(!flow.has_room());
        flow.copy_arrived(1, 3);
        assert!(flow.has_room());
        assert_eq!(flow.copies.load(Ordering::SeqCst), 6);
        assert_eq!(flow.completed.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_waiting_sender_is_woken_by_the_copy_that_completes_its_message() {
        let flow = Flow::new(1);
        flow.sent.store(1, Ordering::SeqCst);
        flow.waiting.store(true, Ordering::SeqCst);
        flow.copy_arrived(0, 2);
        assert!(
            flow.waiting.load(Ordering::SeqCst),
            "one occupant still waits for it"
        );
        flow.copy_arrived(0, 2);
        assert!(!flow.waiting.load(Ordering::SeqCst));
        // The wake-up is kept for a sender that was not awaiting it yet.
        let woken = tokio::time::timeout(std::time::Duration::from_secs(1), flow.wake.notified());
        assert!(woken.await.is_ok());
    }
}
