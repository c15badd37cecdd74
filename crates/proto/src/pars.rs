//! XEP-0379: Pre-Authenticated Roster Subscription — the `<preauth/>` element, with the
//! invitation URIs of XEP-0401 (Easy User Onboarding) and the stream features of XEP-0445
//! (Pre-Authenticated In-Band Registration), which reuse it.
//!
//! One element serves both uses: in a `<presence type='subscribe'/>` it carries the token of
//! a contact invitation (XEP-0379 §3.4), and as the payload of an `<iq type='set'/>` sent
//! before authentication it presents a registration token (XEP-0445 §4).
//!
//! The URIs are those of XEP-0147 with the `preauth` key (XEP-0379 §3.2, XEP-0401 §3.1 and
//! §3.4): `xmpp:HOST?register;preauth=TOKEN` for an account,
//! `xmpp:USER@HOST?register;preauth=TOKEN` for a given account (our password resets), and
//! `xmpp:USER@HOST?roster;preauth=TOKEN;ibr=y` for a contact invitation that can also
//! register. Everything outside RFC 3986's unreserved characters is percent-encoded
//! (RFC 5122 §2.2 allows more, but clients decode either).

use xmppd_xml::Element;

use crate::payload::{PayloadError, into_element};

/// XEP-0379's namespace, of `<preauth/>`.
pub const NS_PARS: &str = "urn:xmpp:pars:0";
/// XEP-0445's stream feature `<register xmlns='urn:xmpp:ibr-token:0'/>` (§3).
pub const NS_IBR_TOKEN: &str = "urn:xmpp:ibr-token:0";
/// The earlier stream feature `<register xmlns='urn:xmpp:invite'/>`, which clients written
/// before XEP-0445 (Conversations, Dino) still look for.
pub const NS_INVITE_LEGACY: &str = "urn:xmpp:invite";

/// `<preauth xmlns='urn:xmpp:pars:0' token='…'/>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Preauth {
    /// The token, as sent (not empty).
    pub token: String,
}

impl Preauth {
    /// The element.
    pub fn to_element(&self) -> Element {
        Element::new("preauth", NS_PARS).with_attr("token", self.token.as_str())
    }

    /// The `<preauth/>` child of a stanza, if it has one with a token. XEP-0379 §4.1: a
    /// malformed token is ignored, as if there were none.
    pub fn of(stanza: &Element) -> Option<Self> {
        stanza
            .children()
            .find_map(|child| Preauth::try_from(child).ok())
    }
}

impl TryFrom<&Element> for Preauth {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, PayloadError> {
        if !el.is("preauth", NS_PARS) {
            return Err(PayloadError::Mismatch);
        }
        match el.attr("token") {
            Some(token) if !token.is_empty() => Ok(Preauth {
                token: token.to_owned(),
            }),
            _ => Err(PayloadError::invalid("<preauth/> needs a token")),
        }
    }
}

into_element!(Preauth);

/// What an invitation URI asks a client to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InviteAction {
    /// `register`: create the account (on the host, or the given one).
    Register,
    /// `roster`: add the address as a contact; `ibr` when the token can also register an
    /// account on its server (XEP-0401 §3.1, `ibr=y`).
    Roster {
        /// `ibr=y`.
        ibr: bool,
    },
}

/// An invitation URI (XEP-0401 §3.1, §3.4; XEP-0379 §3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InviteUri {
    /// The address: a host, or `user@host`.
    pub address: String,
    /// What to do with it.
    pub action: InviteAction,
    /// The `preauth` token.
    pub token: String,
}

/// RFC 3986 unreserved characters pass, every other byte is `%XX`.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn decode(text: &str) -> Result<String, PayloadError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| PayloadError::invalid("a bad percent escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PayloadError::invalid("not UTF-8 once decoded"))
}

impl InviteUri {
    /// The URI text.
    pub fn to_uri(&self) -> String {
        let address = match self.address.split_once('@') {
            Some((user, host)) => format!("{}@{}", encode(user), encode(host)),
            None => encode(&self.address),
        };
        let token = encode(&self.token);
        match self.action {
            InviteAction::Register => format!("xmpp:{address}?register;preauth={token}"),
            InviteAction::Roster { ibr: false } => format!("xmpp:{address}?roster;preauth={token}"),
            InviteAction::Roster { ibr: true } => {
                format!("xmpp:{address}?roster;preauth={token};ibr=y")
            }
        }
    }

    /// Reads an invitation URI; other keys (`name` …) are ignored.
    pub fn parse(uri: &str) -> Result<Self, PayloadError> {
        let rest = uri
            .strip_prefix("xmpp:")
            .ok_or_else(|| PayloadError::invalid("not an xmpp: URI"))?;
        let (address, query) = rest
            .split_once('?')
            .ok_or_else(|| PayloadError::invalid("no query: neither register nor roster"))?;
        let mut parts = query.split(';');
        let action = parts.next().unwrap_or_default();
        let (mut token, mut ibr) = (None, false);
        for pair in parts {
            match pair.split_once('=') {
                Some(("preauth", value)) => token = Some(decode(value)?),
                Some(("ibr", value)) => ibr = value == "y",
                _ => {}
            }
        }
        let action = match action {
            "register" => InviteAction::Register,
            "roster" => InviteAction::Roster { ibr },
            other => {
                return Err(PayloadError::invalid(format!(
                    "'{other}' is not an invitation action"
                )));
            }
        };
        let token = token
            .filter(|t| !t.is_empty())
            .ok_or_else(|| PayloadError::invalid("no preauth token"))?;
        let address = decode(address)?;
        if address.is_empty() {
            return Err(PayloadError::invalid("no address"));
        }
        Ok(InviteUri {
            address,
            action,
            token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::element;

    #[test]
    fn reads_and_writes_preauth() {
        // XEP-0379 §3.4 Example 3.
        let presence = element(
            "<presence to='romeo@montague.net' type='subscribe'>\
             <preauth xmlns='urn:xmpp:pars:0' token='1tMFqYDdKhfe2pwp'/></presence>",
        );
        let preauth = Preauth::of(&presence).unwrap();
        assert_eq!(preauth.token, "1tMFqYDdKhfe2pwp");
        assert_eq!(
            preauth.to_element().to_string(),
            "<preauth xmlns=\"urn:xmpp:pars:0\" token=\"1tMFqYDdKhfe2pwp\"/>"
        );
        assert_eq!(Preauth::try_from(&preauth.to_element()), Ok(preauth));
    }

    #[test]
    fn a_preauth_without_token_is_invalid_and_ignored_in_presence() {
        let bare = element("<preauth xmlns='urn:xmpp:pars:0'/>");
        assert!(matches!(
            Preauth::try_from(&bare),
            Err(PayloadError::Invalid(_))
        ));
        let empty = element("<preauth xmlns='urn:xmpp:pars:0' token=''><x/></preauth>");
        assert!(Preauth::try_from(&empty).is_err());
        let presence =
            element("<presence type='subscribe'><preauth xmlns='urn:xmpp:pars:0'/></presence>");
        assert_eq!(Preauth::of(&presence), None);
        let other = element("<preauth xmlns='urn:xmpp:other' token='t'/>");
        assert_eq!(Preauth::try_from(&other), Err(PayloadError::Mismatch));
    }

    #[test]
    fn builds_the_three_uri_forms() {
        let host = InviteUri {
            address: "example.com".into(),
            action: InviteAction::Register,
            token: "abc123".into(),
        };
        assert_eq!(host.to_uri(), "xmpp:example.com?register;preauth=abc123");
        let user = InviteUri {
            address: "juliet@example.com".into(),
            ..host.clone()
        };
        assert_eq!(
            user.to_uri(),
            "xmpp:juliet@example.com?register;preauth=abc123"
        );
        let contact = InviteUri {
            address: "romeo@example.com".into(),
            action: InviteAction::Roster { ibr: true },
            token: "abc123".into(),
        };
        assert_eq!(
            contact.to_uri(),
            "xmpp:romeo@example.com?roster;preauth=abc123;ibr=y"
        );
        for uri in [host, user, contact] {
            assert_eq!(InviteUri::parse(&uri.to_uri()), Ok(uri));
        }
    }

    #[test]
    fn escapes_what_is_not_unreserved() {
        let uri = InviteUri {
            address: "o'hara&co@example.com".into(),
            action: InviteAction::Roster { ibr: false },
            token: "a;b=c".into(),
        };
        let text = uri.to_uri();
        assert_eq!(
            text,
            "xmpp:o%27hara%26co@example.com?roster;preauth=a%3Bb%3Dc"
        );
        assert_eq!(InviteUri::parse(&text), Ok(uri));
    }

    #[test]
    fn parses_with_other_keys_and_refuses_the_rest() {
        // XEP-0379 §3.2 Example 1, with a display name.
        let uri = InviteUri::parse(
            "xmpp:romeo@montague.net?roster;preauth=1tMFqYDdKhfe2pwp;name=Romeo+Montague",
        )
        .unwrap();
        assert_eq!(uri.action, InviteAction::Roster { ibr: false });
        assert_eq!(uri.token, "1tMFqYDdKhfe2pwp");
        for bad in [
            "https://example.com/?register;preauth=x",
            "xmpp:example.com",
            "xmpp:example.com?message;preauth=x",
            "xmpp:example.com?register",
            "xmpp:example.com?register;preauth=",
            "xmpp:?register;preauth=x",
            "xmpp:example.com?register;preauth=%G1",
            "xmpp:example.com?register;preauth=%FF",
        ] {
            assert!(InviteUri::parse(bad).is_err(), "{bad}");
        }
    }
}
