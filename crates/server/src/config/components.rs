//! `[[component]]`: external components (XEP-0114).

use std::net::SocketAddr;

use serde::Deserialize;
use toml::Spanned;

use super::hosts::HostConfig;
use super::{ConfigError, Validator};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawComponent {
    name: Spanned<String>,
    secret: Spanned<String>,
    #[serde(default)]
    address: Option<Spanned<String>>,
    #[serde(default)]
    port: Option<u16>,
}

/// An external component (XEP-0114).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComponentConfig {
    /// Its domain.
    pub name: String,
    /// The shared secret of the handshake.
    pub secret: String,
    /// Where the component listener for it listens (components sharing an address share the
    /// listener).
    pub addr: SocketAddr,
}

impl Validator<'_> {
    pub(super) fn components(
        &self,
        raw: &[RawComponent],
        hosts: &[HostConfig],
    ) -> Result<Vec<ComponentConfig>, ConfigError> {
        let mut out: Vec<ComponentConfig> = Vec::new();
        for (i, c) in raw.iter().enumerate() {
            let key = |k: &str| format!("component[{i}].{k}");
            let name = self.domain(&c.name, &key("name"))?;
            if hosts.iter().any(|h| h.name == name) || out.iter().any(|o| o.name == name) {
                let msg = format!("{name} is already a host or another component");
                return Err(self.invalid(c.name.span(), &key("name"), msg));
            }
            if c.secret.get_ref().is_empty() {
                return Err(self.invalid(
                    c.secret.span(),
                    &key("secret"),
                    "the shared secret must not be empty",
                ));
            }
            let ip = self.ip(c.address.as_ref(), &key("address"), "")?;
            let addr = SocketAddr::new(ip, c.port.unwrap_or(5347));
            out.push(ComponentConfig {
                name,
                secret: c.secret.get_ref().clone(),
                addr,
            });
        }
        Ok(out)
    }
}
