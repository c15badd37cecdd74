//! Federation: how xmppd finds and talks to other XMPP servers.
//!
//! [`resolve`] turns a domain into the ordered list of places to connect to (RFC 6120 §3.2,
//! XEP-0368). The streams themselves come next.

pub mod resolve;

pub use resolve::{Resolution, S2sResolver, SrvTarget, Transport};
