//! Outbound federation: one connection per (local domain, remote domain) pair, reused.
//!
//! The first stanza for a pair starts a link task; stanzas wait in the link's bounded queue
//! while it resolves, connects, starts TLS and authenticates, and are written as soon as the
//! stream is ready. If the link fails, every queued stanza is bounced to its sender
//! (`remote-server-not-found`, or `remote-server-timeout` when time ran out), so nothing is
//! dropped silently. A link with nothing to send for the idle timeout closes its stream;
//! stanzas that raced with the close are routed again, which opens a new link.
//!
//! The same link carries `<db:verify/>` requests (XEP-0220 §2.3) when the remote domain
//! claimed, on an inbound stream, to be the sender: they go out as soon as the stream is
//! open, before it is authenticated, because the peer may itself be waiting for our answer to
//! authenticate this very stream.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};

use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument as _, info_span, warn};
use xmppd_core::{RemoteRoute, Router};
use xmppd_proto::{DefinedCondition, Stanza, StanzaError};
use xmppd_stream::dialback::Verdict;
use xmppd_stream::s2s::S2sPolicy;

use crate::resolve::S2sResolver;
use crate::tls::S2sTls;
use crate::{S2sSettings, S2sTerms};

mod connect;
mod finish;
mod link;

use link::Link;

/// Dialback verifications waiting per link.
const VERIFY_QUEUE: usize = 64;

struct VerifyRequest {
    receiving: String,
    stream_id: String,
    key: String,
    reply: oneshot::Sender<Verdict>,
}

#[derive(Clone)]
struct LinkHandle {
    id: u64,
    stanzas: mpsc::Sender<Stanza>,
    verifies: mpsc::Sender<VerifyRequest>,
}

/// The outbound links of this server.
pub struct S2sPool {
    /// The pool itself, for the link tasks it spawns.
    me: Weak<S2sPool>,
    router: OnceLock<Weak<Router>>,
    links: DashMap<(String, String), LinkHandle>,
    terms: xmppd_core::Live<S2sTerms>,
    tls: Arc<S2sTls>,
    resolver: Option<S2sResolver>,
    next_id: AtomicU64,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl std::fmt::Debug for S2sPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S2sPool")
            .field("links", &self.links.len())
            .finish_non_exhaustive()
    }
}

/// Why a link ended.
#[derive(Debug)]
enum LinkEnd {
    /// Closed on purpose (idle, shutdown): queued stanzas are routed again.
    Closed,
    /// Failed: queued stanzas are bounced with this condition.
    Failed(DefinedCondition, String),
}

fn not_found(text: impl Into<String>) -> LinkEnd {
    LinkEnd::Failed(DefinedCondition::RemoteServerNotFound, text.into())
}

fn timed_out(text: impl Into<String>) -> LinkEnd {
    LinkEnd::Failed(DefinedCondition::RemoteServerTimeout, text.into())
}

impl S2sPool {
    /// A pool; `resolver` is `None` when the system has no DNS configuration (then only
    /// static routes work).
    pub fn new(
        settings: S2sSettings,
        policy: S2sPolicy,
        tls: Arc<S2sTls>,
        resolver: Option<S2sResolver>,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| S2sPool {
            me: me.clone(),
            router: OnceLock::new(),
            links: DashMap::new(),
            terms: xmppd_core::Live::new(S2sTerms { settings, policy }),
            tls,
            resolver,
            next_id: AtomicU64::new(1),
            shutdown,
            tracker,
        })
    }

    /// The settings and policy in force for links starting now.
    pub fn terms(&self) -> Arc<S2sTerms> {
        self.terms.get()
    }

    /// Applies `terms` to the links started from now on (a reload); running links keep
    /// theirs until they close.
    pub fn update_terms(&self, terms: S2sTerms) {
        self.terms.set(terms);
    }

    /// Connects the pool and the router both ways: remote stanzas come here, and bounces
    /// and re-routed stanzas go back through the router.
    pub fn attach(self: &Arc<Self>, router: &Arc<Router>) {
        let _ = self.router.set(Arc::downgrade(router));
        router.set_remote(self.clone());
    }

    /// The number of open or opening links.
    pub fn link_count(&self) -> usize {
        self.links.len()
    }

    fn router(&self) -> Option<Arc<Router>> {
        self.router.get().and_then(Weak::upgrade)
    }

    /// The link for a pair, started if there is none; `None` once the pool is shutting down
    /// or holds as many links as it may.
    fn link(&self, local: &str, remote: &str) -> Option<LinkHandle> {
        if self.shutdown.is_cancelled() {
            return None;
        }
        let pool = self.me.upgrade()?;
        let key = (local.to_owned(), remote.to_owned());
        let terms = self.terms();
        if self.links.len() >= terms.settings.max_outbound_links && !self.links.contains_key(&key) {
            warn!(remote, "too many outbound streams; refusing a new one");
            return None;
        }
        let handle = self
            .links
            .entry(key.clone())
            .or_insert_with(|| {
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let (stanzas, stanzas_rx) = mpsc::channel(terms.settings.queue.max(1));
                let (verifies, verifies_rx) = mpsc::channel(VERIFY_QUEUE);
                let link = Link {
                    pool,
                    terms: terms.clone(),
                    local: key.0.clone(),
                    remote: key.1.clone(),
                    id,
                    stanzas: stanzas_rx,
                    verifies: verifies_rx,
                    waiting: Vec::new(),
                    sent: HashMap::new(),
                    written: 0,
                    deliberate: false,
                    state: None,
                };
                let span =
                    info_span!(parent: None, "s2s_out", link = id, local = %key.0, remote = %key.1);
                self.tracker.spawn(link.run().instrument(span));
                LinkHandle {
                    id,
                    stanzas,
                    verifies,
                }
            })
            .clone();
        Some(handle)
    }

    fn forget(&self, local: &str, remote: &str, id: u64) {
        self.links
            .remove_if(&(local.to_owned(), remote.to_owned()), |_, h| h.id == id);
    }

    /// Asks `remote`'s authoritative server whether `key` is the dialback key it gave for our
    /// domain `receiving` on the stream `stream_id` (XEP-0220 §2.3). Any failure to ask is an
    /// error verdict.
    pub async fn verify(
        &self,
        receiving: &str,
        remote: &str,
        stream_id: &str,
        key: &str,
    ) -> Verdict {
        let (reply, answer) = oneshot::channel();
        let mut request = VerifyRequest {
            receiving: receiving.to_owned(),
            stream_id: stream_id.to_owned(),
            key: key.to_owned(),
            reply,
        };
        // Once more with a new link if the one found was just ending.
        for attempt in 0..2 {
            let Some(link) = self.link(receiving, remote) else {
                return Verdict::Error(DefinedCondition::RemoteServerNotFound);
            };
            match link.verifies.try_send(request) {
                Ok(()) => break,
                Err(mpsc::error::TrySendError::Closed(r)) if attempt == 0 => {
                    self.forget(receiving, remote, link.id);
                    request = r;
                }
                Err(_) => return Verdict::Error(DefinedCondition::RemoteServerNotFound),
            }
        }
        match tokio::time::timeout(self.terms().settings.negotiation_timeout, answer).await {
            Ok(Ok(verdict)) => verdict,
            _ => Verdict::Error(DefinedCondition::RemoteServerNotFound),
        }
    }
}

impl RemoteRoute for S2sPool {
    fn queued(&self) -> usize {
        self.links
            .iter()
            .map(|link| {
                let queue = &link.value().stanzas;
                queue.max_capacity() - queue.capacity()
            })
            .sum()
    }

    fn send_remote(&self, stanza: Stanza, from_domain: &str, to_domain: &str) -> Option<Stanza> {
        let mut stanza = stanza;
        for _ in 0..2 {
            let Some(link) = self.link(from_domain, to_domain) else {
                let err = StanzaError::new(DefinedCondition::RemoteServerNotFound)
                    .with_text("no new server-to-server stream can be opened now");
                return stanza.error_reply(&err);
            };
            match link.stanzas.try_send(stanza) {
                Ok(()) => return None,
                Err(mpsc::error::TrySendError::Full(s)) => {
                    let err = StanzaError::new(DefinedCondition::RemoteServerTimeout)
                        .with_text(format!("too many stanzas are waiting for {to_domain}"));
                    return s.error_reply(&err);
                }
                // The link just ended: forget it and open a new one.
                Err(mpsc::error::TrySendError::Closed(s)) => {
                    self.forget(from_domain, to_domain, link.id);
                    stanza = s;
                }
            }
        }
        let err = StanzaError::new(DefinedCondition::RemoteServerNotFound)
            .with_text(format!("{to_domain} cannot be reached"));
        stanza.error_reply(&err)
    }
}
