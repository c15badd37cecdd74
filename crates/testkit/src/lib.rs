//! Start a real xmppd on 127.0.0.1:0 and talk to it over real sockets and real TLS.
//!
//! [`TestServer`] runs the server in-process with a temporary SQLite store and a certificate
//! from a throw-away CA; [`TestClient`] is a deliberately plain XMPP client with `send` /
//! `expect` helpers, so a test reads as a transcript: who sends what, who must receive what.

mod client;
mod server;

pub use client::{Conn, TestClient, stanza_error_condition};
pub use server::TestServer;

/// The default time a test waits for an expected stanza.
pub const EXPECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
