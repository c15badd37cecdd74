//! The commits of archived groupchat, waited for in order without holding the room.
//!
//! An archived message goes out at once, with its stanza-id: the room names its record with
//! an id reserved ahead ([`xmppd_modules::mam::Writer::reserve_id`]), so nobody waits for the
//! commit but the sender's stream, which counts the message as handled only once it is
//! durable (XEP-0198 `h`; `../shared/DESIGN.md`, durability rule). Under its lock the room
//! submits the record to the archive writer (which commits records in submission order, many
//! per transaction), sends the copies, and queues the commit here; a task per room takes the
//! queue in order, waits for each commit and then completes the sender's stanza. A commit
//! that fails is reported to the sender with an error naming the message.
//!
//! A query of the room's archive must find every message the room has sent, the newest
//! included (a client asks for what came after the last stanza-id it saw): the room calls
//! [`Outbox::flush`] before it answers an iq, which returns once everything queued before it
//! is committed. That costs nothing while the queue is empty.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use jid::Jid;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;
use xmppd_core::RouterHandle;
use xmppd_core::completion::Completer;
use xmppd_modules::mam::{Pending, sent_but_not_archived};
use xmppd_proto::{DefinedCondition, Stanza, StanzaError};

use super::route_apart;

/// Commits queued in one room before a sender waits for room (under the room's lock).
const QUEUE: usize = 1024;

/// One archived message whose commit is awaited.
pub(crate) struct Queued {
    pub(crate) commit: Pending,
    /// The sender's `id` for the message, for the error should the commit fail.
    pub(crate) id: Option<String>,
    /// The occupant's real JID.
    pub(crate) sender: Jid,
    /// Told when the message is durable, or its failure reported.
    pub(crate) done: Completer,
}

enum Job {
    Commit(Box<Queued>),
    Flush(oneshot::Sender<()>),
}

/// The room's queue of commits.
pub(crate) struct Outbox {
    jobs: mpsc::Sender<Job>,
    queued: Arc<AtomicUsize>,
}

impl Outbox {
    /// Starts the room's task; `None` outside a runtime.
    pub(crate) fn start(router: &RouterHandle, room: Jid) -> Option<Outbox> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (jobs, rx) = mpsc::channel(QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        runtime.spawn(run(rx, router.clone(), queued.clone(), room));
        Some(Outbox { jobs, queued })
    }

    /// Queues a commit; its completion is done once it is committed or its failure
    /// reported.
    pub(crate) async fn queue(&self, queued: Queued) -> Result<(), StanzaError> {
        self.queued.fetch_add(1, Ordering::AcqRel);
        if self.jobs.send(Job::Commit(Box::new(queued))).await.is_err() {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(StanzaError::new(DefinedCondition::InternalServerError));
        }
        Ok(())
    }

    /// Returns once every commit queued so far is done.
    pub(crate) async fn flush(&self) {
        if self.queued.load(Ordering::Acquire) == 0 {
            return;
        }
        let (tx, rx) = oneshot::channel();
        if self.jobs.send(Job::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

async fn run(
    mut rx: mpsc::Receiver<Job>,
    router: RouterHandle,
    queued: Arc<AtomicUsize>,
    room: Jid,
) {
    while let Some(job) = rx.recv().await {
        let q = match job {
            Job::Flush(tx) => {
                let _ = tx.send(());
                continue;
            }
            Job::Commit(q) => *q,
        };
        let Queued {
            commit,
            id,
            sender,
            done,
        } = q;
        if let Err(e) = commit.committed().await {
            warn!(%room, error = %e, "a room message went out but could not be archived");
            route_apart(&router, vec![not_archived(&room, sender, id)]);
        }
        queued.fetch_sub(1, Ordering::AcqRel);
        done.complete();
    }
}

/// The error a sender gets for a message the occupants have but the archive does not.
fn not_archived(room: &Jid, sender: Jid, id: Option<String>) -> Stanza {
    sent_but_not_archived(
        sender,
        Some(room.clone()),
        id,
        "the message reached the occupants but could not be archived",
    )
}
