//! Who is told what (XEP-0163 §4.3): notifications of a change, and the last items for a
//! resource that just became available or a contact that just became a subscriber.
//!
//! A notification goes to every resource known to want `NODE+notify` ([`crate::caps`]) that
//! is the owner's own or a contact's with a subscription `from` the owner which the access
//! model admits; entities without a presence subscription hear nothing, whatever the model
//! (§4.3 rule 2: notifications follow presence sharing). The roster is read once for all of
//! them, and not at all when no resource wants the node.

use std::collections::HashMap;

use jid::{BareJid, FullJid, Jid};
use xmppd_core::Router;
use xmppd_proto::delay::Delay;
use xmppd_proto::pubsub::{Event, EventKind};
use xmppd_proto::{Stanza, StanzaKind, ns};
use xmppd_xml::Element;

use crate::access::{self, Relation};
use crate::caps::Interests;
use crate::config::{NodeConfig, SendLast};
use crate::handle::fresh_id;
use crate::{Pep, PepError};

/// `<message from=owner type='headline' id><event/></message>`, without `to` (each copy gets
/// its own).
fn headline(owner: &BareJid, event: Element) -> Stanza {
    let from = Jid::from(owner.clone());
    let el = Element::new("message", ns::CLIENT)
        .with_attr("from", from.as_str())
        .with_attr("type", "headline")
        .with_attr("id", fresh_id())
        .with_child(event);
    Stanza::new_unchecked(StanzaKind::Message, Some(from), None, el)
}

/// `stanza` with `child` appended (the stanza is the module's own, not yet routed).
fn with_child(stanza: Stanza, child: Element) -> Stanza {
    let (kind, from) = (stanza.kind(), stanza.from().cloned());
    let mut el = stanza.into_element();
    el.push_child(child);
    Stanza::new_unchecked(kind, from, None, el)
}

/// The event as sent: without payloads when the node does not deliver them (§4.3 of
/// XEP-0060, `pubsub#deliver_payloads`).
fn event_element(config: &NodeConfig, mut event: Event) -> Element {
    if !config.deliver_payloads
        && let EventKind::Items(items) = &mut event.kind
    {
        for item in items.iter_mut() {
            item.payload = None;
        }
    }
    event.to_element()
}

/// Why a last item is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Occasion {
    /// The resource became available (`on_sub_and_presence` only).
    Presence,
    /// The contact became a subscriber (`on_sub` and `on_sub_and_presence`).
    Subscription,
}

impl Pep {
    /// The relation of `requester` to `owner` (one roster read for a contact).
    pub(crate) async fn relation(
        &self,
        owner: &BareJid,
        requester: &Jid,
    ) -> Result<Relation, PepError> {
        let bare = requester.to_bare();
        if bare == *owner {
            return Ok(Relation::Owner);
        }
        Ok(match self.roster.item(owner, &bare).await? {
            Some(item) => Relation::Contact {
                from: item.subscription.from(),
                groups: item.groups,
            },
            None => Relation::Stranger,
        })
    }

    /// Sends `event` about a node of `owner` configured with `config` to every resource
    /// that wants it and may have it.
    pub(crate) async fn notify(
        &self,
        router: &Router,
        owner: &BareJid,
        config: &NodeConfig,
        event: Event,
    ) {
        let interested: Vec<FullJid> = self
            .caps
            .interested(owner)
            .into_iter()
            .filter(|(_, interests)| interests.contains(&event.node))
            .map(|(jid, _)| jid)
            .collect();
        if interested.is_empty() {
            return;
        }
        let contacts = interested.iter().any(|j| j.to_bare() != *owner);
        let roster: HashMap<String, Relation> = if contacts {
            match self.roster.items(owner).await {
                Ok(items) => items
                    .into_iter()
                    .map(|i| {
                        let relation = Relation::Contact {
                            from: i.subscription.from(),
                            groups: i.groups,
                        };
                        (i.jid, relation)
                    })
                    .collect(),
                Err(e) => {
                    tracing::warn!(%owner, error = %e, "roster unreadable: PEP notifies the owner only");
                    HashMap::new()
                }
            }
        } else {
            HashMap::new()
        };
        let recipients: Vec<Jid> = interested
            .into_iter()
            .filter(|jid| {
                let bare = jid.to_bare();
                if bare == *owner {
                    return true;
                }
                roster.get(bare.as_str()).is_some_and(|relation| {
                    matches!(relation, Relation::Contact { from: true, .. })
                        && access::check(config, relation).is_ok()
                })
            })
            .map(Jid::from)
            .collect();
        if recipients.is_empty() {
            return;
        }
        let stanza = headline(owner, event_element(config, event));
        router.route_copies(stanza, &recipients).await;
    }

    /// Sends `to` the last item of each node of `owner` it wants (`interests`) and may read,
    /// whose `send_last_published_item` covers `occasion` (XEP-0163 §4.3.4).
    pub(crate) async fn send_last(
        &self,
        router: &Router,
        owner: &BareJid,
        to: &FullJid,
        interests: &Interests,
        occasion: Occasion,
    ) {
        if interests.is_empty() {
            return;
        }
        let sent = self.try_send_last(router, owner, to, interests, occasion);
        if let Err(e) = sent.await {
            tracing::warn!(%owner, %to, error = %e, "last PEP items not sent");
        }
    }

    async fn try_send_last(
        &self,
        router: &Router,
        owner: &BareJid,
        to: &FullJid,
        interests: &Interests,
        occasion: Occasion,
    ) -> Result<(), PepError> {
        let to_jid = Jid::from(to.clone());
        let relation = self.relation(owner, &to_jid).await?;
        if !matches!(
            relation,
            Relation::Owner | Relation::Contact { from: true, .. }
        ) {
            return Ok(());
        }
        for (node, record) in self.store.nodes(owner).await? {
            let wanted = match record.config.send_last {
                SendLast::Never => false,
                SendLast::OnSub => occasion == Occasion::Subscription,
                SendLast::OnSubAndPresence => true,
            };
            if !wanted
                || !interests.contains(&node)
                || access::check(&record.config, &relation).is_err()
            {
                continue;
            }
            let Some(last) = record.items.last() else {
                continue;
            };
            let Some(item) = self.store.item(owner, &node, last).await? else {
                continue;
            };
            let event = Event {
                node,
                kind: EventKind::Items(vec![item]),
            };
            let mut stanza = headline(owner, event_element(&record.config, event));
            if let Some(us) = record
                .last_published_us
                .and_then(|us| u64::try_from(us).ok())
            {
                let stamp = std::time::UNIX_EPOCH + std::time::Duration::from_micros(us);
                stanza = with_child(stanza, Delay::new(stamp).to_element());
            }
            router
                .route_copies(stanza, std::slice::from_ref(&to_jid))
                .await;
        }
        Ok(())
    }

    /// A contact became a subscriber: its resources whose caps are known get the last items.
    pub(crate) async fn new_subscriber(&self, router: &Router, owner: &BareJid, contact: &BareJid) {
        for (jid, interests) in self.caps.interested(owner) {
            if jid.to_bare() == *contact {
                self.send_last(router, owner, &jid, &interests, Occasion::Subscription)
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use xmppd_proto::pubsub::Item;

    use super::*;
    use crate::config::{AccessModel, MaxItems};

    /// `pubsub#deliver_payloads` off: the notification names the item without its payload.
    #[test]
    fn payloads_are_left_out_when_the_node_does_not_deliver_them() {
        let mut config = NodeConfig::default_with(AccessModel::Presence, MaxItems::Count(1));
        let event = || Event {
            node: "n".into(),
            kind: EventKind::Items(vec![Item {
                id: Some("1".into()),
                payload: Some(Element::new("x", "urn:x")),
            }]),
        };
        assert!(
            event_element(&config, event())
                .to_string()
                .contains("urn:x")
        );
        config.deliver_payloads = false;
        let el = event_element(&config, event());
        assert!(!el.to_string().contains("urn:x"), "{el}");
        assert!(el.to_string().contains("id=\"1\""), "{el}");
    }
}
