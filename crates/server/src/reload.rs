//! Reloading a running server's configuration (SIGHUP, `xmppd reload`): the new file is
//! validated whole by [`Config::load`] before this sees it, so a broken one changes nothing.
//! What can change under running connections changes at once: every host's certificate and
//! key are read again (a renewed Let's Encrypt certificate) and served to new client, HTTPS
//! and federation connections, while established ones keep theirs. Every running module
//! takes its new `[modules.NAME]` section for what comes next (`modules::prepare_reload`),
//! except the keys it reports as fixed at startup. Any other difference from the running
//! configuration is reported as waiting for a restart, never half applied.

use std::sync::Arc;

use rustls::sign::CertifiedKey;
use xmppd_c2s::{C2sContext, C2sLimits, HostCertificate};
use xmppd_core::metrics::Metrics;

use crate::config::Config;
use crate::modules::{self, ModulesReloaded};
use crate::{Federation, cert_dir, certs, policy};

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
    /// Hosts whose certificate and key were read again (or read for the first time) and are
    /// now served.
    pub certificates: Vec<String>,
    /// Hosts served from now on that were not before.
    pub hosts_added: Vec<String>,
    /// In-process services started for the hosts added (`conference.HOST` …).
    pub services_added: Vec<String>,
    /// Hosts that new connections are refused for from now on; their open sessions keep
    /// running (and their addresses routed) until the restart.
    pub hosts_removed: Vec<String>,
    /// Whether the file differs from the running configuration in anything else (it takes
    /// effect at the next restart).
    pub needs_restart: bool,
    /// The modules that took their new settings, and the changed keys that wait for a
    /// restart.
    pub modules: ModulesReloaded,
}

/// What a running server can change in place.
pub(crate) struct Reloadable {
    /// The running configuration, without what a reload applies (see [`comparable`]).
    running: String,
    c2s: Arc<C2sContext>,
    federation: Option<Federation>,
    secret: [u8; 32],
}

impl Reloadable {
    pub(crate) fn new(
        config: &Config,
        c2s: Arc<C2sContext>,
        federation: Option<Federation>,
        secret: [u8; 32],
    ) -> Self {
        Reloadable {
            running: comparable(config),
            c2s,
            federation,
            secret,
        }
    }

    /// Applies `config` to what starts from now on: certificates, hosts, limits, the
    /// authentication policy, federation's settings and the modules' settings. Everything
    /// that can fail (checking the modules' sections, reading certificates and trust anchors)
    /// is done before anything changes, so a refused reload leaves the running server exactly
    /// as it was.
    pub(crate) fn apply(&self, config: &Config) -> anyhow::Result<ReloadReport> {
        let router = &self.c2s.router;
        let plan = modules::prepare_reload(router.registry(), config)?;
        let needs_restart = comparable(config) != self.running;
        let metrics = router.metrics();
        let (host_certs, mut s2s_keys) = host_certificates(config, metrics)?;
        let roots = match &self.federation {
            Some(_) => Some(policy::s2s_roots(config)?),
            None => None,
        };
        // Validated: from here on nothing fails but the certificates' own check, which
        // changes nothing when it fails.
        let certificates = self.c2s.tls.update_certificates(host_certs)?;
        let names: Vec<String> = config.hosts.iter().map(|h| h.name.clone()).collect();
        let served = router.hosts();
        let hosts_added = router.add_hosts(&names);
        // Their services (`conference.HOST` …), which federate under the host's key.
        let services_added = router.registry().add_hosts(&hosts_added);
        let hosts_removed = served.into_iter().filter(|h| !names.contains(h)).collect();
        self.c2s.update_settings(
            policy::c2s_policy(config, router, self.secret),
            config.limits,
        );
        router.auth_throttle().set_settings(config.auth_throttle);
        if let Some(federation) = &self.federation {
            add_service_keys(&mut s2s_keys, &router.registry().service_domains());
            federation.tls.update_certificates(s2s_keys);
            if let Some(roots) = roots {
                federation.tls.update_roots(roots)?;
            }
            let terms = policy::s2s_terms(config, router, self.secret);
            federation.pool.update_terms(terms.clone());
            federation.inbound.update_terms(terms);
        }
        Ok(ReloadReport {
            certificates,
            hosts_added,
            services_added,
            hosts_removed,
            needs_restart,
            modules: plan.apply(),
        })
    }
}

/// The configuration as text, without what a reload applies in place or what does not
/// change how the server runs (its file name and raw text). What stays is what only a
/// restart changes: listeners, storage, the data directory, components, stream management,
/// HTTP, the connections per listener, whether federation runs at all, and which modules
/// run (`[general] modules`, a host's own list).
fn comparable(config: &Config) -> String {
    let mut c = config.clone();
    c.source = None;
    c.text = None;
    c.certificates = None;
    // Hosts come and go; one that names its own modules cannot (the registry decides
    // at start which modules each host runs).
    c.hosts.retain(|h| h.modules.is_some());
    for host in &mut c.hosts {
        host.tls = None;
    }
    c.hosts.sort_by(|a, b| a.name.cmp(&b.name));
    c.limits = C2sLimits {
        max_connections: config.limits.max_connections,
        ..C2sLimits::default()
    };
    c.auth_throttle = Default::default();
    c.require_tls = false;
    c.max_auth_failures = 0;
    c.disabled_mechanisms.clear();
    c.s2s = crate::config::S2sConfig {
        enabled: config.s2s.enabled,
        require_tls: false,
        secure_auth: false,
        ca_files: Vec::new(),
        use_system_roots: false,
        settings: xmppd_s2s::S2sSettings {
            max_connections: config.s2s.settings.max_connections,
            ..Default::default()
        },
    };
    // The modules' sections live only in the raw text, which is left out: the modules take
    // them in place.
    format!("{c:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, std::path::Path::new("/etc/xmppd/xmppd.toml")).unwrap()
    }

    #[test]
    fn what_a_reload_applies_does_not_wait_for_a_restart() {
        let base = "[[host]]\nname = \"a.test\"\ncert = \"a.crt\"\nkey = \"a.key\"\n";
        let running = comparable(&parse(base));
        for applied in [
            "[general]\ncertificates = \"/srv/certs\"\n\n[[host]]\nname = \"a.test\"\ncert = \"b.crt\"\nkey = \"b.key\"\n".to_owned(),
            format!("{base}\n[limits]\nmax_stanza_bytes = 100000\n"),
            format!("{base}\n[[host]]\nname = \"b.test\"\n"),
            format!("[general]\ndisable_sasl_mechanisms = [\"PLAIN\"]\n\n{base}"),
            format!("{base}\n[s2s]\nconnect_timeout_secs = 5\nsecure_auth = true\n"),
            format!("{base}\n[modules.muc]\narchive_by_default = false\n"),
        ] {
            assert_eq!(comparable(&parse(&applied)), running, "{applied}");
        }
        for restart in [
            format!("{base}\n[limits]\nmax_connections = 10\n"),
            format!("{base}\n[[host]]\nname = \"b.test\"\nmodules = [\"ping\"]\n"),
            format!("{base}\n[s2s]\nenabled = false\n"),
            format!("[general]\nmodules = [\"ping\"]\n\n{base}"),
        ] {
            assert_ne!(comparable(&parse(&restart)), running, "{restart}");
        }
    }
}
