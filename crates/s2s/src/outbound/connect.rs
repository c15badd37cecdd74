//! Connection establishment for a link: where to connect (static route or DNS), TCP to each
//! address in turn, TLS (direct or after STARTTLS) and the judgement of the peer's
//! certificate.

use std::net::{IpAddr, SocketAddr};

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, info};

use super::link::Link;
use super::{LinkEnd, not_found, timed_out};
use crate::StaticRoute;
use crate::io::Io;
use crate::resolve::Transport;

impl Link {
    pub(super) fn cert_valid(&self, io: &Io) -> bool {
        let chain = io.peer_chain();
        match self.pool.tls.judge(&chain, &self.remote) {
            Ok(()) => true,
            Err(reason) => {
                info!(%reason, "the remote server's certificate is not valid for it");
                false
            }
        }
    }

    /// Where to connect: the static route, or DNS.
    async fn targets(&self) -> Result<Vec<StaticRoute>, LinkEnd> {
        if let Some(routes) = self.terms.settings.routes.get(&self.remote) {
            return Ok(routes.clone());
        }
        let Some(resolver) = &self.pool.resolver else {
            return Err(not_found("no DNS configuration and no static route"));
        };
        let resolution = resolver
            .resolve(&self.remote)
            .await
            .map_err(|e| not_found(e.to_string()))?;
        if resolution.service_refused {
            return Err(not_found(format!(
                "{} publishes no XMPP server service",
                self.remote
            )));
        }
        Ok(resolution
            .targets
            .into_iter()
            .map(|t| StaticRoute {
                host: t.host,
                port: t.port,
                transport: t.transport,
            })
            .collect())
    }

    pub(super) async fn connect(&self) -> Result<(Io, Transport), LinkEnd> {
        let targets = self.targets().await?;
        let mut last = format!("no address for {}", self.remote);
        for target in targets {
            let addrs: Vec<IpAddr> = match target.host.parse::<IpAddr>() {
                Ok(ip) => vec![ip],
                Err(_) => match &self.pool.resolver {
                    Some(r) => match r.addresses(&target.host).await {
                        Ok(a) => a,
                        Err(e) => {
                            last = e.to_string();
                            continue;
                        }
                    },
                    None => continue,
                },
            };
            for ip in addrs {
                let addr = SocketAddr::new(ip, target.port);
                match self.connect_one(addr, target.transport).await {
                    Ok(io) => {
                        info!(%addr, transport = ?target.transport, "connected");
                        return Ok((io, target.transport));
                    }
                    Err(e) => {
                        debug!(%addr, error = %e, "connection attempt failed");
                        last = format!("{addr}: {e}");
                    }
                }
            }
        }
        Err(not_found(last))
    }

    async fn connect_one(&self, addr: SocketAddr, transport: Transport) -> Result<Io, String> {
        let timeout = self.terms.settings.connect_timeout;
        let tcp = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("connection timed out".into()),
        };
        let _ = tcp.set_nodelay(true);
        if transport == Transport::StartTls {
            return Ok(Io::Plain(tcp));
        }
        self.handshake(tcp, true, Instant::now() + timeout)
            .await
            .map_err(|e| format!("{e:?}"))
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        direct: bool,
        deadline: Instant,
    ) -> Result<Io, LinkEnd> {
        let connector = self
            .pool
            .tls
            .connector(&self.local, direct)
            .map_err(|e| not_found(e.to_string()))?;
        let name = ServerName::try_from(self.remote.clone())
            .map_err(|_| not_found(format!("{} is not a DNS name", self.remote)))?;
        match tokio::time::timeout_at(deadline, connector.connect(name, tcp)).await {
            Ok(Ok(tls)) => Ok(Io::Tls(Box::new(tokio_rustls::TlsStream::Client(tls)))),
            Ok(Err(e)) => Err(not_found(format!("TLS handshake failed: {e}"))),
            Err(_) => Err(timed_out("TLS handshake timed out")),
        }
    }

    pub(super) async fn upgrade(&self, io: Io, deadline: Instant) -> Result<Io, LinkEnd> {
        match io {
            Io::Plain(tcp) => self.handshake(tcp, false, deadline).await,
            Io::Tls(_) => Err(not_found("STARTTLS on a TLS stream")),
        }
    }
}
