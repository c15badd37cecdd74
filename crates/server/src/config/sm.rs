//! `[sm]`: stream management (XEP-0198) — resumption window, unacknowledged stanzas, ack
//! requests and saving resumable sessions across a restart.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use xmppd_core::client::sm::SmConfig;

use super::{ConfigError, Validator};

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSm {
    enabled: Option<bool>,
    resume_timeout_secs: Option<Spanned<u64>>,
    max_resume_timeout_secs: Option<Spanned<u64>>,
    max_unacked: Option<Spanned<usize>>,
    request_ack_every: Option<Spanned<u32>>,
    request_ack_after_secs: Option<Spanned<u64>>,
    persist: Option<bool>,
}

impl Validator<'_> {
    pub(super) fn sm(&self, raw: RawSm) -> Result<SmConfig, ConfigError> {
        let mut sm = SmConfig::default();
        if let Some(v) = raw.enabled {
            sm.enabled = v;
        }
        if let Some(v) = raw.persist {
            sm.persist = v;
        }
        let positive = |v: &Spanned<u64>, key: &str| {
            if *v.get_ref() == 0 {
                Err(self.invalid(v.span(), key, "must be at least 1"))
            } else {
                Ok(Duration::from_secs(*v.get_ref()))
            }
        };
        if let Some(v) = &raw.max_resume_timeout_secs {
            sm.max_resume_timeout = positive(v, "sm.max_resume_timeout_secs")?;
        }
        if let Some(v) = &raw.resume_timeout_secs {
            sm.resume_timeout = positive(v, "sm.resume_timeout_secs")?;
            if sm.resume_timeout > sm.max_resume_timeout {
                return Err(self.invalid(
                    v.span(),
                    "sm.resume_timeout_secs",
                    format!(
                        "must not exceed sm.max_resume_timeout_secs ({})",
                        sm.max_resume_timeout.as_secs()
                    ),
                ));
            }
        }
        if sm.resume_timeout > sm.max_resume_timeout {
            sm.resume_timeout = sm.max_resume_timeout;
        }
        if let Some(v) = raw.max_unacked {
            if *v.get_ref() == 0 {
                return Err(self.invalid(v.span(), "sm.max_unacked", "must be at least 1"));
            }
            sm.max_unacked = v.into_inner();
        }
        if let Some(v) = raw.request_ack_every {
            if *v.get_ref() == 0 {
                return Err(self.invalid(v.span(), "sm.request_ack_every", "must be at least 1"));
            }
            sm.request_every = v.into_inner();
        }
        if let Some(v) = &raw.request_ack_after_secs {
            sm.request_after = positive(v, "sm.request_ack_after_secs")?;
        }
        Ok(sm)
    }
}
