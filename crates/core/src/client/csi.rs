//! XEP-0352 Client State Indication: what an inactive client is spared.
//!
//! While a client says it is inactive (a phone in a pocket), the stanzas that only matter
//! once its user looks again are held instead of waking its radio: presence updates (of
//! which only the latest per contact is kept, §4's "presence collapsing") and messages that
//! carry no text (chat states, receipts, markers). Anything a user would want at once — a
//! message with a body, an iq, a subscription request, an error — flushes what is held,
//! in order, ahead of it; so does `<active/>`, before the server handles anything the client
//! sends after it (§5, the ordering rule). Held stanzas are not "sent": stream management
//! counts them only when they are written. The hold is bounded ([`MAX_HELD`]); beyond it,
//! everything is flushed.

use std::collections::VecDeque;

use xmppd_proto::{StanzaKind, ns};

use crate::outbound::Outbound;

/// Stanzas held for one inactive client, at most.
pub const MAX_HELD: usize = 256;

/// XEP-0085 chat states.
const CHATSTATES: &str = "http://jabber.org/protocol/chatstates";
/// XEP-0184 message receipts.
const RECEIPTS: &str = "urn:xmpp:receipts";
/// XEP-0333 chat markers.
const MARKERS: &str = "urn:xmpp:chat-markers:0";
/// XEP-0334 processing hints.
const HINTS: &str = "urn:xmpp:hints";

/// What an inactive session holds back.
#[derive(Debug, Default)]
pub(crate) struct CsiHold {
    held: VecDeque<Outbound>,
    /// Released by an urgent stanza, to be written before it.
    flush: VecDeque<Outbound>,
}

/// Whether the stanza should reach an inactive client now.
fn is_urgent(outbound: &Outbound) -> bool {
    let Some(stanza) = &outbound.reroute else {
        // Replayed presence (the only stanzas queued without their envelope).
        return !outbound.bytes.starts_with(b"<presence");
    };
    match stanza.kind() {
        StanzaKind::Iq => true,
        StanzaKind::Presence => !matches!(stanza.type_attr(), None | Some("unavailable")),
        StanzaKind::Message => {
            let el = stanza.element();
            stanza.type_attr() == Some("error")
                || el.has_child("body", ns::CLIENT)
                || el.has_child("subject", ns::CLIENT)
                // Anything but a chat state or a receipt-like marker is content.
                || el
                    .children()
                    .any(|c| !matches!(c.ns(), CHATSTATES | RECEIPTS | MARKERS | HINTS | ns::DELAY | ns::SID | ns::CLIENT))
        }
    }
}

/// The contact a presence is from, to keep only its latest.
fn presence_from(outbound: &Outbound) -> Option<&str> {
    let stanza = outbound.reroute.as_ref()?;
    (stanza.kind() == StanzaKind::Presence)
        .then(|| stanza.from().map(|f| f.as_str()))
        .flatten()
}

impl CsiHold {
    /// Takes `outbound` from the queue: `None` when it is held, else the next stanza to
    /// write (held ones first when it releases them).
    pub(crate) fn filter(&mut self, outbound: Outbound) -> Option<Outbound> {
        if is_urgent(&outbound) || self.held.len() >= MAX_HELD {
            if self.held.is_empty() && self.flush.is_empty() {
                return Some(outbound);
            }
            self.flush.extend(self.held.drain(..));
            self.flush.push_back(outbound);
            return self.flush.pop_front();
        }
        if let Some(from) = presence_from(&outbound)
            && let Some(pos) = self
                .held
                .iter()
                .position(|held| presence_from(held) == Some(from))
        {
            self.held.remove(pos);
        }
        self.held.push_back(outbound);
        None
    }

    /// The next released stanza.
    pub(crate) fn released(&mut self) -> Option<Outbound> {
        self.flush.pop_front()
    }

    /// Everything, in order (the client became active, or the session ends).
    pub(crate) fn drain(self) -> impl Iterator<Item = Outbound> {
        self.flush.into_iter().chain(self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use bytes::Bytes;
    use jid::Jid;
    use xmppd_proto::Stanza;
    use xmppd_xml::Element;

    fn stanza(kind: StanzaKind, from: &str, el: Element) -> Outbound {
        let from = Jid::new(from).ok();
        Outbound {
            bytes: Bytes::from(el.to_string()),
            reroute: Some(Arc::new(Stanza::new_unchecked(kind, from, None, el))),
        }
    }

    fn presence(from: &str, show: &str) -> Outbound {
        let el = Element::new("presence", ns::CLIENT)
            .with_child(Element::new("show", ns::CLIENT).with_text(show));
        stanza(StanzaKind::Presence, from, el)
    }

    fn chat_state(from: &str) -> Outbound {
        let el =
            Element::new("message", ns::CLIENT).with_child(Element::new("composing", CHATSTATES));
        stanza(StanzaKind::Message, from, el)
    }

    fn chat(from: &str, body: &str) -> Outbound {
        let el = Element::new("message", ns::CLIENT)
            .with_child(Element::new("body", ns::CLIENT).with_text(body));
        stanza(StanzaKind::Message, from, el)
    }

    fn text(o: &Outbound) -> String {
        String::from_utf8_lossy(&o.bytes).into_owned()
    }

    #[test]
    fn presence_collapses_and_a_message_flushes_in_order() {
        let mut hold = CsiHold::default();
        assert!(hold.filter(presence("a@x/1", "away")).is_none());
        assert!(hold.filter(chat_state("b@x/1")).is_none());
        assert!(hold.filter(presence("a@x/1", "dnd")).is_none());
        assert!(hold.filter(presence("c@x/1", "xa")).is_none());
        let first = hold.filter(chat("b@x/1", "hi")).map(|o| text(&o));
        let mut order = vec![first.unwrap_or_default()];
        while let Some(o) = hold.released() {
            order.push(text(&o));
        }
        assert_eq!(order.len(), 4, "{order:?}");
        assert!(order[0].contains("composing"));
        assert!(
            order[1].contains("dnd"),
            "only the latest presence of a@x/1"
        );
        assert!(order[2].contains("xa"));
        assert!(order[3].contains("hi"));
    }

    #[test]
    fn the_hold_is_bounded() {
        let mut hold = CsiHold::default();
        for i in 0..MAX_HELD {
            assert!(
                hold.filter(presence(&format!("u{i}@x/r"), "away"))
                    .is_none()
            );
        }
        assert!(hold.filter(presence("last@x/r", "away")).is_some());
        assert_eq!(hold.drain().count(), MAX_HELD);
    }
}
