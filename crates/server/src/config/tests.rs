//! The configuration read end to end: every section, and errors naming file, line and key.

use xmppd_s2s::S2sListenerKind;

use super::*;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new("/etc/xmppd/xmppd.toml"))
}

#[test]
fn full_config_is_read() {
    let c = parse(
        r#"
[general]
data_dir = "/var/lib/xmppd"
require_tls = true

[[host]]
name = "Example.ORG"
cert = "example.crt"
key = "example.key"

[[host]]
name = "chat.example.net"

[[listen]]
kind = "c2s"
address = "::"
port = 5222

[[listen]]
kind = "c2s_tls"
address = "0.0.0.0"
port = 5223

[[listen]]
kind = "s2s"
address = "::"
port = 5269

[s2s]
secure_auth = true
queue = 200

[[s2s.route]]
domain = "partner.example"
host = "10.0.0.7"
port = 5270
tls = "direct"

[storage]
backend = "postgres"
url = "postgres://xmppd@localhost/xmppd"

[[component]]
name = "irc.example.org"
secret = "s3cret"

[limits]
max_stanza_bytes = 65536
max_auth_failures = 2
max_roster_items = 50
max_offline_messages = 20
max_offline_bytes = 1048576
max_pending_subscriptions = 30
"#,
    )
    .unwrap();
    assert_eq!(c.data_dir, PathBuf::from("/var/lib/xmppd"));
    assert_eq!(c.hosts[0].name, "example.org");
    assert_eq!(
        c.hosts[0].tls,
        Some((
            PathBuf::from("/etc/xmppd/example.crt"),
            PathBuf::from("/etc/xmppd/example.key")
        ))
    );
    assert_eq!(c.hosts[1].tls, None);
    assert_eq!(c.listen.len(), 2);
    assert_eq!(c.listen[1].kind, ListenerKind::DirectTls);
    assert_eq!(
        c.storage,
        StorageChoice::Postgres("postgres://xmppd@localhost/xmppd".into())
    );
    assert_eq!(c.limits.max_stanza_bytes, 65536);
    assert_eq!(c.components.len(), 1);
    assert_eq!(c.components[0].name, "irc.example.org");
    assert_eq!(c.components[0].addr, "127.0.0.1:5347".parse().unwrap());
    assert_eq!(c.max_auth_failures, 2);
    assert_eq!(c.im.max_roster_items, 50);
    assert_eq!(c.im.max_offline_messages, 20);
    assert_eq!(c.im.max_offline_bytes, 1 << 20);
    assert_eq!(c.im.max_pending_subscriptions, 30);
    assert_eq!(c.s2s_listen.len(), 1);
    assert_eq!(c.s2s_listen[0].kind, S2sListenerKind::StartTls);
    assert!(c.s2s.secure_auth && c.s2s.require_tls);
    assert_eq!(
        c.s2s.settings.routes["partner.example"],
        vec![xmppd_s2s::StaticRoute {
            host: "10.0.0.7".into(),
            port: 5270,
            transport: xmppd_s2s::Transport::DirectTls
        }]
    );
    assert_eq!(c.s2s.settings.queue, 200);
}

#[test]
fn unknown_keys_name_line_and_key() {
    let e = parse("[general]\ndata_dir = \"x\"\nrequire_tsl = true\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("/etc/xmppd/xmppd.toml"), "{e}");
    assert!(e.contains("line 3"), "{e}");
    assert!(e.contains("require_tsl"), "{e}");
}

#[test]
fn invalid_values_name_line_and_key() {
    let e = parse(
        "[[listen]]\nkind = \"c2s\"\nport = 5222\n\n[[listen]]\nkind = \"s2c\"\nport = 5223\n",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "/etc/xmppd/xmppd.toml:6: `listen[1].kind`: unknown listener kind 's2c'; use \"c2s\", \"c2s_tls\", \"s2s\", \"s2s_tls\", \"http\", \"https\" or \"metrics\""
    );
    let e = parse("[limits]\nmax_stanza_bytes = 100\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("/etc/xmppd/xmppd.toml:2: `limits.max_stanza_bytes`"),
        "{e}"
    );
    let e = parse("[limits]\nmax_offline_messages = 0\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains(":2: `limits.max_offline_messages`"), "{e}");
    let e = parse("[limits]\n\nmax_roster_items = 0\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains(":3: `limits.max_roster_items`"), "{e}");
    let e = parse("[s2s]\nqueue = 5\n\n[[s2s.route]]\ndomain = \"b.test\"\nhost = \"127.0.0.2\"\ntls = \"sometimes\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains(":7: `s2s.route[0].tls`"), "{e}");
    let e = parse("[s2s]\nca_file = [\"/nonexistent/ca.pem\"]\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(":2: `s2s.ca_file[0]`") && e.contains("/nonexistent/ca.pem"),
        "{e}"
    );
    let e = parse("[s2s]\nidle_timeout_secs = 0\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("`s2s.idle_timeout_secs`"), "{e}");
    let e = parse("[[host]]\nname = \"a@b\"\n").unwrap_err().to_string();
    assert!(e.contains(":2: `host[0].name`"), "{e}");
    let e = parse("[[host]]\nname = \"x.org\"\ncert = \"c.pem\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("`host[0].key`"), "{e}");
}

#[test]
fn wrong_types_are_reported_by_line() {
    let e = parse("[[listen]]\nkind = \"c2s\"\nport = \"fivetwotwotwo\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 3"), "{e}");
}

/// The shipped example must stay valid.
#[test]
fn deploy_example_config_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/xmppd.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = super::Config::parse(&text, &path).unwrap();
    assert_eq!(config.hosts.len(), 2);
    assert_eq!(config.listen.len(), 2);
    assert_eq!(config.s2s_listen.len(), 1);
}

/// The container image's built-in configuration must stay valid and serve from its volume.
#[test]
fn container_config_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/container.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = super::Config::parse(&text, &path).unwrap();
    assert_eq!(config.hosts.len(), 1);
    assert_eq!(config.data_dir, std::path::Path::new("/var/lib/xmppd"));
    assert_eq!(config.listen.len(), 2);
    assert_eq!(config.s2s_listen.len(), 1);
}

/// The registration, external services and contact address sections: each mistake is
/// reported with the file, its line, the key and what to write instead.
#[test]
fn module_settings_errors_say_where_and_how_to_fix() {
    for (text, line, wanted) in [
        (
            "[modules.register]\nenabled = true\nallow = [\"10.0.0/8\"]\n",
            "line 3",
            "write ADDRESS/PREFIX",
        ),
        (
            "[modules.external_services]\nturn_secret = \"s\"\n\n[[modules.external_services.services]]\ntype = \"turm\"\nhost = \"h\"\n",
            "line 5",
            "unknown variant `turm`, expected one of `stun`, `turn`, `turns`",
        ),
        (
            "[general]\n\n[modules.external_services]\n[[modules.external_services.services]]\ntype = \"turn\"\nhost = \"turn.example.org\"\n",
            // A mistake of the whole section is reported at its header.
            "line 3",
            "set `turn_secret` (or `turn_secret_file`) to coturn's `static-auth-secret`",
        ),
        (
            "[modules.contact_info]\nabuse = [\"abuse@example.org\"]\n",
            "line 2",
            "write it with its scheme",
        ),
    ] {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.starts_with("/etc/xmppd/xmppd.toml: [modules."), "{e}");
        assert!(e.contains(line) && e.contains(wanted), "{e}");
    }
}

#[test]
fn http_section_and_listeners_are_read() {
    let c = parse(
        r#"
[[host]]
name = "example.org"

[[host]]
name = "example.net"

[[listen]]
kind = "https"
port = 5443

[[listen]]
kind = "http"
address = "127.0.0.1"
port = 5280

[http]
max_header_bytes = 32768
max_body_bytes = 65536
max_connections_per_ip = 10
requests_per_second = 5
request_burst = 20
trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]
websocket_path = "/ws"
websocket_max_fragments = 16
allow_origin = "https://chat.example.org"
bosh_path = "/bosh"
bosh_max_body_bytes = 100000
bosh_max_wait_secs = 30
bosh_max_hold = 2
bosh_inactivity_secs = 45
bosh_max_pause_secs = 300
bosh_polling_secs = 5
bosh_max_sessions_per_ip = 3

[[http.host]]
name = "example.net"
websocket = false
bosh = false
"#,
    )
    .unwrap();
    assert_eq!(c.http_listen.len(), 2);
    assert_eq!(c.http_listen[0].kind, xmppd_http::HttpKind::Tls);
    assert_eq!(c.http_listen[1].addr.port(), 5280);
    assert_eq!(c.http.max_header_bytes, 32768);
    assert_eq!(c.http.max_connections_per_ip, 10);
    assert_eq!(c.http.websocket_path, "/ws");
    assert_eq!(c.http.websocket_max_fragments, 16);
    assert!(c.http.trusted_proxies.trusts("10.1.2.3".parse().unwrap()));
    assert!(!c.http.trusted_proxies.trusts("192.0.2.1".parse().unwrap()));
    assert!(c.http.host("example.org").websocket);
    assert!(!c.http.host("example.net").websocket);
    assert_eq!(c.http.allow_origin, "https://chat.example.org");
    assert_eq!(c.http.bosh_path, "/bosh");
    assert_eq!(c.http.bosh_max_body_bytes, 100_000);
    assert_eq!(c.http.bosh_max_wait, Duration::from_secs(30));
    assert_eq!(c.http.bosh_max_hold, 2);
    assert_eq!(c.http.bosh_inactivity, Duration::from_secs(45));
    assert_eq!(c.http.bosh_max_pause, Duration::from_secs(300));
    assert_eq!(c.http.bosh_polling, Duration::from_secs(5));
    assert_eq!(c.http.bosh_max_sessions_per_ip, 3);
    assert!(c.http.host("example.org").bosh);
    assert!(!c.http.host("example.net").bosh);
}

#[test]
fn http_errors_name_line_and_key() {
    let cases = [
        (
            "[http]\ntrusted_proxies = [\"10.0.0.0/33\"]\n",
            "/etc/xmppd/xmppd.toml:2: `http.trusted_proxies[0]`: '10.0.0.0/33' is not an IP address or a range",
        ),
        (
            "[http]\nmax_header_bytes = 1024\n",
            "/etc/xmppd/xmppd.toml:2: `http.max_header_bytes`: must be at least 8192",
        ),
        (
            "[http]\n\nwebsocket_path = \"ws\"\n",
            "/etc/xmppd/xmppd.toml:3: `http.websocket_path`: must be a path",
        ),
        (
            "[http]\nallow_origin = \"chat.example.org\"\n",
            "/etc/xmppd/xmppd.toml:2: `http.allow_origin`: must be \"*\" or one origin",
        ),
        (
            "[[http.host]]\nname = \"example.com\"\n",
            "/etc/xmppd/xmppd.toml:2: `http.host[0].name`: example.com is not a [[host]]",
        ),
        (
            "[[http.host]]\nname = \"localhost\"\nwebsocket_url = \"https://x/ws\"\n",
            "/etc/xmppd/xmppd.toml:3: `http.host[0].websocket_url`: must be a URL",
        ),
        (
            "[[http.host]]\nname = \"localhost\"\nbosh_url = \"wss://x/bosh\"\n",
            "/etc/xmppd/xmppd.toml:3: `http.host[0].bosh_url`: must be a URL",
        ),
        (
            "[http]\nbosh_path = \"/xmpp-websocket\"\n",
            "/etc/xmppd/xmppd.toml:2: `http.bosh_path`: must differ from http.websocket_path",
        ),
        (
            "[http]\nbosh_max_hold = 11\n",
            "/etc/xmppd/xmppd.toml:2: `http.bosh_max_hold`: must be at most 10",
        ),
        (
            "[http]\nbosh_inactivity_secs = 0\n",
            "/etc/xmppd/xmppd.toml:2: `http.bosh_inactivity_secs`: must be at least 1",
        ),
    ];
    for (text, expected) in cases {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.starts_with(expected), "{text}: {e}");
    }
    let e = parse("[http]\nmax_body = 1\n").unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("max_body"), "{e}");
}

#[test]
fn channel_binding_can_be_turned_off_per_client_listener() {
    let c = parse(
        "[[listen]]\nkind = \"c2s\"\nport = 5222\n\n[[listen]]\nkind = \"c2s_tls\"\nport = 5223\nchannel_binding = false\n",
    )
    .unwrap();
    let offered: Vec<_> = c.listen.iter().map(|l| l.channel_binding).collect();
    assert_eq!(offered, [ChannelBinding::Offered, ChannelBinding::Off]);
    let e = parse("[[listen]]\nkind = \"s2s\"\nport = 5269\nchannel_binding = false\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "/etc/xmppd/xmppd.toml:4: `listen[0].channel_binding`: channel_binding applies to client listeners (\"c2s\", \"c2s_tls\")"
    );
}

#[test]
fn per_address_limits_and_read_rates_are_read() {
    let c = parse("").unwrap();
    assert_eq!(
        c.limits.per_address,
        xmppd_core::per_address::ConnectionLimits::default()
    );
    assert_eq!(c.listen[0].read_rate, Some(DEFAULT_C2S_READ_RATE));
    assert_eq!(c.component_handshake_bytes, 16384);
    assert_eq!(
        c.component_handshake_timeout,
        std::time::Duration::from_secs(30)
    );
    assert_eq!(
        c.s2s.settings.per_address,
        xmppd_s2s::DEFAULT_S2S_PER_ADDRESS
    );
    let c = parse(
        r#"
[[listen]]
kind = "c2s"
port = 5222
read_bytes_per_second = 0

[[listen]]
kind = "https"
port = 5443

[[listen]]
kind = "http"
port = 5280
read_bytes_per_second = 3000
read_burst_bytes = 32768

[[listen]]
kind = "c2s_tls"
port = 5223
read_bytes_per_second = 5000
read_burst_bytes = 65536

[s2s]
read_bytes_per_second = 0
max_connections_per_ip = 40
max_connections_per_ipv6_64 = 50
connection_attempts_per_ip = 60
connection_attempts_period_secs = 70

[limits]
max_connections_per_ip = 10
max_connections_per_ipv6_64 = 20
connection_attempts_per_ip = 30
connection_attempts_period_secs = 120
auth_failures_before_delay = 0
auth_failure_delay_ms = 250
auth_failure_max_delay_secs = 5
auth_failure_forget_secs = 60
component_handshake_bytes = 4096
component_handshake_timeout_secs = 5
"#,
    )
    .unwrap();
    assert_eq!(c.listen[0].read_rate, None);
    assert_eq!(
        c.listen[1].read_rate,
        Some(xmppd_core::read_shaper::ReadRate {
            bytes_per_second: 5000,
            burst_bytes: 65536
        })
    );
    assert_eq!(c.http_listen[0].read_rate, Some(DEFAULT_C2S_READ_RATE));
    assert_eq!(
        c.http_listen[1].read_rate,
        Some(xmppd_core::read_shaper::ReadRate {
            bytes_per_second: 3000,
            burst_bytes: 32768
        })
    );
    assert_eq!(c.s2s.settings.read_rate, None);
    let s = c.s2s.settings.per_address;
    assert_eq!((s.per_address, s.per_ipv6_64, s.attempts), (40, 50, 60));
    assert_eq!(s.attempt_period, std::time::Duration::from_secs(70));
    assert_eq!(
        c.component_handshake_timeout,
        std::time::Duration::from_secs(5)
    );
    let p = c.limits.per_address;
    assert_eq!((p.per_address, p.per_ipv6_64, p.attempts), (10, 20, 30));
    assert_eq!(p.attempt_period, std::time::Duration::from_secs(120));
    let a = c.auth_throttle;
    assert_eq!(a.free_failures, 0);
    assert_eq!(a.delay, std::time::Duration::from_millis(250));
    assert_eq!(a.max_delay, std::time::Duration::from_secs(5));
    assert_eq!(a.forget_after, std::time::Duration::from_secs(60));
    assert_eq!(c.component_handshake_bytes, 4096);
}

#[test]
fn per_address_errors_name_line_and_key() {
    let cases = [
        (
            "[limits]\nmax_connections_per_ip = 0\n",
            "/etc/xmppd/xmppd.toml:2: `limits.max_connections_per_ip`: must be at least 1",
        ),
        (
            "[limits]\nauth_failure_delay_ms = 5000\nauth_failure_max_delay_secs = 1\n",
            "/etc/xmppd/xmppd.toml:3: `limits.auth_failure_max_delay_secs`: must not be shorter than auth_failure_delay_ms",
        ),
        (
            "[limits]\ncomponent_handshake_bytes = 100\n",
            "/etc/xmppd/xmppd.toml:2: `limits.component_handshake_bytes`: must be at least 1024 (a stream header and a handshake)",
        ),
        (
            "[[listen]]\nkind = \"c2s\"\nport = 5222\nread_burst_bytes = 10\n",
            "/etc/xmppd/xmppd.toml:4: `listen[0].read_burst_bytes`: must be at least 1024",
        ),
        (
            "[[listen]]\nkind = \"s2s\"\nport = 5269\nread_bytes_per_second = 1000\n",
            "/etc/xmppd/xmppd.toml:4: `listen[0].read_bytes_per_second`: the read rate of a listener applies to client listeners (\"c2s\", \"c2s_tls\", and WebSockets on \"http\", \"https\"); set [s2s] read_bytes_per_second for servers",
        ),
        (
            "[s2s]\nconnection_attempts_per_ip = 0\n",
            "/etc/xmppd/xmppd.toml:2: `s2s.connection_attempts_per_ip`: must be at least 1",
        ),
        (
            "[limits]\ncomponent_handshake_timeout_secs = 0\n",
            "/etc/xmppd/xmppd.toml:2: `limits.component_handshake_timeout_secs`: must be at least 1",
        ),
        (
            "[s2s]\nread_burst_bytes = 1\n",
            "/etc/xmppd/xmppd.toml:2: `s2s.read_burst_bytes`: must be at least 1024",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(parse(text).unwrap_err().to_string(), expected);
    }
}

#[test]
fn sasl_mechanisms_can_be_disabled_by_name() {
    use xmppd_stream::sasl::Mechanism;
    let c = parse("[general]\ndisable_sasl_mechanisms = [\"PLAIN\", \"scram-sha-1\"]\n").unwrap();
    assert_eq!(
        c.disabled_mechanisms,
        [Mechanism::Plain, Mechanism::ScramSha1]
    );
    assert!(parse("").unwrap().disabled_mechanisms.is_empty());
    let e = parse("[general]\n\ndisable_sasl_mechanisms = [\"PLAIN\", \"DIGEST-MD5\"]\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "/etc/xmppd/xmppd.toml:3: `general.disable_sasl_mechanisms`: unknown SASL mechanism 'DIGEST-MD5'; known: \"SCRAM-SHA-256-PLUS\", \"SCRAM-SHA-1-PLUS\", \"SCRAM-SHA-256\", \"SCRAM-SHA-1\", \"PLAIN\""
    );
    let all = "[general]\ndisable_sasl_mechanisms = [\"SCRAM-SHA-256-PLUS\", \"SCRAM-SHA-1-PLUS\", \"SCRAM-SHA-256\", \"SCRAM-SHA-1\", \"PLAIN\"]\n";
    let e = parse(all).unwrap_err().to_string();
    assert!(
        e.starts_with("/etc/xmppd/xmppd.toml:2: `general.disable_sasl_mechanisms`: every mechanism is disabled"),
        "{e}"
    );
}

#[test]
fn log_format_is_human_or_json() {
    assert_eq!(parse("").unwrap().log_format, LogFormat::Human);
    let c = parse("[general]\nlog_format = \"json\"\n").unwrap();
    assert_eq!(c.log_format, LogFormat::Json);
    let e = parse("[general]\nlog_format = \"xml\"\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "/etc/xmppd/xmppd.toml:2: `general.log_format`: unknown log format 'xml'; use \"human\" or \"json\""
    );
}

#[test]
fn metrics_listeners_default_to_loopback() {
    let c = parse("[[listen]]\nkind = \"metrics\"\nport = 9477\n\n[[listen]]\nkind = \"metrics\"\naddress = \"::\"\nport = 9478\n").unwrap();
    assert_eq!(
        c.metrics_listen,
        [
            "127.0.0.1:9477".parse().unwrap(),
            "[::]:9478".parse().unwrap()
        ]
    );
    let e = parse(
        "[[listen]]\nkind = \"c2s\"\nport = 5222\n\n[[listen]]\nkind = \"metrics\"\nport = 5222\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(":7: `listen[1].port`: 127.0.0.1:5222 is used by two listeners"),
        "{e}"
    );
}

#[test]
fn admins_and_the_admin_section_are_read_and_checked() {
    let c = parse(
        "[general]\nadmins = [\"Alice@Example.org\"]\n\n[admin]\nsocket = \"/run/xmppd/admin.sock\"\n\
         socket_group = 990\napi_tokens = [\"0123456789abcdef0123456789abcdef\"]\n\n\
         [[host]]\nname = \"example.org\"\n",
    )
    .unwrap();
    assert_eq!(c.admins, [jid::BareJid::new("alice@example.org").unwrap()]);
    assert_eq!(
        c.admin_socket(),
        Some(PathBuf::from("/run/xmppd/admin.sock"))
    );
    assert_eq!(c.admin.socket_group, Some(990));
    assert_eq!(c.admin.api_tokens.len(), 1);
    // The defaults: a socket in the data dir, no API.
    let c = parse("").unwrap();
    assert_eq!(c.admin_socket(), Some(c.data_dir.join("xmppd.sock")));
    assert!(c.admin.api_tokens.is_empty() && c.admins.is_empty());
    let c = parse("[admin]\nsocket = \"\"\n").unwrap();
    assert_eq!(c.admin_socket(), None);
    let cases = [
        (
            "[general]\nadmins = [\"example.org\"]\n",
            "/etc/xmppd/xmppd.toml:2: `general.admins[0]`: 'example.org' is not an account's JID",
        ),
        (
            "[admin]\n\napi_tokens = [\"0123456789abcdef0123456789abcdef\", \"short\"]\n",
            "/etc/xmppd/xmppd.toml:3: `admin.api_tokens[1]`: a token needs at least 32",
        ),
        (
            "[admin]\napi_tokens = [\"0123456789abcdef 0123456789abcdef\"]\n",
            "/etc/xmppd/xmppd.toml:2: `admin.api_tokens[0]`",
        ),
        ("[admin]\nsocket_group = -1\n", "socket_group"),
    ];
    for (text, expected) in cases {
        let e = parse(text).unwrap_err().to_string();
        assert!(e.contains(expected), "{text}: {e}");
    }
}
