//! XEP-0280: Message Carbons — the payloads.
//!
//! `<enable/>` and `<disable/>` (iq set, §4 and §5) switch carbons on and off for the
//! requesting resource. A carbon copy is a `<message/>` from the user's bare JID holding
//! `<sent/>` (§8: a message one of the user's resources sent) or `<received/>` (§7: a message
//! to the user) around a XEP-0297 `<forwarded/>` with the original. `<private/>` (§9) in a
//! message asks that it not be copied.
//!
//! A wrapper is only ever *built* here for the server's own copies; one read from someone
//! else's stanza proves nothing (§11: a copy is genuine only when it comes from the user's
//! own bare JID), so the module that copies never trusts, unwraps or re-wraps one.

use xmppd_xml::Element;

use crate::forwarded::Forwarded;
use crate::ns;
use crate::payload::{PayloadError, into_element};

/// The iq payloads of §4 and §5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CarbonsCommand {
    /// `<enable/>`: copies from now on.
    Enable,
    /// `<disable/>`: no more copies.
    Disable,
}

impl CarbonsCommand {
    /// The element name.
    pub fn name(self) -> &'static str {
        match self {
            CarbonsCommand::Enable => "enable",
            CarbonsCommand::Disable => "disable",
        }
    }

    /// The element.
    pub fn to_element(self) -> Element {
        Element::new(self.name(), ns::CARBONS)
    }
}

impl TryFrom<&Element> for CarbonsCommand {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        match (el.name(), el.ns()) {
            ("enable", ns::CARBONS) => Ok(CarbonsCommand::Enable),
            ("disable", ns::CARBONS) => Ok(CarbonsCommand::Disable),
            _ => Err(PayloadError::Mismatch),
        }
    }
}

/// Which way the copied message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `<sent/>`: one of the user's resources sent it (§8).
    Sent,
    /// `<received/>`: it was addressed to the user (§7).
    Received,
}

impl Direction {
    /// The element name.
    pub fn name(self) -> &'static str {
        match self {
            Direction::Sent => "sent",
            Direction::Received => "received",
        }
    }
}

/// A `<sent/>` or `<received/>` wrapper.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Carbon {
    /// Which way.
    pub direction: Direction,
    /// The copied message.
    pub forwarded: Forwarded,
}

impl Carbon {
    /// A wrapper of `message` (a `<message/>` in `jabber:client`).
    pub fn new(direction: Direction, message: Element) -> Self {
        Carbon {
            direction,
            forwarded: Forwarded::new(message),
        }
    }

    /// The `<sent/>` or `<received/>` element.
    pub fn to_element(&self) -> Element {
        Element::new(self.direction.name(), ns::CARBONS).with_child(self.forwarded.to_element())
    }
}

impl TryFrom<&Element> for Carbon {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        let direction = match (el.name(), el.ns()) {
            ("sent", ns::CARBONS) => Direction::Sent,
            ("received", ns::CARBONS) => Direction::Received,
            _ => return Err(PayloadError::Mismatch),
        };
        let forwarded = el
            .child("forwarded", ns::FORWARD)
            .ok_or_else(|| PayloadError::invalid("a carbon needs a <forwarded/> child"))
            .and_then(Forwarded::try_from)?;
        if forwarded.stanza.name() != "message" {
            return Err(PayloadError::invalid("a carbon forwards a <message/>"));
        }
        Ok(Carbon {
            direction,
            forwarded,
        })
    }
}

/// Whether `message` carries a `<sent/>` or `<received/>` wrapper as a child.
pub fn has_carbon(message: &Element) -> bool {
    message.children().any(is_carbon)
}

/// Whether `el` is a `<sent/>` or `<received/>` wrapper.
pub fn is_carbon(el: &Element) -> bool {
    el.ns() == ns::CARBONS && matches!(el.name(), "sent" | "received")
}

/// Whether `message` asks not to be copied: `<private/>` (§9) or the XEP-0334
/// `<no-copy/>` hint (§4.3: "not be copied to addresses other than the one to which it is
/// addressed, for example through Message Carbons").
pub fn is_private(message: &Element) -> bool {
    message.has_child("private", ns::CARBONS) || message.has_child("no-copy", ns::HINTS)
}

/// The `<private/>` element (§9).
pub fn private() -> Element {
    Element::new("private", ns::CARBONS)
}

into_element!(CarbonsCommand, Carbon);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::element;

    /// §7, example 7: a received carbon.
    const RECEIVED: &str = "<received xmlns='urn:xmpp:carbons:2'>\
        <forwarded xmlns='urn:xmpp:forward:0'>\
          <message xmlns='jabber:client' from='juliet@capulet.example/balcony' \
           to='romeo@montague.example/garden' type='chat'>\
            <body>What man art thou that, thus bescreen'd in night, so stumblest on my counsel?</body>\
            <thread>0e3141cd80894871a68e6fe6b1ec56fa</thread>\
          </message>\
        </forwarded>\
      </received>";

    #[test]
    fn parses_and_round_trips_the_xep_example() {
        let carbon = Carbon::try_from(&element(RECEIVED)).unwrap();
        assert_eq!(carbon.direction, Direction::Received);
        assert_eq!(
            carbon.forwarded.stanza.attr("from"),
            Some("juliet@capulet.example/balcony")
        );
        let el = carbon.to_element();
        assert_eq!(Carbon::try_from(&el).as_ref(), Ok(&carbon));
        let sent = Carbon::new(Direction::Sent, Element::new("message", ns::CLIENT));
        assert_eq!(
            Element::from(sent).to_string(),
            "<sent xmlns=\"urn:xmpp:carbons:2\"><forwarded xmlns=\"urn:xmpp:forward:0\">\
             <message xmlns=\"jabber:client\"/></forwarded></sent>"
        );
    }

    #[test]
    fn unknown_children_are_ignored_and_a_missing_forward_is_refused() {
        let el = element(
            "<sent xmlns='urn:xmpp:carbons:2'><x xmlns='urn:example'/>\
             <forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client'/></forwarded>\
             </sent>",
        );
        assert_eq!(
            Carbon::try_from(&el).map(|c| c.direction),
            Ok(Direction::Sent)
        );
        let empty = element("<sent xmlns='urn:xmpp:carbons:2'/>");
        assert!(matches!(
            Carbon::try_from(&empty),
            Err(PayloadError::Invalid(_))
        ));
        let presence = element(
            "<sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>\
             <presence xmlns='jabber:client'/></forwarded></sent>",
        );
        assert!(matches!(
            Carbon::try_from(&presence),
            Err(PayloadError::Invalid(_))
        ));
        let other = element("<sent xmlns='urn:xmpp:carbons:1'/>");
        assert_eq!(Carbon::try_from(&other), Err(PayloadError::Mismatch));
    }

    #[test]
    fn commands_parse_and_serialise() {
        for command in [CarbonsCommand::Enable, CarbonsCommand::Disable] {
            assert_eq!(CarbonsCommand::try_from(&command.to_element()), Ok(command));
        }
        let with_child =
            element("<enable xmlns='urn:xmpp:carbons:2'><unknown xmlns='urn:example'/></enable>");
        assert_eq!(
            CarbonsCommand::try_from(&with_child),
            Ok(CarbonsCommand::Enable)
        );
        let private = element("<private xmlns='urn:xmpp:carbons:2'/>");
        assert_eq!(
            CarbonsCommand::try_from(&private),
            Err(PayloadError::Mismatch)
        );
    }

    #[test]
    fn private_and_no_copy_mark_a_message_private() {
        let private =
            element("<message><body>x</body><private xmlns='urn:xmpp:carbons:2'/></message>");
        let no_copy = element("<message><body>x</body><no-copy xmlns='urn:xmpp:hints'/></message>");
        let plain = element("<message><body>x</body></message>");
        assert!(is_private(&private));
        assert!(is_private(&no_copy));
        assert!(!is_private(&plain));
        assert!(!has_carbon(&plain));
        assert!(has_carbon(&element(&format!(
            "<message>{RECEIVED}</message>"
        ))));
        assert!(super::private().is("private", ns::CARBONS));
    }
}
