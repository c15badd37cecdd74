//! XEP-0115: Entity Capabilities.
//!
//! `<c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='…' ver='…'/>` names an
//! entity's disco#info answer by a hash of it (§5.1), so that whoever already knows that hash
//! need not ask again. A server offers its own in the stream features (§6.3).
//!
//! The verification string is built exactly as §5.1 orders: identities sorted by category,
//! type and `xml:lang`, as `category/type/lang/name<`; features sorted, each followed by `<`;
//! extended forms (XEP-0128) sorted by `FORM_TYPE`, each as its `FORM_TYPE` value, then its
//! other fields sorted by `var`, each `var<` and its sorted values `value<`. All sorting is
//! "i;octet" (RFC 4790 §9.3): byte order, which is what sorting Rust strings does.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha1::{Digest, Sha1};
use xmppd_xml::Element;

use crate::disco::DiscoInfoResult;
use crate::ns;
use crate::payload::{PayloadError, expect, into_element, required_attr};

/// A `<c/>` element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caps {
    /// The hash function's name in the IANA registry (`sha-1`).
    pub hash: String,
    /// A URI identifying the software.
    pub node: String,
    /// The verification string (§5).
    pub ver: String,
}

impl Caps {
    /// The capabilities of the entity `info` describes, hashed with SHA-1 (the one hash
    /// every implementation supports, §8.1).
    pub fn sha1(node: impl Into<String>, info: &DiscoInfoResult) -> Self {
        let digest = Sha1::digest(verification_input(info).as_bytes());
        Caps {
            hash: "sha-1".to_owned(),
            node: node.into(),
            ver: BASE64.encode(digest),
        }
    }

    /// The disco#info node that describes these capabilities, `node#ver` (§6.2).
    pub fn node_ver(&self) -> String {
        format!("{}#{}", self.node, self.ver)
    }

    /// The `<c/>` element.
    pub fn to_element(&self) -> Element {
        Element::new("c", ns::CAPS)
            .with_attr("hash", self.hash.as_str())
            .with_attr("node", self.node.as_str())
            .with_attr("ver", self.ver.as_str())
    }
}

impl TryFrom<&Element> for Caps {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        expect(el, "c", ns::CAPS)?;
        Ok(Caps {
            hash: required_attr(el, "hash")?.to_owned(),
            node: required_attr(el, "node")?.to_owned(),
            ver: required_attr(el, "ver")?.to_owned(),
        })
    }
}

into_element!(Caps);

/// The string S of §5.1 (steps 1–8), before hashing.
pub fn verification_input(info: &DiscoInfoResult) -> String {
    let mut s = String::new();
    let mut identities: Vec<_> = info
        .identities
        .iter()
        .map(|i| {
            (
                i.category.as_str(),
                i.kind.as_str(),
                i.lang.as_deref().unwrap_or(""),
                i.name.as_deref().unwrap_or(""),
            )
        })
        .collect();
    identities.sort_unstable();
    for (category, kind, lang, name) in identities {
        s.push_str(&format!("{category}/{kind}/{lang}/{name}<"));
    }
    let mut features: Vec<&str> = info.features.iter().map(String::as_str).collect();
    features.sort_unstable();
    for feature in features {
        push_item(&mut s, feature);
    }
    let mut forms: Vec<_> = info
        .extensions
        .iter()
        .map(|form| (form.form_type().unwrap_or(""), form))
        .collect();
    forms.sort_by(|a, b| a.0.cmp(b.0));
    for (form_type, form) in forms {
        push_item(&mut s, form_type);
        let mut fields: Vec<_> = form
            .fields
            .iter()
            .filter(|f| f.var.as_deref() != Some("FORM_TYPE"))
            .collect();
        fields.sort_by(|a, b| a.var.cmp(&b.var));
        for field in fields {
            push_item(&mut s, field.var.as_deref().unwrap_or(""));
            let mut values: Vec<&str> = field.values.iter().map(String::as_str).collect();
            values.sort_unstable();
            for value in values {
                push_item(&mut s, value);
            }
        }
    }
    s
}

/// Appends `item` and the `<` that ends it.
fn push_item(s: &mut String, item: &str) {
    s.push_str(item);
    s.push('<');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data_form::{DataForm, Field, FieldType, FormType};
    use crate::disco::Identity;

    fn features(vars: &[&str]) -> Vec<String> {
        vars.iter().map(|v| (*v).to_owned()).collect()
    }

    const FEATURES: [&str; 4] = [
        "http://jabber.org/protocol/muc",
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/caps",
        "http://jabber.org/protocol/disco#items",
    ];

    /// §5.2.
    #[test]
    fn the_simple_example() {
        let info = DiscoInfoResult {
            identities: vec![Identity::new("client", "pc").with_name("Exodus 0.9.1")],
            features: features(&FEATURES),
            ..DiscoInfoResult::default()
        };
        let caps = Caps::sha1("http://code.google.com/p/exodus", &info);
        assert_eq!(caps.ver, "QgayPKawpkPSDYmwT/WM94uAlu0=");
        assert_eq!(caps.hash, "sha-1");
        assert_eq!(
            caps.node_ver(),
            "http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0="
        );
    }

    /// §5.3 (with the plain spaces its published hash was computed from).
    #[test]
    fn the_complex_example_with_a_form_and_languages() {
        let mut en = Identity::new("client", "pc").with_name("Psi 0.11");
        en.lang = Some("en".to_owned());
        let mut el = Identity::new("client", "pc").with_name("\u{3a8} 0.11");
        el.lang = Some("el".to_owned());
        let field = |var: &str, values: &[&str]| {
            values
                .iter()
                .fold(Field::new(var, FieldType::TextSingle), |f, v| {
                    f.with_value(*v)
                })
        };
        let form = DataForm::new(FormType::Result)
            .with_field(Field::form_type("urn:xmpp:dataforms:softwareinfo"))
            .with_field(field("software_version", &["0.11"]))
            .with_field(field("ip_version", &["ipv6", "ipv4"]))
            .with_field(field("os", &["Mac"]))
            .with_field(field("software", &["Psi"]))
            .with_field(field("os_version", &["10.5.1"]));
        let info = DiscoInfoResult {
            identities: vec![en, el],
            features: features(&FEATURES),
            extensions: vec![form],
            ..DiscoInfoResult::default()
        };
        assert!(verification_input(&info).starts_with("client/pc/el/\u{3a8} 0.11<client/pc/en/"));
        assert_eq!(
            Caps::sha1("http://psi-im.org", &info).ver,
            "q07IKJEyjvHSyhy//CH0CxmKi8w="
        );
    }

    #[test]
    fn round_trips_and_refuses_a_missing_ver() {
        let caps = Caps {
            hash: "sha-1".to_owned(),
            node: "https://example.org".to_owned(),
            ver: "abc=".to_owned(),
        };
        assert_eq!(Caps::try_from(&caps.to_element()), Ok(caps.clone()));
        let mut el = caps.to_element();
        el.remove_attr("ver");
        assert!(matches!(Caps::try_from(&el), Err(PayloadError::Invalid(_))));
        let other = Element::new("c", "urn:example");
        assert_eq!(Caps::try_from(&other), Err(PayloadError::Mismatch));
    }
}
