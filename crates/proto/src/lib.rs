//! XMPP protocol types: namespaces, stanza envelopes, stanza and stream errors.
//!
//! Lenient in, strict out: parsing ignores what it does not know; what we build is exactly
//! what the RFCs say.

pub mod error;
pub mod ns;
pub mod stanza;
pub mod stream_error;

pub use error::{DefinedCondition, ErrorType, StanzaError};
pub use stanza::{Rejected, Stanza, StanzaKind, StanzaParseError, bounce_unparsed};
pub use stream_error::{StreamError, StreamErrorCondition};
