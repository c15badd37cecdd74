//! Stanza errors (RFC 6120 §8.3).

use xmppd_xml::Element;

use crate::ns;

/// The `type` attribute of `<error/>` (RFC 6120 §8.3.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    /// Retry after providing credentials.
    Auth,
    /// Do not retry (the error cannot be remedied).
    Cancel,
    /// Proceed (the condition was only a warning).
    Continue,
    /// Retry after changing the data sent.
    Modify,
    /// Retry after waiting (the error is temporary).
    Wait,
}

impl ErrorType {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::Auth => "auth",
            ErrorType::Cancel => "cancel",
            ErrorType::Continue => "continue",
            ErrorType::Modify => "modify",
            ErrorType::Wait => "wait",
        }
    }
}

macro_rules! conditions {
    ($($variant:ident => $name:literal, $ty:ident;)*) => {
        /// A defined stanza error condition (RFC 6120 §8.3.3).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum DefinedCondition {
            $(
                #[doc = concat!("`<", $name, "/>`")]
                $variant,
            )*
        }

        impl DefinedCondition {
            /// The element name of the condition.
            pub fn as_str(self) -> &'static str {
                match self { $(DefinedCondition::$variant => $name,)* }
            }

            /// The error type RFC 6120 §8.3.3 gives in its examples for this condition.
            pub fn default_type(self) -> ErrorType {
                match self { $(DefinedCondition::$variant => ErrorType::$ty,)* }
            }

            /// The condition with this element name.
            pub fn from_name(name: &str) -> Option<Self> {
                match name { $($name => Some(DefinedCondition::$variant),)* _ => None }
            }
        }
    };
}

conditions! {
    BadRequest => "bad-request", Modify;
    Conflict => "conflict", Cancel;
    FeatureNotImplemented => "feature-not-implemented", Cancel;
    Forbidden => "forbidden", Auth;
    Gone => "gone", Cancel;
    InternalServerError => "internal-server-error", Cancel;
    ItemNotFound => "item-not-found", Cancel;
    JidMalformed => "jid-malformed", Modify;
    NotAcceptable => "not-acceptable", Modify;
    NotAllowed => "not-allowed", Cancel;
    NotAuthorized => "not-authorized", Auth;
    PolicyViolation => "policy-violation", Modify;
    RecipientUnavailable => "recipient-unavailable", Wait;
    Redirect => "redirect", Modify;
    RegistrationRequired => "registration-required", Auth;
    RemoteServerNotFound => "remote-server-not-found", Cancel;
    RemoteServerTimeout => "remote-server-timeout", Wait;
    ResourceConstraint => "resource-constraint", Wait;
    ServiceUnavailable => "service-unavailable", Cancel;
    SubscriptionRequired => "subscription-required", Auth;
    UndefinedCondition => "undefined-condition", Cancel;
    UnexpectedRequest => "unexpected-request", Wait;
}

/// The longest error text sent or logged, in bytes.
pub const MAX_TEXT: usize = 256;

/// `text` cut to [`MAX_TEXT`] bytes at a character boundary, marked with `…` when cut.
pub fn bounded(mut text: String) -> String {
    if text.len() > MAX_TEXT {
        let mut end = MAX_TEXT - '…'.len_utf8();
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

/// A stanza error to return to the sender.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StanzaError {
    /// How the sender may proceed.
    pub error_type: ErrorType,
    /// What went wrong.
    pub condition: DefinedCondition,
    /// Human-readable detail (English).
    pub text: Option<String>,
    /// An application-specific condition (RFC 6120 §8.3.4), e.g. XEP-0191's `<blocked/>`;
    /// boxed so that errors carried in `Result`s stay small.
    pub app: Option<Box<Element>>,
}

impl StanzaError {
    /// An error with the condition's customary type and no text.
    pub fn new(condition: DefinedCondition) -> Self {
        StanzaError {
            error_type: condition.default_type(),
            condition,
            text: None,
            app: None,
        }
    }

    /// Adds a human-readable text, cut to [`MAX_TEXT`] bytes (it may quote what the sender
    /// sent).
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(bounded(text.into()));
        self
    }

    /// Adds an application-specific condition element (RFC 6120 §8.3.4).
    pub fn with_app(mut self, condition: Element) -> Self {
        self.app = Some(Box::new(condition));
        self
    }

    /// `<service-unavailable/>`: the usual answer for what nobody handles.
    pub fn service_unavailable() -> Self {
        Self::new(DefinedCondition::ServiceUnavailable)
    }

    /// `<bad-request/>` with a text saying what is wrong.
    pub fn bad_request(text: impl Into<String>) -> Self {
        Self::new(DefinedCondition::BadRequest).with_text(text)
    }

    /// The `<error/>` child element, in `content_ns` (the stanza's namespace).
    pub fn to_element(&self, content_ns: &str) -> Element {
        let mut error =
            Element::new("error", content_ns).with_attr("type", self.error_type.as_str());
        error.push_child(Element::new(self.condition.as_str(), ns::STANZAS));
        if let Some(text) = &self.text {
            error.push_child(
                Element::new("text", ns::STANZAS)
                    .with_attr("xml:lang", "en")
                    .with_text(text),
            );
        }
        // §8.3.2: the application-specific condition comes after the defined one and the text.
        if let Some(app) = &self.app {
            error.push_child(Element::clone(app));
        }
        error
    }

    /// Reads an `<error/>` element leniently: an unknown condition becomes
    /// `undefined-condition`, an unknown type the condition's default.
    pub fn from_element(error: &Element) -> Self {
        let condition = error
            .children()
            .filter(|c| c.ns() == ns::STANZAS && c.name() != "text")
            .find_map(|c| DefinedCondition::from_name(c.name()))
            .unwrap_or(DefinedCondition::UndefinedCondition);
        let error_type = match error.attr("type") {
            Some("auth") => ErrorType::Auth,
            Some("cancel") => ErrorType::Cancel,
            Some("continue") => ErrorType::Continue,
            Some("modify") => ErrorType::Modify,
            Some("wait") => ErrorType::Wait,
            _ => condition.default_type(),
        };
        let text = error.child("text", ns::STANZAS).map(Element::text);
        let app = error
            .children()
            .find(|c| c.ns() != ns::STANZAS)
            .map(|c| Box::new(c.clone()));
        StanzaError {
            error_type,
            condition,
            text,
            app,
        }
    }
}

impl std::fmt::Display for StanzaError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({})",
            self.condition.as_str(),
            self.error_type.as_str()
        )?;
        if let Some(t) = &self.text {
            write!(f, ": {t}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_element() {
        let err = StanzaError::new(DefinedCondition::ItemNotFound).with_text("no such user");
        let el = err.to_element(ns::CLIENT);
        assert_eq!(el.attr("type"), Some("cancel"));
        assert!(el.has_child("item-not-found", ns::STANZAS));
        assert_eq!(StanzaError::from_element(&el), err);
    }

    #[test]
    fn application_condition_follows_the_defined_one() {
        let blocked = Element::new("blocked", "urn:xmpp:blocking:errors");
        let err = StanzaError::new(DefinedCondition::NotAcceptable).with_app(blocked.clone());
        let el = err.to_element(ns::CLIENT);
        let names: Vec<_> = el.children().map(Element::name).collect();
        assert_eq!(names, ["not-acceptable", "blocked"]);
        assert_eq!(StanzaError::from_element(&el).app, Some(Box::new(blocked)));
    }

    #[test]
    fn unknown_condition_is_undefined() {
        let el = Element::new("error", ns::CLIENT)
            .with_attr("type", "weird")
            .with_child(Element::new("frobnicated", ns::STANZAS));
        let err = StanzaError::from_element(&el);
        assert_eq!(err.condition, DefinedCondition::UndefinedCondition);
        assert_eq!(err.error_type, ErrorType::Cancel);
    }
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    #[test]
    fn long_texts_are_cut_at_a_character_boundary() {
        assert_eq!(bounded("short".into()), "short");
        let long = "é".repeat(400);
        let cut = bounded(long);
        assert!(cut.len() <= MAX_TEXT && cut.ends_with('…'), "{}", cut.len());
        let e = StanzaError::bad_request("x".repeat(10_000));
        assert!(e.text.unwrap().len() <= MAX_TEXT);
        let s = crate::stream_error::StreamError::with_text(
            crate::stream_error::StreamErrorCondition::UnsupportedStanzaType,
            "y".repeat(20_000),
        );
        assert!(s.text.unwrap().len() <= MAX_TEXT);
    }
}
