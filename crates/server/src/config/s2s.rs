//! `[s2s]` and `[[s2s.route]]`: federation policy, trust anchors, timeouts and static routes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Validator};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawS2s {
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
    read_bytes_per_second: Option<Spanned<u32>>,
    read_burst_bytes: Option<Spanned<u32>>,
    max_connections_per_ip: Option<Spanned<u32>>,
    max_connections_per_ipv6_64: Option<Spanned<u32>>,
    connection_attempts_per_ip: Option<Spanned<u32>>,
    connection_attempts_period_secs: Option<Spanned<u64>>,
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

impl Validator<'_> {
    pub(super) fn s2s(&self, raw: RawS2s, base: &Path) -> Result<S2sConfig, ConfigError> {
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
        st.read_rate = self.read_rate(
            raw.read_bytes_per_second.as_ref(),
            raw.read_burst_bytes.as_ref(),
            st.read_rate,
            "s2s",
        )?;
        let count = |v: &Option<Spanned<u32>>, key: &str, field: &mut u32| match v {
            Some(v) if *v.get_ref() == 0 => {
                Err(self.invalid(v.span(), &format!("s2s.{key}"), "must be at least 1"))
            }
            Some(v) => {
                *field = *v.get_ref();
                Ok(())
            }
            None => Ok(()),
        };
        let p = &mut st.per_address;
        count(
            &raw.max_connections_per_ip,
            "max_connections_per_ip",
            &mut p.per_address,
        )?;
        count(
            &raw.max_connections_per_ipv6_64,
            "max_connections_per_ipv6_64",
            &mut p.per_ipv6_64,
        )?;
        count(
            &raw.connection_attempts_per_ip,
            "connection_attempts_per_ip",
            &mut p.attempts,
        )?;
        p.attempt_period = secs(
            raw.connection_attempts_period_secs,
            "connection_attempts_period_secs",
            p.attempt_period,
        )?;
        for (i, r) in raw.route.iter().enumerate() {
            let key = |k: &str| format!("s2s.route[{i}].{k}");
            let domain = self.domain(&r.domain, &key("domain"))?;
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
}
