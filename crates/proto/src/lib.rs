//! XMPP protocol types: namespaces, stanza envelopes, stanza and stream errors, and the
//! payloads of the XEPs the server speaks.
//!
//! Lenient in, strict out: parsing ignores what it does not know; what we build is exactly
//! what the RFCs say. Each payload module covers one specification; its types parse with
//! `TryFrom<&Element>` (a [`PayloadError`] tells "not this payload" from "this payload, but
//! broken") and serialise with `to_element()` or `Element::from`.

pub mod adhoc;
pub mod blocking;
pub mod caps;
pub mod carbons;
pub mod data_form;
pub mod datetime;
pub mod delay;
pub mod disco;
pub mod error;
pub mod extdisco;
pub mod forwarded;
pub mod host_meta;
pub mod mam;
pub mod muc;
pub mod ns;
pub mod pars;
pub mod payload;
pub mod private;
pub mod pubsub;
pub mod push;
pub mod register;
pub mod roster;
pub mod rsm;
pub mod sm;
pub mod stanza;
pub mod stanza_id;
pub mod stream_error;
pub mod stream_limits;
#[cfg(test)]
mod test_util;
pub mod upload;
pub mod vcard;
pub mod vcard_update;

pub use error::{DefinedCondition, ErrorType, StanzaError};
pub use payload::PayloadError;
pub use stanza::{Rejected, Stanza, StanzaKind, StanzaParseError, bounce_unparsed};
pub use stream_error::{StreamError, StreamErrorCondition};
