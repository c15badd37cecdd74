//! The stanza envelope: what routing needs to know about a message, presence or iq.
//!
//! The element is kept whole (payloads are not parsed on the routing path); only the
//! addressing and the envelope rules of RFC 6120 §8 are checked here. Envelopes are values:
//! restamping `from` builds a new envelope instead of mutating a shared stanza.

use jid::Jid;
use xmppd_xml::Element;

use crate::error::{DefinedCondition, StanzaError};
use crate::ns;

/// Which of the three stanza kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StanzaKind {
    /// `<message/>`
    Message,
    /// `<presence/>`
    Presence,
    /// `<iq/>`
    Iq,
}

impl StanzaKind {
    /// The element name.
    pub fn as_str(self) -> &'static str {
        match self {
            StanzaKind::Message => "message",
            StanzaKind::Presence => "presence",
            StanzaKind::Iq => "iq",
        }
    }
}

/// Why an element is not an acceptable stanza.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StanzaParseError {
    /// Not `message`/`presence`/`iq` in the content namespace: a stream-level
    /// `unsupported-stanza-type`.
    #[error("<{0}/> is not a stanza")]
    NotAStanza(String),
    /// A stanza-level error to bounce to the sender (malformed JID, broken iq).
    #[error("invalid stanza: {0}")]
    Invalid(StanzaError),
}

/// An element [`Stanza::parse_keeping`] refused, given back with the reason.
#[derive(Debug)]
pub struct Rejected {
    /// Why.
    pub error: StanzaParseError,
    /// The element, for the bounce.
    pub element: Element,
}

impl Rejected {
    /// The reason and the element (taking the box, as `map_err(Rejected::into_parts)` hands
    /// it over).
    #[allow(clippy::boxed_local)]
    pub fn into_parts(self: Box<Self>) -> (StanzaParseError, Element) {
        let Rejected { error, element } = *self;
        (error, element)
    }
}

/// A parsed stanza envelope over its element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stanza {
    kind: StanzaKind,
    from: Option<Jid>,
    to: Option<Jid>,
    element: Element,
}

impl Stanza {
    /// Checks the envelope of an element received in a stream whose content namespace is
    /// `content_ns`: the kind, the JIDs in `to`/`from` (RFC 7622 preparation), and for iq
    /// (RFC 6120 §8.2.3) an `id`, a valid `type`, and exactly one payload for `get`/`set`.
    ///
    /// The returned stanza's element is in `jabber:client`, whatever the stream's namespace,
    /// so routing never has to care which kind of stream a stanza came from.
    pub fn parse(element: Element, content_ns: &str) -> Result<Stanza, StanzaParseError> {
        Self::parse_keeping(element, content_ns).map_err(|r| r.error)
    }

    /// Like [`Stanza::parse`], but a refused element comes back with the error, so the
    /// caller can answer it (with [`bounce_unparsed`]) without having copied it beforehand:
    /// the hot path moves each element through parsing instead of cloning it.
    pub fn parse_keeping(mut element: Element, content_ns: &str) -> Result<Stanza, Box<Rejected>> {
        match envelope(&mut element, content_ns) {
            Ok((kind, from, to)) => Ok(Stanza {
                kind,
                from,
                to,
                element,
            }),
            Err(error) => Err(Box::new(Rejected { error, element })),
        }
    }

    /// Which kind of stanza.
    pub fn kind(&self) -> StanzaKind {
        self.kind
    }

    /// The `from` address, if any.
    pub fn from(&self) -> Option<&Jid> {
        self.from.as_ref()
    }

    /// The `to` address, if any.
    pub fn to(&self) -> Option<&Jid> {
        self.to.as_ref()
    }

    /// The `id` attribute.
    pub fn id(&self) -> Option<&str> {
        self.element.attr("id")
    }

    /// The `type` attribute as written.
    pub fn type_attr(&self) -> Option<&str> {
        self.element.attr("type")
    }

    /// Whether this is an error stanza (which is never answered).
    pub fn is_error(&self) -> bool {
        self.type_attr() == Some("error")
    }

    /// The whole element.
    pub fn element(&self) -> &Element {
        &self.element
    }

    /// The element, consuming the envelope.
    pub fn into_element(self) -> Element {
        self.element
    }

    /// Gives back the spare room of the element's lists ([`Element::shrink_to_fit`]), for a
    /// stanza kept for long.
    pub fn shrink_to_fit(&mut self) {
        self.element.shrink_to_fit();
    }

    /// The single payload of an iq (its first child element).
    pub fn iq_payload(&self) -> Option<&Element> {
        self.element.children().next()
    }

    /// A new envelope with `from` set (as stamped by the server on a client's stanza).
    pub fn with_from(&self, from: Jid) -> Stanza {
        let mut element = self.element.clone();
        element.set_attr("from", from.as_str());
        Stanza {
            kind: self.kind,
            from: Some(from),
            to: self.to.clone(),
            element,
        }
    }

    /// Like [`Stanza::with_from`] for a stanza the caller owns and shares with no one: the
    /// element is reused instead of copied (the c2s hot path stamps every client stanza).
    pub fn into_with_from(mut self, from: Jid) -> Stanza {
        self.element.set_attr("from", from.as_str());
        self.from = Some(from);
        self
    }

    /// Removes the `<delay/>`s that claim to come from a domain `is_ours` accepts: only the
    /// server writes those ([`crate::delay::remove_claimed`]). For what a peer sent.
    pub fn remove_claimed_delays(&mut self, is_ours: impl Fn(&Jid) -> bool) {
        crate::delay::remove_claimed(&mut self.element, is_ours);
    }

    /// Builds a stanza from a freshly made element whose addresses the caller vouches for.
    pub fn new_unchecked(
        kind: StanzaKind,
        from: Option<Jid>,
        to: Option<Jid>,
        el: Element,
    ) -> Self {
        Stanza {
            kind,
            from,
            to,
            element: el,
        }
    }

    /// The error bounce of this stanza (RFC 6120 §8.3.1): addresses swapped, `type='error'`,
    /// the original children kept for context. `None` for an error stanza, which must never be
    /// answered, and for an iq result.
    pub fn error_reply(&self, error: &StanzaError) -> Option<Stanza> {
        if self.is_error() || (self.kind == StanzaKind::Iq && self.type_attr() == Some("result")) {
            return None;
        }
        let mut el = Element::new(self.kind.as_str(), ns::CLIENT).with_attr("type", "error");
        if let Some(id) = self.id() {
            el.set_attr("id", id);
        }
        if let Some(to) = &self.to {
            el.set_attr("from", to.as_str());
        }
        if let Some(from) = &self.from {
            el.set_attr("to", from.as_str());
        }
        // An iq error echoes nothing else; message and presence keep their payloads so the
        // sender can tell which one bounced — except carbons wrappers: a bounce from the
        // sender's own bare JID (a message to its own account that cannot be delivered)
        // would otherwise hand a client a forwarded message that looks like the server's
        // own carbon copy (XEP-0280 §11).
        if self.kind != StanzaKind::Iq {
            for child in self
                .element
                .children()
                .filter(|c| c.name() != "error" && !crate::carbons::is_carbon(c))
            {
                el.push_child(child.clone());
            }
        }
        el.push_child(error.to_element(ns::CLIENT));
        Some(Stanza {
            kind: self.kind,
            from: self.to.clone(),
            to: self.from.clone(),
            element: el,
        })
    }

    /// The `result` answer of an iq get/set, with an optional payload.
    pub fn iq_result(&self, payload: Option<Element>) -> Stanza {
        let mut el = Element::new("iq", ns::CLIENT).with_attr("type", "result");
        if let Some(id) = self.id() {
            el.set_attr("id", id);
        }
        if let Some(to) = &self.to {
            el.set_attr("from", to.as_str());
        }
        if let Some(from) = &self.from {
            el.set_attr("to", from.as_str());
        }
        if let Some(p) = payload {
            el.push_child(p);
        }
        Stanza {
            kind: StanzaKind::Iq,
            from: self.to.clone(),
            to: self.from.clone(),
            element: el,
        }
    }
}

/// The error answer to an element that failed [`Stanza::parse`] (so its addresses may be
/// unusable): `to` and `from` swapped as written, `type='error'`, the `id` kept. `None` for an
/// error stanza, which is never answered.
pub fn bounce_unparsed(el: &Element, error: &StanzaError) -> Option<Element> {
    if el.attr("type") == Some("error") {
        return None;
    }
    let mut reply = Element::new(el.name(), ns::CLIENT).with_attr("type", "error");
    for (from, to) in [("to", "from"), ("from", "to"), ("id", "id")] {
        if let Some(value) = el.attr(from) {
            reply.set_attr(to, value);
        }
    }
    reply.push_child(error.to_element(ns::CLIENT));
    Some(reply)
}

/// The checks of [`Stanza::parse`]: the kind, the addresses, and the iq rules; returns the
/// kind, `from` and `to`.
#[allow(clippy::type_complexity)]
fn envelope(
    element: &mut Element,
    content_ns: &str,
) -> Result<(StanzaKind, Option<Jid>, Option<Jid>), StanzaParseError> {
    let kind = match (element.name(), element.ns() == content_ns) {
        ("message", true) => StanzaKind::Message,
        ("presence", true) => StanzaKind::Presence,
        ("iq", true) => StanzaKind::Iq,
        _ => return Err(StanzaParseError::NotAStanza(element.name().to_owned())),
    };
    if content_ns != ns::CLIENT {
        element.rename_ns(content_ns, ns::CLIENT);
    }
    let to = parse_jid_attr(element, "to")?;
    let from = parse_jid_attr(element, "from")?;
    if kind == StanzaKind::Iq {
        check_iq(element)?;
    }
    Ok((kind, from, to))
}

/// RFC 6120 §8.2.3: an id, a known type, exactly one payload for get/set.
fn check_iq(element: &Element) -> Result<(), StanzaParseError> {
    let invalid = |t: &str| Err(StanzaParseError::Invalid(StanzaError::bad_request(t)));
    if element.attr("id").is_none() {
        return invalid("an iq needs an id attribute");
    }
    let payloads = element.children().count();
    match element.attr("type") {
        Some("get" | "set") if payloads == 1 => Ok(()),
        Some("get" | "set") => invalid("an iq get/set carries exactly one payload element"),
        Some("result") if payloads <= 1 => Ok(()),
        Some("result") => invalid("an iq result carries at most one payload element"),
        Some("error") => Ok(()),
        _ => invalid("iq type must be get, set, result or error"),
    }
}

fn parse_jid_attr(el: &Element, name: &str) -> Result<Option<Jid>, StanzaParseError> {
    match el.attr(name) {
        None => Ok(None),
        Some(value) => Jid::new(value).map(Some).map_err(|e| {
            StanzaParseError::Invalid(
                StanzaError::new(DefinedCondition::JidMalformed)
                    .with_text(format!("'{name}' is not a valid JID: {e}")),
            )
        }),
    }
}

/// Parses an element stored in its `jabber:client` serialisation (offline messages, saved
/// sessions): what the server wrote itself, read back with generous limits.
pub fn parse_stored(bytes: &[u8]) -> Option<Element> {
    let mut reader = xmppd_xml::Reader::new(xmppd_xml::Limits {
        max_stanza_bytes: bytes.len() + 1024,
        max_depth: 128,
        max_attrs: 1024,
    });
    reader.feed(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
    );
    reader.feed(bytes);
    match reader.next_event() {
        Ok(Some(xmppd_xml::StreamEvent::Open(_))) => {}
        _ => return None,
    }
    match reader.next_event() {
        Ok(Some(xmppd_xml::StreamEvent::Stanza(el))) => Some(el),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iq(ty: &str, children: usize) -> Element {
        let mut el = Element::new("iq", ns::CLIENT)
            .with_attr("id", "1")
            .with_attr("type", ty);
        for _ in 0..children {
            el.push_child(Element::new("ping", ns::PING));
        }
        el
    }

    fn bad_request(r: Result<Stanza, StanzaParseError>) -> bool {
        matches!(r, Err(StanzaParseError::Invalid(e)) if e.condition == DefinedCondition::BadRequest)
    }

    #[test]
    fn iq_envelope_rules() {
        assert!(Stanza::parse(iq("get", 1), ns::CLIENT).is_ok());
        assert!(bad_request(Stanza::parse(iq("get", 0), ns::CLIENT)));
        assert!(bad_request(Stanza::parse(iq("set", 2), ns::CLIENT)));
        assert!(bad_request(Stanza::parse(iq("bogus", 1), ns::CLIENT)));
        assert!(Stanza::parse(iq("result", 0), ns::CLIENT).is_ok());
        let no_id = Element::new("iq", ns::CLIENT).with_attr("type", "get");
        assert!(bad_request(Stanza::parse(no_id, ns::CLIENT)));
    }

    #[test]
    fn non_stanzas_and_bad_jids_are_rejected() {
        let el = Element::new("foo", ns::CLIENT);
        assert_eq!(
            Stanza::parse(el, ns::CLIENT),
            Err(StanzaParseError::NotAStanza("foo".into()))
        );
        let el = Element::new("message", ns::CLIENT).with_attr("to", "a@b@c");
        assert!(matches!(
            Stanza::parse(el, ns::CLIENT),
            Err(StanzaParseError::Invalid(e)) if e.condition == DefinedCondition::JidMalformed
        ));
    }

    #[test]
    fn server_namespace_is_normalised_to_client() {
        let el = Element::new("message", ns::SERVER)
            .with_child(Element::new("body", ns::SERVER).with_text("hi"));
        let s = Stanza::parse(el, ns::SERVER).unwrap();
        assert_eq!(s.element().ns(), ns::CLIENT);
        assert!(s.element().has_child("body", ns::CLIENT));
    }

    #[test]
    fn error_reply_swaps_addresses_and_is_never_sent_for_errors() {
        let el = Element::new("message", ns::CLIENT)
            .with_attr("from", "a@x/r")
            .with_attr("to", "b@x")
            .with_attr("id", "m1")
            .with_child(Element::new("body", ns::CLIENT).with_text("hi"));
        let s = Stanza::parse(el, ns::CLIENT).unwrap();
        let reply = s.error_reply(&StanzaError::service_unavailable()).unwrap();
        assert_eq!(reply.to().map(Jid::as_str), Some("a@x/r"));
        assert_eq!(reply.from().map(Jid::as_str), Some("b@x"));
        assert_eq!(reply.type_attr(), Some("error"));
        assert!(reply.element().has_child("body", ns::CLIENT));
        assert!(
            reply
                .error_reply(&StanzaError::service_unavailable())
                .is_none()
        );
    }

    #[test]
    fn error_reply_never_echoes_a_carbons_wrapper() {
        let el = Element::new("message", ns::CLIENT)
            .with_attr("from", "a@x/r")
            .with_attr("to", "a@x")
            .with_attr("type", "groupchat")
            .with_child(Element::new("body", ns::CLIENT).with_text("hi"))
            .with_child(Element::new("received", ns::CARBONS))
            .with_child(Element::new("sent", ns::CARBONS));
        let s = Stanza::parse(el, ns::CLIENT).unwrap();
        let reply = s.error_reply(&StanzaError::service_unavailable()).unwrap();
        assert!(reply.element().has_child("body", ns::CLIENT));
        assert!(!crate::carbons::has_carbon(reply.element()));
    }
}
