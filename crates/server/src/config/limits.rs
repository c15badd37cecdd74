//! `[limits]`: client connection, authentication and roster/offline storage limits, and
//! what one client address may do (XEP-0205).

use std::time::Duration;

use xmppd_core::read_shaper::ReadRate;

use serde::Deserialize;
use toml::Spanned;

use super::{Config, ConfigError, Validator};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    max_stanza_bytes: Option<Spanned<usize>>,
    max_stanza_bytes_unauthenticated: Option<Spanned<usize>>,
    max_depth: Option<usize>,
    max_attrs: Option<usize>,
    auth_timeout_secs: Option<u64>,
    session_queue: Option<Spanned<usize>>,
    max_connections: Option<usize>,
    ping_after_secs: Option<Spanned<u64>>,
    dead_after_secs: Option<Spanned<u64>>,
    max_auth_failures: Option<Spanned<u32>>,
    max_roster_items: Option<Spanned<u64>>,
    max_offline_messages: Option<Spanned<u64>>,
    max_offline_bytes: Option<u64>,
    max_pending_subscriptions: Option<Spanned<u64>>,
    max_connections_per_ip: Option<Spanned<u32>>,
    max_connections_per_ipv6_64: Option<Spanned<u32>>,
    connection_attempts_per_ip: Option<Spanned<u32>>,
    connection_attempts_period_secs: Option<Spanned<u64>>,
    auth_failures_before_delay: Option<u32>,
    auth_failure_delay_ms: Option<Spanned<u64>>,
    auth_failure_max_delay_secs: Option<Spanned<u64>>,
    auth_failure_forget_secs: Option<Spanned<u64>>,
    component_handshake_bytes: Option<Spanned<usize>>,
    component_handshake_timeout_secs: Option<Spanned<u64>>,
}

impl Validator<'_> {
    pub(super) fn limits(&self, raw: RawLimits, config: &mut Config) -> Result<(), ConfigError> {
        self.per_address(&raw, config)?;
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
        for (v, key, field) in [
            (
                raw.ping_after_secs,
                "limits.ping_after_secs",
                &mut l.ping_after,
            ),
            (
                raw.dead_after_secs,
                "limits.dead_after_secs",
                &mut l.dead_after,
            ),
        ] {
            if let Some(v) = v {
                if *v.get_ref() == 0 {
                    return Err(self.invalid(v.span(), key, "must be at least 1"));
                }
                *field = Duration::from_secs(v.into_inner());
            }
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
        if let Some(v) = raw.max_offline_bytes {
            config.im.max_offline_bytes = v;
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

impl Validator<'_> {
    /// The XEP-0205 keys of `[limits]`: connections, attempts and failed authentications per
    /// address, and the component listener's budget and deadline before the handshake.
    fn per_address(&self, raw: &RawLimits, config: &mut Config) -> Result<(), ConfigError> {
        let at_least_1 = |v: &Option<Spanned<u32>>, key: &str| match v {
            Some(v) if *v.get_ref() == 0 => {
                Err(self.invalid(v.span(), &format!("limits.{key}"), "must be at least 1"))
            }
            v => Ok(v.as_ref().map(|v| *v.get_ref())),
        };
        let secs = |v: &Option<Spanned<u64>>, key: &str| match v {
            Some(v) if *v.get_ref() == 0 => {
                Err(self.invalid(v.span(), &format!("limits.{key}"), "must be at least 1"))
            }
            v => Ok(v.as_ref().map(|v| *v.get_ref())),
        };
        let c = &mut config.limits.per_address;
        if let Some(v) = at_least_1(&raw.max_connections_per_ip, "max_connections_per_ip")? {
            c.per_address = v;
        }
        if let Some(v) = at_least_1(
            &raw.max_connections_per_ipv6_64,
            "max_connections_per_ipv6_64",
        )? {
            c.per_ipv6_64 = v;
        }
        if let Some(v) = at_least_1(
            &raw.connection_attempts_per_ip,
            "connection_attempts_per_ip",
        )? {
            c.attempts = v;
        }
        if let Some(v) = secs(
            &raw.connection_attempts_period_secs,
            "connection_attempts_period_secs",
        )? {
            c.attempt_period = Duration::from_secs(v);
        }
        let a = &mut config.auth_throttle;
        if let Some(v) = raw.auth_failures_before_delay {
            a.free_failures = v;
        }
        if let Some(v) = secs(&raw.auth_failure_delay_ms, "auth_failure_delay_ms")? {
            a.delay = Duration::from_millis(v);
        }
        if let Some(v) = secs(
            &raw.auth_failure_max_delay_secs,
            "auth_failure_max_delay_secs",
        )? {
            a.max_delay = Duration::from_secs(v);
        }
        if let Some(v) = secs(&raw.auth_failure_forget_secs, "auth_failure_forget_secs")? {
            a.forget_after = Duration::from_secs(v);
        }
        if a.max_delay < a.delay
            && let Some(v) = raw.auth_failure_max_delay_secs.as_ref()
        {
            let msg = "must not be shorter than auth_failure_delay_ms";
            return Err(self.invalid(v.span(), "limits.auth_failure_max_delay_secs", msg));
        }
        if let Some(v) = &raw.component_handshake_bytes {
            if *v.get_ref() < 1024 {
                return Err(self.invalid(
                    v.span(),
                    "limits.component_handshake_bytes",
                    "must be at least 1024 (a stream header and a handshake)",
                ));
            }
            config.component_handshake_bytes = *v.get_ref();
        }
        if let Some(v) = secs(
            &raw.component_handshake_timeout_secs,
            "component_handshake_timeout_secs",
        )? {
            config.component_handshake_timeout = Duration::from_secs(v);
        }
        Ok(())
    }

    /// A listener's read rate from its `read_bytes_per_second` (0: none) and
    /// `read_burst_bytes` keys, named `{prefix}.read_…` in errors.
    pub(super) fn read_rate(
        &self,
        bytes_per_second: Option<&Spanned<u32>>,
        burst_bytes: Option<&Spanned<u32>>,
        default: Option<ReadRate>,
        prefix: &str,
    ) -> Result<Option<ReadRate>, ConfigError> {
        if let Some(v) = burst_bytes
            && *v.get_ref() < 1024
        {
            let key = format!("{prefix}.read_burst_bytes");
            return Err(self.invalid(v.span(), &key, "must be at least 1024"));
        }
        let rate = match bytes_per_second.map(|v| *v.get_ref()) {
            Some(0) => return Ok(None),
            Some(n) => n,
            None => match default {
                Some(d) => d.bytes_per_second,
                None => return Ok(None),
            },
        };
        let burst = burst_bytes
            .map(|v| *v.get_ref())
            .or(default.map(|d| d.burst_bytes))
            .unwrap_or(DEFAULT_C2S_READ_RATE.burst_bytes);
        Ok(Some(ReadRate {
            bytes_per_second: rate,
            burst_bytes: burst,
        }))
    }
}

/// A client listener's read rate unless it says otherwise: XEP-0205 §4.8's "high" limit,
/// with a burst of one stanza of the default maximum size.
pub const DEFAULT_C2S_READ_RATE: ReadRate = ReadRate {
    bytes_per_second: 10_000,
    burst_bytes: 256 * 1024,
};
