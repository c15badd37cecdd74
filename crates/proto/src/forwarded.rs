//! XEP-0297: Stanza Forwarding.
//!
//! `<forwarded xmlns='urn:xmpp:forward:0'>` wraps a copy of a stanza, optionally with the
//! XEP-0203 `<delay/>` saying when the forwarder received it (§3.2 rule 2). Carbons, MAM and
//! MUC history all carry their stanzas this way.
//!
//! The forwarded stanza keeps its own namespace (§3.2 rule 3): `jabber:client`, or
//! `jabber:server` as the schema also allows. A `<message/>` without an `xmlns` inherits
//! `urn:xmpp:forward:0`, which §3.2 calls wrong; such an element is not taken for the stanza.
//! The schema lets the stanza be absent, but a forward without one carries nothing, so we
//! refuse it. The stanza is kept as an [`Element`], untouched: it is someone else's stanza, and
//! §7.1 says it must never be processed as if it had been received directly.

use xmppd_xml::Element;

use crate::delay::Delay;
use crate::ns;
use crate::payload::{PayloadError, expect};
use crate::stanza::StanzaKind;

/// A `<forwarded/>` element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forwarded {
    /// When the forwarder received the stanza.
    pub delay: Option<Delay>,
    /// The forwarded `<message/>`, `<presence/>` or `<iq/>`, in `jabber:client` (or
    /// `jabber:server`).
    pub stanza: Element,
}

impl Forwarded {
    /// A forward of `stanza` without a delay.
    pub fn new(stanza: Element) -> Self {
        Forwarded {
            delay: None,
            stanza,
        }
    }

    /// Sets the delay.
    pub fn with_delay(mut self, delay: Delay) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Which kind of stanza is forwarded.
    pub fn kind(&self) -> StanzaKind {
        stanza_kind(&self.stanza).unwrap_or(StanzaKind::Message)
    }

    /// The `<forwarded/>` element (copying the stanza; see `Element::from(Forwarded)` to move
    /// it instead).
    pub fn to_element(&self) -> Element {
        self.clone().into()
    }
}

/// Which stanza `el` is, if it is one in a stanza namespace.
fn stanza_kind(el: &Element) -> Option<StanzaKind> {
    if el.ns() != ns::CLIENT && el.ns() != ns::SERVER {
        return None;
    }
    match el.name() {
        "message" => Some(StanzaKind::Message),
        "presence" => Some(StanzaKind::Presence),
        "iq" => Some(StanzaKind::Iq),
        _ => None,
    }
}

impl TryFrom<&Element> for Forwarded {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "forwarded", ns::FORWARD)?;
        let delay = el
            .child("delay", ns::DELAY)
            .map(Delay::try_from)
            .transpose()?;
        let stanza = el
            .children()
            .find(|c| stanza_kind(c).is_some())
            .ok_or_else(|| {
                PayloadError::invalid(
                    "<forwarded/> must carry a message, presence or iq in jabber:client",
                )
            })?;
        Ok(Forwarded {
            delay,
            stanza: stanza.clone(),
        })
    }
}

impl From<Forwarded> for Element {
    fn from(forwarded: Forwarded) -> Self {
        let mut el = Element::new("forwarded", ns::FORWARD);
        if let Some(delay) = &forwarded.delay {
            el.push_child(delay.to_element());
        }
        el.push_child(forwarded.stanza);
        el
    }
}

impl From<&Forwarded> for Element {
    fn from(forwarded: &Forwarded) -> Self {
        forwarded.to_element()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::element;
    use std::time::{Duration, UNIX_EPOCH};

    const EXAMPLE: &str = "<forwarded xmlns='urn:xmpp:forward:0'>\
        <delay xmlns='urn:xmpp:delay' stamp='2010-07-10T23:08:25Z'/>\
        <message from='juliet@capulet.lit/orchard' id='0202197' to='romeo@montague.lit' \
         type='chat' xmlns='jabber:client'>\
          <body>Yet I should kill thee with much cherishing.</body>\
          <mood xmlns='http://jabber.org/protocol/mood'><amorous/></mood>\
        </message>\
      </forwarded>";

    #[test]
    fn parses_the_xep_example() {
        let fwd = Forwarded::try_from(&element(EXAMPLE)).unwrap();
        assert_eq!(
            fwd.delay.as_ref().map(|d| d.stamp),
            Some(UNIX_EPOCH + Duration::from_secs(1_278_803_305))
        );
        assert_eq!(fwd.kind(), StanzaKind::Message);
        assert_eq!(fwd.stanza.attr("id"), Some("0202197"));
        assert!(
            fwd.stanza
                .has_child("mood", "http://jabber.org/protocol/mood")
        );
    }

    #[test]
    fn round_trips_and_declares_the_stanza_namespace() {
        let fwd = Forwarded::try_from(&element(EXAMPLE)).unwrap();
        let el = fwd.to_element();
        assert_eq!(Forwarded::try_from(&el).as_ref(), Ok(&fwd));
        let bare = Forwarded::new(Element::new("presence", ns::CLIENT));
        assert_eq!(
            Element::from(bare).to_string(),
            "<forwarded xmlns=\"urn:xmpp:forward:0\"><presence xmlns=\"jabber:client\"/>\
             </forwarded>"
        );
        let delayed = Forwarded::new(Element::new("iq", ns::CLIENT).with_attr("id", "1"))
            .with_delay(Delay::new(UNIX_EPOCH));
        let el = Element::from(&delayed);
        assert_eq!(el.children().next().map(Element::name), Some("delay"));
        assert_eq!(Forwarded::try_from(&el), Ok(delayed));
    }

    #[test]
    fn unknown_children_are_ignored() {
        let fwd = Forwarded::try_from(&element(
            "<forwarded xmlns='urn:xmpp:forward:0'><unknown xmlns='urn:example'/>\
             <presence xmlns='jabber:server' from='a@b/c'/></forwarded>",
        ))
        .unwrap();
        assert_eq!(fwd.delay, None);
        assert_eq!(fwd.kind(), StanzaKind::Presence);
    }

    #[test]
    fn a_forward_without_a_stanza_or_with_a_bad_delay_is_refused() {
        let empty = element("<forwarded xmlns='urn:xmpp:forward:0'/>");
        assert!(matches!(
            Forwarded::try_from(&empty),
            Err(PayloadError::Invalid(_))
        ));
        // The mistake §3.2 warns about: the message inherits the forward namespace.
        let inherited = element(
            "<forwarded xmlns='urn:xmpp:forward:0'><message><body>hi</body></message>\
             </forwarded>",
        );
        assert!(matches!(
            Forwarded::try_from(&inherited),
            Err(PayloadError::Invalid(_))
        ));
        let bad_delay = element(
            "<forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay'/>\
             <message xmlns='jabber:client'/></forwarded>",
        );
        assert!(matches!(
            Forwarded::try_from(&bad_delay),
            Err(PayloadError::Invalid(t)) if t.contains("stamp")
        ));
    }

    #[test]
    fn other_elements_are_a_mismatch() {
        let el = element("<forwarded xmlns='urn:xmpp:forward:1'><message/></forwarded>");
        assert_eq!(Forwarded::try_from(&el), Err(PayloadError::Mismatch));
        let el = element("<message xmlns='jabber:client'/>");
        assert_eq!(Forwarded::try_from(&el), Err(PayloadError::Mismatch));
    }
}
