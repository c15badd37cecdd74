//! RFC 6121 §4: a session's presence towards contacts.
//!
//! Initial presence goes to every contact with a subscription `from` the user and probes go
//! to every contact the user has a subscription `to` (§4.2); later updates go to the
//! subscribers only (§4.4); unavailable presence goes to the subscribers and to whoever the
//! session sent directed presence to (§4.5, §4.6.3), once each. Remote contacts are reached
//! through the router like local ones (its remote path answers for them).
//!
//! Initial presence is also when waiting things are handed over: subscription requests that
//! arrived while the user was away (§3.1.3), and, with a non-negative priority, offline
//! messages (XEP-0160).

use async_trait::async_trait;
use jid::{BareJid, FullJid, Jid};
use tracing::warn;
use xmppd_core::router::readdress;
use xmppd_core::{Router, SessionEvent, SessionHook, SessionRef};
use xmppd_proto::{Stanza, ns};

use crate::offline::parse_stored;
use crate::roster::RosterItem;
use crate::{Im, presence};

#[async_trait]
impl SessionHook for Im {
    fn wants(&self, event: &SessionEvent<'_>) -> bool {
        matches!(
            event,
            SessionEvent::Available { .. } | SessionEvent::Unavailable { .. }
        )
    }

    async fn session_event(
        &self,
        router: &Router,
        session: SessionRef<'_>,
        event: &SessionEvent<'_>,
    ) {
        let jid = session.jid;
        match event {
            SessionEvent::Available {
                stanza,
                initial,
                priority,
            } => {
                let user = jid.to_bare();
                // Initial presence also hands over the requests that waited (§3.1.3): read
                // with the roster, and handed over at once, so that one answered meanwhile
                // from another resource is not asked again.
                let items = if *initial {
                    self.items_and_redeliver_requests(router, jid, &user).await
                } else {
                    self.items_or_empty(&user).await
                };
                for item in items.iter().filter(|i| i.subscription.from()) {
                    if let Some(contact) = contact_jid(item, &user) {
                        router.route(readdress(stanza, &contact)).await;
                    }
                }
                if *priority >= 0 {
                    // Normally everything goes at initial presence; what did not fit in the
                    // session's queue then goes now.
                    let _guard = self.lock(&user).await;
                    self.offline.deliver(router, jid).await;
                }
                if !initial {
                    return;
                }
                for item in items.iter().filter(|i| i.subscription.to()) {
                    if let Some(contact) = contact_jid(item, &user) {
                        let probe = presence(Some("probe"), Jid::from(user.clone()), contact);
                        router.route(probe).await;
                    }
                }
            }
            SessionEvent::Unavailable { stanza, directed } => {
                // The router already told the entities the session sent directed presence
                // to (§4.6.3); a subscriber among them is not told twice.
                let user = jid.to_bare();
                let items = self.items_or_empty(&user).await;
                for item in items.iter().filter(|i| i.subscription.from()) {
                    if let Some(contact) = contact_jid(item, &user)
                        && !directed.contains(&contact)
                    {
                        router.route(readdress(stanza, &contact)).await;
                    }
                }
            }
            SessionEvent::Bound
            | SessionEvent::Detached
            | SessionEvent::Resumed
            | SessionEvent::Closed => {}
        }
    }
}

/// The contact of an item, unless it is the user itself (whose own resources the router
/// already told).
fn contact_jid(item: &RosterItem, user: &BareJid) -> Option<Jid> {
    let jid = BareJid::new(&item.jid).ok()?;
    (jid != *user).then(|| Jid::from(jid))
}

impl Im {
    async fn items_or_empty(&self, user: &BareJid) -> Vec<RosterItem> {
        match self.roster.items(user).await {
            Ok(items) => items,
            Err(e) => {
                warn!(%user, error = %e, "roster read failed; presence goes to own resources only");
                Vec::new()
            }
        }
    }

    /// The roster, with the pending requests handed to the session on the way. On a
    /// storage failure neither (presence then goes to the user's own resources only, and
    /// the requests wait for the next login); a roster that cannot be decoded does not hold
    /// back the requests.
    async fn items_and_redeliver_requests(
        &self,
        router: &Router,
        jid: &FullJid,
        user: &BareJid,
    ) -> Vec<RosterItem> {
        match self.roster.items_and_pending(user).await {
            Ok((items, pending)) => {
                redeliver_requests(router, jid, pending);
                items.unwrap_or_else(|e| {
                    warn!(%user, error = %e, "roster unreadable; presence goes to own resources only");
                    Vec::new()
                })
            }
            Err(e) => {
                warn!(%user, error = %e, "roster read failed; presence goes to own resources only");
                Vec::new()
            }
        }
    }
}

/// Hands the subscription requests still awaiting an answer to a session that just became
/// available.
fn redeliver_requests(router: &Router, jid: &FullJid, pending: Vec<Vec<u8>>) {
    for bytes in pending {
        match parse_stored(&bytes).and_then(|el| Stanza::parse(el, ns::CLIENT).ok()) {
            Some(stanza) => {
                router.deliver_to_session(&stanza, jid);
            }
            None => warn!(%jid, "a stored subscription request is corrupt; skipped"),
        }
    }
}
