//! XEP-0054: vcard-temp — the payload.
//!
//! `<vCard xmlns='vcard-temp'/>` is kept as the element the client sent: its content model
//! (the draft-dawson DTD of §7, with the capitalisation rules of §6) is large, clients put
//! non-standard fields in it, and the server only stores it and gives it back. The one field
//! the server reads is the photo (`PHOTO/BINVAL`), whose SHA-1 is the avatar hash of XEP-0153.
//!
//! The photo's base64 follows XEP-0153 §3.5 rule 5: RFC 2045 line breaks and any other
//! white space are ignored; anything else that is not base64 makes the vCard invalid.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};
use xmppd_xml::Element;

use crate::ns;
use crate::payload::{PayloadError, expect};

/// A vCard as the client sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VCard {
    element: Element,
}

impl VCard {
    /// An empty `<vCard/>`: the answer for a user who has none (§3.1 allows it for one's own).
    pub fn empty() -> Self {
        VCard {
            element: Element::new("vCard", ns::VCARD),
        }
    }

    /// The element, as it was sent.
    pub fn element(&self) -> &Element {
        &self.element
    }

    /// The element, as it was sent.
    pub fn into_element(self) -> Element {
        self.element
    }

    /// The element (same as [`VCard::element`], for [`Element::from`]).
    pub fn to_element(&self) -> Element {
        self.element.clone()
    }

    /// The decoded `PHOTO/BINVAL`, if the vCard has a non-empty one. An `EXTVAL` photo has
    /// no data the server could hash (XEP-0153 §3.5 rule 2 discourages it) and counts as none.
    pub fn photo(&self) -> Result<Option<Vec<u8>>, PayloadError> {
        let Some(binval) = self
            .element
            .child("PHOTO", ns::VCARD)
            .and_then(|p| p.child("BINVAL", ns::VCARD))
        else {
            return Ok(None);
        };
        let mut text = binval.text();
        text.retain(|c| !c.is_ascii_whitespace());
        if text.is_empty() {
            return Ok(None);
        }
        BASE64
            .decode(text.as_bytes())
            .map(Some)
            .map_err(|e| PayloadError::invalid(format!("<BINVAL/> is not base64: {e}")))
    }

    /// The avatar hash of XEP-0153 §3.1: the SHA-1 of the decoded photo in lower-case hex,
    /// `None` without a photo.
    pub fn photo_hash(&self) -> Result<Option<String>, PayloadError> {
        Ok(self.photo()?.map(|data| sha1_hex(&data)))
    }
}

/// SHA-1 of `data` in lower-case hexadecimal (XEP-0153 §3.1 prefers lower case).
pub fn sha1_hex(data: &[u8]) -> String {
    use std::fmt::Write as _;
    let digest = Sha1::digest(data);
    let mut out = String::with_capacity(40);
    for byte in digest {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

impl TryFrom<&Element> for VCard {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "vCard", ns::VCARD)?;
        let vcard = VCard {
            element: el.clone(),
        };
        // A photo that is not base64 is refused now rather than stored and served broken.
        vcard.photo()?;
        Ok(vcard)
    }
}

crate::payload::into_element!(VCard);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::element as parse;

    const JULIET: &str = "<vCard xmlns='vcard-temp'><FN>Juliet Capulet</FN>\
         <N><GIVEN>Juliet</GIVEN><FAMILY>Capulet</FAMILY></N>\
         <X-CUSTOM xmlns='urn:example'>kept</X-CUSTOM>\
         <PHOTO><TYPE>image/png</TYPE><BINVAL>\n aGVs\r\n bG8=\n</BINVAL></PHOTO></vCard>";

    #[test]
    fn a_vcard_round_trips_with_unknown_children_kept() {
        let vcard = VCard::try_from(&parse(JULIET)).unwrap();
        let again = VCard::try_from(&vcard.to_element()).unwrap();
        assert_eq!(again, vcard);
        assert_eq!(
            again
                .element()
                .child("X-CUSTOM", "urn:example")
                .map(Element::text),
            Some("kept".to_owned())
        );
        assert_eq!(
            again.element().child("FN", ns::VCARD).map(Element::text),
            Some("Juliet Capulet".to_owned())
        );
    }

    #[test]
    fn the_photo_hash_is_the_sha1_of_the_decoded_binval_ignoring_white_space() {
        let vcard = VCard::try_from(&parse(JULIET)).unwrap();
        assert_eq!(vcard.photo().unwrap().as_deref(), Some(&b"hello"[..]));
        // SHA-1("hello").
        assert_eq!(
            vcard.photo_hash().unwrap().as_deref(),
            Some("aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d")
        );
    }

    #[test]
    fn no_photo_an_empty_binval_or_an_extval_have_no_hash() {
        for xml in [
            "<vCard xmlns='vcard-temp'><FN>x</FN></vCard>",
            "<vCard xmlns='vcard-temp'><PHOTO><BINVAL> </BINVAL></PHOTO></vCard>",
            "<vCard xmlns='vcard-temp'><PHOTO><EXTVAL>https://x/y.png</EXTVAL></PHOTO></vCard>",
        ] {
            let vcard = VCard::try_from(&parse(xml)).unwrap();
            assert_eq!(vcard.photo_hash().unwrap(), None, "{xml}");
        }
        assert_eq!(VCard::empty().photo_hash().unwrap(), None);
        assert!(VCard::empty().element().is("vCard", ns::VCARD));
    }

    #[test]
    fn a_binval_that_is_not_base64_is_refused_as_a_bad_request() {
        let el =
            parse("<vCard xmlns='vcard-temp'><PHOTO><BINVAL>not*base64</BINVAL></PHOTO></vCard>");
        let err = VCard::try_from(&el).unwrap_err();
        assert!(matches!(err, PayloadError::Invalid(_)));
        assert_eq!(
            crate::StanzaError::from(err).condition,
            crate::DefinedCondition::BadRequest
        );
    }

    #[test]
    fn other_elements_are_not_a_vcard() {
        for xml in [
            "<vcard xmlns='vcard-temp'/>",
            "<vCard xmlns='urn:ietf:params:xml:ns:vcard-4.0'/>",
        ] {
            assert!(
                VCard::try_from(&parse(xml)).unwrap_err().is_mismatch(),
                "{xml}"
            );
        }
    }
}
