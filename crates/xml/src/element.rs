//! The XML tree every other crate works with.
//!
//! An [`Element`] is namespace-resolved: it carries its expanded namespace name, never a prefix,
//! so `<stream:features>` and `<features xmlns='http://etherx.jabber.org/streams'>` are the same
//! value. Prefixes exist only in bytes on the wire; the serialiser chooses them (it declares a
//! default namespace wherever an element's namespace differs from its parent's).
//!
//! Attributes are stored by their qualified name as XMPP uses them: plain names (`to`, `id`)
//! and `xml:lang`. Attributes in any other namespace are kept as `{namespace}local` so that no
//! prefix leaks into the tree; the serialiser declares a prefix for them.

use std::borrow::Cow;
use std::fmt;

/// The namespace of the `xml:` prefix, which is bound by definition (XML Namespaces §3).
pub const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// A child of an element: a nested element or character data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A nested element.
    Element(Element),
    /// Character data, already unescaped.
    Text(String),
}

/// The names, namespaces and attribute names of everyday stanzas, which the reader stores as
/// `&'static str` instead of allocating a `String` per element for them.
///
/// A chat message otherwise costs seven small allocations (and frees) for `message`, `body`,
/// `jabber:client` twice, `to`, `type` and `id`. A miss costs one `match` on the string.
fn interned(s: &str) -> Option<&'static str> {
    macro_rules! table {
        ($($word:literal),* $(,)?) => {
            match s {
                $($word => Some($word),)*
                _ => None,
            }
        };
    }
    table!(
        // Namespaces.
        "jabber:client",
        "jabber:server",
        "jabber:component:accept",
        "http://jabber.org/protocol/chatstates",
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/disco#items",
        "jabber:iq:roster",
        "urn:ietf:params:xml:ns:xmpp-stanzas",
        "urn:xmpp:delay",
        "urn:xmpp:ping",
        "urn:xmpp:receipts",
        "urn:xmpp:sm:3",
        // The stream header's namespace, prefix and name, which a stream keeps while it lasts.
        "http://etherx.jabber.org/streams",
        "stream",
        "stream:stream",
        // Element names.
        "message",
        "presence",
        "iq",
        "body",
        "subject",
        "thread",
        "show",
        "status",
        "priority",
        "query",
        "item",
        "error",
        "text",
        "active",
        "composing",
        "paused",
        "inactive",
        "gone",
        "request",
        "received",
        "delay",
        "ping",
        "r",
        "a",
        // Attribute names.
        "to",
        "from",
        "type",
        "id",
        "xml:lang",
        "jid",
        "name",
        "node",
        "subscription",
        "ask",
        "ver",
        "stamp",
        "h",
    )
}

/// `s` as a static string when it is one of the [`interned`] words, else as an owned copy.
pub(crate) fn intern(s: &str) -> Cow<'static, str> {
    match interned(s) {
        Some(word) => Cow::Borrowed(word),
        None => Cow::Owned(s.to_owned()),
    }
}

/// A namespace-resolved XML element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Element {
    // `Cow` so that common names need no allocation (see `interned`); the API deals in `&str`
    // and `String` only.
    name: Cow<'static, str>,
    ns: Cow<'static, str>,
    attrs: Vec<(Cow<'static, str>, String)>,
    children: Vec<Node>,
}

impl Element {
    /// A new element with a local name and namespace, no attributes and no children.
    pub fn new(name: impl Into<String>, ns: impl Into<String>) -> Self {
        Element {
            name: Cow::Owned(name.into()),
            ns: Cow::Owned(ns.into()),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// An element being read from the wire, with room for `attrs` attributes; common names and
    /// namespaces are not copied.
    pub(crate) fn parsed(name: &str, ns: &str, attrs: usize) -> Self {
        Element {
            name: intern(name),
            ns: intern(ns),
            attrs: Vec::with_capacity(attrs),
            children: Vec::new(),
        }
    }

    /// Appends an attribute read from the wire; the reader has checked it is not a duplicate.
    pub(crate) fn push_parsed_attr(&mut self, key: Cow<'_, str>, value: String) {
        let key = match key {
            Cow::Borrowed(key) => intern(key),
            Cow::Owned(key) => interned(&key).map_or(Cow::Owned(key), Cow::Borrowed),
        };
        self.attrs.push((key, value));
    }

    /// The local name (never prefixed).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The expanded namespace name (empty for no namespace).
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// Whether this element has the given local name and namespace.
    pub fn is(&self, name: &str, ns: &str) -> bool {
        self.name == name && self.ns == ns
    }

    /// Replaces the namespace of this element and of every descendant that shared it.
    ///
    /// Used where a stream's content namespace changes (`jabber:client` ↔ `jabber:server`):
    /// only the stanza and children that inherited the stream namespace move, payloads keep
    /// their own.
    pub fn rename_ns(&mut self, from: &str, to: &str) {
        if self.ns == from {
            self.ns = intern(to);
        }
        for child in &mut self.children {
            if let Node::Element(e) = child {
                e.rename_ns(from, to);
            }
        }
    }

    /// The value of an attribute by qualified name (`to`, `xml:lang`, `{ns}local`).
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k.as_ref() == name)
            .map(|(_, v)| v.as_str())
    }

    /// All attributes in document order.
    pub fn attrs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.attrs.iter().map(|(k, v)| (k.as_ref(), v.as_str()))
    }

    /// Number of attributes.
    pub fn attr_count(&self) -> usize {
        self.attrs.len()
    }

    /// Sets (or replaces) an attribute.
    pub fn set_attr(&mut self, name: impl AsRef<str> + Into<String>, value: impl Into<String>) {
        let value = value.into();
        if let Some(slot) = self.attrs.iter_mut().find(|(k, _)| k == name.as_ref()) {
            slot.1 = value;
        } else {
            // `from` is stamped on every routed stanza: the common names need no allocation.
            let key = match interned(name.as_ref()) {
                Some(word) => Cow::Borrowed(word),
                None => Cow::Owned(name.into()),
            };
            self.attrs.push((key, value));
        }
    }

    /// Removes an attribute, returning its value.
    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let pos = self.attrs.iter().position(|(k, _)| k.as_ref() == name)?;
        Some(self.attrs.remove(pos).1)
    }

    /// Builder form of [`Element::set_attr`].
    pub fn with_attr(
        mut self,
        name: impl AsRef<str> + Into<String>,
        value: impl Into<String>,
    ) -> Self {
        self.set_attr(name, value);
        self
    }

    /// Builder form of [`Element::push_child`].
    pub fn with_child(mut self, child: Element) -> Self {
        self.push_child(child);
        self
    }

    /// Builder form of [`Element::push_text`].
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.push_text(text);
        self
    }

    /// Appends a child element.
    pub fn push_child(&mut self, child: Element) {
        self.children.push(Node::Element(child));
    }

    /// Gives back the spare room of this element's lists and of its descendants'. An element
    /// kept for long (a session's presence, for the session's lifetime) should not hold what
    /// building it left: a list grown by one child has room for four, about 400 bytes.
    pub fn shrink_to_fit(&mut self) {
        self.attrs.shrink_to_fit();
        self.children.shrink_to_fit();
        for child in &mut self.children {
            if let Node::Element(element) = child {
                element.shrink_to_fit();
            }
        }
    }

    /// Appends character data (merged with a preceding text node).
    pub fn push_text(&mut self, text: impl Into<String>) {
        let text = text.into();
        if text.is_empty() {
            return;
        }
        if let Some(Node::Text(last)) = self.children.last_mut() {
            last.push_str(&text);
        } else if self.children.capacity() == 0 {
            // Text is most often an element's only child (`<body>`): room for one node, not
            // the four a first push would reserve.
            self.children = vec![Node::Text(text)];
        } else {
            self.children.push(Node::Text(text));
        }
    }

    /// All child nodes in order.
    pub fn nodes(&self) -> &[Node] {
        &self.children
    }

    /// Mutable access to the child nodes.
    pub fn nodes_mut(&mut self) -> &mut Vec<Node> {
        &mut self.children
    }

    /// Child elements in order.
    pub fn children(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|n| match n {
            Node::Element(e) => Some(e),
            Node::Text(_) => None,
        })
    }

    /// The first child element with this name and namespace.
    pub fn child(&self, name: &str, ns: &str) -> Option<&Element> {
        self.children().find(|e| e.is(name, ns))
    }

    /// Whether a child element with this name and namespace exists.
    pub fn has_child(&self, name: &str, ns: &str) -> bool {
        self.child(name, ns).is_some()
    }

    /// Removes every child element with this name and namespace.
    pub fn remove_children(&mut self, name: &str, ns: &str) {
        self.children
            .retain(|n| !matches!(n, Node::Element(e) if e.is(name, ns)));
    }

    /// The concatenated character data directly inside this element.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for n in &self.children {
            if let Node::Text(t) = n {
                out.push_str(t);
            }
        }
        out
    }

    /// Serialises this element, declaring its namespace unless it equals `parent_ns`.
    ///
    /// A stanza written into a stream passes the stream's default namespace
    /// (`jabber:client`) as `parent_ns`, so it is written as `<message …>` without a
    /// redundant `xmlns`.
    pub fn write_to(&self, out: &mut Vec<u8>, parent_ns: &str) {
        crate::writer::write_element(self, out, parent_ns);
    }

    /// Serialises this element as a standalone document fragment.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out, "");
        out
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Limits, Reader, StreamEvent};

    /// A presence kept for a session's lifetime keeps no room its hooks' additions left, at
    /// any depth, and says the same as before.
    #[test]
    fn shrinking_gives_back_the_room_of_every_list() {
        let x = Element::new("x", "vcard-temp:x:update").with_child(Element::new("photo", "p"));
        let mut presence = Element::new("presence", "jabber:client").with_child(x);
        presence.set_attr("from", "a@b/c");
        let before = presence.clone();
        assert!(presence.children.capacity() > 1);
        presence.shrink_to_fit();
        assert_eq!(presence, before);
        assert_eq!(presence.children.capacity(), 1);
        assert_eq!(presence.attrs.capacity(), 1);
        let Some(Node::Element(x)) = presence.children.first() else {
            panic!("no x");
        };
        assert_eq!(x.children.capacity(), 1);
    }

    /// The server stamps `from` on every stanza it routes: a parsed stanza has room for it, so
    /// stamping neither grows the attribute vector nor allocates the attribute's name.
    #[test]
    fn a_stanza_has_room_for_the_from_the_server_stamps() {
        let mut reader = Reader::new(Limits::default());
        reader.feed(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>");
        reader.feed(b"<message to='romeo@montague.lit' type='chat'><body>hi</body></message>");
        assert!(matches!(
            reader.next_event(),
            Ok(Some(StreamEvent::Open(_)))
        ));
        let Ok(Some(StreamEvent::Stanza(mut message))) = reader.next_event() else {
            panic!("no stanza");
        };
        let before = message.attrs.as_ptr();
        message.set_attr("from", "juliet@capulet.lit/balcony");
        assert_eq!(message.attrs.as_ptr(), before, "the attribute vector grew");
        assert!(matches!(
            message.attrs.last(),
            Some((Cow::Borrowed("from"), _))
        ));
        let body = message
            .child("body", "jabber:client")
            .map(|b| b.children.capacity());
        assert_eq!(body, Some(1), "a text-only element holds room for one node");
    }
}
