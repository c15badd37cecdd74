//! What the `[http]` section configures (documented defaults; the server's config module
//! reads the TOML into these).

use std::collections::HashMap;
use std::time::Duration;

use crate::proxy::TrustedProxies;

/// Settings shared by every HTTP listener.
#[derive(Clone, Debug)]
pub struct HttpSettings {
    /// Largest request head (request line and headers) in bytes; larger gets 431.
    pub max_header_bytes: usize,
    /// Most headers in one request; more gets 431.
    pub max_headers: usize,
    /// Largest request body in bytes; larger gets 413.
    pub max_body_bytes: u64,
    /// Time a connection has to send a complete request head.
    pub header_timeout: Duration,
    /// Concurrent connections on one listener.
    pub max_connections: usize,
    /// Concurrent connections from one client address (TCP connections of clients that
    /// connect directly, WebSocket sessions of clients behind a trusted proxy).
    pub max_connections_per_ip: usize,
    /// Requests per second one client address may make, on average.
    pub requests_per_second: u32,
    /// Requests one client address may make at once before the rate applies.
    pub request_burst: u32,
    /// Addresses whose `X-Forwarded-For`/`Forwarded` headers name the real client.
    pub trusted_proxies: TrustedProxies,
    /// Path of the WebSocket endpoint.
    pub websocket_path: String,
    /// Most frames one WebSocket message may be split into (RFC 6455 fragmentation).
    pub websocket_max_fragments: usize,
    /// Path of the BOSH endpoint (XEP-0206).
    pub bosh_path: String,
    /// Largest BOSH request body in bytes; larger gets 413.
    pub bosh_max_body_bytes: u64,
    /// Longest a BOSH request is held (XEP-0124 `wait`; a client may ask for less).
    pub bosh_max_wait: Duration,
    /// Most BOSH requests held at once (`hold`; a client may ask for fewer). The session
    /// allows one request more than it holds (`requests`).
    pub bosh_max_hold: u32,
    /// How long a BOSH session may go without a request before it ends (`inactivity`).
    pub bosh_inactivity: Duration,
    /// Longest pause a BOSH client may ask for (`maxpause`).
    pub bosh_max_pause: Duration,
    /// Shortest interval between empty requests of a polling BOSH session (`polling`).
    pub bosh_polling: Duration,
    /// Most BOSH sessions from one client address at once.
    pub bosh_max_sessions_per_ip: usize,
    /// `Access-Control-Allow-Origin` of the discovery documents and the BOSH endpoint.
    pub allow_origin: String,
    /// What each host offers over HTTP, by domain; a host not listed gets the defaults.
    pub hosts: HashMap<String, HostWeb>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            max_body_bytes: 1024 * 1024,
            header_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_ip: 100,
            requests_per_second: 20,
            request_burst: 100,
            trusted_proxies: TrustedProxies::default(),
            websocket_path: "/xmpp-websocket".into(),
            websocket_max_fragments: 64,
            bosh_path: "/http-bind".into(),
            bosh_max_body_bytes: 256 * 1024,
            bosh_max_wait: Duration::from_secs(60),
            bosh_max_hold: 1,
            bosh_inactivity: Duration::from_secs(60),
            bosh_max_pause: Duration::from_secs(120),
            bosh_polling: Duration::from_secs(2),
            bosh_max_sessions_per_ip: 10,
            allow_origin: "*".into(),
            hosts: HashMap::new(),
        }
    }
}

impl HttpSettings {
    /// What `host` offers.
    pub fn host(&self, host: &str) -> HostWeb {
        self.hosts.get(host).cloned().unwrap_or_default()
    }
}

/// What one virtual host offers over HTTP (`[[http.host]]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostWeb {
    /// Whether clients of this host may connect over WebSocket.
    pub websocket: bool,
    /// The WebSocket URL announced in host-meta, when the public address is not the one
    /// requests arrive with (`None`: derived from the request and the proxy's headers).
    pub websocket_url: Option<String>,
    /// Whether clients of this host may connect over BOSH (XEP-0206).
    pub bosh: bool,
    /// The BOSH URL announced in host-meta, when the public address is not the one requests
    /// arrive with (`None`: derived from the request and the proxy's headers).
    pub bosh_url: Option<String>,
}

impl Default for HostWeb {
    fn default() -> Self {
        HostWeb {
            websocket: true,
            websocket_url: None,
            bosh: true,
            bosh_url: None,
        }
    }
}
