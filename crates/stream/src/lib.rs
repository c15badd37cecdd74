//! Sans-IO XMPP stream negotiation: stream headers, features, STARTTLS, SASL and bind.
//!
//! Everything here takes parsed events (or raw SASL payloads) and returns what to send and
//! what happened; tokio appears only in the listener crates, and tests drive both sides in
//! memory.

pub mod c2s;
pub mod component;
pub mod dialback;
pub mod framing;
pub mod header;
pub mod s2s;
pub mod sasl;

pub use c2s::{C2sOutput, C2sPolicy, C2sResponder, Phase};
pub use framing::Framing;
