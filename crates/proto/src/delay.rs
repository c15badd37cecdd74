//! XEP-0203: Delayed Delivery.
//!
//! `<delay xmlns='urn:xmpp:delay' from='capulet.com' stamp='2002-09-10T23:08:25Z'>Offline
//! Storage</delay>` says when a stanza was originally sent (§2). `stamp` is required and is an
//! XEP-0082 DateTime; we read any zone offset but always write UTC, as §2 requires. `from` is
//! recommended, and the text is an optional human-readable reason.

use std::time::SystemTime;

use jid::Jid;
use xmppd_xml::{Element, Node};

use crate::datetime::{format_datetime, parse_datetime};
use crate::ns;
use crate::payload::{PayloadError, expect, into_element, jid_attr, required_attr};

/// A `<delay/>` element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delay {
    /// Who sent the stanza originally or delayed it (a MUC room, the user's server).
    pub from: Option<Jid>,
    /// When the stanza was originally sent.
    pub stamp: SystemTime,
    /// Why it was delayed, in natural language ("Offline Storage").
    pub reason: Option<String>,
}

impl Delay {
    /// A delay stamped `stamp`, with neither `from` nor a reason.
    pub fn new(stamp: SystemTime) -> Self {
        Delay {
            from: None,
            stamp,
            reason: None,
        }
    }

    /// Sets `from`.
    pub fn with_from(mut self, from: Jid) -> Self {
        self.from = Some(from);
        self
    }

    /// Sets the reason.
    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// The `<delay/>` element, its stamp in UTC.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("delay", ns::DELAY);
        if let Some(from) = &self.from {
            el.set_attr("from", from.as_str());
        }
        el.set_attr("stamp", format_datetime(self.stamp));
        if let Some(reason) = &self.reason {
            el.push_text(reason.as_str());
        }
        el
    }
}

impl TryFrom<&Element> for Delay {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "delay", ns::DELAY)?;
        let stamp = required_attr(el, "stamp")?;
        let stamp = parse_datetime(stamp).ok_or_else(|| {
            PayloadError::invalid(format!(
                "the delay stamp '{stamp}' is not an XEP-0082 DateTime"
            ))
        })?;
        let text = el.text();
        Ok(Delay {
            from: jid_attr(el, "from")?,
            stamp,
            // A pretty-printed empty element holds only white space: no reason.
            reason: (!text.trim().is_empty()).then_some(text),
        })
    }
}

into_element!(Delay);

/// Removes the `<delay/>` children of `el` whose `from` `is_ours` accepts.
///
/// A delay from this server or one of its services is the server's word that it held the
/// stanza since `stamp` (offline storage, room history); only the server may give it. Written
/// by a client or a remote server, it would pass a made-up date off as ours, and offline
/// storage would take it for its own stamp and add none. A delay from anyone else — the
/// sender that delayed the stanza itself, XEP-0203 §3 — is theirs to claim and stays.
pub fn remove_claimed(el: &mut Element, is_ours: impl Fn(&Jid) -> bool) {
    el.nodes_mut().retain(|node| match node {
        Node::Element(child) if child.is("delay", ns::DELAY) => !child
            .attr("from")
            .and_then(|from| Jid::new(from).ok())
            .is_some_and(|from| is_ours(&from)),
        _ => true,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn parse(xml: &str) -> Result<Delay, PayloadError> {
        Delay::try_from(&crate::test_util::element(xml))
    }

    #[test]
    fn delays_claimed_for_our_domains_are_removed() {
        let mut el = crate::test_util::element(
            "<message xmlns='jabber:client'><body>x</body>\
             <delay xmlns='urn:xmpp:delay' from='example.org' stamp='2001-01-01T00:00:00Z'/>\
             <delay xmlns='urn:xmpp:delay' from='room@conference.example.org/nick' stamp='2001-01-01T00:00:00Z'/>\
             <delay xmlns='urn:xmpp:delay' from='juliet@capulet.lit' stamp='2001-01-01T00:00:00Z'/>\
             <delay xmlns='urn:xmpp:delay' stamp='2001-01-01T00:00:00Z'/>\
             <x xmlns='urn:example' from='example.org'/></message>",
        );
        remove_claimed(&mut el, |jid| {
            let domain = jid.domain().as_str();
            domain == "example.org" || domain == "conference.example.org"
        });
        let left: Vec<_> = el
            .children()
            .map(|c| (c.name().to_owned(), c.attr("from").map(str::to_owned)))
            .collect();
        assert_eq!(
            left,
            [
                ("body".to_owned(), None),
                ("delay".to_owned(), Some("juliet@capulet.lit".to_owned())),
                ("delay".to_owned(), None),
                ("x".to_owned(), Some("example.org".to_owned())),
            ]
        );
    }

    #[test]
    fn parses_the_xep_example() {
        let delay = parse(
            "<delay xmlns='urn:xmpp:delay' from='capulet.com' \
             stamp='2002-09-10T23:08:25Z'>Offline Storage</delay>",
        )
        .unwrap();
        assert_eq!(delay.from, Some(Jid::new("capulet.com").unwrap()));
        assert_eq!(delay.stamp, UNIX_EPOCH + Duration::from_secs(1_031_699_305));
        assert_eq!(delay.reason.as_deref(), Some("Offline Storage"));
    }

    #[test]
    fn serialises_in_utc_and_round_trips() {
        let delay = parse(
            "<delay xmlns='urn:xmpp:delay' from='juliet@capulet.com/balcony' \
             stamp='2002-09-10T18:41:07.5-05:00'/>",
        )
        .unwrap();
        let el = delay.to_element();
        assert_eq!(
            el.to_string(),
            "<delay xmlns=\"urn:xmpp:delay\" from=\"juliet@capulet.com/balcony\" \
             stamp=\"2002-09-10T23:41:07.500Z\"/>"
        );
        assert_eq!(Delay::try_from(&el), Ok(delay));
        let full = Delay::new(UNIX_EPOCH + Duration::from_millis(1_031_699_305_123))
            .with_from(Jid::new("capulet.com").unwrap())
            .with_reason("Offline Storage");
        assert_eq!(Delay::try_from(&Element::from(&full)), Ok(full));
    }

    #[test]
    fn unknown_children_and_attributes_are_ignored() {
        let delay = parse(
            "<delay xmlns='urn:xmpp:delay' stamp='2002-09-10T23:08:25Z' extra='1'>\n  \
             <unknown xmlns='urn:example'/>\n</delay>",
        )
        .unwrap();
        assert_eq!(delay.from, None);
        assert_eq!(delay.reason, None);
    }

    #[test]
    fn a_missing_or_bad_stamp_or_from_is_refused() {
        assert!(matches!(
            parse("<delay xmlns='urn:xmpp:delay' from='capulet.com'/>"),
            Err(PayloadError::Invalid(t)) if t.contains("stamp")
        ));
        assert!(matches!(
            parse("<delay xmlns='urn:xmpp:delay' stamp='yesterday'/>"),
            Err(PayloadError::Invalid(t)) if t.contains("yesterday")
        ));
        assert!(matches!(
            parse("<delay xmlns='urn:xmpp:delay' stamp='2002-09-10T23:08:25Z' from='a@b@c'/>"),
            Err(PayloadError::JidMalformed(_))
        ));
    }

    #[test]
    fn other_elements_are_a_mismatch() {
        // XEP-0091's legacy namespace is not this one.
        assert_eq!(
            parse("<x xmlns='jabber:x:delay' stamp='20020910T23:08:25'/>"),
            Err(PayloadError::Mismatch)
        );
        assert_eq!(
            parse("<delay xmlns='jabber:x:delay' stamp='2002-09-10T23:08:25Z'/>"),
            Err(PayloadError::Mismatch)
        );
    }
}
