//! Start-tag parsing, namespace resolution and stanza assembly.
//!
//! The reader hands over complete tags as `&str`; this module turns them into [`Element`]s.
//! Namespace bindings live in one vector of `(prefix, namespace)` pairs (the default namespace
//! uses the empty prefix); each open element remembers the vector's length when it was opened
//! and truncates back to it when it closes. The stream header's bindings sit at the bottom and
//! are inherited by every stanza, which is how `<message/>` inside
//! `<stream:stream xmlns='jabber:client'>` ends up in `jabber:client`.
//!
//! Attribute syntax is parsed here rather than with quick-xml's attribute iterator, because that
//! iterator is deliberately lenient (no whitespace required between attributes, any bytes in a
//! key) and a differential between our parser and a peer's is exactly what we must avoid.

use std::borrow::Cow;
use std::ops::Range;

use crate::STREAM_NS;
use crate::element::{Element, XML_NS, intern};
use crate::reader::{Limits, StreamHeader, XmlError};
use crate::validate::{is_ws, split_qname, unescape};

/// The namespace reserved for `xmlns` declarations; it can be bound to no prefix.
const XMLNS_NS: &str = "http://www.w3.org/2000/xmlns/";

fn nwf(msg: impl Into<String>) -> XmlError {
    XmlError::NotWellFormed(msg.into())
}

/// Parses `Name S? (S Attribute)* S?` — the inside of a start tag without `<`, `>` and `/`.
///
/// Returns the raw name's length; attributes go to `attrs` as (key range, normalised value).
/// `max_attrs` is enforced while parsing so a tag with a million attributes stops early.
pub(crate) fn parse_tag(
    content: &str,
    attrs: &mut Vec<(Range<usize>, String)>,
    max_attrs: usize,
) -> Result<usize, XmlError> {
    attrs.clear();
    let bytes = content.as_bytes();
    let name_len = bytes.iter().position(|&b| is_ws(b)).unwrap_or(bytes.len());
    let mut i = name_len;
    loop {
        let ws_start = i;
        while i < bytes.len() && is_ws(bytes[i]) {
            i += 1;
        }
        if i == bytes.len() {
            return Ok(name_len);
        }
        if i == ws_start {
            return Err(nwf("missing whitespace between attributes"));
        }
        let key_start = i;
        while i < bytes.len() && !is_ws(bytes[i]) && bytes[i] != b'=' {
            i += 1;
        }
        let key = key_start..i;
        while i < bytes.len() && is_ws(bytes[i]) {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            return Err(nwf("attribute without '='"));
        }
        i += 1;
        while i < bytes.len() && is_ws(bytes[i]) {
            i += 1;
        }
        let quote = match bytes.get(i) {
            Some(&q @ (b'"' | b'\'')) => q,
            _ => return Err(nwf("attribute value not quoted")),
        };
        i += 1;
        let len = memchr::memchr(quote, &bytes[i..])
            .ok_or_else(|| nwf("unterminated attribute value"))?;
        let raw = content.get(i..i + len).unwrap_or_default();
        i += len + 1;
        if attrs.len() >= max_attrs {
            return Err(XmlError::PolicyViolation(format!(
                "more than {max_attrs} attributes"
            )));
        }
        attrs.push((key, unescape(raw, true)?.into_owned()));
    }
}

/// Checks the inside of an XML declaration (between `<?` and `?>`, starting with `xml`).
///
/// `version` must be `1.0` (RFC 6120 §11.6 requires XML 1.0); `encoding`, if present, must name
/// UTF-8 (§11.6 again; anything else is `unsupported-encoding`); `standalone` may follow. The
/// order is fixed by the XML grammar and nothing else may appear.
pub(crate) fn check_decl(content: &str) -> Result<(), XmlError> {
    if content.contains('&') {
        return Err(nwf("reference in XML declaration"));
    }
    let mut attrs = Vec::new();
    let name_len = parse_tag(content, &mut attrs, usize::MAX)?;
    if content.get(..name_len) != Some("xml") {
        return Err(XmlError::RestrictedXml("processing instruction".into()));
    }
    let mut expected: &[&str] = &["version", "encoding", "standalone"];
    for (i, (key, value)) in attrs.iter().enumerate() {
        let key = content.get(key.clone()).unwrap_or_default();
        let Some(pos) = expected.iter().position(|k| *k == key) else {
            return Err(nwf(format!("unexpected {key:?} in XML declaration")));
        };
        if i == 0 && key != "version" {
            return Err(nwf("XML declaration without version"));
        }
        expected = expected.get(pos + 1..).unwrap_or_default();
        match key {
            "version" if value != "1.0" => return Err(nwf(format!("XML version {value:?}"))),
            "encoding" if !value.eq_ignore_ascii_case("UTF-8") => {
                return Err(XmlError::UnsupportedEncoding(value.clone()));
            }
            "standalone" if value != "yes" && value != "no" => {
                return Err(nwf(format!("standalone={value:?}")));
            }
            _ => {}
        }
    }
    if attrs.is_empty() {
        return Err(nwf("XML declaration without version"));
    }
    Ok(())
}

/// One open element of the stanza being assembled.
#[derive(Debug)]
struct Open {
    element: Element,
    /// Length of [`Tree::bindings`] before this element's declarations.
    bindings_len: usize,
    /// Start of this element's raw name in [`Tree::names`].
    name_start: usize,
}

/// Result of feeding an end tag to the tree.
pub(crate) enum Closed {
    /// An element inside a stanza closed; the stanza continues.
    Inner,
    /// The stanza itself closed.
    Stanza(Element),
    /// `</stream:stream>` closed the stream.
    Stream,
}

/// Namespace scopes plus the stack of open elements of the current stanza.
#[derive(Debug, Default)]
pub(crate) struct Tree {
    /// Bindings in scope, innermost last; the empty prefix is the default namespace. The
    /// everyday prefixes and namespaces are static strings: the stream header's stay for the
    /// whole stream, in every idle connection.
    bindings: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    /// Number of bindings declared by the stream header (never popped within a stream).
    stream_bindings: usize,
    /// Raw qualified name of the stream header, to match `</stream:stream>`.
    stream_name: Cow<'static, str>,
    open: Vec<Open>,
    /// Raw names of open elements, concatenated, so end tags compare without an allocation per
    /// element.
    names: String,
    /// Scratch for attribute parsing, reused across tags.
    attrs: Vec<(Range<usize>, String)>,
}

impl Tree {
    /// Forgets everything (stream restart).
    pub(crate) fn clear(&mut self) {
        self.bindings.clear();
        self.stream_bindings = 0;
        self.stream_name = Cow::Borrowed("");
        self.open.clear();
        self.names.clear();
        self.attrs.clear();
        self.bindings.shrink_to(16);
        self.names.shrink_to(256);
    }

    /// Depth of the open stanza (0 between stanzas).
    pub(crate) fn depth(&self) -> usize {
        self.open.len()
    }

    fn lookup(&self, prefix: &str) -> Option<&str> {
        if prefix == "xml" {
            return Some(XML_NS);
        }
        self.bindings
            .iter()
            .rev()
            .find(|(p, _)| p == prefix)
            .map(|(_, ns)| &**ns)
    }

    /// Parses a start tag, pushes its namespace declarations and resolves it to an element.
    ///
    /// Returns the element and the length of its raw name (a prefix of `content`).
    fn resolve_start(
        &mut self,
        content: &str,
        limits: &Limits,
    ) -> Result<(Element, usize), XmlError> {
        let mut attrs = std::mem::take(&mut self.attrs);
        let result = self.resolve_with(content, &mut attrs, limits);
        self.attrs = attrs;
        result
    }

    fn resolve_with(
        &mut self,
        content: &str,
        attrs: &mut Vec<(Range<usize>, String)>,
        limits: &Limits,
    ) -> Result<(Element, usize), XmlError> {
        let name_len = parse_tag(content, attrs, limits.max_attrs)?;
        let raw_name = content.get(..name_len).unwrap_or_default();
        let (prefix, local) =
            split_qname(raw_name).ok_or_else(|| nwf(format!("bad element name {raw_name:?}")))?;
        let decl_start = self.bindings.len();
        let mut declarations = 0;
        // Declarations first: they apply to the element's own name and attributes.
        for (key, value) in attrs.iter() {
            let key = content.get(key.clone()).unwrap_or_default();
            let declared = if key == "xmlns" {
                ""
            } else if let Some(p) = key.strip_prefix("xmlns:") {
                if p.is_empty() {
                    return Err(nwf("empty prefix in namespace declaration"));
                }
                p
            } else {
                continue;
            };
            self.declare(declared, value, decl_start, limits.max_attrs)?;
            declarations += 1;
        }
        let ns = match prefix {
            Some("xmlns") => return Err(nwf("element with the xmlns prefix")),
            Some(p) => self
                .lookup(p)
                .ok_or_else(|| XmlError::BadNamespacePrefix(p.to_owned()))?,
            None => self.lookup("").unwrap_or_default(),
        };
        let mut attr_room = attrs.len().saturating_sub(declarations);
        if self.open.is_empty() {
            // A stanza: the server stamps `from` on it before routing (RFC 6120 §8.1.2.1), so
            // leave room for one more attribute rather than grow the vector then.
            attr_room += 1;
        }
        let mut element = Element::parsed(local, ns, attr_room);
        for (key, value) in attrs.drain(..) {
            let key = content.get(key).unwrap_or_default();
            if key == "xmlns" || key.starts_with("xmlns:") {
                continue;
            }
            let (prefix, local) =
                split_qname(key).ok_or_else(|| nwf(format!("bad attribute name {key:?}")))?;
            let stored = match prefix {
                None => Cow::Borrowed(local),
                Some("xml") => Cow::Owned(format!("xml:{local}")),
                Some("xmlns") => unreachable_prefix()?,
                Some(p) => {
                    let ns = self
                        .lookup(p)
                        .ok_or_else(|| XmlError::BadNamespacePrefix(p.to_owned()))?;
                    Cow::Owned(format!("{{{ns}}}{local}"))
                }
            };
            if element.attr(&stored).is_some() {
                return Err(nwf(format!("duplicate attribute {stored}")));
            }
            element.push_parsed_attr(stored, value);
        }
        Ok((element, name_len))
    }

    /// Records `xmlns:prefix='ns'` (or `xmlns='ns'` for the empty prefix) after checking the
    /// rules of XML Namespaces §3.
    ///
    /// At most `max_in_scope` declarations are in scope at once. Each is within the attribute
    /// limit of its own element, but spread over nested elements they would add up to
    /// `max_attrs × max_depth`, and every prefix lookup scans them: a stanza of declarations
    /// and prefixed names would cost time quadratic in its size.
    fn declare(
        &mut self,
        prefix: &str,
        ns: &str,
        decl_start: usize,
        max_in_scope: usize,
    ) -> Result<(), XmlError> {
        if self.bindings.len() >= max_in_scope {
            return Err(XmlError::PolicyViolation(format!(
                "more than {max_in_scope} namespace declarations in scope"
            )));
        }
        if self.bindings[decl_start..].iter().any(|(p, _)| p == prefix) {
            return Err(nwf(format!("duplicate declaration of prefix {prefix:?}")));
        }
        let ok = match prefix {
            "" => ns != XML_NS && ns != XMLNS_NS,
            "xml" => ns == XML_NS,
            "xmlns" => false,
            p => crate::validate::is_ncname(p) && !ns.is_empty() && ns != XML_NS && ns != XMLNS_NS,
        };
        if !ok {
            return Err(nwf(format!(
                "illegal namespace declaration for prefix {prefix:?}"
            )));
        }
        self.bindings.push((intern(prefix), intern(ns)));
        Ok(())
    }

    /// Frees the scratch space of stanza parsing when no stanza is open; the bindings keep
    /// room for the stream header's only (the vector grows to four on its first push).
    pub(crate) fn release_scratch(&mut self) {
        if self.open.is_empty() {
            self.open = Vec::new();
            self.attrs = Vec::new();
            self.names = String::new();
            self.bindings.shrink_to(self.stream_bindings);
        }
    }

    /// Handles the stream header tag; `content` is the inside of `<…>`.
    pub(crate) fn open_stream(
        &mut self,
        content: &str,
        limits: &Limits,
    ) -> Result<StreamHeader, XmlError> {
        self.clear();
        let (element, name_len) = self.resolve_start(content, limits)?;
        if !element.is("stream", STREAM_NS) {
            return Err(XmlError::InvalidNamespace(format!(
                "root element {{{}}}{} is not a stream",
                element.ns(),
                element.name()
            )));
        }
        self.stream_bindings = self.bindings.len();
        self.stream_name = intern(content.get(..name_len).unwrap_or_default());
        let mut header = StreamHeader {
            attrs: Vec::new(),
            default_ns: None,
            prefixes: Vec::new(),
        };
        for (prefix, ns) in &self.bindings {
            if prefix.is_empty() {
                header.default_ns = Some(ns.clone().into_owned());
            } else {
                header
                    .prefixes
                    .push((prefix.clone().into_owned(), ns.clone().into_owned()));
            }
        }
        header.attrs = element
            .attrs()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Ok(header)
    }

    /// Handles a start tag inside the stream; returns the stanza if it was an empty top-level
    /// element.
    pub(crate) fn start(
        &mut self,
        content: &str,
        empty: bool,
        limits: &Limits,
    ) -> Result<Option<Element>, XmlError> {
        if self.open.len() >= limits.max_depth {
            return Err(XmlError::PolicyViolation(format!(
                "nesting deeper than {}",
                limits.max_depth
            )));
        }
        let bindings_len = self.bindings.len();
        let (element, name_len) = self.resolve_start(content, limits)?;
        if empty {
            self.bindings.truncate(bindings_len);
            return Ok(self.attach(element));
        }
        let name_start = self.names.len();
        self.names
            .push_str(content.get(..name_len).unwrap_or_default());
        self.open.push(Open {
            element,
            bindings_len,
            name_start,
        });
        Ok(None)
    }

    /// Adds a finished element to its parent, or returns it when it is a whole stanza.
    fn attach(&mut self, element: Element) -> Option<Element> {
        match self.open.last_mut() {
            Some(parent) => {
                parent.element.push_child(element);
                None
            }
            None => Some(element),
        }
    }

    /// Handles an end tag with raw name `name`.
    pub(crate) fn end(&mut self, name: &str) -> Result<Closed, XmlError> {
        let Some(open) = self.open.pop() else {
            if name == self.stream_name {
                self.bindings.truncate(self.stream_bindings);
                return Ok(Closed::Stream);
            }
            return Err(nwf(format!(
                "end tag </{name}> does not match </{}>",
                self.stream_name
            )));
        };
        let expected = self.names.get(open.name_start..).unwrap_or_default();
        if name != expected {
            return Err(nwf(format!(
                "end tag </{name}> does not match <{expected}>"
            )));
        }
        self.names.truncate(open.name_start);
        self.bindings.truncate(open.bindings_len);
        Ok(match self.attach(open.element) {
            Some(stanza) => Closed::Stanza(stanza),
            None => Closed::Inner,
        })
    }

    /// Appends character data to the innermost open element (ignored between stanzas, where the
    /// reader only lets whitespace through).
    pub(crate) fn text(&mut self, text: String) {
        if let Some(open) = self.open.last_mut() {
            open.element.push_text(text);
        }
    }
}

/// The `xmlns:` prefix on a non-declaration cannot happen (declarations are filtered first);
/// kept as an error rather than a panic.
fn unreachable_prefix<T>() -> Result<T, XmlError> {
    Err(nwf("attribute with the xmlns prefix"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_attributes_strictly() {
        let mut attrs = Vec::new();
        assert_eq!(parse_tag("a x='1' y = \"2\" ", &mut attrs, 10).unwrap(), 1);
        assert_eq!(attrs.len(), 2);
        assert_eq!(attrs[1].1, "2");
        assert!(parse_tag("a x='1'y='2'", &mut attrs, 10).is_err());
        assert!(parse_tag("a x=1", &mut attrs, 10).is_err());
        assert!(parse_tag("a x", &mut attrs, 10).is_err());
        assert!(parse_tag("a x='1", &mut attrs, 10).is_err());
        assert!(matches!(
            parse_tag("a x='1' y='2'", &mut attrs, 1),
            Err(XmlError::PolicyViolation(_))
        ));
    }

    /// A tree inside an opened client stream, and the limits it was opened with.
    fn client_stream() -> (Tree, Limits) {
        let limits = Limits {
            max_stanza_bytes: 1 << 20,
            max_depth: 64,
            max_attrs: 16,
        };
        let mut tree = Tree::default();
        tree.open_stream(
            "stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'",
            &limits,
        )
        .unwrap();
        (tree, limits)
    }

    #[test]
    fn between_stanzas_only_the_stream_headers_bindings_keep_room() {
        let (mut tree, limits) = client_stream();
        tree.start("iq", false, &limits).unwrap();
        let query = tree.start("query xmlns='jabber:iq:roster'", true, &limits);
        assert_eq!(query.unwrap(), None);
        assert!(matches!(tree.end("iq"), Ok(Closed::Stanza(_))));
        tree.release_scratch();
        assert_eq!(tree.bindings.capacity(), 2);
        // Nothing allocated for them (the default namespace's prefix is an empty string).
        let allocated = |s: &Cow<'static, str>| matches!(s, Cow::Owned(s) if s.capacity() > 0);
        assert!(
            !tree
                .bindings
                .iter()
                .any(|(p, ns)| allocated(p) || allocated(ns))
        );
        assert!(matches!(tree.stream_name, Cow::Borrowed("stream:stream")));
        // The stream's namespaces still apply to the next stanza.
        let message = tree.start("message", true, &limits).unwrap().unwrap();
        assert!(message.is("message", "jabber:client"));
        assert!(matches!(tree.end("stream:stream"), Ok(Closed::Stream)));
    }

    #[test]
    fn namespace_declarations_in_scope_are_bounded() {
        let (mut tree, limits) = client_stream();
        tree.start("message", false, &limits).unwrap();
        // Ten per element, each element within the attribute limit: the second nested one
        // brings the bindings in scope past sixteen.
        let tag = |level: usize| {
            let decls: String = (0..10)
                .map(|i| format!(" xmlns:p{level}x{i}='u'"))
                .collect();
            format!("x{decls}")
        };
        tree.start(&tag(0), false, &limits).unwrap();
        assert!(matches!(
            tree.start(&tag(1), false, &limits),
            Err(XmlError::PolicyViolation(_))
        ));
        // Siblings reuse the room their predecessors freed.
        let (mut tree, _) = client_stream();
        tree.start("message", false, &limits).unwrap();
        for level in 0..10 {
            tree.start(&tag(level), true, &limits).unwrap();
        }
    }
}
