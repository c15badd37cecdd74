//! What each contact resource is interested in: XEP-0115 caps from presence, verified once per
//! hash, turned into the set of nodes it wants notifications of (`NODE+notify`, XEP-0163 §4.3
//! filtered notifications).
//!
//! - **Presence** to an account (contacts' broadcast and directed presence, the inbound hook)
//!   and from its own sessions (the session hook) records, per (owner, full JID), the `ver`
//!   of its `<c hash='sha-1'/>`; unavailable presence, or available presence without caps,
//!   forgets it. Presence from entities that are not (yet) subscribed is kept too: a
//!   subscription approved later can then be served at once (XEP-0163 §4.3.4, "on_sub").
//!   At most `max_caps_per_account` resources are kept per account; when they are taken, a
//!   subscriber's new resource makes room by evicting those of non-subscribers
//!   ([`Seen::Full`], [`CapsTracker::retain`]), so strangers' directed presence cannot crowd
//!   out the contacts.
//! - **Verification** (XEP-0115 §5.4): an unknown `ver` is asked once, with a disco#info to
//!   `node#ver` at the first resource that showed it (from the host's domain, whose answers
//!   the iq response hook claims by id); the answer's §5 hash must equal `ver`. A verified
//!   hash maps to its `+notify` nodes for the server's life, at most `caps_cache_size` hashes
//!   (the oldest forgotten first). A hash that does not verify is remembered as interested in
//!   nothing, so a client with a wrong hash costs one query, not one per presence.
//! - Resources that showed a hash while it was being verified wait for the answer and are
//!   then served as if their presence had just come.
//!
//! Everything here is decided without waiting (std mutexes, never held across an await);
//! the module does the I/O.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dashmap::DashMap;
use jid::{BareJid, FullJid, Jid};
use xmppd_proto::caps::Caps;
use xmppd_proto::disco::DiscoInfoResult;
use xmppd_proto::{Stanza, StanzaKind, ns};
use xmppd_xml::Element;

/// The nodes an entity wants notifications of.
pub type Interests = Arc<HashSet<String>>;

/// The prefix of the ids of caps queries.
const ID_PREFIX: &str = "pep-caps-";
/// Queries in flight, at most (the oldest forgotten first).
const MAX_PENDING: usize = 1024;

/// What a presence means for notifications.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// Nothing to do (a repeated presence, unavailable, no caps, over the limit).
    Nothing,
    /// A newly available resource whose interests are known.
    Available(Interests),
    /// A newly available resource whose hash is being verified; it will be served when the
    /// answer comes.
    Waiting,
    /// A new hash: send this disco#info query (and wait, as [`Seen::Waiting`]).
    Query(Stanza),
    /// A new resource, but the account has as many as it may keep: nothing was recorded.
    Full,
}

struct Query {
    id: String,
    ver: Arc<str>,
    /// The caps `node` (the software's URI) the hash was given with.
    node: String,
    to: Jid,
    waiting: Vec<(BareJid, FullJid)>,
}

#[derive(Default)]
struct Verified {
    map: HashMap<Arc<str>, Interests>,
    order: VecDeque<Arc<str>>,
}

/// The caps of the resources each account hears from.
pub struct CapsTracker {
    presences: DashMap<BareJid, HashMap<FullJid, Arc<str>>>,
    verified: Mutex<Verified>,
    pending: Mutex<VecDeque<Query>>,
    next_id: AtomicU64,
    cache_size: usize,
    per_account: usize,
}

impl std::fmt::Debug for CapsTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CapsTracker")
            .field("accounts", &self.presences.len())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The `+notify` nodes among disco#info features.
fn interests(info: &DiscoInfoResult) -> Interests {
    Arc::new(
        info.features
            .iter()
            .filter_map(|f| f.strip_suffix("+notify"))
            .map(str::to_owned)
            .collect(),
    )
}

/// The SHA-1 caps of a presence, if it has them (other hashes and legacy caps are ignored).
fn caps_of(presence: &Stanza) -> Option<Caps> {
    let c = presence.element().child("c", ns::CAPS)?;
    Caps::try_from(c).ok().filter(|c| c.hash == "sha-1")
}

impl CapsTracker {
    /// A tracker keeping at most `cache_size` verified hashes and `per_account` resources per
    /// account.
    pub fn new(cache_size: usize, per_account: usize) -> Self {
        CapsTracker {
            presences: DashMap::new(),
            verified: Mutex::default(),
            pending: Mutex::default(),
            next_id: AtomicU64::new(1),
            cache_size: cache_size.max(1),
            per_account,
        }
    }

    /// The interests of the hash `ver`, if verified.
    pub fn interests(&self, ver: &str) -> Option<Interests> {
        lock(&self.verified).map.get(ver).cloned()
    }

    /// The resources `owner` heard from with known interests: `(full JID, interests)`.
    pub fn interested(&self, owner: &BareJid) -> Vec<(FullJid, Interests)> {
        let Some(entries) = self.presences.get(owner) else {
            return Vec::new();
        };
        let verified = lock(&self.verified);
        entries
            .iter()
            .filter_map(|(jid, ver)| verified.map.get(ver).map(|i| (jid.clone(), i.clone())))
            .collect()
    }

    /// Records a presence from `from` that `owner` received (or sent, for its own resources)
    /// and says what to do about it. `host` is the domain the caps query is sent from.
    pub fn observe(&self, owner: &BareJid, from: &FullJid, presence: &Stanza, host: &str) -> Seen {
        debug_assert_eq!(presence.kind(), StanzaKind::Presence);
        let caps = match presence.type_attr() {
            None => caps_of(presence),
            _ => None,
        };
        let Some(caps) = caps else {
            self.forget(owner, from);
            return Seen::Nothing;
        };
        let ver: Arc<str> = Arc::from(caps.ver.as_str());
        {
            let mut entries = self.presences.entry(owner.clone()).or_default();
            match entries.get(from) {
                Some(old) if *old == ver => return Seen::Nothing,
                // A resource that changes its caps is not newly available (XEP-0163 §4.3.3 note).
                Some(_) => {
                    entries.insert(from.clone(), ver);
                    return Seen::Nothing;
                }
                None if entries.len() >= self.per_account => return Seen::Full,
                None => {
                    entries.insert(from.clone(), ver.clone());
                }
            }
        }
        if let Some(interests) = self.interests(&ver) {
            return Seen::Available(interests);
        }
        let mut pending = lock(&self.pending);
        if let Some(q) = pending.iter_mut().find(|q| q.ver == ver) {
            q.waiting.push((owner.clone(), from.clone()));
            return Seen::Waiting;
        }
        if pending.len() >= MAX_PENDING {
            pending.pop_front();
        }
        let id = format!(
            "{ID_PREFIX}{}",
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let to = Jid::from(from.clone());
        let query = disco_query(&id, host, &to, &caps.node_ver());
        pending.push_back(Query {
            id,
            ver,
            node: caps.node,
            to,
            waiting: vec![(owner.clone(), from.clone())],
        });
        Seen::Query(query)
    }

    /// Forgets a resource (it went unavailable, or dropped its caps).
    pub fn forget(&self, owner: &BareJid, from: &FullJid) {
        if let Some(mut entries) = self.presences.get_mut(owner) {
            entries.remove(from);
            if entries.is_empty() {
                drop(entries);
                self.presences.remove_if(owner, |_, e| e.is_empty());
            }
        }
    }

    /// Keeps only the resources of `owner` whose bare JID `keep` accepts.
    pub fn retain(&self, owner: &BareJid, keep: impl Fn(&BareJid) -> bool) {
        if let Some(mut entries) = self.presences.get_mut(owner) {
            entries.retain(|jid, _| keep(&jid.to_bare()));
        }
    }

    /// Whether `stanza` answers a query in flight.
    pub fn claims(&self, stanza: &Stanza) -> bool {
        stanza.id().is_some_and(|id| {
            id.starts_with(ID_PREFIX) && lock(&self.pending).iter().any(|q| q.id == id)
        })
    }

    /// Takes the answer to a query: verifies the hash (XEP-0115 §5.4), caches the interests,
    /// and returns the resources that waited, still showing that hash, with them.
    pub fn answer(&self, stanza: &Stanza) -> Vec<(BareJid, FullJid, Interests)> {
        let Some(id) = stanza.id() else {
            return Vec::new();
        };
        let query = {
            let mut pending = lock(&self.pending);
            let Some(at) = pending.iter().position(|q| q.id == id) else {
                return Vec::new();
            };
            if pending.get(at).is_none_or(|q| stanza.from() != Some(&q.to)) {
                return Vec::new();
            }
            match pending.remove(at) {
                Some(q) => q,
                None => return Vec::new(),
            }
        };
        let info = match stanza.type_attr() {
            Some("result") => stanza
                .iq_payload()
                .and_then(|q| DiscoInfoResult::try_from(q).ok()),
            _ => None,
        };
        let verified = info.filter(|info| Caps::sha1(query.node.as_str(), info).ver == *query.ver);
        let found = match verified {
            Some(info) => interests(&info),
            None => {
                tracing::debug!(ver = %query.ver, from = %query.to, "caps hash not verified");
                Interests::default()
            }
        };
        self.remember(query.ver.clone(), found.clone());
        query
            .waiting
            .into_iter()
            .filter(|(owner, jid)| {
                self.presences
                    .get(owner)
                    .is_some_and(|e| e.get(jid) == Some(&query.ver))
            })
            .map(|(owner, jid)| (owner, jid, found.clone()))
            .collect()
    }

    pub(crate) fn remember(&self, ver: Arc<str>, interests: Interests) {
        let mut verified = lock(&self.verified);
        if verified.map.insert(ver.clone(), interests).is_none() {
            verified.order.push_back(ver);
        }
        while verified.order.len() > self.cache_size {
            if let Some(old) = verified.order.pop_front() {
                verified.map.remove(&old);
            }
        }
    }
}

/// `<iq type='get'><query xmlns='disco#info' node='node#ver'/></iq>` from the host.
fn disco_query(id: &str, host: &str, to: &Jid, node_ver: &str) -> Stanza {
    let from = Jid::new(host).ok();
    let mut el = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("id", id)
        .with_attr("to", to.as_str())
        .with_child(Element::new("query", ns::DISCO_INFO).with_attr("node", node_ver));
    if let Some(from) = &from {
        el.set_attr("from", from.as_str());
    }
    Stanza::new_unchecked(StanzaKind::Iq, from, Some(to.clone()), el)
}

#[cfg(test)]
#[path = "caps_tests.rs"]
mod tests;
