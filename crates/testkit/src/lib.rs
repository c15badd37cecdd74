//! Start a real xmppd on 127.0.0.1:0 and talk to it over real sockets and real TLS.
//!
//! [`TestServer`] runs the server in-process with a temporary SQLite store and a certificate
//! from a throw-away CA; [`TestClient`] is a deliberately plain XMPP client with `send` /
//! `expect` helpers, so a test reads as a transcript: who sends what, who must receive what.

mod client;
mod server;

pub use client::{Conn, TestClient, stanza_error_condition};
pub use server::{TestPki, TestServer};

/// The default time a test waits for an expected stanza.
pub const EXPECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends the servers' logs to stderr when `XMPPD_TEST_LOG` holds a filter (e.g.
/// `XMPPD_TEST_LOG=debug cargo test …`); the first call decides.
pub fn init_test_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("XMPPD_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}
