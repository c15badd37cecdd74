//! What every payload parser in this crate shares: the error that tells "not mine" from "mine
//! but broken", and the small readers the parsers are built from.
//!
//! A payload type `T` parses with `T::try_from(&element)` and serialises with
//! `T::to_element()` (or `Element::from(t)`). Parsing is lenient: unknown attributes and
//! children are ignored. Serialising is strict: only what the specification defines, in the
//! order its schema gives.
//!
//! The error keeps the two failures apart so a dispatcher can offer an element to several
//! parsers: [`PayloadError::Mismatch`] means "try the next one", the other variants mean the
//! element was for this parser and the sender gets a stanza error (`bad-request`, or
//! `jid-malformed` for an unusable address).

use std::str::FromStr;

use jid::Jid;
use xmppd_xml::Element;

use crate::error::{DefinedCondition, StanzaError};

/// Why an element could not be read as a given payload.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Not this payload: another element name or namespace. The caller may offer the element
    /// to another parser; nothing is wrong with it as such.
    #[error("not the expected element")]
    Mismatch,
    /// The right element, but missing or malformed content; the text says what, and the
    /// sender is answered `bad-request` with it.
    #[error("invalid payload: {0}")]
    Invalid(String),
    /// The right element, but an attribute that must hold a JID does not (RFC 7622); the
    /// sender is answered `jid-malformed` (RFC 6120 §8.3.3.8) with this text.
    #[error("malformed JID: {0}")]
    JidMalformed(String),
}

impl PayloadError {
    /// An [`PayloadError::Invalid`] with this text.
    pub fn invalid(text: impl Into<String>) -> Self {
        PayloadError::Invalid(text.into())
    }

    /// Whether the element simply was not this payload.
    pub fn is_mismatch(&self) -> bool {
        matches!(self, PayloadError::Mismatch)
    }
}

impl From<PayloadError> for StanzaError {
    /// `Invalid` is `bad-request` and `JidMalformed` is `jid-malformed`, each with its text.
    /// A `Mismatch` that reaches a sender means nobody understood the payload: RFC 6120 §8.4
    /// answers that with `service-unavailable`.
    fn from(e: PayloadError) -> Self {
        match e {
            PayloadError::Mismatch => StanzaError::service_unavailable(),
            PayloadError::Invalid(text) => StanzaError::bad_request(text),
            PayloadError::JidMalformed(text) => {
                StanzaError::new(DefinedCondition::JidMalformed).with_text(text)
            }
        }
    }
}

/// `Ok` when `el` is `<name xmlns=ns>`, else [`PayloadError::Mismatch`].
pub(crate) fn expect(el: &Element, name: &str, ns: &str) -> Result<(), PayloadError> {
    if el.is(name, ns) {
        Ok(())
    } else {
        Err(PayloadError::Mismatch)
    }
}

/// The value of a required attribute, or `Invalid` naming it.
pub(crate) fn required_attr<'a>(el: &'a Element, attr: &str) -> Result<&'a str, PayloadError> {
    el.attr(attr).ok_or_else(|| {
        PayloadError::invalid(format!("<{}/> needs a '{attr}' attribute", el.name()))
    })
}

/// An optional attribute holding a JID; a value that is not one is `JidMalformed`.
pub(crate) fn jid_attr(el: &Element, attr: &str) -> Result<Option<Jid>, PayloadError> {
    el.attr(attr).map(|v| parse_jid(el, attr, v)).transpose()
}

/// A required attribute holding a JID.
pub(crate) fn required_jid_attr(el: &Element, attr: &str) -> Result<Jid, PayloadError> {
    parse_jid(el, attr, required_attr(el, attr)?)
}

fn parse_jid(el: &Element, attr: &str, value: &str) -> Result<Jid, PayloadError> {
    Jid::new(value).map_err(|e| {
        PayloadError::JidMalformed(format!(
            "'{attr}' of <{}/> is not a valid JID: {e}",
            el.name()
        ))
    })
}

/// The text of an element that holds a number (`xs:int` ≥ 0 or similar), surrounding white
/// space allowed.
pub(crate) fn number<T: FromStr>(el: &Element) -> Result<T, PayloadError> {
    let text = el.text();
    text.trim().parse().map_err(|_| {
        PayloadError::invalid(format!(
            "<{}/> must hold a non-negative integer, not '{text}'",
            el.name()
        ))
    })
}

/// An attribute that holds a number, if present.
pub(crate) fn number_attr<T: FromStr>(el: &Element, attr: &str) -> Result<Option<T>, PayloadError> {
    el.attr(attr)
        .map(|v| {
            v.trim().parse().map_err(|_| {
                PayloadError::invalid(format!(
                    "'{attr}' of <{}/> must be a non-negative integer, not '{v}'",
                    el.name()
                ))
            })
        })
        .transpose()
}

/// An `xs:boolean` (XML Schema Part 2 §3.2.2): `true`/`1` or `false`/`0`.
pub fn parse_bool(value: &str) -> Option<bool> {
    match value.trim() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// `Element::from(payload)` and `Element::from(&payload)` for types with `to_element()`.
macro_rules! into_element {
    ($($ty:ty),* $(,)?) => {
        $(
            impl From<$ty> for xmppd_xml::Element {
                fn from(payload: $ty) -> Self {
                    payload.to_element()
                }
            }

            impl From<&$ty> for xmppd_xml::Element {
                fn from(payload: &$ty) -> Self {
                    payload.to_element()
                }
            }
        )*
    };
}
pub(crate) use into_element;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_become_the_stanza_errors_they_name() {
        let e = StanzaError::from(PayloadError::invalid("<x/> needs a 'type' attribute"));
        assert_eq!(e.condition, DefinedCondition::BadRequest);
        assert_eq!(e.text.as_deref(), Some("<x/> needs a 'type' attribute"));
        let e = StanzaError::from(PayloadError::JidMalformed("bad".into()));
        assert_eq!(e.condition, DefinedCondition::JidMalformed);
        let e = StanzaError::from(PayloadError::Mismatch);
        assert_eq!(e.condition, DefinedCondition::ServiceUnavailable);
    }

    #[test]
    fn booleans_follow_xml_schema() {
        assert_eq!(parse_bool("1"), Some(true));
        assert_eq!(parse_bool("true"), Some(true));
        assert_eq!(parse_bool(" 0 "), Some(false));
        assert_eq!(parse_bool("false"), Some(false));
        assert_eq!(parse_bool("yes"), None);
        assert_eq!(parse_bool("True"), None);
    }
}
