//! `[[host]]`: the virtual hosts and their certificates.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Validator};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHost {
    name: Spanned<String>,
    cert: Option<Spanned<PathBuf>>,
    key: Option<Spanned<PathBuf>>,
    modules: Option<Vec<Spanned<String>>>,
}

/// One virtual host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostConfig {
    /// The domain.
    pub name: String,
    /// PEM certificate chain and key; `None` means a self-signed pair in the data dir.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// The modules this host runs, replacing `[general] modules` (`None`: that list).
    pub modules: Option<Vec<String>>,
}

impl Validator<'_> {
    pub(super) fn hosts(
        &self,
        raw: &[RawHost],
        base: &Path,
        known: &[&str],
    ) -> Result<Vec<HostConfig>, ConfigError> {
        let mut hosts: Vec<HostConfig> = Vec::new();
        for (i, h) in raw.iter().enumerate() {
            let key = |k: &str| format!("host[{i}].{k}");
            let name = self.domain(&h.name, &key("name"))?;
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
            let modules = match &h.modules {
                Some(list) => Some(self.module_list(list, &key("modules"), known)?),
                None => None,
            };
            hosts.push(HostConfig { name, tls, modules });
        }
        Ok(hosts)
    }
}
