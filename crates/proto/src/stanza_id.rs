//! XEP-0359: Unique and Stable Stanza IDs.
//!
//! `<stanza-id xmlns='urn:xmpp:sid:0' id='…' by='room@muc.example.com'/>` is an ID assigned by
//! the entity named in `by` (an account's server for one-to-one messages, the room for
//! groupchat; §3 rule 7); `<origin-id id='…'/>` is one the sending client chose (§2.2).
//!
//! Only the stanza-id of an entity that deletes copies claiming to be its own is worth
//! anything (§6): §3 rule 2 says an entity that assigns stanza IDs MUST remove every
//! `<stanza-id/>` whose `by` is its own address before adding its own, so that a sender
//! cannot forge one. [`StanzaId::remove_by`] does that; it compares addresses as JIDs (after
//! RFC 7622 preparation, as rule 7 asks), and removes matching elements even when they are
//! otherwise malformed.

use jid::Jid;
use xmppd_xml::{Element, Node};

use crate::ns;
use crate::payload::{PayloadError, expect, into_element, required_attr, required_jid_attr};

/// A `<stanza-id/>` element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StanzaId {
    /// The opaque, unique and stable ID.
    pub id: String,
    /// The entity that assigned it.
    pub by: Jid,
}

/// An `<origin-id/>` element: the ID the originating client gave its stanza.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OriginId {
    /// The opaque ID.
    pub id: String,
}

/// The `id` attribute, which every element of this namespace needs and which may not be empty
/// (§3 rule 6).
fn id_attr(el: &Element) -> Result<String, PayloadError> {
    let id = required_attr(el, "id")?;
    if id.is_empty() {
        return Err(PayloadError::invalid(format!(
            "the 'id' of <{}/> must not be empty",
            el.name()
        )));
    }
    Ok(id.to_owned())
}

/// Whether `el` is a `<stanza-id/>` whose `by` is the address `by`.
fn is_stanza_id_by(el: &Element, by: &Jid) -> bool {
    el.is("stanza-id", ns::SID)
        && el
            .attr("by")
            .and_then(|v| Jid::new(v).ok())
            .is_some_and(|j| j == *by)
}

impl StanzaId {
    /// A stanza ID `id` assigned by `by`.
    pub fn new(id: impl Into<String>, by: Jid) -> Self {
        StanzaId { id: id.into(), by }
    }

    /// The `<stanza-id/>` element.
    pub fn to_element(&self) -> Element {
        Element::new("stanza-id", ns::SID)
            .with_attr("id", self.id.as_str())
            .with_attr("by", self.by.as_str())
    }

    /// The valid stanza ID assigned by `by` among the direct children of `stanza` (§3 rule 4
    /// allows at most one; the first is taken).
    pub fn find_by(stanza: &Element, by: &Jid) -> Option<StanzaId> {
        stanza
            .children()
            .filter(|c| is_stanza_id_by(c, by))
            .find_map(|c| StanzaId::try_from(c).ok())
    }

    /// Removes from the direct children of `stanza` every `<stanza-id/>` that claims to be
    /// assigned by `by` (§3 rule 2), returning how many there were.
    pub fn remove_by(stanza: &mut Element, by: &Jid) -> usize {
        let nodes = stanza.nodes_mut();
        let before = nodes.len();
        nodes.retain(|n| !matches!(n, Node::Element(e) if is_stanza_id_by(e, by)));
        before - nodes.len()
    }
}

impl TryFrom<&Element> for StanzaId {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "stanza-id", ns::SID)?;
        Ok(StanzaId {
            id: id_attr(el)?,
            by: required_jid_attr(el, "by")?,
        })
    }
}

impl OriginId {
    /// An origin ID.
    pub fn new(id: impl Into<String>) -> Self {
        OriginId { id: id.into() }
    }

    /// The `<origin-id/>` element.
    pub fn to_element(&self) -> Element {
        Element::new("origin-id", ns::SID).with_attr("id", self.id.as_str())
    }

    /// The valid origin ID among the direct children of `stanza`, if any.
    pub fn find(stanza: &Element) -> Option<OriginId> {
        stanza
            .children()
            .filter(|c| c.is("origin-id", ns::SID))
            .find_map(|c| OriginId::try_from(c).ok())
    }
}

impl TryFrom<&Element> for OriginId {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "origin-id", ns::SID)?;
        Ok(OriginId { id: id_attr(el)? })
    }
}

into_element!(StanzaId, OriginId);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::element;

    fn jid(s: &str) -> Jid {
        Jid::new(s).unwrap()
    }

    const MESSAGE: &str = "<message xmlns='jabber:client' to='room@muc.example.com' \
        type='groupchat'><body>Typical body text</body>\
        <stanza-id xmlns='urn:xmpp:sid:0' id='5f3dbc5e' by='room@muc.example.com'/>\
        <origin-id xmlns='urn:xmpp:sid:0' id='de305d54'/></message>";

    #[test]
    fn parses_both_elements_of_the_xep_example() {
        let msg = element(MESSAGE);
        let sid = StanzaId::find_by(&msg, &jid("room@muc.example.com")).unwrap();
        assert_eq!(sid, StanzaId::new("5f3dbc5e", jid("room@muc.example.com")));
        assert_eq!(OriginId::find(&msg), Some(OriginId::new("de305d54")));
        assert_eq!(StanzaId::find_by(&msg, &jid("muc.example.com")), None);
    }

    #[test]
    fn serialises_exactly_and_round_trips() {
        let sid = StanzaId::new("abc", jid("juliet@capulet.lit"));
        assert_eq!(
            sid.to_element().to_string(),
            "<stanza-id xmlns=\"urn:xmpp:sid:0\" id=\"abc\" by=\"juliet@capulet.lit\"/>"
        );
        assert_eq!(StanzaId::try_from(&Element::from(&sid)), Ok(sid));
        let oid = OriginId::new("xyz");
        assert_eq!(
            Element::from(&oid).to_string(),
            "<origin-id xmlns=\"urn:xmpp:sid:0\" id=\"xyz\"/>"
        );
        assert_eq!(OriginId::try_from(&oid.to_element()), Ok(oid));
    }

    #[test]
    fn unknown_children_and_attributes_are_ignored() {
        let el = element(
            "<stanza-id xmlns='urn:xmpp:sid:0' id='1' by='a.example' x='y'>\
             <unknown xmlns='urn:example'/></stanza-id>",
        );
        assert_eq!(
            StanzaId::try_from(&el),
            Ok(StanzaId::new("1", jid("a.example")))
        );
    }

    #[test]
    fn missing_attributes_are_refused() {
        for xml in [
            "<stanza-id xmlns='urn:xmpp:sid:0' by='a.example'/>",
            "<stanza-id xmlns='urn:xmpp:sid:0' id='1'/>",
            "<stanza-id xmlns='urn:xmpp:sid:0' id='' by='a.example'/>",
        ] {
            assert!(
                matches!(
                    StanzaId::try_from(&element(xml)),
                    Err(PayloadError::Invalid(_))
                ),
                "{xml}"
            );
        }
        let el = element("<stanza-id xmlns='urn:xmpp:sid:0' id='1' by='@'/>");
        assert!(matches!(
            StanzaId::try_from(&el),
            Err(PayloadError::JidMalformed(_))
        ));
        let el = element("<origin-id xmlns='urn:xmpp:sid:0'/>");
        assert!(matches!(
            OriginId::try_from(&el),
            Err(PayloadError::Invalid(_))
        ));
    }

    #[test]
    fn other_elements_are_a_mismatch() {
        let el = element("<stanza-id xmlns='urn:xmpp:sid:1' id='1' by='a.example'/>");
        assert_eq!(StanzaId::try_from(&el), Err(PayloadError::Mismatch));
        let el = element("<origin-id xmlns='urn:xmpp:sid:0' id='1'/>");
        assert_eq!(StanzaId::try_from(&el), Err(PayloadError::Mismatch));
        let el = element("<stanza-id xmlns='urn:xmpp:sid:0' id='1' by='a.example'/>");
        assert_eq!(OriginId::try_from(&el), Err(PayloadError::Mismatch));
    }

    #[test]
    fn forged_ids_are_found_and_removed_by_address() {
        // A sender claims IDs from our server, once in another spelling and once malformed;
        // the room's ID and the origin ID stay.
        let mut msg = element(
            "<message xmlns='jabber:client'><body>hi</body>\
             <stanza-id xmlns='urn:xmpp:sid:0' id='forged' by='Capulet.LIT'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' by='capulet.lit'/>\
             <stanza-id xmlns='urn:xmpp:sid:0' id='r1' by='room@muc.capulet.lit'/>\
             <origin-id xmlns='urn:xmpp:sid:0' id='o1'/></message>",
        );
        let server = jid("capulet.lit");
        assert_eq!(
            StanzaId::find_by(&msg, &server),
            Some(StanzaId::new("forged", server.clone()))
        );
        assert_eq!(StanzaId::remove_by(&mut msg, &server), 2);
        assert_eq!(StanzaId::find_by(&msg, &server), None);
        assert!(StanzaId::find_by(&msg, &jid("room@muc.capulet.lit")).is_some());
        assert_eq!(OriginId::find(&msg), Some(OriginId::new("o1")));
        assert!(msg.has_child("body", ns::CLIENT));
        assert_eq!(StanzaId::remove_by(&mut msg, &server), 0);
    }
}
