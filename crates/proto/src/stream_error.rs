//! Stream errors (RFC 6120 §4.9): they end the stream.

use xmppd_xml::Element;

use crate::ns;

macro_rules! stream_conditions {
    ($($variant:ident => $name:literal;)*) => {
        /// A defined stream error condition (RFC 6120 §4.9.3).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum StreamErrorCondition {
            $(
                #[doc = concat!("`<", $name, "/>`")]
                $variant,
            )*
        }

        impl StreamErrorCondition {
            /// The element name of the condition.
            pub fn as_str(self) -> &'static str {
                match self { $(StreamErrorCondition::$variant => $name,)* }
            }

            /// The condition with this element name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(StreamErrorCondition::$variant),)* _ => None }
            }
        }
    };
}

stream_conditions! {
    BadFormat => "bad-format";
    BadNamespacePrefix => "bad-namespace-prefix";
    Conflict => "conflict";
    ConnectionTimeout => "connection-timeout";
    HostGone => "host-gone";
    HostUnknown => "host-unknown";
    ImproperAddressing => "improper-addressing";
    InternalServerError => "internal-server-error";
    InvalidFrom => "invalid-from";
    InvalidNamespace => "invalid-namespace";
    InvalidXml => "invalid-xml";
    NotAuthorized => "not-authorized";
    NotWellFormed => "not-well-formed";
    PolicyViolation => "policy-violation";
    RemoteConnectionFailed => "remote-connection-failed";
    Reset => "reset";
    ResourceConstraint => "resource-constraint";
    RestrictedXml => "restricted-xml";
    SeeOtherHost => "see-other-host";
    SystemShutdown => "system-shutdown";
    UndefinedCondition => "undefined-condition";
    UnsupportedEncoding => "unsupported-encoding";
    UnsupportedFeature => "unsupported-feature";
    UnsupportedStanzaType => "unsupported-stanza-type";
    UnsupportedVersion => "unsupported-version";
}

/// A stream error: sent as `<stream:error>` just before `</stream:stream>`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("stream error {}{}", condition.as_str(), text.as_deref().map(|t| format!(": {t}")).unwrap_or_default())]
pub struct StreamError {
    /// The defined condition.
    pub condition: StreamErrorCondition,
    /// Human-readable detail (English).
    pub text: Option<String>,
    /// An application-specific condition (RFC 6120 §4.9.4), such as XEP-0198's
    /// `<handled-count-too-high/>`.
    pub app: Option<Box<Element>>,
}

impl StreamError {
    /// A stream error without text.
    pub fn new(condition: StreamErrorCondition) -> Self {
        StreamError {
            condition,
            text: None,
            app: None,
        }
    }

    /// A stream error with a text saying what happened. The text is cut to
    /// [`crate::error::MAX_TEXT`] bytes: texts quote what a peer sent (an unknown element's
    /// name), and an error must never echo a peer's bytes back or into the log at full size.
    pub fn with_text(condition: StreamErrorCondition, text: impl Into<String>) -> Self {
        StreamError {
            condition,
            text: Some(crate::error::bounded(text.into())),
            app: None,
        }
    }

    /// The same error with an application-specific condition element.
    pub fn with_app(mut self, app: Element) -> Self {
        self.app = Some(Box::new(app));
        self
    }

    /// The `<stream:error>` element.
    pub fn to_element(&self) -> Element {
        let mut el = Element::new("error", ns::STREAM);
        el.push_child(Element::new(self.condition.as_str(), ns::STREAMS));
        if let Some(app) = &self.app {
            el.push_child((**app).clone());
        }
        if let Some(text) = &self.text {
            el.push_child(
                Element::new("text", ns::STREAMS)
                    .with_attr("xml:lang", "en")
                    .with_text(text),
            );
        }
        el
    }

    /// The error followed by the closing stream tag, ready to write into a stream whose
    /// `stream:` prefix is bound.
    pub fn to_closing_bytes(&self) -> Vec<u8> {
        let mut out = b"<stream:error>".to_vec();
        for child in self.to_element().children() {
            child.write_to(&mut out, ns::STREAM);
        }
        out.extend_from_slice(b"</stream:error></stream:stream>");
        out
    }

    /// Reads a `<stream:error>` element leniently.
    pub fn from_element(el: &Element) -> Self {
        let condition = el
            .children()
            .filter(|c| c.ns() == ns::STREAMS && c.name() != "text")
            .find_map(|c| StreamErrorCondition::from_name(c.name()))
            .unwrap_or(StreamErrorCondition::UndefinedCondition);
        StreamError {
            condition,
            text: el.child("text", ns::STREAMS).map(Element::text),
            app: el
                .children()
                .find(|c| c.ns() != ns::STREAMS)
                .map(|c| Box::new(c.clone())),
        }
    }
}

impl From<&xmppd_xml::XmlError> for StreamError {
    fn from(e: &xmppd_xml::XmlError) -> Self {
        use xmppd_xml::XmlError as X;
        let condition = match e {
            X::StanzaTooBig { .. } => {
                return StreamError::with_text(
                    StreamErrorCondition::PolicyViolation,
                    e.to_string(),
                )
                .with_app(Element::new("stanza-too-big", ns::XMPP_ERRORS));
            }
            X::NotWellFormed(_) => StreamErrorCondition::NotWellFormed,
            X::RestrictedXml(_) => StreamErrorCondition::RestrictedXml,
            X::PolicyViolation(_) => StreamErrorCondition::PolicyViolation,
            X::InvalidNamespace(_) => StreamErrorCondition::InvalidNamespace,
            X::BadNamespacePrefix(_) => StreamErrorCondition::BadNamespacePrefix,
            X::UnsupportedEncoding(_) => StreamErrorCondition::UnsupportedEncoding,
        };
        StreamError::with_text(condition, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_bytes_use_the_stream_prefix() {
        let e = StreamError::with_text(StreamErrorCondition::Conflict, "replaced");
        let s = String::from_utf8(e.to_closing_bytes()).unwrap();
        assert_eq!(
            s,
            "<stream:error><conflict xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>\
             <text xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\" xml:lang=\"en\">replaced</text>\
             </stream:error></stream:stream>"
        );
    }

    /// XEP-0478 §3: a stanza over the announced limit.
    #[test]
    fn a_stanza_too_big_carries_its_application_condition() {
        let e = StreamError::from(&xmppd_xml::XmlError::StanzaTooBig { limit: 10_000 });
        let s = String::from_utf8(e.to_closing_bytes()).unwrap();
        assert_eq!(
            s,
            "<stream:error><policy-violation xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>\
             <stanza-too-big xmlns=\"urn:xmpp:errors\"/>\
             <text xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\" xml:lang=\"en\">\
             policy violation: stanza larger than 10000 bytes</text>\
             </stream:error></stream:stream>"
        );
    }

    #[test]
    fn xml_errors_map_to_their_conditions() {
        let e = xmppd_xml::XmlError::RestrictedXml("comment".into());
        assert_eq!(
            StreamError::from(&e).condition,
            StreamErrorCondition::RestrictedXml
        );
    }
}
