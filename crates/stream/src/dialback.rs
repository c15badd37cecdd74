//! XEP-0220: Server Dialback, and XEP-0185: Dialback Key Generation and Validation.
//!
//! Dialback proves that a server speaks for a domain by asking that domain's authoritative
//! server (found through DNS) to confirm a key. The key is never stored: it is derived on
//! demand from the server secret, the two domains and the stream id (XEP-0185 §3), so the
//! authoritative side recomputes it and compares in constant time.

use hmac::{Hmac, Mac as _};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use xmppd_proto::{DefinedCondition, StanzaError, ns};
use xmppd_xml::Element;

/// The dialback namespace (`db:` prefix of the stream header).
pub const DIALBACK_NS: &str = "jabber:server:dialback";
/// The stream feature announcing dialback with error handling (XEP-0220 §2.4.2).
pub const DIALBACK_FEATURE_NS: &str = "urn:xmpp:features:dialback";

/// XEP-0185 §3: `HMAC-SHA256(SHA256(secret), receiving ' ' originating ' ' stream_id)`, in
/// lowercase hex.
pub fn dialback_key(secret: &[u8], receiving: &str, originating: &str, stream_id: &str) -> String {
    // The HMAC key is SHA256(secret) in lowercase hex, as in XEP-0185's worked example.
    let hashed = hex::encode(Sha256::digest(secret));
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = <Hmac<Sha256>>::new_from_slice(hashed.as_bytes()) else {
        return String::new();
    };
    mac.update(receiving.as_bytes());
    mac.update(b" ");
    mac.update(originating.as_bytes());
    mac.update(b" ");
    mac.update(stream_id.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `given` is the key for these parameters, compared in constant time.
pub fn key_is_valid(
    secret: &[u8],
    receiving: &str,
    originating: &str,
    stream_id: &str,
    given: &str,
) -> bool {
    let expected = dialback_key(secret, receiving, originating, stream_id);
    let given = given.trim().to_ascii_lowercase();
    bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// The outcome of a dialback step (`type` of `db:result` and `db:verify`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The key was confirmed.
    Valid,
    /// The key was wrong.
    Invalid,
    /// Something other than the key went wrong (XEP-0220 §2.4), with the stanza error
    /// condition that says what: `item-not-found` (not a domain served here),
    /// `remote-server-not-found` (the authoritative server could not be asked),
    /// `forbidden` (a wrong key on a stream that has other valid domain pairs),
    /// `policy-violation` (dialback is not accepted here).
    Error(DefinedCondition),
}

impl Verdict {
    fn from_element(el: &Element) -> Option<Self> {
        match el.attr("type") {
            Some("valid") => Some(Verdict::Valid),
            Some("invalid") => Some(Verdict::Invalid),
            Some("error") => {
                let condition = el
                    .child("error", ns::SERVER)
                    .map(|e| StanzaError::from_element(e).condition)
                    .unwrap_or(DefinedCondition::UndefinedCondition);
                Some(Verdict::Error(condition))
            }
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Verdict::Valid => "valid",
            Verdict::Invalid => "invalid",
            Verdict::Error(_) => "error",
        }
    }
}

/// A dialback element, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dialback {
    /// `<db:result from to>key</db:result>`: the originating server asks to be accepted.
    ResultRequest {
        /// The originating (sender) domain.
        from: String,
        /// The receiving (target) domain.
        to: String,
        /// The dialback key.
        key: String,
    },
    /// `<db:result type/>`: the receiving server's answer.
    ResultAnswer {
        /// The receiving domain.
        from: String,
        /// The originating domain.
        to: String,
        /// The verdict.
        verdict: Verdict,
    },
    /// `<db:verify from to id>key</db:verify>`: the receiving server asks the authoritative
    /// server to confirm a key.
    VerifyRequest {
        /// The receiving domain.
        from: String,
        /// The authoritative (originating) domain.
        to: String,
        /// The stream id the key was made for.
        id: String,
        /// The key.
        key: String,
    },
    /// `<db:verify type/>`: the authoritative server's answer.
    VerifyAnswer {
        /// The authoritative domain.
        from: String,
        /// The receiving domain.
        to: String,
        /// The stream id.
        id: String,
        /// The verdict.
        verdict: Verdict,
    },
}

/// Why a dialback element is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed dialback element: {0}")]
pub struct MalformedDialback(pub &'static str);

impl Dialback {
    /// Parses `<db:result/>` or `<db:verify/>`; `Ok(None)` for any other element.
    pub fn parse(el: &Element) -> Result<Option<Dialback>, MalformedDialback> {
        if el.ns() != DIALBACK_NS {
            return Ok(None);
        }
        let from = el.attr("from").ok_or(MalformedDialback("no 'from'"))?;
        let to = el.attr("to").ok_or(MalformedDialback("no 'to'"))?;
        let (from, to) = (from.to_ascii_lowercase(), to.to_ascii_lowercase());
        let verdict = Verdict::from_element(el);
        if el.attr("type").is_some() && verdict.is_none() {
            return Err(MalformedDialback("unknown 'type'"));
        }
        let parsed = match (el.name(), verdict) {
            ("result", None) => Dialback::ResultRequest {
                from,
                to,
                key: non_empty_key(el)?,
            },
            ("result", Some(verdict)) => Dialback::ResultAnswer { from, to, verdict },
            ("verify", verdict) => {
                let id = el
                    .attr("id")
                    .ok_or(MalformedDialback("no 'id'"))?
                    .to_owned();
                match verdict {
                    None => Dialback::VerifyRequest {
                        from,
                        to,
                        id,
                        key: non_empty_key(el)?,
                    },
                    Some(verdict) => Dialback::VerifyAnswer {
                        from,
                        to,
                        id,
                        verdict,
                    },
                }
            }
            _ => return Ok(None),
        };
        Ok(Some(parsed))
    }

    /// The element, to be written in a `jabber:server` stream.
    pub fn to_element(&self) -> Element {
        match self {
            Dialback::ResultRequest { from, to, key } => Element::new("result", DIALBACK_NS)
                .with_attr("from", from)
                .with_attr("to", to)
                .with_text(key),
            Dialback::ResultAnswer { from, to, verdict } => {
                with_error(Element::new("result", DIALBACK_NS), *verdict)
                    .with_attr("from", from)
                    .with_attr("to", to)
            }
            Dialback::VerifyRequest { from, to, id, key } => Element::new("verify", DIALBACK_NS)
                .with_attr("from", from)
                .with_attr("to", to)
                .with_attr("id", id)
                .with_text(key),
            Dialback::VerifyAnswer {
                from,
                to,
                id,
                verdict,
            } => with_error(Element::new("verify", DIALBACK_NS), *verdict)
                .with_attr("from", from)
                .with_attr("to", to)
                .with_attr("id", id),
        }
    }

    /// Serialised for a `jabber:server` stream whose header binds the `db` prefix, as
    /// `<db:result/>` / `<db:verify/>`: some servers (ejabberd) match these names literally
    /// instead of resolving namespaces, so the prefixed form is the one every peer reads.
    pub fn to_bytes(&self) -> Vec<u8> {
        let el = self.to_element();
        let mut out = Vec::with_capacity(200);
        out.extend_from_slice(b"<db:");
        out.extend_from_slice(el.name().as_bytes());
        for (name, value) in el.attrs() {
            out.push(b' ');
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"=\"");
            xmppd_xml::writer::escape_attr(value, &mut out);
            out.push(b'"');
        }
        out.push(b'>');
        for child in el.children() {
            child.write_to(&mut out, ns::SERVER);
        }
        xmppd_xml::writer::escape_text(&el.text(), &mut out);
        out.extend_from_slice(b"</db:");
        out.extend_from_slice(el.name().as_bytes());
        out.push(b'>');
        out
    }
}

fn non_empty_key(el: &Element) -> Result<String, MalformedDialback> {
    let key = el.text().trim().to_owned();
    if key.is_empty() {
        return Err(MalformedDialback("empty key"));
    }
    Ok(key)
}

/// Sets `type`; an error verdict carries its condition (XEP-0220 §2.4).
fn with_error(el: Element, verdict: Verdict) -> Element {
    let el = el.with_attr("type", verdict.as_str());
    match verdict {
        Verdict::Error(condition) => {
            el.with_child(StanzaError::new(condition).to_element(ns::SERVER))
        }
        Verdict::Valid | Verdict::Invalid => el,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xep_0185_example_key() {
        // XEP-0185 §4: the worked example.
        assert_eq!(
            dialback_key(
                b"s3cr3tf0rd14lb4ck",
                "xmpp.example.com",
                "example.org",
                "D60000229F"
            ),
            "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"
        );
        assert!(key_is_valid(
            b"s3cr3tf0rd14lb4ck",
            "xmpp.example.com",
            "example.org",
            "D60000229F",
            " 37C69B1CF07A3F67C04A5EF5902FA5114F2C76FE4A2686482BA5B89323075643\n"
        ));
        assert!(!key_is_valid(
            b"s3cr3tf0rd14lb4ck",
            "xmpp.example.com",
            "example.org",
            "D60000229G",
            "37c69b1cf07a3f67c04a5ef5902fa5114f2c76fe4a2686482ba5b89323075643"
        ));
    }

    #[test]
    fn elements_round_trip() {
        let all = [
            Dialback::ResultRequest {
                from: "a.example".into(),
                to: "b.example".into(),
                key: "k".into(),
            },
            Dialback::ResultAnswer {
                from: "b.example".into(),
                to: "a.example".into(),
                verdict: Verdict::Error(DefinedCondition::RemoteServerNotFound),
            },
            Dialback::VerifyRequest {
                from: "b.example".into(),
                to: "a.example".into(),
                id: "s1".into(),
                key: "k".into(),
            },
            Dialback::VerifyAnswer {
                from: "a.example".into(),
                to: "b.example".into(),
                id: "s1".into(),
                verdict: Verdict::Invalid,
            },
        ];
        for db in all {
            assert_eq!(Dialback::parse(&db.to_element()), Ok(Some(db.clone())));
        }
    }

    #[test]
    fn written_with_the_db_prefix() {
        let db = Dialback::ResultAnswer {
            from: "b.example".into(),
            to: "a&b".into(),
            verdict: Verdict::Error(DefinedCondition::ItemNotFound),
        };
        let text = String::from_utf8(db.to_bytes()).unwrap();
        assert!(text.starts_with("<db:result "), "{text}");
        assert!(text.contains("to=\"a&amp;b\""), "{text}");
        assert!(text.ends_with("</error></db:result>"), "{text}");
        let request = Dialback::VerifyRequest {
            from: "b".into(),
            to: "a".into(),
            id: "i".into(),
            key: "k<".into(),
        };
        let text = String::from_utf8(request.to_bytes()).unwrap();
        assert!(text.starts_with("<db:verify ") && text.ends_with(">k&lt;</db:verify>"));
    }

    #[test]
    fn malformed_and_foreign_elements() {
        let no_key = Element::new("result", DIALBACK_NS)
            .with_attr("from", "a")
            .with_attr("to", "b");
        assert!(Dialback::parse(&no_key).is_err());
        let no_id = Element::new("verify", DIALBACK_NS)
            .with_attr("from", "a")
            .with_attr("to", "b")
            .with_text("k");
        assert!(Dialback::parse(&no_id).is_err());
        let bad_type = no_key.clone().with_attr("type", "maybe");
        assert!(Dialback::parse(&bad_type).is_err());
        let other = Element::new("message", ns::SERVER);
        assert_eq!(Dialback::parse(&other), Ok(None));
        // An unknown child is ignored; domains are compared case-insensitively.
        let upper = Element::new("result", DIALBACK_NS)
            .with_attr("from", "A.Example")
            .with_attr("to", "b.example")
            .with_attr("type", "valid")
            .with_child(Element::new("x", "urn:example"));
        assert_eq!(
            Dialback::parse(&upper),
            Ok(Some(Dialback::ResultAnswer {
                from: "a.example".into(),
                to: "b.example".into(),
                verdict: Verdict::Valid
            }))
        );
    }
}
