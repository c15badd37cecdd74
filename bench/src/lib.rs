//! xmppd-bench: an XMPP load generator (logins, idle sessions, message throughput and
//! latency, presence and PEP fan-out, group chat, soak) that drives xmppd, Prosody, ejabberd and a
//! raw TLS relay the same way, over TCP or over WebSocket (RFC 7395), so that one run compares
//! them. See `bench/README.md` for the scenarios and how `bench/compare` uses it.

pub mod client;
pub mod clique;
pub mod conn;
pub mod handshake;
pub mod procstat;
pub mod room;
pub mod scan;
pub mod scenarios;
pub mod soak;
pub mod ws;
