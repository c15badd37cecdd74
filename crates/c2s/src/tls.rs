//! TLS for client connections: one certificate per virtual host chosen by SNI, and the
//! channel-binding data SCRAM-*-PLUS needs.
//!
//! `tls-server-end-point` (RFC 5929 §4.1) is the hash of the certificate we presented, with
//! the certificate's signature hash (SHA-256 for MD5/SHA-1/other), so it is computed per host
//! once at start. `tls-exporter` (RFC 9266) is exported per connection, and only for TLS 1.3:
//! RFC 9266 §3 forbids it on TLS 1.2 without the extended master secret.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::ServerConfig;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::Digest as _;
use xmppd_stream::sasl::ChannelBindingData;

use crate::tls_stream::{ExporterCapture, ServerTlsStream, capture_server_name};

/// A problem with a configured certificate or key.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The private key type is not supported (RSA, ECDSA P-256/P-384 and Ed25519 are).
    #[error("unsupported private key for {host}: {reason}")]
    BadKey {
        /// The virtual host.
        host: String,
        /// What rustls said.
        reason: String,
    },
    /// The certificate chain is empty.
    #[error("no certificate for {0}")]
    NoCertificate(String),
    /// No host was configured.
    #[error("no virtual host has a certificate")]
    NoHosts,
    /// rustls refused the configuration.
    #[error("TLS configuration rejected: {0}")]
    Rustls(String),
}

/// One virtual host's certificate chain and key.
#[derive(Debug)]
pub struct HostCertificate {
    /// The domain served.
    pub host: String,
    /// End-entity certificate first.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
}

#[derive(Debug)]
struct HostEntry {
    key: Arc<CertifiedKey>,
    end_point_hash: Vec<u8>,
}

/// The certificates by host, replaced whole by a reload: a handshake takes the map of the
/// moment (a read lock held only to clone an `Arc`), so connections never see half of one.
#[derive(Debug)]
struct SniResolver {
    hosts: RwLock<Arc<HashMap<String, Arc<HostEntry>>>>,
    default_host: String,
}

impl SniResolver {
    fn entry(&self, sni: Option<&str>) -> Option<Arc<HostEntry>> {
        let hosts = self
            .hosts
            .read()
            .map_or_else(|poisoned| poisoned.into_inner().clone(), |h| h.clone());
        sni.map(str::to_ascii_lowercase)
            .and_then(|name| hosts.get(&name))
            .or_else(|| hosts.get(&self.default_host))
            .cloned()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        capture_server_name(hello.server_name());
        self.entry(hello.server_name()).map(|e| e.key.clone())
    }
}

/// The entries of `certs`, by lowercased host.
fn host_entries(
    certs: Vec<HostCertificate>,
) -> Result<HashMap<String, Arc<HostEntry>>, TlsSetupError> {
    let mut hosts = HashMap::new();
    for c in certs {
        let end_entity = c
            .chain
            .first()
            .ok_or_else(|| TlsSetupError::NoCertificate(c.host.clone()))?;
        let end_point_hash = end_point_hash(end_entity);
        let signing = rustls::crypto::ring::sign::any_supported_type(&c.key).map_err(|e| {
            TlsSetupError::BadKey {
                host: c.host.clone(),
                reason: e.to_string(),
            }
        })?;
        let key = Arc::new(CertifiedKey::new(c.chain, signing));
        hosts.insert(
            c.host.to_ascii_lowercase(),
            Arc::new(HostEntry {
                key,
                end_point_hash,
            }),
        );
    }
    Ok(hosts)
}

/// The TLS side of the c2s listeners.
#[derive(Clone)]
pub struct TlsSetup {
    config: Arc<ServerConfig>,
    resolver: Arc<SniResolver>,
}

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSetup")
            .field("default_host", &self.resolver.default_host)
            .finish()
    }
}

impl TlsSetup {
    /// Builds the acceptor from the hosts' certificates; the first host is the default for
    /// clients that send no SNI.
    pub fn new(certs: Vec<HostCertificate>) -> Result<Self, TlsSetupError> {
        let default_host = certs.first().ok_or(TlsSetupError::NoHosts)?.host.clone();
        let hosts = RwLock::new(Arc::new(host_entries(certs)?));
        let resolver = Arc::new(SniResolver {
            hosts,
            default_host,
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsSetupError::Rustls(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        // The one way to the exporter secret on the unbuffered API (see tls_stream).
        config.key_log = Arc::new(ExporterCapture);
        // Resumption with stateless tickets (the key rotates every 6 hours): a returning
        // client skips the key exchange and the signature, and the server keeps nothing per
        // ticket. rustls' default instead keeps the last 256 sessions in memory, which a busy
        // server cycles through in well under a second. One ticket: a client reconnects over
        // one connection at a time.
        config.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| TlsSetupError::Rustls(e.to_string()))?;
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 1;
        Ok(TlsSetup {
            config: Arc::new(config),
            resolver,
        })
    }

    /// Serves `certs` from now on (a reload, e.g. after a certificate was renewed, or one
    /// that adds a host); a host missing from `certs` keeps what it had, since a reload that
    /// removes a host leaves its sessions running. Connections already established keep
    /// theirs. Nothing changes when one of `certs` is unusable. Returns the hosts whose
    /// certificate was replaced or added.
    pub fn update_certificates(
        &self,
        certs: Vec<HostCertificate>,
    ) -> Result<Vec<String>, TlsSetupError> {
        let fresh = host_entries(certs)?;
        let mut guard = match self.resolver.hosts.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut hosts = HashMap::clone(&guard);
        let mut updated = Vec::new();
        for (host, entry) in fresh {
            hosts.insert(host.clone(), entry);
            updated.push(host);
        }
        *guard = Arc::new(hosts);
        updated.sort();
        Ok(updated)
    }

    /// Runs the server side of a TLS handshake on `socket`.
    pub async fn accept(&self, socket: tokio::net::TcpStream) -> std::io::Result<ServerTlsStream> {
        ServerTlsStream::accept(socket, self.config.clone()).await
    }

    /// The channel-binding data of an established connection. Takes the connection's
    /// exporter, which is needed only for this.
    pub fn channel_binding(&self, conn: &mut ServerTlsStream) -> ChannelBindingData {
        // RFC 9266 §3: tls-exporter only with TLS 1.3 (take_exporter is None for TLS 1.2).
        let tls_exporter = conn.take_exporter().and_then(|exporter| {
            let mut out = [0u8; 32];
            exporter
                .export(b"EXPORTER-Channel-Binding", &[], &mut out)
                .map(|()| out.to_vec())
        });
        let tls_server_end_point = self
            .resolver
            .entry(conn.server_name())
            .map(|e| e.end_point_hash.clone());
        ChannelBindingData {
            tls_exporter,
            tls_server_end_point,
        }
    }
}

/// RFC 5929 §4.1: hash the certificate with its signature's hash function, upgrading MD5 and
/// SHA-1 (and anything unknown) to SHA-256.
fn end_point_hash(cert: &CertificateDer<'_>) -> Vec<u8> {
    let oid = x509_parser::parse_x509_certificate(cert)
        .ok()
        .map(|(_, c)| c.signature_algorithm.algorithm.to_id_string());
    match oid.as_deref() {
        // sha384WithRSAEncryption, ecdsa-with-SHA384
        Some("1.2.840.113549.1.1.12" | "1.2.840.10045.4.3.3") => {
            sha2::Sha384::digest(cert).to_vec()
        }
        // sha512WithRSAEncryption, ecdsa-with-SHA512
        Some("1.2.840.113549.1.1.13" | "1.2.840.10045.4.3.4") => {
            sha2::Sha512::digest(cert).to_vec()
        }
        _ => sha2::Sha256::digest(cert).to_vec(),
    }
}
