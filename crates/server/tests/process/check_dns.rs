//! `xmppd check dns` against a server stream on 127.0.0.1:5269 (the RFC 6120 §3.2.2 fallback
//! for `localhost`, which has no SRV records).

use std::process::Command;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Plays the receiving server: header, features with STARTTLS, `<proceed/>`, then a TLS
/// handshake with a self-signed certificate for `localhost`.
async fn fake_federation_server(listener: TcpListener) -> std::io::Result<()> {
    let (mut socket, _) = listener.accept().await?;
    let mut buf = [0u8; 4096];
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("version='1.0'>") {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        seen.extend_from_slice(&buf[..n]);
    }
    socket
        .write_all(
            b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
              id='x1' from='localhost' version='1.0'><stream:features>\
              <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>\
              </stream:features>",
        )
        .await?;
    seen.clear();
    while !String::from_utf8_lossy(&seen).contains("<starttls") {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        seen.extend_from_slice(&buf[..n]);
    }
    socket
        .write_all(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await?;
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
        .map_err(std::io::Error::other)?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(generated.signing_key.serialize_der())
        .map_err(std::io::Error::other)?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(std::io::Error::other)?
    .with_no_client_auth()
    .with_single_cert(vec![generated.cert.der().clone()], key)
    .map_err(std::io::Error::other)?;
    let mut tls = tokio_rustls::TlsAcceptor::from(Arc::new(config))
        .accept(socket)
        .await?;
    let _ = tls.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn check_dns_fetches_the_certificate_over_starttls_and_judges_it() {
    let listener = TcpListener::bind("127.0.0.1:5269")
        .await
        .expect("port 5269 on 127.0.0.1 must be free for this test");
    let server = tokio::spawn(fake_federation_server(listener));
    let output = tokio::task::spawn_blocking(|| {
        Command::new(env!("CARGO_BIN_EXE_xmppd"))
            .args(["check", "dns", "localhost"])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("_xmpp-server._tcp.localhost: no SRV records"),
        "{stdout}"
    );
    assert!(
        stdout.contains("target localhost:5269 (priority 0, weight 0, STARTTLS): 127.0.0.1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("127.0.0.1:5269: the certificate is NOT valid for localhost")
            && stdout.contains("UnknownIssuer"),
        "{stdout}"
    );
    assert!(!output.status.success());
    server.await.unwrap().unwrap();
}
