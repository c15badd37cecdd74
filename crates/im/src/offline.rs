//! XEP-0160: Best Practices for Handling Offline Messages, with XEP-0203 delay stamps.
//!
//! A `normal` or `chat` message for an account with no available resource of non-negative
//! priority is appended to the `offline` archive of the recipient, stamped with
//! `<delay xmlns='urn:xmpp:delay' from='DOMAIN' stamp='…Z'/>` (UTC, XEP-0082). The append is
//! committed before the router counts the message as handled; when it fails or the quota
//! (messages and bytes per user, checked against the store's running totals) is reached the
//! sender gets `service-unavailable` (RFC 6121 §8.5.2.1.1 leaves storage to the server; the
//! message is bounced as when there is none), so nothing is dropped silently. A message that carries only a chat state (XEP-0085) is not worth keeping and is
//! discarded, as XEP-0160 §3 and XEP-0085 §5.5 advise.
//!
//! At the next initial presence with priority ≥ 0 the records are read in append order,
//! queued to that session, and only then deleted. A queued message whose session dies before
//! writing it is routed again, and so comes back here. Only as many as the session's queue has
//! room for are queued at once (a full queue would end the session as a slow consumer); the
//! rest follow at the session's next available presence with priority ≥ 0.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use jid::{BareJid, FullJid, Jid};
use tracing::warn;
use xmppd_core::router::client_bytes;
use xmppd_core::storage::{
    ArchiveQuery, ArchiveQuota, ArchiveStore, NewArchiveRecord, StorageError,
};
use xmppd_core::{OfflineFlow, OfflineHook, Outbound, Router};
use xmppd_proto::delay::Delay;
use xmppd_proto::{DefinedCondition, Stanza, StanzaError, ns};
use xmppd_xml::Element;

/// `msgoffline`, the disco feature of XEP-0160.
pub const NS_OFFLINE: &str = "msgoffline";
/// `http://jabber.org/protocol/chatstates` (XEP-0085).
pub const NS_CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
pub(crate) const STORE: &str = "offline";

/// The offline message store.
pub struct OfflineMessages {
    archive: Arc<dyn ArchiveStore>,
    quota: ArchiveQuota,
}

impl std::fmt::Debug for OfflineMessages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OfflineMessages")
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

fn owner(user: &BareJid) -> (&str, &str) {
    (
        user.domain().as_str(),
        user.node().map_or("", |n| n.as_str()),
    )
}

/// Whether the message is nothing but a chat state notification.
fn chat_state_only(el: &Element) -> bool {
    let mut has_state = false;
    for child in el.children() {
        if child.ns() == NS_CHATSTATES {
            has_state = true;
        } else if matches!(child.name(), "body" | "subject") && child.ns() == ns::CLIENT {
            return false;
        }
    }
    has_state
}

pub use xmppd_proto::stanza::parse_stored;

impl OfflineMessages {
    /// Over the archive shape, keeping at most `quota` (messages, bytes) per user.
    pub fn new(archive: Arc<dyn ArchiveStore>, quota: ArchiveQuota) -> Self {
        OfflineMessages { archive, quota }
    }

    /// Queues the stored messages of `jid`'s account to that session, in order, and deletes
    /// those that were queued. Called with the user's roster lock held, so two sessions
    /// coming online at once do not both get them.
    pub(crate) async fn deliver(&self, router: &Router, jid: &FullJid) {
        let user = jid.to_bare();
        let (host, node) = owner(&user);
        let records = match self
            .archive
            .query(host, node, STORE, &ArchiveQuery::default())
            .await
        {
            Ok(r) => r,
            Err(e) => {
                warn!(%user, error = %e, "offline messages could not be read; kept for later");
                return;
            }
        };
        let Some(session) = router.sessions().get(jid) else {
            return;
        };
        // Leave room for the live traffic that arrives meanwhile.
        let room = session
            .free_slots()
            .saturating_sub(session.free_slots() / 8 + 1);
        let mut delivered = Vec::new();
        for record in records.into_iter().take(room) {
            let stanza =
                parse_stored(&record.payload).and_then(|el| Stanza::parse(el, ns::CLIENT).ok());
            let Some(stanza) = stanza else {
                warn!(%user, id = record.id, "a stored offline message is corrupt; removed");
                delivered.push(record.id);
                continue;
            };
            let outbound = Outbound {
                bytes: record.payload.into(),
                reroute: Some(Arc::new(stanza)),
            };
            if session.deliver(outbound).is_err() {
                break;
            }
            delivered.push(record.id);
        }
        if !delivered.is_empty()
            && let Err(e) = self.archive.delete(host, node, STORE, &delivered).await
        {
            warn!(%user, error = %e, "delivered offline messages could not be deleted");
        }
    }
}

#[async_trait]
impl OfflineHook for OfflineMessages {
    async fn offline(&self, _router: &Router, stanza: &Stanza, to: &BareJid) -> OfflineFlow {
        match self.store(stanza, to).await {
            Ok(flow) => flow,
            Err(error) => OfflineFlow::Refused(error),
        }
    }
}

impl OfflineMessages {
    /// Appends `stanza` to `to`'s offline messages; committed when this returns `Stored`.
    async fn store(&self, stanza: &Stanza, to: &BareJid) -> Result<OfflineFlow, StanzaError> {
        if chat_state_only(stanza.element()) {
            return Ok(OfflineFlow::Discarded);
        }
        let now = SystemTime::now();
        let domain = to.domain().as_str();
        let mut el = stanza.element().clone();
        // One stamp by this server: a message bounced back here (a session that ended with it
        // queued) keeps the time it was first stored.
        let stamped = el.children().any(|c| {
            Delay::try_from(c).is_ok_and(|d| d.from.as_ref().is_some_and(|f| f.as_str() == domain))
        });
        if !stamped {
            let mut delay = Delay::new(now).with_reason("Offline Storage");
            if let Ok(from) = Jid::new(domain) {
                delay = delay.with_from(from);
            }
            el.push_child(delay.to_element());
        }
        let stored = Stanza::new_unchecked(
            stanza.kind(),
            stanza.from().cloned(),
            stanza.to().cloned(),
            el,
        );
        let record = NewArchiveRecord {
            with: stanza
                .from()
                .map(|f| f.to_bare().to_string())
                .unwrap_or_default(),
            timestamp_us: now
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
            payload: client_bytes(&stored).to_vec(),
        };
        let (host, node) = owner(to);
        match self
            .archive
            .append_within(host, node, STORE, record, self.quota)
            .await
        {
            Ok(_) => Ok(OfflineFlow::Stored),
            Err(StorageError::QuotaExceeded(_)) => Err(StanzaError::service_unavailable()
                .with_text("the recipient is offline and its offline storage is full")),
            Err(e) => {
                warn!(%to, error = %e, "offline message could not be stored");
                Err(StanzaError::new(DefinedCondition::ServiceUnavailable)
                    .with_text("the recipient is offline and the message could not be stored"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_states_alone_are_not_kept() {
        let state = Element::new("composing", NS_CHATSTATES);
        let msg = Element::new("message", ns::CLIENT).with_child(state.clone());
        assert!(chat_state_only(&msg));
        let with_body = msg
            .clone()
            .with_child(Element::new("body", ns::CLIENT).with_text("hi"));
        assert!(!chat_state_only(&with_body));
        assert!(!chat_state_only(&Element::new("message", ns::CLIENT)));
    }

    #[test]
    fn stored_stanzas_parse_back() {
        let el = Element::new("message", ns::CLIENT)
            .with_attr("to", "a@b")
            .with_child(Element::new("body", ns::CLIENT).with_text("x <&> y"))
            .with_child(Element::new("delay", ns::DELAY).with_attr("stamp", "s"));
        let mut bytes = Vec::new();
        el.write_to(&mut bytes, ns::CLIENT);
        assert_eq!(parse_stored(&bytes), Some(el));
    }
}
