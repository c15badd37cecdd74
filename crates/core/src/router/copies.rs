//! One stanza for many recipients that differ only in `to`: a PEP notification goes to every
//! interested resource of every contact (XEP-0163 §4.3.2), two hundred copies of one event for
//! a user with two hundred contacts online.
//!
//! The stanza is serialised once, without `to`; each copy's bytes are that serialisation with
//! ` to="…"` put after the element name, so a copy costs one buffer and a copy of bytes
//! instead of a deep clone of the tree and a serialisation. A copy takes that shortcut only
//! where [`Router::route`] would take its direct path: a full JID of a local account whose
//! session is bound here, with no pre-route filter (blocking: XEP-0163 §4.3.3 forbids
//! notifying a blocked contact) and no inbound or delivered hook applying to it. Every other
//! copy (a bare JID, a remote contact, a blocked one) is routed as a stanza of its own, so the
//! rules are exactly those of a single stanza.
//!
//! A queued copy keeps no stanza to route again if its session ends before writing it: the
//! copies are `headline` messages, which RFC 6121 §8.5.3.2 drops for a resource that is gone,
//! so rerouting would change nothing.

use bytes::Bytes;
use jid::Jid;
use xmppd_proto::{Stanza, ns};
use xmppd_xml::writer::escape_attr;

use super::Router;
use crate::module::Routed;
use crate::outbound::Outbound;
use crate::session::DeliveryError;

impl Router {
    /// Routes a copy of `stanza` (its `to` replaced) to each of `recipients`; returns how many
    /// copies were queued directly for a session (the others took the general path).
    pub async fn route_copies(&self, stanza: Stanza, recipients: &[Jid]) -> usize {
        let mut bounces = Vec::new();
        let direct = self.copies(stanza, recipients, &mut bounces).await;
        for bounce in bounces {
            if let Routed::Later(completion) = self.route_round(bounce, false).await {
                completion.done().await;
            }
        }
        direct
    }

    /// [`Router::route_copies`], handing the error bounces back instead of routing them (see
    /// [`Router::route_keeping_bounce`]).
    pub async fn route_copies_keeping_bounces(
        &self,
        stanza: Stanza,
        recipients: &[Jid],
    ) -> Vec<Stanza> {
        let mut bounces = Vec::new();
        self.copies(stanza, recipients, &mut bounces).await;
        bounces
    }

    /// Queues or routes the copies; their bounces go to `bounces`.
    async fn copies(&self, stanza: Stanza, recipients: &[Jid], bounces: &mut Vec<Stanza>) -> usize {
        let kind = stanza.kind();
        let from = stanza.from().cloned();
        let mut element = stanza.into_element();
        element.remove_attr("to");
        let mut bytes = Vec::with_capacity(512);
        element.write_to(&mut bytes, ns::CLIENT);
        // `<name` then the attributes: the writer declares no namespace for a `jabber:client`
        // element in a client stream, so `to` goes right after the name.
        let split = 1 + element.name().len();
        let splittable = bytes.get(1..split) == Some(element.name().as_bytes());
        let mut direct = 0;
        for to in recipients {
            let probe = Stanza::new_unchecked(kind, from.clone(), Some(to.clone()), element);
            let fast = splittable && self.takes_direct_path(&probe);
            element = probe.into_element();
            if fast
                && let Ok(full) = to.try_as_full()
                && self.queue_copy(full, &bytes, split, to)
            {
                direct += 1;
                continue;
            }
            let mut copy = element.clone();
            copy.set_attr("to", to.as_str());
            let copy = Stanza::new_unchecked(kind, from.clone(), Some(to.clone()), copy);
            if let Some(bounce) = self.route_keeping_bounce(copy).await {
                bounces.push(bounce);
            }
        }
        direct
    }

    /// Whether [`Router::route`] would hand `stanza` straight to a bound session's queue.
    fn takes_direct_path(&self, stanza: &Stanza) -> bool {
        let Some(Ok(full)) = stanza.to().map(Jid::try_as_full) else {
            return false;
        };
        full.node().is_some()
            && self.is_local_domain(full.domain().as_str())
            && (self.registry.hooks.pre_route.is_empty() || !self.pre_route_applies(stanza))
            && !self.account_hooks_want(stanza)
    }

    /// Queues the serialisation `bytes` with ` to="to"` inserted at `split` for the session
    /// `full`; false when no session is bound there or its queue refused (the general path
    /// then decides what happens).
    fn queue_copy(&self, full: &jid::FullJid, bytes: &[u8], split: usize, to: &Jid) -> bool {
        let (head, tail) = bytes.split_at(split);
        let outbound = || {
            let mut copy = Vec::with_capacity(bytes.len() + to.as_str().len() + 6);
            copy.extend_from_slice(head);
            copy.extend_from_slice(b" to=\"");
            escape_attr(to.as_str(), &mut copy);
            copy.push(b'"');
            copy.extend_from_slice(tail);
            Outbound {
                bytes: Bytes::from(copy),
                reroute: None,
            }
        };
        match self.sessions.deliver_to(full, outbound) {
            Some(Ok(())) => true,
            Some(Err(DeliveryError::NoSession | DeliveryError::QueueFull)) | None => false,
        }
    }
}

#[cfg(test)]
mod tests;
