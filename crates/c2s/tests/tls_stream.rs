//! The unbuffered TLS stream against rustls' own client (tokio-rustls) over real sockets.

// The helpers below are part of the tests: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, SupportedCipherSuite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use xmppd_c2s::tls_stream::ServerTlsStream;
use xmppd_c2s::{HostCertificate, TlsSetup};

const LIMIT: Duration = Duration::from_secs(20);

struct Fixture {
    setup: TlsSetup,
    roots: RootCertStore,
    listener: TcpListener,
}

async fn fixture() -> Fixture {
    let mut roots = RootCertStore::empty();
    let mut hosts = Vec::new();
    for host in ["localhost", "example.org"] {
        let generated = rcgen::generate_simple_self_signed(vec![host.to_owned()]).unwrap();
        let cert = CertificateDer::from(generated.cert.der().to_vec());
        roots.add(cert.clone()).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            generated.signing_key.serialize_der(),
        ));
        hosts.push(HostCertificate {
            host: host.to_owned(),
            chain: vec![cert],
            key,
        });
    }
    Fixture {
        setup: TlsSetup::new(hosts).unwrap(),
        roots,
        listener: TcpListener::bind("127.0.0.1:0").await.unwrap(),
    }
}

impl Fixture {
    fn client_config(
        &self,
        suites: Option<Vec<SupportedCipherSuite>>,
        tls12: bool,
    ) -> Arc<ClientConfig> {
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(suites) = suites {
            provider.cipher_suites = suites;
        }
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        Arc::new(
            ClientConfig::builder_with_provider(Arc::new(provider))
                .with_protocol_versions(versions)
                .unwrap()
                .with_root_certificates(self.roots.clone())
                .with_no_client_auth(),
        )
    }

    /// A client handshake (tokio-rustls) and a server one (ours), concurrently.
    async fn pair(
        &self,
        config: Arc<ClientConfig>,
        host: &'static str,
    ) -> (tokio_rustls::client::TlsStream<TcpStream>, ServerTlsStream) {
        let addr = self.listener.local_addr().unwrap();
        let client = async {
            let socket = TcpStream::connect(addr).await.unwrap();
            TlsConnector::from(config)
                .connect(ServerName::try_from(host).unwrap(), socket)
                .await
                .unwrap()
        };
        let server = async {
            let (socket, _) = self.listener.accept().await.unwrap();
            self.setup.accept(socket).await.unwrap()
        };
        tokio::time::timeout(LIMIT, async { tokio::join!(client, server) })
            .await
            .unwrap()
    }
}

/// The tls-exporter value (RFC 9266) we compute from the captured exporter secret is the one
/// rustls' own exporter gives the client, for every TLS 1.3 suite (SHA-256 and SHA-384), and
/// tls-server-end-point follows the SNI.
#[tokio::test]
async fn channel_binding_matches_the_client_for_every_tls13_suite() {
    let f = fixture().await;
    let suites = rustls::crypto::ring::default_provider().cipher_suites;
    let tls13: Vec<_> = suites
        .iter()
        .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)))
        .copied()
        .collect();
    assert_eq!(tls13.len(), 3);
    let mut seen = Vec::new();
    for suite in tls13 {
        for host in ["localhost", "example.org"] {
            let (client, mut server) = f
                .pair(f.client_config(Some(vec![suite]), false), host)
                .await;
            assert_eq!(client.get_ref().1.negotiated_cipher_suite(), Some(suite));
            assert_eq!(server.server_name(), Some(host));
            let cb = f.setup.channel_binding(&mut server);
            let expected = client
                .get_ref()
                .1
                .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
                .unwrap();
            assert_eq!(cb.tls_exporter.as_deref(), Some(&expected[..]));
            let presented = client.get_ref().1.peer_certificates().unwrap()[0].to_vec();
            let end_point = cb.tls_server_end_point.clone().unwrap();
            assert_eq!(end_point, sha256(&presented));
            seen.push(end_point);
            // Taken once.
            assert!(server.take_exporter().is_none());
        }
    }
    seen.dedup();
    assert_eq!(seen.len(), 6, "the two hosts' end-point hashes alternate");
}

/// The exporter with a context, and of other lengths, against rustls' client.
#[tokio::test]
async fn exporter_with_context_and_lengths_matches_the_client() {
    let f = fixture().await;
    let (client, mut server) = f.pair(f.client_config(None, false), "localhost").await;
    let exporter = server.take_exporter().unwrap();
    for (label, context, len) in [
        (&b"label"[..], &b"context"[..], 16usize),
        (b"EXPORTER-Channel-Binding", b"", 64),
        (b"x", b"0123456789abcdef0123456789abcdef", 100),
    ] {
        let mut ours = vec![0u8; len];
        exporter.export(label, context, &mut ours).unwrap();
        let theirs = client
            .get_ref()
            .1
            .export_keying_material(vec![0u8; len], label, Some(context))
            .unwrap();
        assert_eq!(ours, theirs, "label {label:?}");
    }
}

/// RFC 9266 §3: no tls-exporter on TLS 1.2; tls-server-end-point still works.
#[tokio::test]
async fn tls12_has_no_exporter_but_carries_data() {
    let f = fixture().await;
    let (mut client, mut server) = f.pair(f.client_config(None, true), "localhost").await;
    assert_eq!(
        server.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let cb = f.setup.channel_binding(&mut server);
    assert_eq!(cb.tls_exporter, None);
    assert!(cb.tls_server_end_point.is_some());
    client.write_all(b"<stream>").await.unwrap();
    client.flush().await.unwrap();
    let mut got = [0u8; 8];
    tokio::time::timeout(LIMIT, server.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"<stream>");
}

/// Deterministic bytes that are not all alike.
fn pattern(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).max(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// 600 KiB each way in uneven pieces: many records cut across reads, writes larger than one
/// record, the socket filling up (a backlog of ciphertext); every byte arrives in order, and
/// once everything is through the connection holds no buffer.
#[tokio::test]
async fn bulk_data_both_ways_arrives_intact_and_buffers_are_released() {
    let f = fixture().await;
    let (client, mut server) = f.pair(f.client_config(None, false), "localhost").await;
    let up = pattern(600 * 1024, 1);
    let down = pattern(600 * 1024, 2);
    let (mut client_rd, mut client_wr) = tokio::io::split(client);
    let sizes = [1usize, 7, 300, 5000, 16 * 1024, 16 * 1024 + 1, 40_000];
    let client_send = {
        let up = up.clone();
        async move {
            let mut at = 0;
            let mut i = 0;
            while at < up.len() {
                let n = sizes[i % sizes.len()].min(up.len() - at);
                client_wr.write_all(&up[at..at + n]).await.unwrap();
                at += n;
                i += 1;
            }
            client_wr.flush().await.unwrap();
            client_wr
        }
    };
    let client_recv = async {
        let mut got = vec![0u8; down.len()];
        client_rd.read_exact(&mut got).await.unwrap();
        got
    };
    let server_side = async {
        // Write while reading, so both directions are in flight together.
        let mut received = Vec::new();
        let mut sent = 0;
        let mut i = 0;
        let mut buf = vec![0u8; 3000];
        while received.len() < up.len() || sent < down.len() {
            if sent < down.len() {
                let n = sizes[(i + 3) % sizes.len()].min(down.len() - sent);
                server.write_all(&down[sent..sent + n]).await.unwrap();
                sent += n;
                i += 1;
                if sent == down.len() {
                    server.flush().await.unwrap();
                }
            }
            if received.len() < up.len() {
                let n = server.read(&mut buf).await.unwrap();
                assert!(n > 0, "early end of stream");
                received.extend_from_slice(&buf[..n]);
            }
        }
        (received, server)
    };
    let (_, got_down, (got_up, server)) = tokio::time::timeout(LIMIT, async {
        tokio::join!(client_send, client_recv, server_side)
    })
    .await
    .unwrap();
    assert!(got_up == up, "client-to-server bytes differ");
    assert!(got_down == down, "server-to-client bytes differ");
    assert_eq!(server.buffered_capacity(), 0);
}

/// A handshake and a first message delivered one byte per TCP segment: every record and the
/// ClientHello itself arrive cut at every position.
#[tokio::test]
async fn handshake_and_data_one_byte_at_a_time() {
    let f = fixture().await;
    let addr = f.listener.local_addr().unwrap();
    let config = f.client_config(None, false);
    let client = async move {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        socket.set_nodelay(true).unwrap();
        let mut tls =
            ClientConnection::new(config, ServerName::try_from("localhost").unwrap()).unwrap();
        let mut inbuf = vec![0u8; 32 * 1024];
        let mut sent_data = false;
        for _ in 0..200 {
            let mut out = Vec::new();
            while tls.wants_write() {
                tls.write_tls(&mut out).unwrap();
            }
            for b in out {
                socket.write_all(&[b]).await.unwrap();
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            if !tls.is_handshaking() {
                if !sent_data {
                    use std::io::Write as _;
                    tls.writer().write_all(b"<hello/>").unwrap();
                    sent_data = true;
                    continue;
                }
                break;
            }
            let n = socket.read(&mut inbuf).await.unwrap();
            assert!(n > 0);
            tls.read_tls(&mut &inbuf[..n]).unwrap();
            tls.process_new_packets().unwrap();
        }
        assert!(sent_data);
        socket
    };
    let server = async {
        let (socket, _) = f.listener.accept().await.unwrap();
        let mut s = f.setup.accept(socket).await.unwrap();
        let mut got = [0u8; 8];
        s.read_exact(&mut got).await.unwrap();
        (got, s)
    };
    let (_socket, (got, s)) = tokio::time::timeout(LIMIT, async { tokio::join!(client, server) })
        .await
        .unwrap();
    assert_eq!(&got, b"<hello/>");
    assert_eq!(s.buffered_capacity(), 0);
}

/// Plain XML where a ClientHello should be, and a handshake record announcing a huge
/// message: the handshake fails with an error (no panic, no hang, bounded buffer).
#[tokio::test]
async fn garbage_and_oversized_handshakes_fail_cleanly() {
    let f = fixture().await;
    let addr = f.listener.local_addr().unwrap();
    let mut huge = Vec::new();
    // 8 records of 16 KiB, each continuing one 16 MiB ClientHello.
    for i in 0..8 {
        let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00];
        let mut body = vec![0u8; 0x4000];
        if i == 0 {
            body[..4].copy_from_slice(&[0x01, 0xff, 0xff, 0xff]);
        }
        record.extend_from_slice(&body);
        huge.extend_from_slice(&record);
    }
    for input in [
        b"<?xml version='1.0'?><stream:stream to='localhost'>".to_vec(),
        huge,
    ] {
        let client = async {
            let mut socket = TcpStream::connect(addr).await.unwrap();
            let _ = socket.write_all(&input).await;
            let mut sink = Vec::new();
            let _ = socket.read_to_end(&mut sink).await;
        };
        let server = async {
            let (socket, _) = f.listener.accept().await.unwrap();
            f.setup.accept(socket).await
        };
        let (_, result) = tokio::time::timeout(LIMIT, async { tokio::join!(client, server) })
            .await
            .unwrap();
        let e = result.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    }
}

/// close_notify both ways: the client's ends our reads cleanly; ours reaches the client as
/// a clean end of stream (tokio-rustls reports a missing close_notify as an error).
#[tokio::test]
async fn close_notify_both_ways() {
    let f = fixture().await;
    let (mut client, mut server) = f.pair(f.client_config(None, false), "localhost").await;
    server.write_all(b"bye").await.unwrap();
    server.shutdown().await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(LIMIT, client.read_to_end(&mut all))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(all, b"bye");
    client.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let n = tokio::time::timeout(LIMIT, server.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0);
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).to_vec()
}

/// A client that comes back resumes its session with the ticket it was given, and the
/// resumed connection has what a full handshake gives: SNI, the exporter, the end-point hash.
/// Tickets are stateless (the server keeps nothing per ticket).
#[tokio::test]
async fn a_returning_client_resumes_with_its_ticket() {
    let f = fixture().await;
    let config = f.client_config(None, false);
    for (round, expected) in [
        (0, rustls::HandshakeKind::Full),
        (1, rustls::HandshakeKind::Resumed),
        (2, rustls::HandshakeKind::Resumed),
    ] {
        let (mut client, mut server) = f.pair(config.clone(), "example.org").await;
        // The ticket arrives after the handshake; the client takes it in with the first
        // application data it reads.
        server.write_all(b"hello").await.unwrap();
        server.flush().await.unwrap();
        let mut buf = [0u8; 5];
        tokio::time::timeout(LIMIT, client.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"hello");
        assert_eq!(
            client.get_ref().1.handshake_kind(),
            Some(expected),
            "round {round}"
        );
        assert_eq!(server.server_name(), Some("example.org"), "round {round}");
        let cb = f.setup.channel_binding(&mut server);
        let expected_exporter = client
            .get_ref()
            .1
            .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
            .unwrap();
        assert_eq!(cb.tls_exporter.as_deref(), Some(&expected_exporter[..]));
        assert!(cb.tls_server_end_point.is_some(), "round {round}");
    }
}

/// The marks a connection uses to tell which stanzas of a failed write reached the client: a
/// write whose records end at or before `output_sent` has reached it in full, and nothing
/// after the last such write does (the client cannot read a record it got only in part, and
/// records still held are never sent).
#[tokio::test]
async fn what_the_socket_took_is_what_the_client_reads_after_a_stalled_write() {
    let f = fixture().await;
    let (mut client, mut server) = f.pair(f.client_config(None, false), "localhost").await;
    let bytes = pattern(64 * 1024 * 1024, 7);
    let mut marks = Vec::new();
    let write = async {
        let mut taken = 0;
        while taken < bytes.len() {
            taken += server.write(&bytes[taken..]).await.unwrap();
            marks.push((taken, server.output_queued()));
        }
        server.flush().await.unwrap();
    };
    assert!(
        tokio::time::timeout(Duration::from_millis(300), write)
            .await
            .is_err(),
        "the write never filled the socket"
    );
    let sent = server.output_sent();
    let reached = marks
        .iter()
        .rev()
        .find(|(_, mark)| *mark <= sent)
        .map_or(0, |(taken, _)| *taken);
    drop(server);
    let mut got = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    // Ends with the connection's abrupt end (no close_notify) or a cut record.
    for _ in 0..1_000_000 {
        match tokio::time::timeout(LIMIT, client.read(&mut buf))
            .await
            .unwrap()
        {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    assert!(reached > 0 && reached < bytes.len());
    assert_eq!(got.len(), reached);
    assert!(got == bytes[..reached]);
}
