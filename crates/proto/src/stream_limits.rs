//! XEP-0478: Stream Limits Advertisement.
//!
//! `<limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>10000</max-bytes>
//! <idle-seconds>1800</idle-seconds></limits>` in the responding entity's stream features
//! tells the initiating entity what it will accept on this stream (§2): the largest top-level
//! element in bytes, and how long the stream may be silent before liveness checks. Both
//! children are optional (0.2.0), and the limits may change with each features element, such
//! as after authentication. A sender keeps a stanza that would pass `max-bytes` off the stream
//! and bounces it with `policy-violation` without a `by` (§3).

use xmppd_xml::Element;

use crate::ns;
use crate::payload::{PayloadError, expect};

/// The limits announced on a stream; `None` for a limit not announced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StreamLimits {
    /// The largest first-level element accepted, in bytes.
    pub max_bytes: Option<u64>,
    /// Seconds of silence from the initiating entity after which it may be checked or closed.
    pub idle_seconds: Option<u64>,
}

impl StreamLimits {
    /// The `<limits/>` stream feature.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("limits", ns::STREAM_LIMITS);
        if let Some(max) = self.max_bytes {
            el.push_child(Element::new("max-bytes", ns::STREAM_LIMITS).with_text(max.to_string()));
        }
        if let Some(idle) = self.idle_seconds {
            el.push_child(
                Element::new("idle-seconds", ns::STREAM_LIMITS).with_text(idle.to_string()),
            );
        }
        el
    }

    /// The limits in a `<stream:features/>` element; none announced when it has no
    /// `<limits/>` or an unreadable one (then nothing is known of the peer's limits).
    pub fn from_features(features: &Element) -> StreamLimits {
        features
            .children()
            .find_map(|c| StreamLimits::try_from(c).ok())
            .unwrap_or_default()
    }
}

fn number(el: &Element, name: &str) -> Result<Option<u64>, PayloadError> {
    let Some(child) = el.child(name, ns::STREAM_LIMITS) else {
        return Ok(None);
    };
    let text = child.text();
    text.trim()
        .parse()
        .map(Some)
        .map_err(|_| PayloadError::invalid(format!("<{name}/> is not a number: {text:.32}")))
}

impl TryFrom<&Element> for StreamLimits {
    type Error = PayloadError;

    fn try_from(el: &Element) -> Result<Self, Self::Error> {
        expect(el, "limits", ns::STREAM_LIMITS)?;
        Ok(StreamLimits {
            max_bytes: number(el, "max-bytes")?,
            idle_seconds: number(el, "idle-seconds")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(xml_children: Vec<Element>) -> Element {
        let mut el = Element::new("limits", ns::STREAM_LIMITS);
        for c in xml_children {
            el.push_child(c);
        }
        el
    }

    fn child(name: &str, text: &str) -> Element {
        Element::new(name, ns::STREAM_LIMITS).with_text(text)
    }

    #[test]
    fn round_trip_with_both_children() {
        let l = StreamLimits {
            max_bytes: Some(10_000),
            idle_seconds: Some(1800),
        };
        let mut out = Vec::new();
        l.to_element().write_to(&mut out, ns::CLIENT);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "<limits xmlns=\"urn:xmpp:stream-limits:0\"><max-bytes>10000</max-bytes>\
             <idle-seconds>1800</idle-seconds></limits>"
        );
        assert_eq!(StreamLimits::try_from(&l.to_element()).unwrap(), l);
    }

    #[test]
    fn children_are_optional_and_unknown_ones_ignored() {
        let el = limits(vec![child("max-bytes", " 262144 "), child("future", "x")]);
        assert_eq!(
            StreamLimits::try_from(&el).unwrap(),
            StreamLimits {
                max_bytes: Some(262_144),
                idle_seconds: None,
            }
        );
        assert_eq!(
            StreamLimits::try_from(&limits(vec![])).unwrap(),
            StreamLimits::default()
        );
    }

    #[test]
    fn a_bad_number_is_invalid_and_another_element_a_mismatch() {
        let bad = limits(vec![child("max-bytes", "-1")]);
        assert!(matches!(
            StreamLimits::try_from(&bad),
            Err(PayloadError::Invalid(_))
        ));
        let other = Element::new("limits", "urn:example");
        assert!(matches!(
            StreamLimits::try_from(&other),
            Err(PayloadError::Mismatch)
        ));
    }

    #[test]
    fn found_among_the_features() {
        let features = Element::new("features", ns::STREAM)
            .with_child(Element::new("bind", ns::BIND))
            .with_child(limits(vec![child("max-bytes", "512")]));
        assert_eq!(StreamLimits::from_features(&features).max_bytes, Some(512));
        let none = Element::new("features", ns::STREAM);
        assert_eq!(StreamLimits::from_features(&none), StreamLimits::default());
    }
}
