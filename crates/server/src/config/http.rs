//! `[http]`: the HTTP listeners' limits, trusted proxies, WebSocket and BOSH endpoints and
//! CORS, and
//! `[[http.host]]`: what each virtual host offers over HTTP.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use xmppd_http::proxy::{IpNet, TrustedProxies};
use xmppd_http::{HostWeb, HttpSettings};

use super::{ConfigError, HostConfig, Validator};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    max_header_bytes: Option<Spanned<usize>>,
    max_headers: Option<Spanned<usize>>,
    max_body_bytes: Option<Spanned<u64>>,
    header_timeout_secs: Option<Spanned<u64>>,
    max_connections: Option<Spanned<usize>>,
    max_connections_per_ip: Option<Spanned<usize>>,
    requests_per_second: Option<Spanned<u32>>,
    request_burst: Option<Spanned<u32>>,
    trusted_proxies: Option<Vec<Spanned<String>>>,
    websocket_path: Option<Spanned<String>>,
    websocket_max_fragments: Option<Spanned<usize>>,
    bosh_path: Option<Spanned<String>>,
    bosh_max_body_bytes: Option<Spanned<u64>>,
    bosh_max_wait_secs: Option<Spanned<u64>>,
    bosh_max_hold: Option<Spanned<u32>>,
    bosh_inactivity_secs: Option<Spanned<u64>>,
    bosh_max_pause_secs: Option<Spanned<u64>>,
    bosh_polling_secs: Option<Spanned<u64>>,
    bosh_max_sessions_per_ip: Option<Spanned<usize>>,
    allow_origin: Option<Spanned<String>>,
    #[serde(default)]
    host: Vec<RawHttpHost>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpHost {
    name: Spanned<String>,
    websocket: Option<bool>,
    websocket_url: Option<Spanned<String>>,
    bosh: Option<bool>,
    bosh_url: Option<Spanned<String>>,
}

/// The most BOSH requests a session may hold at once.
const MAX_BOSH_HOLD: u32 = 10;

/// The smallest head hyper can read requests into.
const MIN_HEADER_BYTES: usize = 8192;

impl Validator<'_> {
    /// A count or duration that must not be zero.
    fn nonzero<T: Copy + Default + PartialEq>(
        &self,
        v: &Spanned<T>,
        key: &str,
    ) -> Result<T, ConfigError> {
        if *v.get_ref() == T::default() {
            return Err(self.invalid(v.span(), key, "must be at least 1"));
        }
        Ok(*v.get_ref())
    }

    pub(super) fn http(
        &self,
        raw: RawHttp,
        hosts: &[HostConfig],
    ) -> Result<HttpSettings, ConfigError> {
        let mut s = HttpSettings::default();
        let at_least = |v: &Spanned<usize>, key: &str, min: usize| {
            if *v.get_ref() < min {
                Err(self.invalid(v.span(), key, format!("must be at least {min}")))
            } else {
                Ok(*v.get_ref())
            }
        };
        if let Some(v) = &raw.max_header_bytes {
            s.max_header_bytes = at_least(v, "http.max_header_bytes", MIN_HEADER_BYTES)?;
        }
        if let Some(v) = &raw.max_headers {
            s.max_headers = at_least(v, "http.max_headers", 8)?;
        }
        if let Some(v) = &raw.max_connections {
            s.max_connections = at_least(v, "http.max_connections", 1)?;
        }
        if let Some(v) = &raw.max_connections_per_ip {
            s.max_connections_per_ip = at_least(v, "http.max_connections_per_ip", 1)?;
        }
        if let Some(v) = &raw.websocket_max_fragments {
            s.websocket_max_fragments = at_least(v, "http.websocket_max_fragments", 1)?;
        }
        if let Some(v) = &raw.max_body_bytes {
            s.max_body_bytes = self.nonzero(v, "http.max_body_bytes")?;
        }
        if let Some(v) = &raw.header_timeout_secs {
            s.header_timeout = Duration::from_secs(self.nonzero(v, "http.header_timeout_secs")?);
        }
        if let Some(v) = &raw.requests_per_second {
            s.requests_per_second = self.nonzero(v, "http.requests_per_second")?;
        }
        if let Some(v) = &raw.request_burst {
            s.request_burst = self.nonzero(v, "http.request_burst")?;
        }
        if let Some(list) = &raw.trusted_proxies {
            let mut nets = Vec::new();
            for (i, p) in list.iter().enumerate() {
                let net: IpNet = p.get_ref().parse().map_err(|e| {
                    self.invalid(
                        p.span(),
                        &format!("http.trusted_proxies[{i}]"),
                        format!("{e}"),
                    )
                })?;
                nets.push(net);
            }
            s.trusted_proxies = TrustedProxies(nets);
        }
        self.bosh(&raw, &mut s)?;
        if let Some(v) = raw.websocket_path {
            s.websocket_path = self.endpoint_path(v, "http.websocket_path", "/xmpp-websocket")?;
        }
        if let Some(v) = raw.bosh_path {
            let span = v.span();
            s.bosh_path = self.endpoint_path(v, "http.bosh_path", "/http-bind")?;
            if s.bosh_path == s.websocket_path {
                let msg = "must differ from http.websocket_path";
                return Err(self.invalid(span, "http.bosh_path", msg));
            }
        }
        if let Some(v) = raw.allow_origin {
            let origin = v.get_ref();
            let ok = origin == "*"
                || ((origin.starts_with("https://") || origin.starts_with("http://"))
                    && origin.bytes().all(|b| b.is_ascii_graphic())
                    && !origin.ends_with('/'));
            if !ok {
                let msg = "must be \"*\" or one origin like \"https://chat.example.org\"";
                return Err(self.invalid(v.span(), "http.allow_origin", msg));
            }
            s.allow_origin = v.into_inner();
        }
        for (i, h) in raw.host.iter().enumerate() {
            let key = |k: &str| format!("http.host[{i}].{k}");
            let name = self.domain(&h.name, &key("name"))?;
            if !hosts.iter().any(|c| c.name == name) {
                let msg = format!("{name} is not a [[host]]; add it there first");
                return Err(self.invalid(h.name.span(), &key("name"), msg));
            }
            if s.hosts.contains_key(&name) {
                let msg = format!("{name} has two [[http.host]] sections; keep one");
                return Err(self.invalid(h.name.span(), &key("name"), msg));
            }
            let mut web = HostWeb::default();
            if let Some(v) = h.websocket {
                web.websocket = v;
            }
            if let Some(url) = &h.websocket_url {
                let example = "wss://chat.example.org/xmpp-websocket";
                web.websocket_url = Some(self.url(url, &key("websocket_url"), example)?);
            }
            if let Some(v) = h.bosh {
                web.bosh = v;
            }
            if let Some(url) = &h.bosh_url {
                let example = "https://chat.example.org/http-bind";
                web.bosh_url = Some(self.url(url, &key("bosh_url"), example)?);
            }
            s.hosts.insert(name, web);
        }
        Ok(s)
    }

    /// A URL announced in host-meta: of the scheme of `example` (or its plain twin), printable.
    fn url(&self, v: &Spanned<String>, key: &str, example: &str) -> Result<String, ConfigError> {
        let u = v.get_ref();
        let secure = example.split_once("://").map_or("", |(s, _)| s);
        let plain = secure.trim_end_matches('s');
        let ok = (u.starts_with(&format!("{secure}://")) || u.starts_with(&format!("{plain}://")))
            && u.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            let msg = format!("must be a URL like \"{example}\"");
            return Err(self.invalid(v.span(), key, msg));
        }
        Ok(u.clone())
    }

    /// An endpoint's path: plain characters, outside `/.well-known/`.
    fn endpoint_path(
        &self,
        v: Spanned<String>,
        key: &str,
        example: &str,
    ) -> Result<String, ConfigError> {
        let path = v.get_ref();
        let plain = path.starts_with('/')
            && path.len() > 1
            && path
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "/-_.~".contains(c));
        if !plain || path.starts_with("/.well-known/") || path.starts_with("/upload/") {
            let msg = format!(
                "must be a path like \"{example}\" (letters, digits, / - _ . ~), \
                 outside /.well-known/ and /upload/"
            );
            return Err(self.invalid(v.span(), key, msg));
        }
        Ok(v.into_inner())
    }

    /// The BOSH limits of `[http]` (XEP-0124 §7.1 `wait`, `hold`, `inactivity`, `maxpause`,
    /// `polling`).
    fn bosh(&self, raw: &RawHttp, s: &mut HttpSettings) -> Result<(), ConfigError> {
        let secs = |v: &Spanned<u64>, key: &str| -> Result<Duration, ConfigError> {
            Ok(Duration::from_secs(self.nonzero(v, key)?))
        };
        if let Some(v) = &raw.bosh_max_body_bytes {
            s.bosh_max_body_bytes = self.nonzero(v, "http.bosh_max_body_bytes")?;
        }
        if let Some(v) = &raw.bosh_max_wait_secs {
            s.bosh_max_wait = secs(v, "http.bosh_max_wait_secs")?;
        }
        if let Some(v) = &raw.bosh_max_hold {
            // Each request a session may hold is one more open HTTP request and one more
            // answer kept for retransmission (XEP-0124 §14.3).
            if *v.get_ref() > MAX_BOSH_HOLD {
                let msg = format!("must be at most {MAX_BOSH_HOLD}");
                return Err(self.invalid(v.span(), "http.bosh_max_hold", msg));
            }
            s.bosh_max_hold = *v.get_ref();
        }
        if let Some(v) = &raw.bosh_inactivity_secs {
            s.bosh_inactivity = secs(v, "http.bosh_inactivity_secs")?;
        }
        if let Some(v) = &raw.bosh_max_pause_secs {
            s.bosh_max_pause = secs(v, "http.bosh_max_pause_secs")?;
        }
        if let Some(v) = &raw.bosh_polling_secs {
            s.bosh_polling = Duration::from_secs(*v.get_ref());
        }
        if let Some(v) = &raw.bosh_max_sessions_per_ip {
            s.bosh_max_sessions_per_ip = self.nonzero(v, "http.bosh_max_sessions_per_ip")?;
        }
        Ok(())
    }
}
