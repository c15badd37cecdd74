//! `[invites]`: the invitations `xmppd invite create` issues (XEP-0401) — how long they last
//! and where their landing page is.

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Validator};

/// Seven days, XEP-0379 §5.2's "e.g. one week".
const DEFAULT_EXPIRY_SECS: u64 = 7 * 24 * 3600;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawInvites {
    expiry: Option<Spanned<String>>,
    landing_page_url: Option<Spanned<String>>,
}

/// `[invites]`, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvitesConfig {
    /// How long a new invitation lasts unless `--expires` says otherwise, in seconds.
    pub expiry_secs: u64,
    /// The landing pages' base URL, ending in `/`; the token follows it. `None`: derived
    /// from the first HTTPS (else HTTP) listener.
    pub landing_page_url: Option<String>,
}

impl Default for InvitesConfig {
    fn default() -> Self {
        InvitesConfig {
            expiry_secs: DEFAULT_EXPIRY_SECS,
            landing_page_url: None,
        }
    }
}

/// A duration written `N` followed by `d`, `h`, `m` or `s` (`7d`, `12h`), in seconds; at
/// least one second, at most ten years.
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = match text.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&text[..i], c),
        _ => (text, 's'),
    };
    let scale = match unit {
        'd' => 86_400,
        'h' => 3600,
        'm' => 60,
        's' => 1,
        _ => 0,
    };
    let n: u64 = number.parse().unwrap_or(0);
    match n.checked_mul(scale) {
        Some(secs) if (1..=10 * 365 * 86_400).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "'{text}' is not a duration: write a number of days, hours, minutes or seconds \
             such as 7d, 12h, 30m (at most ten years)"
        )),
    }
}

impl Validator<'_> {
    pub(super) fn invites(&self, raw: RawInvites) -> Result<InvitesConfig, ConfigError> {
        let mut invites = InvitesConfig::default();
        if let Some(v) = &raw.expiry {
            invites.expiry_secs = parse_duration(v.get_ref())
                .map_err(|m| self.invalid(v.span(), "invites.expiry", m))?;
        }
        if let Some(v) = &raw.landing_page_url {
            let url = v.get_ref();
            let ok = (url.starts_with("https://") || url.starts_with("http://"))
                && !url.contains(['?', '#', ' ', '"', '<', '>']);
            if !ok {
                let msg = "write the base URL of the landing pages, such as \
                           https://example.com/invite/ (http or https, no query)";
                return Err(self.invalid(v.span(), "invites.landing_page_url", msg));
            }
            let mut url = url.clone();
            if !url.ends_with('/') {
                url.push('/');
            }
            invites.landing_page_url = Some(url);
        }
        Ok(invites)
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_in_days_hours_minutes_and_seconds() {
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(parse_duration("12h"), Ok(43_200));
        assert_eq!(parse_duration("30m"), Ok(1800));
        assert_eq!(parse_duration("90"), Ok(90));
        assert_eq!(parse_duration("5s"), Ok(5));
        for bad in ["", "0d", "d", "7w", "-1d", "1.5d", "99999d", "7 d"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
