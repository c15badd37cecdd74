//! Incremental XML for XMPP streams.
//!
//! [`Element`] is the namespace-resolved tree every crate works with; [`writer`] serialises it
//! with correct escaping; [`reader`] turns bytes, fed in arbitrary pieces, into [`StreamEvent`]s
//! while enforcing RFC 6120 §11 (restricted XML) and the configured limits.

pub mod element;
pub mod reader;
mod scan;
mod tree;
mod validate;
pub mod writer;

pub use element::{Element, Node, XML_NS};
pub use reader::{Limits, Reader, StreamEvent, StreamHeader, XmlError};

/// `http://etherx.jabber.org/streams`, the namespace of `<stream:stream>`.
pub const STREAM_NS: &str = "http://etherx.jabber.org/streams";
