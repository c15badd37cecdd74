//! `[[listen]]`: client and federation listeners.

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;
use xmppd_c2s::{ChannelBinding, ListenerKind};
use xmppd_http::HttpKind;
use xmppd_s2s::S2sListenerKind;

use super::limits::DEFAULT_C2S_READ_RATE;
use super::{ConfigError, Validator};
use xmppd_core::read_shaper::ReadRate;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListen {
    kind: Spanned<String>,
    #[serde(default)]
    address: Option<Spanned<String>>,
    port: Spanned<u16>,
    #[serde(default)]
    channel_binding: Option<Spanned<bool>>,
    #[serde(default)]
    read_bytes_per_second: Option<Spanned<u32>>,
    #[serde(default)]
    read_burst_bytes: Option<Spanned<u32>>,
}

/// One listening socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenConfig {
    /// STARTTLS or direct TLS.
    pub kind: ListenerKind,
    /// Where to listen.
    pub addr: SocketAddr,
    /// Whether SASL channel binding is offered (`channel_binding`, default true).
    pub channel_binding: ChannelBinding,
    /// How fast each connection is read (XEP-0205 §4.8; `None`: as fast as it comes).
    pub read_rate: Option<ReadRate>,
}

/// A federation listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S2sListenConfig {
    /// STARTTLS (5269) or direct TLS.
    pub kind: S2sListenerKind,
    /// Where to listen.
    pub addr: SocketAddr,
}

/// An HTTP listener (WebSocket, host-meta).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpListenConfig {
    /// Plain HTTP or HTTPS.
    pub kind: HttpKind,
    /// Where to listen.
    pub addr: SocketAddr,
    /// How fast each WebSocket on it is read (XEP-0205 §4.8; `None`: as fast as it comes).
    pub read_rate: Option<ReadRate>,
}

/// The listeners of every kind (the last: metrics).
pub(super) type Listeners = (
    Vec<ListenConfig>,
    Vec<S2sListenConfig>,
    Vec<HttpListenConfig>,
    Vec<SocketAddr>,
);

enum Kind {
    C2s(ListenerKind),
    S2s(S2sListenerKind),
    Http(HttpKind),
    Metrics,
}

impl Validator<'_> {
    pub(super) fn listeners(&self, raw: &[RawListen]) -> Result<Listeners, ConfigError> {
        let mut out: Vec<ListenConfig> = Vec::new();
        let mut s2s: Vec<S2sListenConfig> = Vec::new();
        let mut http: Vec<HttpListenConfig> = Vec::new();
        let mut metrics: Vec<SocketAddr> = Vec::new();
        for (i, l) in raw.iter().enumerate() {
            let key = |k: &str| format!("listen[{i}].{k}");
            let kind = match l.kind.get_ref().as_str() {
                "c2s" => Kind::C2s(ListenerKind::StartTls),
                "c2s_tls" => Kind::C2s(ListenerKind::DirectTls),
                "s2s" => Kind::S2s(S2sListenerKind::StartTls),
                "s2s_tls" => Kind::S2s(S2sListenerKind::DirectTls),
                "http" => Kind::Http(HttpKind::Plain),
                "https" => Kind::Http(HttpKind::Tls),
                "metrics" => Kind::Metrics,
                other => {
                    let msg = format!(
                        "unknown listener kind '{other}'; use \"c2s\", \"c2s_tls\", \"s2s\", \"s2s_tls\", \"http\", \"https\" or \"metrics\""
                    );
                    return Err(self.invalid(l.kind.span(), &key("kind"), msg));
                }
            };
            let example = " (e.g. \"0.0.0.0\" or \"::\")";
            let ip = self.ip(l.address.as_ref(), &key("address"), example)?;
            let addr = SocketAddr::new(ip, *l.port.get_ref());
            let taken = out.iter().any(|o| o.addr == addr)
                || s2s.iter().any(|o| o.addr == addr)
                || http.iter().any(|o| o.addr == addr)
                || metrics.contains(&addr);
            if addr.port() != 0 && taken {
                let msg = format!("{addr} is used by two listeners");
                return Err(self.invalid(l.port.span(), &key("port"), msg));
            }
            let channel_binding = match (&kind, &l.channel_binding) {
                (_, None) => ChannelBinding::Offered,
                (Kind::C2s(_), Some(on)) if *on.get_ref() => ChannelBinding::Offered,
                (Kind::C2s(_), Some(_)) => ChannelBinding::Off,
                (_, Some(on)) => {
                    let msg = "channel_binding applies to client listeners (\"c2s\", \"c2s_tls\")";
                    return Err(self.invalid(on.span(), &key("channel_binding"), msg));
                }
            };
            let rate_keys = [&l.read_bytes_per_second, &l.read_burst_bytes];
            if let (Kind::S2s(_) | Kind::Metrics, Some(v)) =
                (&kind, rate_keys.into_iter().flatten().next())
            {
                let msg = "the read rate of a listener applies to client listeners (\"c2s\", \"c2s_tls\", and WebSockets on \"http\", \"https\"); set [s2s] read_bytes_per_second for servers";
                return Err(self.invalid(v.span(), &key("read_bytes_per_second"), msg));
            }
            let read_rate = self.read_rate(
                l.read_bytes_per_second.as_ref(),
                l.read_burst_bytes.as_ref(),
                Some(DEFAULT_C2S_READ_RATE),
                &format!("listen[{i}]"),
            )?;
            match kind {
                Kind::C2s(kind) => out.push(ListenConfig {
                    kind,
                    addr,
                    channel_binding,
                    read_rate,
                }),
                Kind::S2s(kind) => s2s.push(S2sListenConfig { kind, addr }),
                Kind::Http(kind) => http.push(HttpListenConfig {
                    kind,
                    addr,
                    read_rate,
                }),
                Kind::Metrics => metrics.push(addr),
            }
        }
        Ok((out, s2s, http, metrics))
    }
}
