//! `[limits]`: client connection, authentication and roster/offline storage limits.

use std::time::Duration;

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
    max_pending_subscriptions: Option<Spanned<u64>>,
}

impl Validator<'_> {
    pub(super) fn limits(&self, raw: RawLimits, config: &mut Config) -> Result<(), ConfigError> {
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
