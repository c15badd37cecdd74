//! XEP-0153: vCard-Based Avatars — the presence extension `<x xmlns='vcard-temp:x:update'/>`.
//!
//! §4.1 gives it three meanings, kept apart here: no `<photo/>` (the sender is not ready to
//! advertise an image), an empty `<photo/>` (there is no image), and a `<photo/>` holding the
//! image's SHA-1 in hexadecimal (either case is read; lower case is written, §3.1).

use xmppd_xml::Element;

use crate::ns;
use crate::payload::{PayloadError, expect, into_element};

/// What a presence says about the sender's avatar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VCardUpdate {
    /// `<x/>`: not ready to advertise an image (§4.1 rule 2).
    NotReady,
    /// `<x><photo/></x>`: no image (§4.1 rule 3).
    NoPhoto,
    /// `<x><photo>HASH</photo></x>`: the image's SHA-1, lower-case hex.
    Photo(String),
}

impl VCardUpdate {
    /// The update for a photo hash (`None`: no image).
    pub fn from_hash(hash: Option<&str>) -> Self {
        match hash {
            Some(h) => VCardUpdate::Photo(h.to_ascii_lowercase()),
            None => VCardUpdate::NoPhoto,
        }
    }

    /// The `<x/>` element.
    pub fn to_element(&self) -> Element {
        let x = Element::new("x", ns::VCARD_UPDATE);
        match self {
            VCardUpdate::NotReady => x,
            VCardUpdate::NoPhoto => x.with_child(Element::new("photo", ns::VCARD_UPDATE)),
            VCardUpdate::Photo(hash) => {
                x.with_child(Element::new("photo", ns::VCARD_UPDATE).with_text(hash.clone()))
            }
        }
    }
}

impl TryFrom<&Element> for VCardUpdate {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "x", ns::VCARD_UPDATE)?;
        let Some(photo) = el.child("photo", ns::VCARD_UPDATE) else {
            return Ok(VCardUpdate::NotReady);
        };
        let hash = photo.text();
        let hash = hash.trim();
        if hash.is_empty() {
            return Ok(VCardUpdate::NoPhoto);
        }
        // The schema's xs:hexBinary: an even number of hex digits.
        if hash.len() % 2 != 0 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PayloadError::invalid(format!(
                "<photo/> must hold a hexadecimal hash, not '{hash}'"
            )));
        }
        Ok(VCardUpdate::Photo(hash.to_ascii_lowercase()))
    }
}

into_element!(VCardUpdate);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::element as parse;

    const HASH: &str = "01b87fcd030b72895ff8e88db57ec525450f000d";

    #[test]
    fn the_three_meanings_parse_and_round_trip() {
        let cases = [
            ("<x xmlns='vcard-temp:x:update'/>", VCardUpdate::NotReady),
            (
                "<x xmlns='vcard-temp:x:update'><photo/></x>",
                VCardUpdate::NoPhoto,
            ),
            (
                "<x xmlns='vcard-temp:x:update'><photo>01B87FCD030B72895FF8E88DB57EC525450F000D</photo><other xmlns='urn:x'/></x>",
                VCardUpdate::Photo(HASH.into()),
            ),
        ];
        for (xml, expected) in cases {
            let update = VCardUpdate::try_from(&parse(xml)).unwrap();
            assert_eq!(update, expected, "{xml}");
            assert_eq!(VCardUpdate::try_from(&update.to_element()).unwrap(), update);
        }
    }

    #[test]
    fn a_hash_is_written_in_lower_case() {
        let el = VCardUpdate::from_hash(Some("ABCDEF")).to_element();
        assert_eq!(
            el.child("photo", ns::VCARD_UPDATE).map(Element::text),
            Some("abcdef".to_owned())
        );
        assert_eq!(VCardUpdate::from_hash(None), VCardUpdate::NoPhoto);
    }

    #[test]
    fn a_photo_that_is_not_hex_is_invalid() {
        for bad in ["xyz", "abc"] {
            let el = parse(&format!(
                "<x xmlns='vcard-temp:x:update'><photo>{bad}</photo></x>"
            ));
            assert!(matches!(
                VCardUpdate::try_from(&el),
                Err(PayloadError::Invalid(_))
            ));
        }
    }

    #[test]
    fn other_elements_are_not_mine() {
        for xml in [
            "<x xmlns='jabber:x:data'/>",
            "<photo xmlns='vcard-temp:x:update'/>",
        ] {
            assert!(
                VCardUpdate::try_from(&parse(xml))
                    .unwrap_err()
                    .is_mismatch()
            );
        }
    }
}
