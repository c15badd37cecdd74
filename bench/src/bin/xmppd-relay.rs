//! `xmppd-relay`: the physical limit of this box for the benchmark's traffic. A minimal TLS
//! server that pairs connections announcing the same `PAIR <id>` line and then forwards the
//! bytes of each to the other without parsing them (no XML, no routing, no storage).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use clap::Parser;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

#[derive(Parser)]
struct Cli {
    #[arg(long)]
    listen: SocketAddr,
    /// PEM certificate chain.
    #[arg(long)]
    cert: PathBuf,
    /// PEM private key.
    #[arg(long)]
    key: PathBuf,
}

type Waiting = Arc<Mutex<HashMap<String, TlsStream<tokio::net::TcpStream>>>>;

async fn serve(cli: Cli) -> anyhow::Result<()> {
    let chain = rustls_pemfile::certs(&mut std::fs::read(&cli.cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()?;
    let key = rustls_pemfile::private_key(&mut std::fs::read(&cli.key)?.as_slice())?
        .context("no private key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(cli.listen).await?;
    let waiting: Waiting = Arc::default();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, waiting) = (acceptor.clone(), waiting.clone());
        tokio::spawn(async move {
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return;
            };
            // The pairing line, read a byte at a time so nothing after it is consumed.
            let mut line = Vec::with_capacity(32);
            loop {
                match tls.read_u8().await {
                    Ok(b'\n') => break,
                    Ok(b) if line.len() < 64 => line.push(b),
                    _ => return,
                }
            }
            let id = String::from_utf8_lossy(&line).into_owned();
            let partner = {
                let Ok(mut w) = waiting.lock() else {
                    return;
                };
                let partner = w.remove(&id);
                if partner.is_none() {
                    // First of its pair: park until the partner arrives.
                    w.insert(id, tls);
                    return;
                }
                partner
            };
            let Some(mut other) = partner else {
                return;
            };
            let _ = tokio::io::copy_bidirectional(&mut tls, &mut other).await;
        });
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?
        .block_on(serve(cli))
}
