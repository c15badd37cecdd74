//! XEP-0198: Stream Management — the nonzas.
//!
//! These elements sit at the stream's top level beside stanzas but are not stanzas: they are
//! never counted or acknowledged themselves (§1). A client sends `<enable/>`, `<resume/>`,
//! `<r/>` and `<a/>`; the server answers with `<enabled/>`, `<resumed/>`, `<failed/>`, and
//! sends `<r/>` and `<a/>` of its own.
//!
//! Sequence numbers are `xs:unsignedInt` and wrap from 2^32 − 1 to 0 (§4): they are `u32`
//! here and every difference between two of them is taken with wrapping arithmetic.

use xmppd_xml::Element;

use crate::{DefinedCondition, StanzaError, ns};

/// What a client asks of stream management.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SmRequest {
    /// `<enable/>` (§3): acknowledgements from now on, resumable if `resume`.
    Enable {
        /// Whether the client wants to be able to resume the session.
        resume: bool,
        /// The client's preferred maximum resumption time in seconds.
        max: Option<u32>,
    },
    /// `<resume previd h/>` (§5): carry the session `previd` on this stream; the client
    /// handled `h` of the stanzas the server sent.
    Resume {
        /// The SM-ID of the session to resume.
        previd: String,
        /// Stanzas from the server the client handled.
        h: u32,
    },
    /// `<r/>`: the client asks how many of its stanzas the server handled.
    Request,
    /// `<a h/>`: the client handled `h` stanzas from the server.
    Ack {
        /// Stanzas from the server the client handled.
        h: u32,
    },
}

/// Why an element in the stream management namespace could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SmParseError {
    /// Not one of the elements a client sends.
    #[error("<{0}/> is not a stream management request")]
    Unknown(String),
    /// An attribute is missing or not of its schema type (§8).
    #[error("{0}")]
    Invalid(String),
}

impl SmRequest {
    /// Reads one element of the `urn:xmpp:sm:3` namespace sent by a client.
    pub fn parse(el: &Element) -> Result<SmRequest, SmParseError> {
        if el.ns() != ns::SM {
            return Err(SmParseError::Unknown(el.name().to_owned()));
        }
        match el.name() {
            "enable" => Ok(SmRequest::Enable {
                resume: boolean(el.attr("resume"))?,
                max: el.attr("max").map(|v| counter("max", v)).transpose()?,
            }),
            "resume" => {
                let previd = el
                    .attr("previd")
                    .filter(|p| !p.is_empty())
                    .ok_or_else(|| SmParseError::Invalid("<resume/> needs a 'previd'".into()))?;
                Ok(SmRequest::Resume {
                    previd: previd.to_owned(),
                    h: required_h(el)?,
                })
            }
            "r" => Ok(SmRequest::Request),
            "a" => Ok(SmRequest::Ack { h: required_h(el)? }),
            other => Err(SmParseError::Unknown(other.to_owned())),
        }
    }
}

/// An `xs:boolean` (§3: "true" or "1"), absent meaning false.
fn boolean(value: Option<&str>) -> Result<bool, SmParseError> {
    match value.map(str::trim) {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(other) => Err(SmParseError::Invalid(format!(
            "'resume' must be a boolean, not {other:?}"
        ))),
    }
}

fn required_h(el: &Element) -> Result<u32, SmParseError> {
    let h = el
        .attr("h")
        .ok_or_else(|| SmParseError::Invalid(format!("<{}/> needs an 'h'", el.name())))?;
    counter("h", h)
}

/// An `xs:unsignedInt`: 0 to 2^32 − 1, nothing else.
fn counter(name: &str, value: &str) -> Result<u32, SmParseError> {
    value.trim().parse::<u32>().map_err(|_| {
        SmParseError::Invalid(format!(
            "'{name}' must be an integer from 0 to 4294967295, not {value:?}"
        ))
    })
}

/// `<enabled/>`: with `id` and `resume='true'` when the session can be resumed, and the
/// resumption window in seconds.
pub fn enabled(id: Option<&str>, max: Option<u32>) -> Element {
    let mut el = Element::new("enabled", ns::SM);
    if let Some(id) = id {
        el.set_attr("id", id);
        el.set_attr("resume", "true");
    }
    if let Some(max) = max {
        el.set_attr("max", max.to_string());
    }
    el
}

/// `<resumed previd h/>`: `h` stanzas from the client were handled on the former stream.
pub fn resumed(previd: &str, h: u32) -> Element {
    Element::new("resumed", ns::SM)
        .with_attr("previd", previd)
        .with_attr("h", h.to_string())
}

/// `<failed/>` with a stanza error condition (§6) and, when known, how many of the client's
/// stanzas the server handled (§5, so that the client resends only the others).
pub fn failed(error: &StanzaError, h: Option<u32>) -> Element {
    let mut el = Element::new("failed", ns::SM);
    if let Some(h) = h {
        el.set_attr("h", h.to_string());
    }
    el.push_child(Element::new(error.condition.as_str(), ns::STANZAS));
    if let Some(app) = &error.app {
        el.push_child((**app).clone());
    }
    if let Some(text) = &error.text {
        el.push_child(
            Element::new("text", ns::STANZAS)
                .with_attr("xml:lang", "en")
                .with_text(text),
        );
    }
    el
}

/// `<failed/>` with `unexpected-request` and a reason.
pub fn unexpected(text: &str) -> Element {
    failed(
        &StanzaError::new(DefinedCondition::UnexpectedRequest).with_text(text),
        None,
    )
}

/// `<handled-count-too-high h send-count/>` (§6): the peer acknowledged `h` stanzas but only
/// `sent` were sent.
pub fn handled_count_too_high(h: u32, sent: u32) -> Element {
    Element::new("handled-count-too-high", ns::SM)
        .with_attr("h", h.to_string())
        .with_attr("send-count", sent.to_string())
}

/// `<a h/>`.
pub fn ack(h: u32) -> Element {
    Element::new("a", ns::SM).with_attr("h", h.to_string())
}

/// `<r/>`, serialised: the server sends it often, so it is built once.
pub const REQUEST_BYTES: &[u8] = b"<r xmlns='urn:xmpp:sm:3'/>";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::element as parse;

    #[test]
    fn requests_parse() {
        assert_eq!(
            SmRequest::parse(&parse(
                "<enable xmlns='urn:xmpp:sm:3' resume='1' max='60'/>"
            )),
            Ok(SmRequest::Enable {
                resume: true,
                max: Some(60)
            })
        );
        assert_eq!(
            SmRequest::parse(&parse("<enable xmlns='urn:xmpp:sm:3'/>")),
            Ok(SmRequest::Enable {
                resume: false,
                max: None
            })
        );
        assert_eq!(
            SmRequest::parse(&parse(
                "<resume xmlns='urn:xmpp:sm:3' previd='x' h='4294967295'/>"
            )),
            Ok(SmRequest::Resume {
                previd: "x".into(),
                h: u32::MAX
            })
        );
        assert_eq!(
            SmRequest::parse(&parse("<r xmlns='urn:xmpp:sm:3'/>")),
            Ok(SmRequest::Request)
        );
        assert_eq!(
            SmRequest::parse(&parse("<a xmlns='urn:xmpp:sm:3' h='7'/>")),
            Ok(SmRequest::Ack { h: 7 })
        );
    }

    #[test]
    fn bad_requests_are_named() {
        for (xml, unknown) in [
            ("<a xmlns='urn:xmpp:sm:3' h='4294967296'/>", false),
            ("<a xmlns='urn:xmpp:sm:3' h='-1'/>", false),
            ("<a xmlns='urn:xmpp:sm:3'/>", false),
            ("<resume xmlns='urn:xmpp:sm:3' h='1'/>", false),
            ("<resume xmlns='urn:xmpp:sm:3' previd='' h='1'/>", false),
            ("<enable xmlns='urn:xmpp:sm:3' resume='yes'/>", false),
            ("<enable xmlns='urn:xmpp:sm:3' max='soon'/>", false),
            ("<enabled xmlns='urn:xmpp:sm:3'/>", true),
            ("<a xmlns='urn:xmpp:sm:2' h='1'/>", true),
        ] {
            let result = SmRequest::parse(&parse(xml));
            match result {
                Err(SmParseError::Unknown(_)) => assert!(unknown, "{xml}"),
                Err(SmParseError::Invalid(_)) => assert!(!unknown, "{xml}"),
                Ok(r) => panic!("{xml} parsed as {r:?}"),
            }
        }
    }

    #[test]
    fn answers_serialise() {
        let el = enabled(Some("abc"), Some(300));
        assert_eq!(el.attr("id"), Some("abc"));
        assert_eq!(el.attr("resume"), Some("true"));
        assert_eq!(el.attr("max"), Some("300"));
        assert_eq!(enabled(None, None).attr("resume"), None);
        let f = failed(
            &StanzaError::new(DefinedCondition::ItemNotFound),
            Some(u32::MAX),
        );
        assert_eq!(f.attr("h"), Some("4294967295"));
        assert!(f.has_child("item-not-found", ns::STANZAS));
        assert_eq!(resumed("p", 3).attr("h"), Some("3"));
        assert_eq!(ack(0).attr("h"), Some("0"));
    }
}
