//! TLS for federation: our certificates on both sides of a connection, and PKIX judgement of
//! the peer's.
//!
//! The handshake itself accepts any certificate (still checking that the peer holds its key);
//! whether the chain is trusted and names the domain is judged afterwards, per domain,
//! because one s2s connection can speak for several domains and an untrusted certificate is
//! not fatal when dialback is allowed (RFC 6120 §13.7.2, XEP-0178, XEP-0220). Trust anchors
//! are the system roots plus the configured CA files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{
    ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use xmppd_stream::s2s::CertificateCheck;

/// ALPN protocol of direct-TLS server connections (XEP-0368).
pub const ALPN_XMPP_SERVER: &[u8] = b"xmpp-server";

/// A problem setting up federation TLS.
#[derive(Debug, thiserror::Error)]
pub enum S2sTlsError {
    /// A CA file could not be read or holds no certificate.
    #[error("{path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No local domain has a certificate.
    #[error("no certificate to present to other servers")]
    NoCertificate,
    /// rustls refused the configuration.
    #[error("TLS configuration rejected: {0}")]
    Rustls(String),
}

/// Accepts any certificate during the handshake, verifying only the handshake signatures
/// (so the peer proves it holds the key). Trust is judged afterwards by [`S2sTls::judge`].
#[derive(Debug)]
pub struct AcceptAnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl AcceptAnyCertificate {
    /// With ring's signature algorithms.
    pub fn new() -> Self {
        AcceptAnyCertificate {
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }
}

impl Default for AcceptAnyCertificate {
    fn default() -> Self {
        Self::new()
    }
}

impl AcceptAnyCertificate {
    fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

impl ClientCertVerifier for AcceptAnyCertificate {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls12(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.tls13(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.schemes()
    }
}

/// Our certificate for a domain, chosen by the SNI a connecting server sends; replaced whole
/// by a reload (a handshake clones the map of the moment).
#[derive(Debug)]
struct DomainCerts {
    keys: RwLock<Arc<HashMap<String, Arc<CertifiedKey>>>>,
    default_domain: String,
}

impl DomainCerts {
    fn get(&self, domain: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let keys = self
            .keys
            .read()
            .map_or_else(|poisoned| poisoned.into_inner().clone(), |k| k.clone());
        domain
            .map(str::to_ascii_lowercase)
            .and_then(|d| keys.get(&d))
            .or_else(|| keys.get(&self.default_domain))
            .cloned()
    }
}

fn domain_keys(certs: Vec<(String, Arc<CertifiedKey>)>) -> HashMap<String, Arc<CertifiedKey>> {
    certs
        .into_iter()
        .map(|(d, k)| (d.to_ascii_lowercase(), k))
        .collect()
}

impl ResolvesServerCert for DomainCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.get(hello.server_name())
    }
}

/// The client certificate we present when connecting out as one domain (XEP-0178).
#[derive(Debug)]
struct ClientCert(Option<Arc<CertifiedKey>>);

impl rustls::client::ResolvesClientCert for ClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        self.0.clone()
    }
    fn has_certs(&self) -> bool {
        self.0.is_some()
    }
}

/// Judges certificate chains against trust anchors (PKIX, RFC 5280) for a DNS name.
pub struct CertificateJudge {
    /// `None` without any trust anchor: then no certificate is valid.
    verifier: Option<Arc<WebPkiServerVerifier>>,
}

impl CertificateJudge {
    /// A judge trusting `roots`.
    pub fn new(roots: Arc<RootCertStore>) -> Result<Self, S2sTlsError> {
        if roots.is_empty() {
            return Ok(CertificateJudge { verifier: None });
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
            .build()
            .map_err(|e| S2sTlsError::Rustls(format!("no usable trust anchors: {e}")))?;
        Ok(CertificateJudge {
            verifier: Some(verifier),
        })
    }

    /// Whether `chain` (end entity first) is trusted, in date and names `domain`.
    pub fn judge(&self, chain: &[CertificateDer<'_>], domain: &str) -> Result<(), String> {
        let verifier = self
            .verifier
            .as_ref()
            .ok_or("no trust anchors are configured")?;
        let (end_entity, intermediates) = chain.split_first().ok_or("no certificate")?;
        let name = ServerName::try_from(domain.to_owned())
            .map_err(|_| format!("{domain} is not a DNS name"))?;
        verifier
            .verify_server_cert(end_entity, intermediates, &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// Federation TLS: acceptor, connectors and the judge of peer certificates.
pub struct S2sTls {
    certs: Arc<DomainCerts>,
    acceptor: TlsAcceptor,
    /// Replaced when a reload changes the trust anchors.
    judge: xmppd_core::Live<CertificateJudge>,
}

impl std::fmt::Debug for S2sTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S2sTls")
            .field("default_domain", &self.certs.default_domain)
            .finish_non_exhaustive()
    }
}

/// Reads every certificate of a PEM file.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, S2sTlsError> {
    let err = |reason: String| S2sTlsError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err("holds no certificate".into()));
    }
    Ok(certs)
}

/// The system's trusted roots plus `extra`.
pub fn trust_roots(
    use_system_roots: bool,
    extra: Vec<CertificateDer<'static>>,
) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    if use_system_roots {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
    }
    for cert in extra {
        let _ = roots.add(cert);
    }
    Arc::new(roots)
}

impl S2sTls {
    /// From our certificates per local domain (the first is the default) and the trust
    /// anchors.
    pub fn new(
        certs: Vec<(String, Arc<CertifiedKey>)>,
        roots: Arc<RootCertStore>,
    ) -> Result<Self, S2sTlsError> {
        let default_domain = certs.first().ok_or(S2sTlsError::NoCertificate)?.0.clone();
        let certs = Arc::new(DomainCerts {
            keys: RwLock::new(Arc::new(domain_keys(certs))),
            default_domain,
        });
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| S2sTlsError::Rustls(e.to_string()))?
            .with_client_cert_verifier(Arc::new(AcceptAnyCertificate::new()))
            .with_cert_resolver(certs.clone());
        Ok(S2sTls {
            certs,
            acceptor: TlsAcceptor::from(Arc::new(config)),
            judge: xmppd_core::Live::new(CertificateJudge::new(roots)?),
        })
    }

    /// Presents `certs` from now on, to servers connecting in and when connecting out (a
    /// reload, which may add domains; one it leaves out keeps its key, as its host keeps its
    /// sessions until the restart); streams already established keep theirs.
    pub fn update_certificates(&self, certs: Vec<(String, Arc<CertifiedKey>)>) {
        let mut guard = match self.certs.keys.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let mut keys = HashMap::clone(&guard);
        keys.extend(domain_keys(certs));
        *guard = Arc::new(keys);
    }

    /// Judges peers' certificates by `roots` from now on (a reload that changed the trust
    /// anchors).
    pub fn update_roots(&self, roots: Arc<RootCertStore>) -> Result<(), S2sTlsError> {
        self.judge.set(CertificateJudge::new(roots)?);
        Ok(())
    }

    /// The acceptor of inbound connections (asks for, but does not require, a client
    /// certificate).
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// A connector for connecting out as `local` (presenting its certificate); `direct` adds
    /// the ALPN of XEP-0368.
    pub fn connector(&self, local: &str, direct: bool) -> Result<TlsConnector, S2sTlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| S2sTlsError::Rustls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate::new()))
            .with_client_cert_resolver(Arc::new(ClientCert(self.certs.get(Some(local)))));
        if direct {
            config.alpn_protocols = vec![ALPN_XMPP_SERVER.to_vec()];
        }
        Ok(TlsConnector::from(Arc::new(config)))
    }

    /// Whether `chain` (end entity first) is trusted and names `domain`.
    pub fn judge(&self, chain: &[CertificateDer<'_>], domain: &str) -> Result<(), String> {
        self.judge.get().judge(chain, domain)
    }
}

/// A peer's certificate chain, judged against our trust anchors on demand. Verdicts are
/// remembered per domain, so a peer repeating requests does not buy a chain check each time.
pub struct PeerCertificate {
    chain: Vec<CertificateDer<'static>>,
    tls: Arc<S2sTls>,
    verdicts: std::sync::Mutex<Vec<(String, bool)>>,
}

/// Domains whose verdict a [`PeerCertificate`] remembers.
const REMEMBERED_VERDICTS: usize = 32;

impl PeerCertificate {
    /// The chain (end entity first) and who judges it.
    pub fn new(chain: Vec<CertificateDer<'static>>, tls: Arc<S2sTls>) -> Self {
        PeerCertificate {
            chain,
            tls,
            verdicts: std::sync::Mutex::new(Vec::new()),
        }
    }
}

impl CertificateCheck for PeerCertificate {
    fn is_valid_for(&self, domain: &str) -> bool {
        if let Ok(verdicts) = self.verdicts.lock()
            && let Some((_, valid)) = verdicts.iter().find(|(d, _)| d == domain)
        {
            return *valid;
        }
        let valid = match self.tls.judge(&self.chain, domain) {
            Ok(()) => true,
            Err(reason) => {
                tracing::debug!(domain, %reason, "peer certificate not valid");
                false
            }
        };
        if let Ok(mut verdicts) = self.verdicts.lock() {
            if verdicts.len() >= REMEMBERED_VERDICTS {
                verdicts.remove(0);
            }
            verdicts.push((domain.to_owned(), valid));
        }
        valid
    }
}
