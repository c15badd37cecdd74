//! Sans-IO XMPP stream negotiation: stream headers, features, STARTTLS, SASL and bind.
//!
//! Everything here takes parsed elements (or raw SASL payloads) and returns what to send and
//! what happened; tokio appears only in the listener crates.

pub mod sasl;
