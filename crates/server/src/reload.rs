//! Reloading a running server's configuration (SIGHUP, `xmppd reload`): the new file is
//! validated whole by [`Config::load`] before this sees it, so a broken one changes nothing.
//! What can change under running connections changes at once: every host's certificate and
//! key are read again (a renewed Let's Encrypt certificate) and served to new client, HTTPS
//! and federation connections, while established ones keep theirs. Any other difference from
//! the running configuration is reported as waiting for a restart, never half applied.

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use xmppd_c2s::{HostCertificate, TlsSetup};
use xmppd_core::metrics::Metrics;
use xmppd_s2s::S2sTls;

use crate::config::Config;
use crate::{cert_dir, certs};

/// Federation's keys, by domain.
pub(crate) type DomainKeys = Vec<(String, Arc<CertifiedKey>)>;

/// The certificates of `config`'s hosts for client TLS, and the same keys for federation, each
/// expiry recorded in `metrics`.
pub(crate) fn host_certificates(
    config: &Config,
    metrics: &Metrics,
) -> anyhow::Result<(Vec<HostCertificate>, DomainKeys)> {
    let mut host_certs = Vec::new();
    let mut s2s_keys = Vec::new();
    for host in &config.hosts {
        let cert = certs::host_certificate(host, config.certificates.as_deref(), &config.data_dir)?;
        if let Some(not_after) = cert.chain.first().and_then(|c| cert_dir::not_after(c)) {
            metrics.certificate_expires(&host.name, not_after);
        }
        let signing = rustls::crypto::ring::sign::any_supported_type(&cert.key)
            .map_err(|e| anyhow::anyhow!("unsupported private key for {}: {e}", host.name))?;
        s2s_keys.push((
            host.name.clone(),
            Arc::new(CertifiedKey::new(cert.chain.clone(), signing)),
        ));
        host_certs.push(cert);
    }
    Ok((host_certs, s2s_keys))
}

/// In-process services (`conference.HOST` …) federate under their host's certificate.
pub(crate) fn add_service_keys(keys: &mut DomainKeys, service_domains: &[(String, String)]) {
    for (domain, host) in service_domains {
        if let Some(key) = keys.iter().find(|(h, _)| h == host).map(|(_, k)| k.clone()) {
            keys.push((domain.clone(), key));
        }
    }
}

/// What a reload did.
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// Hosts whose certificate and key were read again and are now served.
    pub certificates: Vec<String>,
    /// Whether the file differs from the running configuration in anything else (it takes
    /// effect at the next restart).
    pub needs_restart: bool,
}

/// What a running server can change in place.
pub(crate) struct Reloadable {
    /// The running configuration, without what a reload applies (see [`comparable`]).
    running: String,
    tls: TlsSetup,
    s2s_tls: Option<Arc<S2sTls>>,
    service_domains: Vec<(String, String)>,
    metrics: Arc<Metrics>,
}

impl Reloadable {
    pub(crate) fn new(
        config: &Config,
        tls: TlsSetup,
        s2s_tls: Option<Arc<S2sTls>>,
        service_domains: Vec<(String, String)>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Reloadable {
            running: comparable(config),
            tls,
            s2s_tls,
            service_domains,
            metrics,
        }
    }

    /// Applies `config`: the running hosts' certificates, all of them or none when one
    /// cannot be read.
    pub(crate) fn apply(&self, config: &Config) -> anyhow::Result<ReloadReport> {
        let needs_restart = comparable(config) != self.running;
        let (host_certs, mut s2s_keys) = host_certificates(config, &self.metrics)?;
        let certificates = self.tls.update_certificates(host_certs)?;
        add_service_keys(&mut s2s_keys, &self.service_domains);
        if let Some(s2s) = &self.s2s_tls {
            s2s.update_certificates(s2s_keys);
        }
        Ok(ReloadReport {
            certificates,
            needs_restart,
        })
    }
}

/// The configuration as text, without what a reload applies in place (where certificates
/// come from) or what does not change how the server runs (its file name and raw text).
fn comparable(config: &Config) -> String {
    let mut c = config.clone();
    c.source = None;
    c.text = None;
    c.certificates = None;
    for host in &mut c.hosts {
        host.tls = None;
    }
    // The modules' sections live in the text: compare those as parsed TOML values.
    let sections = config
        .text
        .as_deref()
        .and_then(|t| t.parse::<toml::Table>().ok())
        .and_then(|t| t.get("modules").cloned())
        .map(|m| m.to_string())
        .unwrap_or_default();
    format!("{c:?}\n{sections}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, std::path::Path::new("/etc/xmppd/xmppd.toml")).unwrap()
    }

    #[test]
    fn only_certificate_sources_change_without_a_restart() {
        let base = "[[host]]\nname = \"a.test\"\ncert = \"a.crt\"\nkey = \"a.key\"\n";
        let running = comparable(&parse(base));
        let moved = parse(
            "[general]\ncertificates = \"/srv/certs\"\n\n[[host]]\nname = \"a.test\"\ncert = \"b.crt\"\nkey = \"b.key\"\n",
        );
        assert_eq!(comparable(&moved), running);
        for changed in [
            format!("{base}\n[limits]\nmax_stanza_bytes = 100000\n"),
            format!("{base}\n[[host]]\nname = \"b.test\"\n"),
            format!("{base}\n[modules.muc]\narchive_by_default = false\n"),
        ] {
            assert_ne!(comparable(&parse(&changed)), running, "{changed}");
        }
    }
}
