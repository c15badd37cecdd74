//! The TOML configuration, laid out like MongooseIM's: `[general]`, `[[host]]`, `[[listen]]`,
//! `[s2s]`, `[[component]]`, `[storage]`, `[limits]`, `[sm]`, `[http]`, `[admin]`, `[modules.NAME]`. Unknown keys are errors, and every error names the file, the line
//! and the key, because a server that silently ignores a typo in its config is worse than one
//! that refuses to start.
//!
//! Each section lives in its own file: its raw `serde` shape (`Raw*`, `deny_unknown_fields`),
//! its validated public type and the `Validator` method that turns one into the other, with
//! `key` strings spelt as the user writes them (`host[1].cert`). A new section is a new file
//! of that shape, its `mod` line here, a field in `RawConfig` and in [`Config`], and one call
//! in [`Config::parse`]. This file keeps the `[general]` keys, the error type and the checks
//! sections share (`Validator::invalid` for the file/line/key, domain names, IP addresses).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use xmppd_c2s::{C2sLimits, ChannelBinding, ListenerKind};
use xmppd_core::client::sm::SmConfig;
use xmppd_core::per_address::AuthThrottleSettings;

mod admin;
mod auth;
mod components;
mod hosts;
mod http;
mod invites;
mod limits;
mod listen;
mod modules;
mod s2s;
mod sm;
mod storage;

pub use admin::{AdminConfig, DEFAULT_SOCKET};
pub use components::ComponentConfig;
pub use hosts::HostConfig;
pub use invites::{InvitesConfig, parse_duration};
pub use limits::DEFAULT_C2S_READ_RATE;
pub use listen::{HttpListenConfig, ListenConfig, S2sListenConfig};
pub use s2s::S2sConfig;
pub use storage::StorageChoice;

use admin::RawAdmin;
use components::RawComponent;
use hosts::RawHost;
use http::RawHttp;
use limits::RawLimits;
use listen::RawListen;
use modules::RawModuleSections;
use s2s::RawS2s;
use sm::RawSm;
use storage::RawStorage;

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
    #[serde(default)]
    sm: RawSm,
    #[serde(default)]
    modules: RawModuleSections,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    invites: invites::RawInvites,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGeneral {
    data_dir: Option<Spanned<PathBuf>>,
    certificates: Option<Spanned<PathBuf>>,
    require_tls: Option<bool>,
    log: Option<String>,
    log_format: Option<Spanned<String>>,
    modules: Option<Vec<Spanned<String>>>,
    disable_sasl_mechanisms: Option<Vec<Spanned<String>>>,
    admins: Option<Vec<Spanned<String>>>,
}

/// How log records are written to standard output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One line of text per record: time, level, span fields, message, fields.
    Human,
    /// One JSON object per line (for journald forwarders, Loki, Elasticsearch).
    Json,
}

/// The validated configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it came from (`None`: built-in defaults).
    pub source: Option<PathBuf>,
    /// Database, generated certificates, server secret.
    pub data_dir: PathBuf,
    /// The certificates directory (`[general] certificates`, default `certs` beside the
    /// configuration file; `None` for the built-in configuration).
    pub certificates: Option<PathBuf>,
    /// Whether clients must use TLS (STARTTLS on 5222).
    pub require_tls: bool,
    /// Default log filter (overridden by `RUST_LOG`).
    pub log: String,
    /// How log records are written (`[general] log_format`).
    pub log_format: LogFormat,
    /// Virtual hosts, the first being the default for clients without SNI.
    pub hosts: Vec<HostConfig>,
    /// Client listeners.
    pub listen: Vec<ListenConfig>,
    /// Federation listeners.
    pub s2s_listen: Vec<S2sListenConfig>,
    /// HTTP listeners (WebSocket, host-meta).
    pub http_listen: Vec<HttpListenConfig>,
    /// Where `/metrics` is served (`kind = "metrics"`).
    pub metrics_listen: Vec<SocketAddr>,
    /// The HTTP listeners' settings (`[http]`).
    pub http: xmppd_http::HttpSettings,
    /// Federation.
    pub s2s: S2sConfig,
    /// Storage backend.
    pub storage: StorageChoice,
    /// External components.
    pub components: Vec<ComponentConfig>,
    /// Client connection limits.
    pub limits: C2sLimits,
    /// Stream management (`[sm]`).
    pub sm: SmConfig,
    /// SASL failures allowed per stream.
    pub max_auth_failures: u32,
    /// How failed authentications slow their address down (XEP-0205 §4.3).
    pub auth_throttle: AuthThrottleSettings,
    /// Bytes a component connection may send before its handshake succeeds.
    pub component_handshake_bytes: usize,
    /// Time a component connection has for its header and handshake (a slowloris peer is
    /// closed with `connection-timeout` then).
    pub component_handshake_timeout: Duration,
    /// SASL mechanisms never offered (`[general] disable_sasl_mechanisms`).
    pub disabled_mechanisms: Vec<xmppd_stream::sasl::Mechanism>,
    /// Roster and offline storage limits.
    pub im: xmppd_im::ImLimits,
    /// `[invites]`: what `xmppd invite create` issues.
    pub invites: InvitesConfig,
    /// The modules every host runs unless its own list says otherwise (`None`: all).
    pub modules: Option<Vec<String>>,
    /// The configuration text, from which each module reads its `[modules.NAME]` section.
    pub text: Option<Arc<str>>,
    /// The administrators (`[general] admins`): XEP-0133 commands are theirs.
    pub admins: Vec<jid::BareJid>,
    /// The admin socket and HTTP admin API (`[admin]`).
    pub admin: AdminConfig,
}

impl Config {
    /// The built-in configuration: `localhost` from `./data` on 127.0.0.1:5222 and :5223 with
    /// a self-signed certificate and SQLite.
    pub fn default_localhost() -> Self {
        let loopback = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Config {
            source: None,
            data_dir: PathBuf::from("data"),
            certificates: None,
            require_tls: true,
            log: "info".into(),
            log_format: LogFormat::Human,
            hosts: vec![HostConfig {
                name: "localhost".into(),
                tls: None,
                modules: None,
            }],
            listen: vec![
                ListenConfig {
                    kind: ListenerKind::StartTls,
                    addr: SocketAddr::new(loopback, 5222),
                    channel_binding: ChannelBinding::Offered,
                    read_rate: Some(DEFAULT_C2S_READ_RATE),
                },
                ListenConfig {
                    kind: ListenerKind::DirectTls,
                    addr: SocketAddr::new(loopback, 5223),
                    channel_binding: ChannelBinding::Offered,
                    read_rate: Some(DEFAULT_C2S_READ_RATE),
                },
            ],
            s2s_listen: Vec::new(),
            http_listen: Vec::new(),
            metrics_listen: Vec::new(),
            http: xmppd_http::HttpSettings::default(),
            s2s: S2sConfig::default(),
            storage: StorageChoice::Sqlite(PathBuf::from("xmppd.db")),
            components: Vec::new(),
            limits: C2sLimits::default(),
            sm: SmConfig::default(),
            max_auth_failures: 3,
            auth_throttle: AuthThrottleSettings::default(),
            component_handshake_bytes: xmppd_component::ComponentLimits::default().handshake_bytes,
            component_handshake_timeout: xmppd_component::ComponentLimits::default().auth_timeout,
            disabled_mechanisms: Vec::new(),
            im: xmppd_im::ImLimits::default(),
            invites: InvitesConfig::default(),
            modules: None,
            text: None,
            admins: Vec::new(),
            admin: AdminConfig {
                socket: Some(PathBuf::from(DEFAULT_SOCKET)),
                ..AdminConfig::default()
            },
        }
    }

    /// Where the admin socket is (`None`: there is none).
    pub fn admin_socket(&self) -> Option<PathBuf> {
        self.admin.socket.as_ref().map(|p| self.data_dir.join(p))
    }

    /// The modules `host` runs (`None`: all).
    pub fn host_modules(&self, host: &HostConfig) -> Option<Vec<String>> {
        host.modules.clone().or_else(|| self.modules.clone())
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
        config.text = Some(Arc::from(text));
        let known = crate::modules::names();
        v.module_sections(&raw.modules, &known)?;
        if let Some(list) = &raw.general.modules {
            config.modules = Some(v.module_list(list, "general.modules", &known)?);
        }
        if let Some(dir) = raw.general.data_dir {
            if dir.get_ref().as_os_str().is_empty() {
                return Err(v.invalid(dir.span(), "general.data_dir", "must not be empty"));
            }
            config.data_dir = base.join(dir.get_ref());
        } else {
            config.data_dir = base.join("data");
        }
        config.certificates = Some(match &raw.general.certificates {
            Some(dir) if dir.get_ref().as_os_str().is_empty() => {
                let msg = "must not be empty; remove it to use `certs` beside this file";
                return Err(v.invalid(dir.span(), "general.certificates", msg));
            }
            Some(dir) => base.join(dir.get_ref()),
            None => base.join("certs"),
        });
        if let Some(tls) = raw.general.require_tls {
            config.require_tls = tls;
        }
        if let Some(log) = raw.general.log {
            config.log = log;
        }
        if let Some(format) = &raw.general.log_format {
            config.log_format = match format.get_ref().as_str() {
                "human" => LogFormat::Human,
                "json" => LogFormat::Json,
                other => {
                    let msg = format!("unknown log format '{other}'; use \"human\" or \"json\"");
                    return Err(v.invalid(format.span(), "general.log_format", msg));
                }
            };
        }
        if let Some(names) = &raw.general.disable_sasl_mechanisms {
            config.disabled_mechanisms = v.disabled_mechanisms(names)?;
        }
        if !raw.host.is_empty() {
            config.hosts = v.hosts(&raw.host, &base, &known)?;
        }
        if !raw.listen.is_empty() {
            (
                config.listen,
                config.s2s_listen,
                config.http_listen,
                config.metrics_listen,
            ) = v.listeners(&raw.listen)?;
        }
        if let Some(storage) = raw.storage {
            config.storage = v.storage(storage)?;
        }
        config.components = v.components(&raw.component, &config.hosts)?;
        v.limits(raw.limits, &mut config)?;
        config.sm = v.sm(raw.sm)?;
        config.s2s = v.s2s(raw.s2s, &base)?;
        config.http = v.http(raw.http, &config.hosts)?;
        if let Some(list) = &raw.general.admins {
            config.admins = v.admins(list)?;
        }
        config.admin = v.admin(raw.admin, &config.data_dir)?;
        config.invites = v.invites(raw.invites)?;
        crate::modules::validate(&config)?;
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

    /// `value` as a domain name, prepared as JID domains are (RFC 7622); an error at its line
    /// otherwise.
    fn domain(&self, value: &Spanned<String>, key: &str) -> Result<String, ConfigError> {
        match jid::BareJid::new(value.get_ref()) {
            Ok(j) if j.node().is_none() => Ok(j.domain().as_str().to_owned()),
            _ => {
                let msg = format!("'{}' is not a valid domain name", value.get_ref());
                Err(self.invalid(value.span(), key, msg))
            }
        }
    }

    /// An IP address, brackets allowed around IPv6 ones; loopback when not given. `example`
    /// follows the message when it does not parse.
    fn ip(
        &self,
        address: Option<&Spanned<String>>,
        key: &str,
        example: &str,
    ) -> Result<IpAddr, ConfigError> {
        let Some(a) = address else {
            return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
        };
        a.get_ref()
            .trim_matches(|c| c == '[' || c == ']')
            .parse()
            .map_err(|_| {
                let msg = format!("'{}' is not an IP address{example}", a.get_ref());
                self.invalid(a.span(), key, msg)
            })
    }
}

#[cfg(test)]
mod tests;
