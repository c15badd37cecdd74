//! `[general] disable_sasl_mechanisms`: the SASL mechanisms clients are not offered, as
//! Prosody's and ejabberd's option of the same name.

use toml::Spanned;
use xmppd_stream::sasl::Mechanism;

use super::{ConfigError, Validator};

const KEY: &str = "general.disable_sasl_mechanisms";

impl Validator<'_> {
    /// The mechanisms named (case-insensitively); an unknown name is an error listing the
    /// known ones, and disabling every mechanism is an error, since no one could log in.
    pub(super) fn disabled_mechanisms(
        &self,
        raw: &[Spanned<String>],
    ) -> Result<Vec<Mechanism>, ConfigError> {
        let mut disabled = Vec::new();
        for name in raw {
            let Some(mechanism) = Mechanism::from_name(&name.get_ref().to_ascii_uppercase()) else {
                let known: Vec<String> = Mechanism::PREFERENCE
                    .iter()
                    .map(|m| format!("\"{}\"", m.name()))
                    .collect();
                let msg = format!(
                    "unknown SASL mechanism '{}'; known: {}",
                    name.get_ref(),
                    known.join(", ")
                );
                return Err(self.invalid(name.span(), KEY, msg));
            };
            if !disabled.contains(&mechanism) {
                disabled.push(mechanism);
            }
        }
        if let Some(last) = raw.last()
            && Mechanism::PREFERENCE.iter().all(|m| disabled.contains(m))
        {
            let msg = "every mechanism is disabled, so no client could log in; keep at least \"SCRAM-SHA-256\"";
            return Err(self.invalid(last.span(), KEY, msg));
        }
        Ok(disabled)
    }
}
