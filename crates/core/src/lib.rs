//! The heart of xmppd: routing, the session registry, modules and the storage shapes.
//!
//! Nothing here opens a socket; listeners (c2s, s2s, http) hand stanzas to the router and
//! receive stanzas for their sessions through bounded channels.

pub mod storage;
