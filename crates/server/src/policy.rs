//! What the listeners negotiate with, made from the configuration: at start, and again at
//! every reload (which hands the result to connections accepted from then on).

use std::collections::HashSet;
use std::sync::Arc;

use xmppd_core::Router;
use xmppd_proto::stream_limits::StreamLimits;
use xmppd_s2s::S2sTerms;
use xmppd_stream::C2sPolicy;
use xmppd_stream::s2s::S2sPolicy;

use crate::Config;

/// The stream features offered to `host`'s clients once they are authenticated: the modules'
/// own, the server's entity capabilities (XEP-0115 §6.3), hashed once here from the
/// disco#info answer the registry now gives, stream management (XEP-0198) and client state
/// indication (XEP-0352).
fn bound_features(
    registry: &xmppd_core::Registry,
    host: &str,
    config: &Config,
) -> Vec<xmppd_xml::Element> {
    let mut features = registry.stream_features(host);
    features.extend(xmppd_modules::disco::caps(registry, host).map(|c| c.to_element()));
    if config.sm.enabled {
        features.push(xmppd_xml::Element::new("sm", xmppd_proto::ns::SM));
    }
    features.push(xmppd_xml::Element::new("csi", xmppd_proto::ns::CSI));
    features
}

/// The client negotiation policy for `config`'s hosts, with the modules `router` runs.
pub(crate) fn c2s_policy(config: &Config, router: &Router, secret: [u8; 32]) -> C2sPolicy {
    let registry = router.registry();
    let hosts: HashSet<String> = config.hosts.iter().map(|h| h.name.clone()).collect();
    let bound_features = hosts
        .iter()
        .map(|h| (h.clone(), bound_features(registry, h, config)))
        .collect();
    let registration = hosts
        .iter()
        .filter(|h| registry.registration_on(h).is_some())
        .cloned()
        .collect();
    let invites = hosts
        .iter()
        .filter(|h| {
            registry
                .registration_on(h)
                .is_some_and(|r| r.accepts_invites())
        })
        .cloned()
        .collect();
    C2sPolicy {
        registration: Arc::new(registration),
        invites: Arc::new(invites),
        hosts: Arc::new(hosts),
        require_tls: config.require_tls,
        max_auth_failures: config.max_auth_failures,
        disabled_mechanisms: Arc::from(config.disabled_mechanisms.as_slice()),
        fake_salt_secret: secret,
        bound_features: Arc::new(bound_features),
        limits_before_auth: StreamLimits {
            max_bytes: Some(config.limits.max_stanza_bytes_unauthenticated as u64),
            idle_seconds: None,
        },
        limits_after_auth: StreamLimits {
            max_bytes: Some(config.limits.max_stanza_bytes as u64),
            idle_seconds: Some(config.limits.ping_after.as_secs()),
        },
    }
}

/// Federation's settings and policy for `config`. The local domains are every host `router`
/// serves (after a reload that removed one, it is still routed for the sessions it has, so
/// its contacts' servers may still send to it), the components and in-process services.
pub(crate) fn s2s_terms(config: &Config, router: &Router, secret: [u8; 32]) -> S2sTerms {
    let s2s = &config.s2s;
    let mut local_domains: HashSet<String> = router.hosts().into_iter().collect();
    local_domains.extend(config.hosts.iter().map(|h| h.name.clone()));
    local_domains.extend(config.components.iter().map(|c| c.name.clone()));
    local_domains.extend(
        router
            .registry()
            .service_domains()
            .into_iter()
            .map(|(d, _)| d),
    );
    let policy = S2sPolicy {
        local_domains: Arc::new(local_domains),
        require_tls: s2s.require_tls,
        allow_dialback: !s2s.secure_auth,
        // Dialback keys come from their own secret, derived so that the one on disk serves
        // both purposes without either revealing the other.
        dialback_secret: Arc::new(derive_secret(&secret, b"xmppd dialback")),
        limits: StreamLimits {
            max_bytes: Some(s2s.settings.max_stanza_bytes as u64),
            idle_seconds: Some(s2s.settings.idle_timeout.as_secs()),
        },
    };
    S2sTerms {
        settings: s2s.settings.clone(),
        policy,
    }
}

/// The trust anchors of federation: the system's when configured, and `[s2s] ca_file`s.
pub(crate) fn s2s_roots(config: &Config) -> anyhow::Result<Arc<rustls::RootCertStore>> {
    let mut anchors = Vec::new();
    for file in &config.s2s.ca_files {
        anchors.extend(xmppd_s2s::tls::read_ca_file(file)?);
    }
    Ok(xmppd_s2s::tls::trust_roots(
        config.s2s.use_system_roots,
        anchors,
    ))
}

/// A purpose-specific secret derived from the server secret.
pub(crate) fn derive_secret(secret: &[u8; 32], purpose: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update(purpose);
    hasher.update(secret);
    hasher.finalize().into()
}
