//! The xmppd server: configuration, wiring of crates and modules, and the admin commands.
//! The `xmppd` binary is a thin CLI over this library, which tests start in-process.

pub mod admin;
pub mod cert_dir;
pub mod certs;
pub mod check_dns;
pub mod config;
pub mod invites;
pub mod metrics;
pub mod migrate;
pub mod modules;
mod policy;
pub mod reload;
pub mod systemd;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;
use xmppd_c2s::{C2sContext, ListenerKind, TlsSetup};
use xmppd_component::{ComponentContext, ComponentLimits};
use xmppd_core::per_address::AuthThrottle;
use xmppd_core::storage::Storage;
use xmppd_core::{Accounts, ComponentRegistry, Router, SessionRegistry};
use xmppd_proto::{StreamError, StreamErrorCondition};
use xmppd_s2s::{InboundContext, S2sListenerKind, S2sPool, S2sResolver, S2sTls};
use xmppd_stream::sasl::DEFAULT_ITERATIONS;

pub use config::Config;

/// Opens the configured storage (creating the data dir and SQLite file as needed).
pub async fn open_storage(config: &Config) -> anyhow::Result<Storage> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    let storage_config = match &config.storage {
        config::StorageChoice::Sqlite(path) => xmppd_storage::StorageConfig::Sqlite {
            path: config.data_dir.join(path),
        },
        config::StorageChoice::Postgres(url) => {
            xmppd_storage::StorageConfig::Postgres { url: url.clone() }
        }
    };
    Ok(xmppd_storage::open(&storage_config).await?)
}

/// Account management over a storage.
pub fn accounts(storage: &Storage) -> Accounts {
    Accounts::new(
        storage.keyval.clone(),
        storage.users.clone(),
        DEFAULT_ITERATIONS,
    )
}

/// The per-server secret (fake SASL salts; later dialback keys), created on first start.
fn server_secret(data_dir: &Path) -> anyhow::Result<[u8; 32]> {
    let path = data_dir.join("server.secret");
    match std::fs::read(&path) {
        Ok(bytes) if bytes.len() == 32 => {
            let mut secret = [0u8; 32];
            secret.copy_from_slice(&bytes);
            Ok(secret)
        }
        Ok(_) => anyhow::bail!(
            "{} is corrupt (expected 32 bytes); delete it to make a new one",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
            certs::write_private(&path, &secret)?;
            Ok(secret)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// A started server.
pub struct RunningServer {
    /// The bound listeners (with the real port when 0 was configured).
    pub listeners: Vec<(ListenerKind, SocketAddr)>,
    /// The bound federation listeners.
    pub s2s_listeners: Vec<(S2sListenerKind, SocketAddr)>,
    /// The bound component listeners, in configuration order of their first component.
    pub component_listeners: Vec<SocketAddr>,
    /// The bound HTTP listeners.
    pub http_listeners: Vec<(xmppd_http::HttpKind, SocketAddr)>,
    /// The bound metrics listeners.
    pub metrics_listeners: Vec<SocketAddr>,
    /// The router (for tests and admin introspection).
    pub router: Arc<Router>,
    /// The local admin socket, when there is one.
    pub admin_socket: Option<std::path::PathBuf>,
    reloadable: reload::Reloadable,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("listeners", &self.listeners)
            .finish_non_exhaustive()
    }
}

impl RunningServer {
    /// Applies a new, already validated configuration as far as it can be without a
    /// restart (see [`reload`]).
    pub fn reload(&self, config: &Config) -> anyhow::Result<reload::ReloadReport> {
        self.reloadable.apply(config)
    }

    /// The first federation listener of a kind.
    pub fn s2s_addr(&self, kind: S2sListenerKind) -> Option<SocketAddr> {
        self.s2s_listeners
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, a)| *a)
    }

    /// The first HTTP listener of a kind.
    pub fn http_addr(&self, kind: xmppd_http::HttpKind) -> Option<SocketAddr> {
        self.http_listeners
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, a)| *a)
    }

    /// The first listener of a kind.
    pub fn addr(&self, kind: ListenerKind) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, a)| *a)
    }

    /// Stops accepting, sends `system-shutdown` to every client and waits (bounded) for the
    /// connections to end.
    pub async fn shutdown(self) {
        info!("shutting down");
        self.shutdown.cancel();
        self.router.sessions().kick_all(&StreamError::with_text(
            StreamErrorCondition::SystemShutdown,
            "the server is shutting down",
        ));
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(10), self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some connections did not close within 10 s");
        }
        // Sessions that were waiting to be resumed are saved (or ended) too.
        if !self
            .router
            .stream_management()
            .wait(Duration::from_secs(10))
            .await
        {
            tracing::warn!("some resumable sessions were not saved within 10 s");
        }
    }
}

/// Federation's running parts, which a reload updates.
pub(crate) struct Federation {
    pub(crate) tls: Arc<S2sTls>,
    pub(crate) pool: Arc<S2sPool>,
    pub(crate) inbound: Arc<InboundContext>,
}

async fn start_federation(
    config: &Config,
    router: &Arc<Router>,
    keys: Vec<(String, Arc<rustls::sign::CertifiedKey>)>,
    secret: [u8; 32],
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
) -> anyhow::Result<(Vec<(S2sListenerKind, SocketAddr)>, Federation)> {
    let tls = Arc::new(S2sTls::new(keys, policy::s2s_roots(config)?)?);
    let terms = policy::s2s_terms(config, router, secret);
    let resolver = match S2sResolver::from_system() {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::warn!(error = %e, "no DNS for federation; only static routes work");
            None
        }
    };
    let pool = S2sPool::new(
        terms.settings.clone(),
        terms.policy.clone(),
        tls.clone(),
        resolver,
        shutdown.clone(),
        tracker.clone(),
    );
    pool.attach(router);
    let inbound = Arc::new(InboundContext::new(
        router.clone(),
        pool.clone(),
        tls.clone(),
        terms.policy,
        terms.settings,
    ));
    let mut bound = Vec::new();
    for listen in &config.s2s_listen {
        let listener = TcpListener::bind(listen.addr)
            .await
            .with_context(|| format!("cannot listen for servers on {}", listen.addr))?;
        let addr = listener.local_addr()?;
        info!(%addr, kind = ?listen.kind, "listening for servers");
        bound.push((listen.kind, addr));
        tracker.spawn(xmppd_s2s::inbound::serve(
            listener,
            listen.kind,
            inbound.clone(),
            shutdown.clone(),
            tracker.clone(),
        ));
    }
    Ok((bound, Federation { tls, pool, inbound }))
}

/// Starts every listener of `config`.
pub async fn start(config: &Config) -> anyhow::Result<RunningServer> {
    start_extended(config, None).await
}

/// Starts every listener of `config`, with the modules `extra` declares beside the server's.
pub async fn start_extended(
    config: &Config,
    extra: Option<modules::ExtraModules>,
) -> anyhow::Result<RunningServer> {
    let storage = open_storage(config).await?;
    start_with_modules(config, storage, extra).await
}

/// Starts with an already opened storage.
pub async fn start_with_storage(
    config: &Config,
    storage: Storage,
) -> anyhow::Result<RunningServer> {
    start_with_modules(config, storage, None).await
}

/// Starts with an already opened storage and, beside the server's own, the modules `extra`
/// declares.
pub async fn start_with_modules(
    config: &Config,
    storage: Storage,
    extra: Option<modules::ExtraModules>,
) -> anyhow::Result<RunningServer> {
    let secret = server_secret(&config.data_dir)?;
    // First, so that a second server on the same data refuses to start before it listens.
    let admin_socket = match config.admin_socket() {
        Some(path) => Some(
            xmppd_admin::socket::AdminSocket::bind(&path, config.admin.socket_group)
                .await
                .context("cannot open the admin socket")?,
        ),
        None => None,
    };
    let admin = xmppd_admin::Admin::new(&storage);
    let metrics = Arc::new(xmppd_core::metrics::Metrics::new());
    let storage = xmppd_core::metrics::timed(storage, &metrics);
    let (host_certs, mut s2s_keys) = reload::host_certificates(config, &metrics)?;
    let tls = TlsSetup::new(host_certs)?;
    let hosts: HashSet<String> = config.hosts.iter().map(|h| h.name.clone()).collect();
    let component_domains: Vec<String> = config.components.iter().map(|c| c.name.clone()).collect();
    let (registry, router_handle, wired) = modules::registry(config, &storage, extra)?;
    let service_domains = registry.service_domains();
    reload::add_service_keys(&mut s2s_keys, &service_domains);
    let router = Arc::new(
        Router::new(
            hosts.clone(),
            Arc::new(SessionRegistry::new()),
            accounts(&storage),
            registry,
        )
        .with_components(Arc::new(ComponentRegistry::new(component_domains)))
        .with_stream_management(config.sm)
        .with_auth_throttle(AuthThrottle::new(config.auth_throttle))
        .with_metrics(metrics),
    );
    router_handle.set(&router);
    router.stream_management().persist_to(storage.map.clone());
    let policy = policy::c2s_policy(config, &router, secret);
    let ctx = Arc::new(C2sContext::new(router.clone(), tls, policy, config.limits));
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (s2s_listeners, federation) = if config.s2s.enabled {
        let (bound, federation) =
            start_federation(config, &router, s2s_keys, secret, &shutdown, &tracker).await?;
        (bound, Some(federation))
    } else {
        (Vec::new(), None)
    };
    let reloadable = reload::Reloadable::new(config, ctx.clone(), federation, secret);
    // Sessions saved at the last shutdown wait for their clients before anyone can connect.
    let host_names: Vec<String> = config.hosts.iter().map(|h| h.name.clone()).collect();
    xmppd_core::client::sm::restore_sessions(&router, &host_names)
        .await
        .context("cannot restore the resumable sessions saved at the last shutdown")?;
    let mut listeners = Vec::new();
    for listen in &config.listen {
        let listener = TcpListener::bind(listen.addr)
            .await
            .with_context(|| format!("cannot listen on {}", listen.addr))?;
        let addr = listener.local_addr()?;
        info!(%addr, kind = ?listen.kind, "listening for clients");
        listeners.push((listen.kind, addr));
        tracker.spawn(xmppd_c2s::serve(
            listener,
            listen.kind,
            listen.channel_binding,
            listen.read_rate,
            ctx.clone(),
            shutdown.clone(),
            tracker.clone(),
        ));
    }
    let mut http_listeners = Vec::new();
    if !config.http_listen.is_empty() {
        let http = xmppd_http::HttpContext::new(
            ctx.clone(),
            config.http.clone(),
            wired.upload.clone(),
            xmppd_http::admin_api::AdminApi::new(admin.clone(), &config.admin.api_tokens),
            xmppd_core::Invites::new(storage.map.clone()),
            shutdown.clone(),
            tracker.clone(),
        );
        for listen in &config.http_listen {
            let listener = TcpListener::bind(listen.addr)
                .await
                .with_context(|| format!("cannot listen for HTTP on {}", listen.addr))?;
            let addr = listener.local_addr()?;
            info!(%addr, kind = ?listen.kind, "listening for HTTP");
            http_listeners.push((listen.kind, addr));
            wired.http_ports.bound(listen.addr.port(), addr.port());
            if listen.kind == xmppd_http::HttpKind::Tls
                && let Some(upload) = &wired.upload
            {
                upload.set_https_port(addr.port());
            }
            tracker.spawn(xmppd_http::serve(
                listener,
                listen.kind,
                listen.read_rate,
                http.clone(),
            ));
        }
    }
    let mut metrics_listeners = Vec::new();
    for addr in &config.metrics_listen {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for metrics on {addr}"))?;
        let bound = listener.local_addr()?;
        info!(addr = %bound, "serving metrics");
        metrics_listeners.push(bound);
        let exposition = Arc::new(metrics::ServerExposition {
            router: router.clone(),
            archive: storage.archive.clone(),
        });
        tracker.spawn(xmppd_http::metrics::serve(
            listener,
            exposition,
            shutdown.clone(),
            tracker.clone(),
        ));
    }
    // Components sharing an address share a listener; the stream header says which one.
    let mut by_addr: Vec<(SocketAddr, HashMap<String, String>)> = Vec::new();
    for c in &config.components {
        match by_addr.iter_mut().find(|(a, _)| *a == c.addr) {
            Some((_, secrets)) => {
                secrets.insert(c.name.clone(), c.secret.clone());
            }
            None => by_addr.push((c.addr, HashMap::from([(c.name.clone(), c.secret.clone())]))),
        }
    }
    let mut component_listeners = Vec::new();
    for (addr, secrets) in by_addr {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for components on {addr}"))?;
        let bound = listener.local_addr()?;
        info!(addr = %bound, components = ?secrets.keys().collect::<Vec<_>>(), "listening for components");
        component_listeners.push(bound);
        let limits = ComponentLimits {
            handshake_bytes: config.component_handshake_bytes,
            auth_timeout: config.component_handshake_timeout,
            per_address: config.limits.per_address,
            ..ComponentLimits::default()
        };
        let ctx = Arc::new(ComponentContext::new(router.clone(), secrets, limits));
        tracker.spawn(xmppd_component::serve(
            listener,
            ctx,
            shutdown.clone(),
            tracker.clone(),
        ));
    }
    let admin_socket = admin_socket.map(|socket| {
        let path = config.admin_socket();
        tracker.spawn(socket.serve(admin, router.clone(), shutdown.clone(), tracker.clone()));
        path
    });
    Ok(RunningServer {
        admin_socket: admin_socket.flatten(),
        listeners,
        s2s_listeners,
        component_listeners,
        http_listeners,
        metrics_listeners,
        router,
        reloadable,
        shutdown,
        tracker,
    })
}
