//! What the reader is configured with and what it produces: its limits, the stream header,
//! the events, and the errors that end a stream.

use crate::element::Element;

/// Limits enforced while parsing, before anything is buffered beyond them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Maximum bytes of one top-level stanza (from its `<` to the end of its end tag),
    /// and of the stream header.
    pub max_stanza_bytes: usize,
    /// Maximum element nesting depth inside a stanza (the stanza itself is depth 1).
    pub max_depth: usize,
    /// Maximum attributes on one element, and namespace declarations in scope at once.
    pub max_attrs: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_stanza_bytes: 256 * 1024,
            max_depth: 64,
            max_attrs: 256,
        }
    }
}

/// The opening `<stream:stream>` tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamHeader {
    /// Attributes by qualified name (`to`, `from`, `version`, `id`, `xml:lang`).
    pub attrs: Vec<(String, String)>,
    /// The default namespace declared on the header (`jabber:client`, `jabber:server`,
    /// `jabber:component:accept`), if any.
    pub default_ns: Option<String>,
    /// Other namespace declarations on the header by prefix (e.g. `db` for dialback).
    pub prefixes: Vec<(String, String)>,
}

impl StreamHeader {
    /// The value of an attribute by qualified name.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the reader produces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamEvent {
    /// The stream header was read.
    Open(StreamHeader),
    /// A complete top-level element (stanza or nonza).
    Stanza(Element),
    /// `</stream:stream>` was read.
    Close,
}

/// A violation that ends the stream; [`XmlError::condition`] names the RFC 6120 §4.9.3 error.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// Syntactically broken XML, invalid UTF-8, a forbidden character, unbalanced tags.
    #[error("not well-formed: {0}")]
    NotWellFormed(String),
    /// A construct RFC 6120 §11.1 forbids: DTD, processing instruction, comment, entity
    /// declaration or a reference to an entity other than the five predefined ones.
    #[error("restricted XML: {0}")]
    RestrictedXml(String),
    /// A limit was exceeded (depth, attribute count).
    #[error("policy violation: {0}")]
    PolicyViolation(String),
    /// A top-level element (stanza) was larger than the stream allows: `policy-violation`
    /// with XEP-0478's `<stanza-too-big xmlns='urn:xmpp:errors'/>` beside it.
    #[error("policy violation: stanza larger than {limit} bytes")]
    StanzaTooBig {
        /// The stream's limit in bytes.
        limit: usize,
    },
    /// The root element is not `stream` in the streams namespace.
    #[error("invalid namespace: {0}")]
    InvalidNamespace(String),
    /// An undeclared prefix was used.
    #[error("bad namespace prefix: {0}")]
    BadNamespacePrefix(String),
    /// The XML declaration names an encoding other than UTF-8.
    #[error("unsupported encoding: {0}")]
    UnsupportedEncoding(String),
}

impl XmlError {
    /// The RFC 6120 §4.9.3 stream error condition element name.
    pub fn condition(&self) -> &'static str {
        match self {
            XmlError::NotWellFormed(_) => "not-well-formed",
            XmlError::RestrictedXml(_) => "restricted-xml",
            XmlError::PolicyViolation(_) | XmlError::StanzaTooBig { .. } => "policy-violation",
            XmlError::InvalidNamespace(_) => "invalid-namespace",
            XmlError::BadNamespacePrefix(_) => "bad-namespace-prefix",
            XmlError::UnsupportedEncoding(_) => "unsupported-encoding",
        }
    }
}
