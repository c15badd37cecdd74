//! XEP-0156: Discovering Alternative XMPP Connection Methods — the host-meta documents
//! (RFC 6415) in their XRD (XML) and JRD (JSON) forms.
//!
//! Only the `Link` entries matter to XMPP (§3.1): one per connection method, with the
//! relations `urn:xmpp:alt-connections:websocket` and `urn:xmpp:alt-connections:xbosh`.
//! Reading is lenient (other children and other relations are kept or skipped, a link without
//! `rel` or `href` is skipped); writing gives exactly the links.

use xmppd_xml::Element;

use crate::payload::PayloadError;

/// The XRD namespace (RFC 6415 §3).
pub const NS_XRD: &str = "http://docs.oasis-open.org/ns/xri/xrd-1.0";
/// The link relation of an RFC 7395 WebSocket endpoint.
pub const REL_WEBSOCKET: &str = "urn:xmpp:alt-connections:websocket";
/// The link relation of a XEP-0206 BOSH endpoint.
pub const REL_BOSH: &str = "urn:xmpp:alt-connections:xbosh";

/// One link of a host-meta document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The relation (which connection method).
    pub rel: String,
    /// The endpoint's URL.
    pub href: String,
}

/// A host's host-meta document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostMeta {
    /// The links, in the order written (§3.2 rule 5: the order means nothing).
    pub links: Vec<Link>,
}

impl HostMeta {
    /// Adds a link.
    pub fn with_link(mut self, rel: &str, href: &str) -> Self {
        self.links.push(Link {
            rel: rel.to_owned(),
            href: href.to_owned(),
        });
        self
    }

    /// The first link with relation `rel`.
    pub fn link(&self, rel: &str) -> Option<&str> {
        self.links
            .iter()
            .find(|l| l.rel == rel)
            .map(|l| l.href.as_str())
    }

    /// The XRD document, with its XML declaration.
    pub fn to_xrd(&self) -> Vec<u8> {
        let mut xrd = Element::new("XRD", NS_XRD);
        for link in &self.links {
            xrd.push_child(
                Element::new("Link", NS_XRD)
                    .with_attr("rel", &link.rel)
                    .with_attr("href", &link.href),
            );
        }
        let mut out = b"<?xml version='1.0' encoding='utf-8'?>\n".to_vec();
        xrd.write_to(&mut out, "");
        out
    }

    /// The JRD document (RFC 6415 Appendix A).
    pub fn to_jrd(&self) -> String {
        let mut out = String::from("{\"links\":[");
        for (i, link) in self.links.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str("{\"rel\":");
            json_string(&link.rel, &mut out);
            out.push_str(",\"href\":");
            json_string(&link.href, &mut out);
            out.push('}');
        }
        out.push_str("]}");
        out
    }
}

impl TryFrom<&Element> for HostMeta {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, Self::Error> {
        if !el.is("XRD", NS_XRD) {
            return Err(PayloadError::Mismatch);
        }
        let links = el
            .children()
            .filter(|c| c.is("Link", NS_XRD))
            .filter_map(|c| {
                Some(Link {
                    rel: c.attr("rel")?.to_owned(),
                    href: c.attr("href")?.to_owned(),
                })
            })
            .collect();
        Ok(HostMeta { links })
    }
}

/// A JSON string literal (RFC 8259 §7).
fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::element as parse;

    fn sample() -> HostMeta {
        HostMeta::default()
            .with_link(REL_BOSH, "https://web.example.com:5280/bosh")
            .with_link(REL_WEBSOCKET, "wss://web.example.com:443/ws")
    }

    #[test]
    fn xrd_round_trip() {
        let bytes = sample().to_xrd();
        let text = String::from_utf8(bytes).unwrap();
        let body = text.split_once('\n').unwrap().1;
        let parsed = HostMeta::try_from(&parse(body)).unwrap();
        assert_eq!(parsed, sample());
        assert_eq!(
            parsed.link(REL_WEBSOCKET),
            Some("wss://web.example.com:443/ws")
        );
    }

    #[test]
    fn unknown_children_and_incomplete_links_are_skipped() {
        let el = parse(
            "<XRD xmlns='http://docs.oasis-open.org/ns/xri/xrd-1.0'><Subject>x</Subject>\
             <Link rel='lrdd' template='t'/><Link href='wss://a/ws'/>\
             <Link rel='urn:xmpp:alt-connections:websocket' href='wss://b/ws'/></XRD>",
        );
        let parsed = HostMeta::try_from(&el).unwrap();
        assert_eq!(parsed.links.len(), 1);
        assert_eq!(parsed.link(REL_WEBSOCKET), Some("wss://b/ws"));
    }

    #[test]
    fn another_document_is_a_mismatch() {
        let el = parse("<XRD xmlns='urn:other'/>");
        assert_eq!(HostMeta::try_from(&el), Err(PayloadError::Mismatch));
    }

    #[test]
    fn jrd_is_json_with_the_same_links() {
        let jrd = sample().with_link("x", "a\"b\\c").to_jrd();
        let value: serde_json::Value = serde_json::from_str(&jrd).unwrap();
        let links = value["links"].as_array().unwrap();
        assert_eq!(links.len(), 3);
        assert_eq!(links[1]["rel"], REL_WEBSOCKET);
        assert_eq!(links[1]["href"], "wss://web.example.com:443/ws");
        assert_eq!(links[2]["href"], "a\"b\\c");
    }
}
