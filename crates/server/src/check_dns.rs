//! `xmppd check dns DOMAIN`: what a federating server would find for a domain, and whether the
//! certificate it would be shown is valid for it.
//!
//! The certificate is fetched the way federation does: over direct TLS for `_xmpps-server`
//! targets, or after STARTTLS on an XMPP server stream. It is accepted during the handshake
//! only to be inspected; validity (a chain to the system roots, the domain among its names) is
//! then checked separately and reported.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use xmppd_s2s::tls::{AcceptAnyCertificate, CertificateJudge, trust_roots};
use xmppd_s2s::{S2sResolver, SrvTarget, Transport};
use xmppd_xml::{Limits, Reader, StreamEvent};

const TIMEOUT: Duration = Duration::from_secs(10);
const TLS_NS: &str = "urn:ietf:params:xml:ns:xmpp-tls";

/// Reads one stream event from a plain socket (bounded by [`TIMEOUT`]).
async fn next_event(socket: &mut TcpStream, reader: &mut Reader) -> anyhow::Result<StreamEvent> {
    let mut buf = [0u8; 4096];
    loop {
        if let Some(event) = reader
            .next_event()
            .map_err(|e| anyhow!("the server sent bad XML: {e}"))?
        {
            return Ok(event);
        }
        let n = tokio::time::timeout(TIMEOUT, socket.read(&mut buf))
            .await
            .context("no answer")??;
        if n == 0 {
            bail!("the server closed the connection");
        }
        reader.feed(&buf[..n]);
    }
}

/// Opens a server stream and negotiates STARTTLS up to `<proceed/>`.
async fn starttls(socket: &mut TcpStream, domain: &str, from: &str) -> anyhow::Result<()> {
    let header = format!(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:server' \
         xmlns:stream='http://etherx.jabber.org/streams' xmlns:db='jabber:server:dialback' \
         to='{domain}' from='{from}' version='1.0'>"
    );
    socket.write_all(header.as_bytes()).await?;
    let mut reader = Reader::new(Limits::default());
    if !matches!(next_event(socket, &mut reader).await?, StreamEvent::Open(_)) {
        bail!("no stream header");
    }
    let StreamEvent::Stanza(features) = next_event(socket, &mut reader).await? else {
        bail!("no stream features");
    };
    if !features.has_child("starttls", TLS_NS) {
        bail!("the server does not offer STARTTLS");
    }
    socket
        .write_all(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await?;
    match next_event(socket, &mut reader).await? {
        StreamEvent::Stanza(el) if el.is("proceed", TLS_NS) => Ok(()),
        other => bail!("STARTTLS refused: {other:?}"),
    }
}

/// Connects to `addr` and returns the certificate chain the server presents for `domain`.
async fn fetch_chain(
    addr: SocketAddr,
    target: &SrvTarget,
    domain: &str,
    from: &str,
) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let mut socket = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
        .await
        .context("connect timed out")??;
    if target.transport == Transport::StartTls {
        starttls(&mut socket, domain, from).await?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate::new()))
        .with_no_client_auth();
    if target.transport == Transport::DirectTls {
        config.alpn_protocols = vec![b"xmpp-server".to_vec()];
    }
    let name = ServerName::try_from(domain.to_owned())?;
    let tls = tokio::time::timeout(
        TIMEOUT,
        TlsConnector::from(Arc::new(config)).connect(name, socket),
    )
    .await
    .context("TLS handshake timed out")??;
    let chain: Vec<CertificateDer<'static>> = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    if chain.is_empty() {
        bail!("no certificate presented");
    }
    Ok(chain)
}

/// Whether `chain` is valid for `domain` against the system's trusted roots.
fn judge(chain: &[CertificateDer<'static>], domain: &str) -> Result<(), String> {
    CertificateJudge::new(trust_roots(true, Vec::new()))
        .map_err(|e| e.to_string())?
        .judge(chain, domain)
}

fn describe(t: &SrvTarget) -> String {
    let kind = match t.transport {
        Transport::DirectTls => "direct TLS",
        Transport::StartTls => "STARTTLS",
    };
    format!(
        "{}:{} (priority {}, weight {}, {kind})",
        t.host, t.port, t.priority, t.weight
    )
}

/// Prints what was found for `domain`; returns whether a server was reached and its
/// certificate is valid for the domain.
pub async fn check_dns(domain: &str, local_domain: &str) -> anyhow::Result<bool> {
    let resolver = S2sResolver::from_system()?;
    let found = resolver.resolve(domain).await?;
    for (service, records) in [
        ("_xmpps-server._tcp", &found.xmpps_records),
        ("_xmpp-server._tcp", &found.xmpp_records),
    ] {
        if records.is_empty() {
            println!("{service}.{domain}: no SRV records");
        }
        for r in records {
            println!("{service}.{domain}: SRV {}", describe(r));
        }
    }
    if found.service_refused {
        println!(
            "{domain} publishes that it offers no XMPP server-to-server service (SRV target \".\")"
        );
        return Ok(false);
    }
    if found.xmpps_records.is_empty() && found.xmpp_records.is_empty() {
        println!("fallback (RFC 6120 §3.2.2): {domain}:5269");
    }
    let mut last_error = String::from("no address found for any target");
    for target in &found.targets {
        let addrs = resolver.addresses(&target.host).await?;
        let list: Vec<String> = addrs.iter().map(ToString::to_string).collect();
        println!(
            "target {}: {}",
            describe(target),
            if list.is_empty() {
                "no A/AAAA records".to_owned()
            } else {
                list.join(", ")
            }
        );
        for ip in addrs {
            let addr = SocketAddr::new(ip, target.port);
            match fetch_chain(addr, target, domain, local_domain).await {
                Err(e) => {
                    last_error = format!("{addr}: {e:#}");
                    println!("  {last_error}");
                }
                Ok(chain) => {
                    let names = crate::certs::certificate_problems(domain, &chain[0]);
                    return Ok(match judge(&chain, domain) {
                        Ok(()) => {
                            println!("  {addr}: the certificate is valid for {domain}");
                            true
                        }
                        Err(reason) => {
                            println!(
                                "  {addr}: the certificate is NOT valid for {domain}: {reason}"
                            );
                            for problem in names {
                                println!("  {addr}: {problem}");
                            }
                            false
                        }
                    });
                }
            }
        }
    }
    println!("could not reach a server for {domain}: {last_error}");
    Ok(false)
}
