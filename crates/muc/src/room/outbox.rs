//! Archived groupchat leaves the room in order without holding the room during commits.
//!
//! An archived message must be committed before anyone sees it (its stanza-id is the archive
//! id, and its sender's stream counts it as handled only once it is durable). Waiting for the
//! commit under the room's lock would make a busy room one fsync per message. Instead the
//! room, under its lock, submits the record to the archive writer (which commits records in
//! submission order, many per transaction) and queues the message here; a task per room
//! takes the queue in order, waits for each commit, adds the stanza-id, records the message
//! in the history and sends it to the occupants the room had when it was queued. The sender
//! waits for its own message's turn outside the room's lock.
//!
//! Anything else the room sends (presence, subjects, notices) must not overtake queued
//! messages: the room calls [`Outbox::flush`] first, which returns once everything queued
//! before it is out. That costs nothing while the queue is empty.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use jid::Jid;
use tokio::sync::{mpsc, oneshot};
use tracing::warn;
use xmppd_core::RouterHandle;
use xmppd_core::completion::Completer;
use xmppd_modules::mam::{IdCipher, Pending};
use xmppd_proto::stanza_id::StanzaId;
use xmppd_proto::{DefinedCondition, Stanza, StanzaError, StanzaKind};
use xmppd_xml::Element;

use super::{History, route_apart};

/// Messages queued in one room before a sender waits for room (under the room's lock).
const QUEUE: usize = 1024;

/// One archived message on its way out.
pub(crate) struct Queued {
    pub(crate) commit: Pending,
    pub(crate) message: Element,
    pub(crate) from: Jid,
    /// The occupant's real JID, for the bounce when the commit fails.
    pub(crate) sender: Jid,
    pub(crate) recipients: Arc<[Jid]>,
    pub(crate) cipher: IdCipher,
    /// Told when the message is out or bounced.
    pub(crate) done: Completer,
}

enum Job {
    Message(Box<Queued>),
    Flush(oneshot::Sender<()>),
}

/// The room's queue of archived messages.
pub(crate) struct Outbox {
    jobs: mpsc::Sender<Job>,
    queued: Arc<AtomicUsize>,
}

impl Outbox {
    /// Starts the room's task; `None` outside a runtime or before the router exists.
    pub(crate) fn start(
        router: &RouterHandle,
        history: Arc<Mutex<History>>,
        room: Jid,
    ) -> Option<Outbox> {
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (jobs, rx) = mpsc::channel(QUEUE);
        let queued = Arc::new(AtomicUsize::new(0));
        runtime.spawn(run(rx, router.clone(), history, queued.clone(), room));
        Some(Outbox { jobs, queued })
    }

    /// Queues a message; its completion is done once it is out or bounced.
    pub(crate) async fn queue(&self, message: Queued) -> Result<(), StanzaError> {
        self.queued.fetch_add(1, Ordering::AcqRel);
        if self
            .jobs
            .send(Job::Message(Box::new(message)))
            .await
            .is_err()
        {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(StanzaError::new(DefinedCondition::InternalServerError));
        }
        Ok(())
    }

    /// Returns once every message queued so far is out.
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
    handle: RouterHandle,
    history: Arc<Mutex<History>>,
    queued: Arc<AtomicUsize>,
    room: Jid,
) {
    while let Some(job) = rx.recv().await {
        let q = match job {
            Job::Flush(tx) => {
                let _ = tx.send(());
                continue;
            }
            Job::Message(q) => *q,
        };
        let Queued {
            commit,
            mut message,
            from,
            sender,
            recipients,
            cipher,
            done,
        } = q;
        match (commit.committed().await, handle.get()) {
            (Ok(id), Some(router)) => {
                message.push_child(StanzaId::new(cipher.encode(&id), room.clone()).to_element());
                if let Ok(mut h) = history.lock() {
                    h.push(message.clone(), SystemTime::now());
                }
                let message = Stanza::new_unchecked(StanzaKind::Message, Some(from), None, message);
                let bounces = router
                    .route_copies_keeping_bounces(message, &recipients)
                    .await;
                // Bounces come back to the room, whose handler may be waiting for this task.
                route_apart(&handle, bounces);
            }
            // Shutting down: the message is archived; occupants get it from there.
            (Ok(_), None) => {}
            (Err(e), _) => {
                warn!(%room, error = %e, "a room message could not be archived");
                let error = StanzaError::new(DefinedCondition::InternalServerError)
                    .with_text("the message could not be archived; it was not sent");
                // The bounce names the room and carries what the sender said.
                let sent = Stanza::new_unchecked(
                    StanzaKind::Message,
                    Some(sender),
                    Some(room.clone()),
                    message,
                );
                if let Some(bounce) = sent.error_reply(&error) {
                    route_apart(&handle, vec![bounce]);
                }
            }
        }
        queued.fetch_sub(1, Ordering::AcqRel);
        done.complete();
    }
}
