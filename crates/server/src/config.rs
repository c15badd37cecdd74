//! The TOML configuration, laid out like MongooseIM's: `[general]`, `[[host]]`, `[[listen]]`,
//! `[storage]`, `[limits]`. Unknown keys are errors, and every error names the file, the line
//! and the key, because a server that silently ignores a typo in its config is worse than one
//! that refuses to start.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use xmppd_c2s::{C2sLimits, ListenerKind};
use xmppd_s2s::S2sListenerKind;

/// A configuration problem, with where it is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read the configuration: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is invalid or has unknown/mistyped keys (the message has line and column).
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// toml's report, with line, column and the offending key.
        message: String,
    },
    /// A value is well-typed but not acceptable.
    #[error("{path}:{line}: `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// The key, e.g. `host[1].cert`.
        key: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    general: RawGeneral,
    #[serde(default)]
    host: Vec<RawHost>,
    #[serde(default)]
    listen: Vec<RawListen>,
    #[serde(default)]
    storage: Option<RawStorage>,
    #[serde(default)]
    component: Vec<RawComponent>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    s2s: RawS2s,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawS2s {
    enabled: Option<bool>,
    require_tls: Option<bool>,
    secure_auth: Option<bool>,
    #[serde(default)]
    ca_file: Vec<Spanned<PathBuf>>,
    use_system_roots: Option<bool>,
    connect_timeout_secs: Option<Spanned<u64>>,
    negotiation_timeout_secs: Option<Spanned<u64>>,
    idle_timeout_secs: Option<Spanned<u64>>,
    queue: Option<Spanned<usize>>,
    max_stanza_bytes: Option<Spanned<usize>>,
    #[serde(default)]
    route: Vec<RawRoute>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    domain: Spanned<String>,
    host: Spanned<String>,
    port: Option<u16>,
    tls: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGeneral {
    data_dir: Option<Spanned<PathBuf>>,
    require_tls: Option<bool>,
    log: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: Spanned<String>,
    cert: Option<Spanned<PathBuf>>,
    key: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    kind: Spanned<String>,
    #[serde(default)]
    address: Option<Spanned<String>>,
    port: Spanned<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawComponent {
    name: Spanned<String>,
    secret: Spanned<String>,
    #[serde(default)]
    address: Option<Spanned<String>>,
    #[serde(default)]
    port: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    backend: Spanned<String>,
    path: Option<PathBuf>,
    url: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_stanza_bytes: Option<Spanned<usize>>,
    max_stanza_bytes_unauthenticated: Option<Spanned<usize>>,
    max_depth: Option<usize>,
    max_attrs: Option<usize>,
    auth_timeout_secs: Option<u64>,
    session_queue: Option<Spanned<usize>>,
    max_connections: Option<usize>,
    max_auth_failures: Option<Spanned<u32>>,
    max_roster_items: Option<Spanned<u64>>,
    max_offline_messages: Option<Spanned<u64>>,
    max_pending_subscriptions: Option<Spanned<u64>>,
}

/// One virtual host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostConfig {
    /// The domain.
    pub name: String,
    /// PEM certificate chain and key; `None` means a self-signed pair in the data dir.
    pub tls: Option<(PathBuf, PathBuf)>,
}

/// One listening socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenConfig {
    /// STARTTLS or direct TLS.
    pub kind: ListenerKind,
    /// Where to listen.
    pub addr: SocketAddr,
}

/// A federation listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S2sListenConfig {
    /// STARTTLS (5269) or direct TLS.
    pub kind: S2sListenerKind,
    /// Where to listen.
    pub addr: SocketAddr,
}

/// Federation.
#[derive(Clone, Debug)]
pub struct S2sConfig {
    /// Whether stanzas to other domains go out at all (inbound needs an s2s listener).
    pub enabled: bool,
    /// Whether TLS is required on every server stream.
    pub require_tls: bool,
    /// Certificates only: no dialback for peers whose certificate is not valid.
    pub secure_auth: bool,
    /// Extra trust anchors (PEM).
    pub ca_files: Vec<PathBuf>,
    /// Whether the system's roots are trusted too.
    pub use_system_roots: bool,
    /// Timeouts, queue, limits and static routes.
    pub settings: xmppd_s2s::S2sSettings,
}

impl Default for S2sConfig {
    fn default() -> Self {
        S2sConfig {
            enabled: true,
            require_tls: true,
            secure_auth: false,
            ca_files: Vec::new(),
            use_system_roots: true,
            settings: xmppd_s2s::S2sSettings::default(),
        }
    }
}

/// An external component (XEP-0114).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentConfig {
    /// Its domain.
    pub name: String,
    /// The shared secret of the handshake.
    pub secret: String,
    /// Where the component listener for it listens (components sharing an address share the
    /// listener).
    pub addr: SocketAddr,
}

/// Where data lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageChoice {
    /// An SQLite file (relative paths are inside the data dir).
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from (`None`: built-in defaults).
    pub source: Option<PathBuf>,
    /// Database, generated certificates, server secret.
    pub data_dir: PathBuf,
    /// Whether clients must use TLS (STARTTLS on 5222).
    pub require_tls: bool,
    /// Default log filter (overridden by `RUST_LOG`).
    pub log: String,
    /// Virtual hosts, the first being the default for clients without SNI.
    pub hosts: Vec<HostConfig>,
    /// Client listeners.
    pub listen: Vec<ListenConfig>,
    /// Federation listeners.
    pub s2s_listen: Vec<S2sListenConfig>,
    /// Federation.
    pub s2s: S2sConfig,
    /// Storage backend.
    pub storage: StorageChoice,
    /// External components.
    pub components: Vec<ComponentConfig>,
    /// Client connection limits.
    pub limits: C2sLimits,
    /// SASL failures allowed per stream.
    pub max_auth_failures: u32,
    /// Roster and offline storage limits.
    pub im: xmppd_im::ImLimits,
}

impl Config {
    /// The built-in configuration: `localhost` from `./data` on 127.0.0.1:5222 and :5223 with
    /// a self-signed certificate and SQLite.
    pub fn default_localhost() -> Self {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Config {
            source: None,
            data_dir: PathBuf::from("data"),
            require_tls: true,
            log: "info".into(),
            hosts: vec![HostConfig {
                name: "localhost".into(),
                tls: None,
            }],
            listen: vec![
                ListenConfig {
                    kind: ListenerKind::StartTls,
                    addr: SocketAddr::new(loopback, 5222),
                },
                ListenConfig {
                    kind: ListenerKind::DirectTls,
                    addr: SocketAddr::new(loopback, 5223),
                },
            ],
            s2s_listen: Vec::new(),
            s2s: S2sConfig::default(),
            storage: StorageChoice::Sqlite(PathBuf::from("xmppd.db")),
            components: Vec::new(),
            limits: C2sLimits::default(),
            max_auth_failures: 3,
            im: xmppd_im::ImLimits::default(),
        }
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Validates configuration text; `path` is used in messages and to resolve relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let v = Validator { text, path };
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut config = Self::default_localhost();
        config.source = Some(path.to_owned());
        if let Some(dir) = raw.general.data_dir {
            if dir.get_ref().as_os_str().is_empty() {
                return Err(v.invalid(dir.span(), "general.data_dir", "must not be empty"));
            }
            config.data_dir = base.join(dir.get_ref());
        } else {
            config.data_dir = base.join("data");
        }
        if let Some(tls) = raw.general.require_tls {
            config.require_tls = tls;
        }
        if let Some(log) = raw.general.log {
            config.log = log;
        }
        if !raw.host.is_empty() {
            config.hosts = v.hosts(&raw.host, &base)?;
        }
        if !raw.listen.is_empty() {
            (config.listen, config.s2s_listen) = v.listeners(&raw.listen)?;
        }
        if let Some(storage) = raw.storage {
            config.storage = v.storage(storage)?;
        }
        config.components = v.components(&raw.component, &config.hosts)?;
        v.limits(raw.limits, &mut config)?;
        config.s2s = v.s2s(raw.s2s, &base)?;
        Ok(config)
    }
}

struct Validator<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Validator<'_> {
    fn invalid(&self, span: Range<usize>, key: &str, message: impl Into<String>) -> ConfigError {
        let line = self
            .text
            .get(..span.start)
            .map_or(1, |t| t.matches('\n').count() + 1);
        ConfigError::Invalid {
            path: self.path.to_owned(),
            line,
            key: key.to_owned(),
            message: message.into(),
        }
    }

    fn hosts(&self, raw: &[RawHost], base: &Path) -> Result<Vec<HostConfig>, ConfigError> {
        let mut hosts: Vec<HostConfig> = Vec::new();
        for (i, h) in raw.iter().enumerate() {
            let key = |k: &str| format!("host[{i}].{k}");
            let name = match jid::BareJid::new(h.name.get_ref()) {
                Ok(j) if j.node().is_none() => j.domain().as_str().to_owned(),
                _ => {
                    let msg = format!("'{}' is not a valid domain name", h.name.get_ref());
                    return Err(self.invalid(h.name.span(), &key("name"), msg));
                }
            };
            if hosts.iter().any(|o| o.name == name) {
                let msg = format!("{name} is configured twice; remove one [[host]]");
                return Err(self.invalid(h.name.span(), &key("name"), msg));
            }
            let tls = match (&h.cert, &h.key) {
                (None, None) => None,
                (Some(c), Some(k)) => Some((base.join(c.get_ref()), base.join(k.get_ref()))),
                (Some(c), None) => {
                    return Err(self.invalid(
                        c.span(),
                        &key("key"),
                        "cert is set, so key is needed too",
                    ));
                }
                (None, Some(k)) => {
                    return Err(self.invalid(
                        k.span(),
                        &key("cert"),
                        "key is set, so cert is needed too",
                    ));
                }
            };
            hosts.push(HostConfig { name, tls });
        }
        Ok(hosts)
    }

    fn listeners(
        &self,
        raw: &[RawListen],
    ) -> Result<(Vec<ListenConfig>, Vec<S2sListenConfig>), ConfigError> {
        let mut out: Vec<ListenConfig> = Vec::new();
        let mut s2s: Vec<S2sListenConfig> = Vec::new();
        for (i, l) in raw.iter().enumerate() {
            let key = |k: &str| format!("listen[{i}].{k}");
            let kind = match l.kind.get_ref().as_str() {
                "c2s" => Ok(ListenerKind::StartTls),
                "c2s_tls" => Ok(ListenerKind::DirectTls),
                "s2s" => Err(S2sListenerKind::StartTls),
                "s2s_tls" => Err(S2sListenerKind::DirectTls),
                other => {
                    let msg = format!(
                        "unknown listener kind '{other}'; use \"c2s\", \"c2s_tls\", \"s2s\" or \"s2s_tls\""
                    );
                    return Err(self.invalid(l.kind.span(), &key("kind"), msg));
                }
            };
            let ip = match &l.address {
                None => IpAddr::V4(Ipv4Addr::LOCALHOST),
                Some(a) => a
                    .get_ref()
                    .trim_matches(|c| c == '[' || c == ']')
                    .parse()
                    .map_err(|_| {
                        let msg = format!(
                            "'{}' is not an IP address (e.g. \"0.0.0.0\" or \"::\")",
                            a.get_ref()
                        );
                        self.invalid(a.span(), &key("address"), msg)
                    })?,
            };
            let addr = SocketAddr::new(ip, *l.port.get_ref());
            let taken = out.iter().any(|o| o.addr == addr) || s2s.iter().any(|o| o.addr == addr);
            if addr.port() != 0 && taken {
                let msg = format!("{addr} is used by two listeners");
                return Err(self.invalid(l.port.span(), &key("port"), msg));
            }
            match kind {
                Ok(kind) => out.push(ListenConfig { kind, addr }),
                Err(kind) => s2s.push(S2sListenConfig { kind, addr }),
            }
        }
        Ok((out, s2s))
    }

    fn s2s(&self, raw: RawS2s, base: &Path) -> Result<S2sConfig, ConfigError> {
        let mut c = S2sConfig {
            enabled: raw.enabled.unwrap_or(true),
            require_tls: raw.require_tls.unwrap_or(true),
            secure_auth: raw.secure_auth.unwrap_or(false),
            use_system_roots: raw.use_system_roots.unwrap_or(true),
            ..S2sConfig::default()
        };
        for (i, file) in raw.ca_file.iter().enumerate() {
            let path = base.join(file.get_ref());
            if let Err(e) = xmppd_s2s::tls::read_ca_file(&path) {
                let msg = format!("{e}; give a PEM file of CA certificates");
                return Err(self.invalid(file.span(), &format!("s2s.ca_file[{i}]"), msg));
            }
            c.ca_files.push(path);
        }
        let secs = |v: Option<Spanned<u64>>, key: &str, default: Duration| match v {
            None => Ok(default),
            Some(v) if *v.get_ref() == 0 => {
                Err(self.invalid(v.span(), &format!("s2s.{key}"), "must be at least 1"))
            }
            Some(v) => Ok(Duration::from_secs(v.into_inner())),
        };
        let st = &mut c.settings;
        st.connect_timeout = secs(
            raw.connect_timeout_secs,
            "connect_timeout_secs",
            st.connect_timeout,
        )?;
        st.negotiation_timeout = secs(
            raw.negotiation_timeout_secs,
            "negotiation_timeout_secs",
            st.negotiation_timeout,
        )?;
        st.idle_timeout = secs(raw.idle_timeout_secs, "idle_timeout_secs", st.idle_timeout)?;
        if let Some(q) = raw.queue {
            if *q.get_ref() == 0 {
                return Err(self.invalid(q.span(), "s2s.queue", "must be at least 1"));
            }
            st.queue = q.into_inner();
        }
        if let Some(v) = raw.max_stanza_bytes {
            if *v.get_ref() < 10_000 {
                return Err(self.invalid(
                    v.span(),
                    "s2s.max_stanza_bytes",
                    "must be at least 10000 (RFC 6120 §13.12)",
                ));
            }
            st.max_stanza_bytes = v.into_inner();
        }
        for (i, r) in raw.route.iter().enumerate() {
            let key = |k: &str| format!("s2s.route[{i}].{k}");
            let domain = match jid::BareJid::new(r.domain.get_ref()) {
                Ok(j) if j.node().is_none() => j.domain().as_str().to_owned(),
                _ => {
                    let msg = format!("'{}' is not a valid domain name", r.domain.get_ref());
                    return Err(self.invalid(r.domain.span(), &key("domain"), msg));
                }
            };
            let host = r.host.get_ref().trim_matches(|ch| ch == '[' || ch == ']');
            if host.is_empty() {
                return Err(self.invalid(r.host.span(), &key("host"), "must not be empty"));
            }
            let transport = match r.tls.as_ref().map(|t| t.get_ref().as_str()) {
                None | Some("starttls") => xmppd_s2s::Transport::StartTls,
                Some("direct") => xmppd_s2s::Transport::DirectTls,
                Some(other) => {
                    let msg = format!("unknown tls '{other}'; use \"starttls\" or \"direct\"");
                    let span = r.tls.as_ref().map_or(r.host.span(), |t| t.span());
                    return Err(self.invalid(span, &key("tls"), msg));
                }
            };
            st.routes
                .entry(domain)
                .or_default()
                .push(xmppd_s2s::StaticRoute {
                    host: host.to_owned(),
                    port: r.port.unwrap_or(xmppd_s2s::resolve::DEFAULT_PORT),
                    transport,
                });
        }
        Ok(c)
    }

    fn components(
        &self,
        raw: &[RawComponent],
        hosts: &[HostConfig],
    ) -> Result<Vec<ComponentConfig>, ConfigError> {
        let mut out: Vec<ComponentConfig> = Vec::new();
        for (i, c) in raw.iter().enumerate() {
            let key = |k: &str| format!("component[{i}].{k}");
            let name = match jid::BareJid::new(c.name.get_ref()) {
                Ok(j) if j.node().is_none() => j.domain().as_str().to_owned(),
                _ => {
                    let msg = format!("'{}' is not a valid domain name", c.name.get_ref());
                    return Err(self.invalid(c.name.span(), &key("name"), msg));
                }
            };
            if hosts.iter().any(|h| h.name == name) || out.iter().any(|o| o.name == name) {
                let msg = format!("{name} is already a host or another component");
                return Err(self.invalid(c.name.span(), &key("name"), msg));
            }
            if c.secret.get_ref().is_empty() {
                return Err(self.invalid(
                    c.secret.span(),
                    &key("secret"),
                    "the shared secret must not be empty",
                ));
            }
            let ip = match &c.address {
                None => IpAddr::V4(Ipv4Addr::LOCALHOST),
                Some(a) => a
                    .get_ref()
                    .trim_matches(|ch| ch == '[' || ch == ']')
                    .parse()
                    .map_err(|_| {
                        let msg = format!("'{}' is not an IP address", a.get_ref());
                        self.invalid(a.span(), &key("address"), msg)
                    })?,
            };
            let addr = SocketAddr::new(ip, c.port.unwrap_or(5347));
            out.push(ComponentConfig {
                name,
                secret: c.secret.get_ref().clone(),
                addr,
            });
        }
        Ok(out)
    }

    fn storage(&self, raw: RawStorage) -> Result<StorageChoice, ConfigError> {
        match raw.backend.get_ref().as_str() {
            "sqlite" => Ok(StorageChoice::Sqlite(
                raw.path.unwrap_or_else(|| PathBuf::from("xmppd.db")),
            )),
            "postgres" | "postgresql" => match raw.url {
                Some(url) if url.get_ref().starts_with("postgres") => {
                    Ok(StorageChoice::Postgres(url.into_inner()))
                }
                Some(url) => Err(self.invalid(
                    url.span(),
                    "storage.url",
                    "expected postgres://user:pass@host/db",
                )),
                None => Err(self.invalid(
                    raw.backend.span(),
                    "storage.url",
                    "the postgres backend needs url = \"postgres://…\"",
                )),
            },
            other => Err(self.invalid(
                raw.backend.span(),
                "storage.backend",
                format!("unknown backend '{other}'; use \"sqlite\" or \"postgres\""),
            )),
        }
    }

    fn limits(&self, raw: RawLimits, config: &mut Config) -> Result<(), ConfigError> {
        let l = &mut config.limits;
        if let Some(v) = raw.max_stanza_bytes {
            // RFC 6120 §13.12: a server must accept stanzas of at least 10,000 bytes.
            if *v.get_ref() < 10_000 {
                return Err(self.invalid(
                    v.span(),
                    "limits.max_stanza_bytes",
                    "must be at least 10000 (RFC 6120 §13.12)",
                ));
            }
            l.max_stanza_bytes = v.into_inner();
        }
        if let Some(v) = raw.max_stanza_bytes_unauthenticated {
            if *v.get_ref() < 4096 {
                return Err(self.invalid(
                    v.span(),
                    "limits.max_stanza_bytes_unauthenticated",
                    "must be at least 4096",
                ));
            }
            l.max_stanza_bytes_unauthenticated = v.into_inner();
        }
        if let Some(v) = raw.max_depth {
            l.max_depth = v.max(2);
        }
        if let Some(v) = raw.max_attrs {
            l.max_attrs = v.max(8);
        }
        if let Some(v) = raw.auth_timeout_secs {
            l.auth_timeout = Duration::from_secs(v.max(1));
        }
        if let Some(v) = raw.session_queue {
            if *v.get_ref() == 0 {
                return Err(self.invalid(v.span(), "limits.session_queue", "must be at least 1"));
            }
            l.session_queue = v.into_inner();
        }
        if let Some(v) = raw.max_connections {
            l.max_connections = v.max(1);
        }
        if let Some(v) = raw.max_auth_failures {
            // RFC 6120 §6.4.5: allow at least 2 and no more than 5 retries.
            if !(1..=5).contains(v.get_ref()) {
                return Err(self.invalid(
                    v.span(),
                    "limits.max_auth_failures",
                    "must be between 1 and 5 (RFC 6120 §6.4.5)",
                ));
            }
            config.max_auth_failures = v.into_inner();
        }
        if let Some(v) = raw.max_roster_items {
            if *v.get_ref() == 0 {
                return Err(self.invalid(
                    v.span(),
                    "limits.max_roster_items",
                    "must be at least 1",
                ));
            }
            config.im.max_roster_items = v.into_inner();
        }
        if let Some(v) = raw.max_offline_messages {
            if *v.get_ref() == 0 {
                return Err(self.invalid(
                    v.span(),
                    "limits.max_offline_messages",
                    "must be at least 1",
                ));
            }
            config.im.max_offline_messages = v.into_inner();
        }
        if let Some(v) = raw.max_pending_subscriptions {
            if *v.get_ref() == 0 {
                return Err(self.invalid(
                    v.span(),
                    "limits.max_pending_subscriptions",
                    "must be at least 1",
                ));
            }
            config.im.max_pending_subscriptions = v.into_inner();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
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
            "/etc/xmppd/xmppd.toml:6: `listen[1].kind`: unknown listener kind 's2c'; use \"c2s\", \"c2s_tls\", \"s2s\" or \"s2s_tls\""
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
}

#[cfg(test)]
mod deploy_example {
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
}
