//! What the generator's end-to-end tests share: accounts on an in-process server and a
//! context that points the generator at one of its listeners.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use xmppd_bench::client::{Protocol, Target};
use xmppd_bench::scenarios::Ctx;
use xmppd_testkit::TestServer;

/// Creates `u0…u(users-1)` with the password `benchpass`.
pub async fn add_users(server: &TestServer, users: usize) {
    for i in 0..users {
        server
            .add_user(&format!("u{i}"), "benchpass")
            .await
            .unwrap_or_else(|e| panic!("user: {e:#}"));
    }
}

/// A context for the generator against `addr` of `server` with `protocol`: four logins in
/// flight, this process as the server's PID, no stream management.
pub fn ctx(server: &TestServer, addr: SocketAddr, protocol: Protocol) -> Ctx {
    let target = Target {
        addr,
        domain: server.domain().to_owned(),
        protocol,
        ws_path: "/xmpp-websocket".into(),
        tls: server.tls_client_config(),
        password: "benchpass".into(),
        keys: Arc::new(Mutex::new(HashMap::new())),
    };
    Ctx {
        target,
        server_pid: Some(std::process::id()),
        prefix: "u".into(),
        concurrency: 4,
        epoch: Instant::now(),
        sm: Default::default(),
        sources: Vec::new(),
    }
}
