//! XEP-0191: Blocking Command — the payloads.
//!
//! `<blocklist/>` (a get, and its result), `<block/>` and `<unblock/>` (sets, and the pushes
//! that announce them), each holding `<item jid='…'/>` children, and the application error
//! condition `<blocked xmlns='urn:xmpp:blocking:errors'/>` that comes with `not-acceptable`
//! when a user writes to someone they block (§3.3).
//!
//! Items are kept as prepared JIDs (RFC 7622), deduplicated and sorted, so that a list
//! compares and stores by the same strings whatever case or form the client used.

use std::collections::BTreeSet;

use jid::Jid;
use xmppd_xml::Element;

use crate::ns;
use crate::payload::{PayloadError, into_element, required_jid_attr};
use crate::{DefinedCondition, StanzaError};

/// Which of the three payloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockingKind {
    /// `<blocklist/>`: the list (§3.2).
    Blocklist,
    /// `<block/>`: add items (§3.3).
    Block,
    /// `<unblock/>`: remove items; none means all (§3.4, §3.5).
    Unblock,
}

impl BlockingKind {
    /// The element name.
    pub fn name(self) -> &'static str {
        match self {
            BlockingKind::Blocklist => "blocklist",
            BlockingKind::Block => "block",
            BlockingKind::Unblock => "unblock",
        }
    }
}

/// A blocking payload and its items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockingCommand {
    /// Which payload.
    pub kind: BlockingKind,
    /// The items' JIDs, prepared, without duplicates, sorted.
    pub items: Vec<Jid>,
}

impl BlockingCommand {
    /// A payload of `kind` with `items` (deduplicated and sorted here).
    pub fn new(kind: BlockingKind, items: impl IntoIterator<Item = Jid>) -> Self {
        let mut items: Vec<Jid> = items.into_iter().collect();
        items.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        items.dedup();
        BlockingCommand { kind, items }
    }

    /// The element, with one `<item/>` per JID.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new(self.kind.name(), ns::BLOCKING);
        for jid in &self.items {
            el.push_child(Element::new("item", ns::BLOCKING).with_attr("jid", jid.as_str()));
        }
        el
    }
}

impl TryFrom<&Element> for BlockingCommand {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        if el.ns() != ns::BLOCKING {
            return Err(PayloadError::Mismatch);
        }
        let kind = match el.name() {
            "blocklist" => BlockingKind::Blocklist,
            "block" => BlockingKind::Block,
            "unblock" => BlockingKind::Unblock,
            _ => return Err(PayloadError::Mismatch),
        };
        let mut seen = BTreeSet::new();
        let mut items = Vec::new();
        for item in el.children().filter(|c| c.is("item", ns::BLOCKING)) {
            let jid = required_jid_attr(item, "jid")?;
            if seen.insert(jid.as_str().to_owned()) {
                items.push(jid);
            }
        }
        Ok(BlockingCommand::new(kind, items))
    }
}

into_element!(BlockingCommand);

/// `not-acceptable` with `<blocked xmlns='urn:xmpp:blocking:errors'/>` (§3.3): the answer to
/// a user who writes to a JID they block.
pub fn blocked_error() -> StanzaError {
    StanzaError::new(DefinedCondition::NotAcceptable)
        .with_app(Element::new("blocked", ns::BLOCKING_ERRORS))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::element as parse;

    #[test]
    fn a_block_parses_normalised_deduplicated_and_round_trips() {
        let el = parse(
            "<block xmlns='urn:xmpp:blocking'><item jid='Romeo@Montague.net'/>\
             <item jid='romeo@montague.net'/><item jid='iago@shakespeare.lit'/>\
             <unknown xmlns='urn:other'/></block>",
        );
        let cmd = BlockingCommand::try_from(&el).unwrap();
        assert_eq!(cmd.kind, BlockingKind::Block);
        let items: Vec<&str> = cmd.items.iter().map(Jid::as_str).collect();
        assert_eq!(items, vec!["iago@shakespeare.lit", "romeo@montague.net"]);
        assert_eq!(BlockingCommand::try_from(&cmd.to_element()).unwrap(), cmd);
    }

    #[test]
    fn an_empty_unblock_and_a_blocklist_parse() {
        let el = parse("<unblock xmlns='urn:xmpp:blocking'/>");
        let cmd = BlockingCommand::try_from(&el).unwrap();
        assert_eq!((cmd.kind, cmd.items.len()), (BlockingKind::Unblock, 0));
        let el = parse("<blocklist xmlns='urn:xmpp:blocking'/>");
        assert_eq!(
            BlockingCommand::try_from(&el).unwrap().kind,
            BlockingKind::Blocklist
        );
    }

    #[test]
    fn a_missing_or_malformed_jid_is_refused() {
        let missing = parse("<block xmlns='urn:xmpp:blocking'><item/></block>");
        let err = StanzaError::from(BlockingCommand::try_from(&missing).unwrap_err());
        assert_eq!(err.condition, DefinedCondition::BadRequest);
        let bad = parse("<block xmlns='urn:xmpp:blocking'><item jid='@bad'/></block>");
        let err = StanzaError::from(BlockingCommand::try_from(&bad).unwrap_err());
        assert_eq!(err.condition, DefinedCondition::JidMalformed);
    }

    #[test]
    fn other_elements_are_not_mine() {
        for xml in [
            "<block xmlns='urn:other'/>",
            "<query xmlns='urn:xmpp:blocking'/>",
        ] {
            assert!(
                BlockingCommand::try_from(&parse(xml))
                    .unwrap_err()
                    .is_mismatch()
            );
        }
    }

    #[test]
    fn the_blocked_error_carries_the_application_condition() {
        let el = blocked_error().to_element(ns::CLIENT);
        assert!(el.has_child("not-acceptable", ns::STANZAS));
        assert!(el.has_child("blocked", ns::BLOCKING_ERRORS));
    }
}
