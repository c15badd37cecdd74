//! The in-process server with its own CA and data dir.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::CertificateDer;
use tempfile::TempDir;
use xmppd::RunningServer;
use xmppd::config::{Config, HostConfig, ListenConfig, S2sListenConfig};
use xmppd_c2s::{ChannelBinding, ListenerKind};
use xmppd_s2s::S2sListenerKind;

/// A running server with a temp dir, test CA and its accounts.
pub struct TestServer {
    /// The running server.
    pub server: RunningServer,
    /// The configuration it was started with.
    pub config: Config,
    /// Holds data dir, certificates and database.
    pub dir: TempDir,
    ca_der: CertificateDer<'static>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// Writes a CA and a leaf certificate for each domain into `dir`; returns the CA certificate
/// and the (cert, key) paths per domain.
fn make_pki(
    dir: &std::path::Path,
    domains: &[&str],
) -> anyhow::Result<(CertificateDer<'static>, Vec<(PathBuf, PathBuf)>)> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "xmppd test CA");
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    std::fs::write(dir.join("ca.pem"), ca_cert.pem())?;
    let mut paths = Vec::new();
    for domain in domains {
        let key = KeyPair::generate()?;
        let params = CertificateParams::new(vec![(*domain).to_owned()])?;
        let cert = params.signed_by(&key, &issuer)?;
        let cert_path = dir.join(format!("{domain}.crt"));
        let key_path = dir.join(format!("{domain}.key"));
        std::fs::write(&cert_path, cert.pem())?;
        std::fs::write(&key_path, key.serialize_pem())?;
        paths.push((cert_path, key_path));
    }
    Ok((ca_cert.der().clone(), paths))
}

/// A TLS client configuration trusting only `ca`.
fn client_config_trusting(ca: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let _ = roots.add(ca.clone());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth());
    match config {
        Ok(c) => Arc::new(c),
        // The ring provider always supports the default versions.
        Err(e) => panic!("TLS client configuration: {e}"),
    }
}

/// A throw-away CA with a certificate per domain, for servers that must trust each other
/// (federation tests).
pub struct TestPki {
    dir: TempDir,
    ca_der: CertificateDer<'static>,
    certs: Vec<(String, (PathBuf, PathBuf))>,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl TestPki {
    /// A CA and one certificate for each domain.
    pub fn new(domains: &[&str]) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let (ca_der, paths) = make_pki(dir.path(), domains)?;
        let certs = domains.iter().map(|d| (*d).to_owned()).zip(paths).collect();
        Ok(TestPki { dir, ca_der, certs })
    }

    /// The CA certificate (PEM file).
    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A TLS client configuration trusting only this CA.
    pub fn tls_client_config(&self) -> Arc<rustls::ClientConfig> {
        client_config_trusting(&self.ca_der)
    }

    /// The certificate and key files of a domain.
    pub fn cert_paths(&self, domain: &str) -> Option<(PathBuf, PathBuf)> {
        self.certs
            .iter()
            .find(|(d, _)| d == domain)
            .map(|(_, p)| p.clone())
    }
}

impl TestServer {
    /// Serves `domain` with its certificate from `pki`: client listeners on 127.0.0.1, a
    /// STARTTLS federation listener on `s2s_addr` (port 0 for any), trusting only `pki`'s CA
    /// for federation when `trust_pki`, nothing otherwise (so peers must use dialback).
    pub async fn start_federated(
        domain: &str,
        pki: &TestPki,
        s2s_addr: SocketAddr,
        trust_pki: bool,
        adjust: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        Self::start_federated_with_modules(domain, pki, s2s_addr, trust_pki, adjust, None).await
    }

    /// Like [`TestServer::start_federated`], with modules of the test's own.
    pub async fn start_federated_with_modules(
        domain: &str,
        pki: &TestPki,
        s2s_addr: SocketAddr,
        trust_pki: bool,
        adjust: impl FnOnce(&mut Config),
        extra: Option<xmppd::modules::ExtraModules>,
    ) -> anyhow::Result<Self> {
        crate::init_test_logging();
        let dir = tempfile::tempdir()?;
        std::fs::copy(pki.ca_path(), dir.path().join("ca.pem"))?;
        let mut config = Config::default_localhost();
        config.data_dir = dir.path().join("data");
        config.hosts = vec![HostConfig {
            name: domain.to_owned(),
            tls: pki.cert_paths(domain),
            modules: None,
        }];
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        config.listen = vec![ListenConfig {
            kind: ListenerKind::StartTls,
            addr: loopback,
            channel_binding: ChannelBinding::Offered,
            // Tests flood their servers on purpose; those of the shaper set a rate.
            read_rate: None,
        }];
        config.s2s_listen = vec![S2sListenConfig {
            kind: S2sListenerKind::StartTls,
            addr: s2s_addr,
        }];
        config.s2s.use_system_roots = false;
        config.s2s.ca_files = if trust_pki {
            vec![pki.ca_path()]
        } else {
            Vec::new()
        };
        adjust(&mut config);
        let server = xmppd::start_extended(&config, extra)
            .await
            .with_context(|| format!("starting the test server for {domain}"))?;
        Ok(TestServer {
            server,
            config,
            dir,
            ca_der: pki.ca_der.clone(),
        })
    }

    /// The federation listener (STARTTLS).
    pub fn s2s_addr(&self) -> SocketAddr {
        self.server
            .s2s_addr(S2sListenerKind::StartTls)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// `localhost` with STARTTLS and direct-TLS listeners on ephemeral loopback ports.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// Like [`TestServer::start`], letting the test adjust the configuration first.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> anyhow::Result<Self> {
        Self::start_with_modules(adjust, None).await
    }

    /// Like [`TestServer::start_with`], with modules of the test's own beside the server's.
    pub async fn start_with_modules(
        adjust: impl FnOnce(&mut Config),
        extra: Option<xmppd::modules::ExtraModules>,
    ) -> anyhow::Result<Self> {
        crate::init_test_logging();
        let dir = tempfile::tempdir()?;
        let (ca_der, paths) = make_pki(dir.path(), &["localhost"])?;
        let mut config = Config::default_localhost();
        config.data_dir = dir.path().join("data");
        config.hosts = vec![HostConfig {
            name: "localhost".into(),
            tls: paths.into_iter().next(),
            modules: None,
        }];
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        config.listen = vec![
            ListenConfig {
                kind: ListenerKind::StartTls,
                addr: loopback,
                channel_binding: ChannelBinding::Offered,
                // Tests flood their servers on purpose; those of the shaper set a rate.
                read_rate: None,
            },
            ListenConfig {
                kind: ListenerKind::DirectTls,
                addr: loopback,
                channel_binding: ChannelBinding::Offered,
                // Tests flood their servers on purpose; those of the shaper set a rate.
                read_rate: None,
            },
        ];
        adjust(&mut config);
        let server = xmppd::start_extended(&config, extra)
            .await
            .context("starting the test server")?;
        Ok(TestServer {
            server,
            config,
            dir,
            ca_der,
        })
    }

    /// The served domain.
    pub fn domain(&self) -> &str {
        &self.config.hosts[0].name
    }

    /// The STARTTLS listener.
    pub fn starttls_addr(&self) -> SocketAddr {
        self.server
            .addr(ListenerKind::StartTls)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The direct-TLS listener.
    pub fn direct_tls_addr(&self) -> SocketAddr {
        self.server
            .addr(ListenerKind::DirectTls)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The PEM file of the test CA (for third-party clients).
    pub fn ca_pem_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A TLS client configuration trusting only the test CA.
    pub fn tls_client_config(&self) -> Arc<rustls::ClientConfig> {
        client_config_trusting(&self.ca_der)
    }

    /// Creates an account.
    pub async fn add_user(&self, user: &str, password: &str) -> anyhow::Result<()> {
        let jid = jid::BareJid::new(&format!("{user}@{}", self.domain()))?;
        self.server.router.accounts().create(&jid, password).await?;
        Ok(())
    }

    /// Connects over STARTTLS and authenticates with SCRAM-SHA-256, without binding (to
    /// resume a session instead).
    pub async fn authenticated(
        &self,
        user: &str,
        password: &str,
    ) -> anyhow::Result<crate::TestClient> {
        let client = crate::TestClient::connect(self.starttls_addr()).await?;
        self.authenticate_on(client, user, password).await
    }

    /// Like [`TestServer::authenticated`], from another client address (`source`, e.g.
    /// 127.0.0.2).
    pub async fn authenticated_from(
        &self,
        source: std::net::IpAddr,
        user: &str,
        password: &str,
    ) -> anyhow::Result<crate::TestClient> {
        let client = crate::TestClient::connect_from(self.starttls_addr(), source).await?;
        self.authenticate_on(client, user, password).await
    }

    async fn authenticate_on(
        &self,
        mut client: crate::TestClient,
        user: &str,
        password: &str,
    ) -> anyhow::Result<crate::TestClient> {
        client.open_stream(self.domain()).await?;
        client
            .starttls(self.tls_client_config(), self.domain())
            .await?;
        client.authenticate("SCRAM-SHA-256", user, password).await?;
        Ok(client)
    }

    /// Logs a user in over STARTTLS with SCRAM-SHA-256 and binds `resource`.
    pub async fn login(
        &self,
        user: &str,
        password: &str,
        resource: &str,
    ) -> anyhow::Result<crate::TestClient> {
        let mut client = self.authenticated(user, password).await?;
        client.bind(Some(resource)).await?;
        Ok(client)
    }

    /// Stops the server gracefully.
    pub async fn stop(self) {
        self.server.shutdown().await;
    }

    /// Stops the server gracefully and starts a new one with the same configuration, data dir
    /// and certificates (the listeners get new ephemeral ports). What was stored before the
    /// stop must be there after it.
    pub async fn restart(self) -> anyhow::Result<Self> {
        let TestServer {
            server,
            config,
            dir,
            ca_der,
        } = self;
        server.shutdown().await;
        let server = xmppd::start(&config)
            .await
            .context("restarting the test server")?;
        Ok(TestServer {
            server,
            config,
            dir,
            ca_der,
        })
    }
}
