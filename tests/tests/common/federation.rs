//! Two federated xmppd instances on two loopback addresses with static routes, and the
//! checks federation tests share.

use std::net::SocketAddr;

use xmppd::config::Config;
use xmppd::modules::ExtraModules;
use xmppd_s2s::{StaticRoute, Transport};
use xmppd_testkit::{EXPECT_TIMEOUT, TestClient, TestPki, TestServer};
use xmppd_xml::{Element, StreamEvent};

use super::{CLIENT, password};

pub const A: &str = "a.test";
pub const B: &str = "b.test";
pub const PING: &str = "urn:xmpp:ping";

/// A port free on `ip` right now (the servers bind it a moment later).
pub fn free_port(ip: [u8; 4]) -> anyhow::Result<SocketAddr> {
    let probe = std::net::TcpListener::bind(SocketAddr::from((ip, 0)))?;
    Ok(probe.local_addr()?)
}

pub fn route_to(config: &mut Config, domain: &str, addr: SocketAddr) {
    config.s2s.settings.routes.insert(
        domain.to_owned(),
        vec![StaticRoute {
            host: addr.ip().to_string(),
            port: addr.port(),
            transport: Transport::StartTls,
        }],
    );
}

#[derive(Clone, Copy, PartialEq)]
pub enum Auth {
    /// Both trust the test CA and allow only certificates: SASL EXTERNAL or nothing.
    Certificates,
    /// Neither trusts the other's certificate; dialback is allowed.
    Dialback,
}

/// a.test on 127.0.0.1 and b.test on 127.0.0.2, each with a static route to the other.
pub async fn two_servers(auth: Auth) -> anyhow::Result<(TestPki, TestServer, TestServer)> {
    two_servers_with(auth, None, &[]).await
}

/// [`two_servers`], with modules of the test's own on a.test, and more of a.test's domains
/// (its services) routed from b.test.
pub async fn two_servers_with(
    auth: Auth,
    extra_on_a: Option<ExtraModules>,
    more_domains_of_a: &[&str],
) -> anyhow::Result<(TestPki, TestServer, TestServer)> {
    two_servers_routing(auth, extra_on_a, more_domains_of_a, &[]).await
}

/// [`two_servers_with`], with b.test's services routed from a.test too.
pub async fn two_servers_routing(
    auth: Auth,
    extra_on_a: Option<ExtraModules>,
    more_domains_of_a: &[&str],
    more_domains_of_b: &[&str],
) -> anyhow::Result<(TestPki, TestServer, TestServer)> {
    two_servers_adjusted(
        auth,
        extra_on_a,
        more_domains_of_a,
        more_domains_of_b,
        |_| {},
    )
    .await
}

/// [`two_servers_routing`], with b.test's configuration adjusted by `adjust_b` last.
pub async fn two_servers_adjusted(
    auth: Auth,
    extra_on_a: Option<ExtraModules>,
    more_domains_of_a: &[&str],
    more_domains_of_b: &[&str],
    adjust_b: impl FnOnce(&mut Config),
) -> anyhow::Result<(TestPki, TestServer, TestServer)> {
    let pki = TestPki::new(&[A, B])?;
    let a_addr = free_port([127, 0, 0, 1])?;
    let b_addr = free_port([127, 0, 0, 2])?;
    let trust = auth == Auth::Certificates;
    let configure = |c: &mut Config, other: &str, other_addr: SocketAddr| {
        route_to(c, other, other_addr);
        c.s2s.secure_auth = auth == Auth::Certificates;
    };
    let a = TestServer::start_federated_with_modules(
        A,
        &pki,
        a_addr,
        trust,
        |c| {
            configure(c, B, b_addr);
            for domain in more_domains_of_b {
                route_to(c, domain, b_addr);
            }
        },
        extra_on_a,
    )
    .await?;
    let b = TestServer::start_federated(B, &pki, b_addr, trust, |c| {
        configure(c, A, a_addr);
        for domain in more_domains_of_a {
            route_to(c, domain, a_addr);
        }
        adjust_b(c);
    })
    .await?;
    for (server, user) in [(&a, "alice"), (&b, "bob")] {
        server.add_user(user, &password(user)).await?;
    }
    Ok((pki, a, b))
}

/// Logs in, sends initial presence and takes its echo.
/// Logs in, requests the roster (as clients do: an interested resource receives subscription
/// approvals, RFC 6121 §3.1.6) and sends initial presence.
pub async fn online(server: &TestServer, user: &str) -> anyhow::Result<TestClient> {
    let mut client = server.login(user, &password(user), "res").await?;
    client
        .send("<iq type='get' id='roster0'><query xmlns='jabber:iq:roster'/></iq>")
        .await?;
    next_matching(&mut client, "roster result", |e| {
        e.is("iq", CLIENT) && e.attr("id") == Some("roster0")
    })
    .await?;
    client.available(0).await?;
    let me = format!("{user}@{}/res", server.domain());
    next_matching(&mut client, "own presence", |e| {
        e.is("presence", CLIENT) && e.attr("from") == Some(me.as_str())
    })
    .await?;
    Ok(client)
}

/// The next element satisfying `check`, skipping others (roster pushes, presence echoes),
/// within the test timeout.
pub async fn next_matching(
    client: &mut TestClient,
    what: &str,
    check: impl Fn(&Element) -> bool,
) -> anyhow::Result<Element> {
    let deadline = tokio::time::Instant::now() + EXPECT_TIMEOUT;
    let mut skipped = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match client.next_event_within(left).await? {
            Some(StreamEvent::Stanza(el)) if check(&el) => return Ok(el),
            Some(StreamEvent::Stanza(el)) => skipped.push(el.to_string()),
            Some(other) => anyhow::bail!("waiting for {what}: got {other:?}"),
            None => anyhow::bail!("waiting for {what}: nothing came; skipped {skipped:#?}"),
        }
    }
}

pub async fn expect_body(client: &mut TestClient, from: &str, text: &str) -> anyhow::Result<()> {
    next_matching(client, &format!("{text:?} from {from}"), |e| {
        e.is("message", CLIENT)
            && e.attr("from") == Some(from)
            && e.attr("type") != Some("error")
            && e.child("body", CLIENT).map(Element::text).as_deref() == Some(text)
    })
    .await?;
    Ok(())
}

pub async fn chat_both_ways(alice: &mut TestClient, bob: &mut TestClient) -> anyhow::Result<()> {
    alice
        .send("<message to='bob@b.test' type='chat'><body>hello from a</body></message>")
        .await?;
    expect_body(bob, "alice@a.test/res", "hello from a").await?;
    bob.send("<message to='alice@a.test/res' type='chat'><body>hello from b</body></message>")
        .await?;
    expect_body(alice, "bob@b.test/res", "hello from b").await?;
    Ok(())
}

pub async fn ping_remote_server(client: &mut TestClient, domain: &str) -> anyhow::Result<()> {
    client
        .send(&format!(
            "<iq to='{domain}' type='get' id='p1'><ping xmlns='{PING}'/></iq>"
        ))
        .await?;
    next_matching(client, &format!("ping result from {domain}"), |e| {
        e.is("iq", CLIENT) && e.attr("id") == Some("p1") && e.attr("from") == Some(domain)
    })
    .await
    .and_then(|e| match e.attr("type") {
        Some("result") => Ok(()),
        _ => anyhow::bail!("ping answered with {e}"),
    })
}

// --- A hand-driven peer ------------------------------------------------------------------

/// A TLS client configuration trusting `pki`'s CA, presenting `cert_of`'s certificate.
pub fn client_config(
    pki: &TestPki,
    cert_of: Option<&str>,
) -> anyhow::Result<std::sync::Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(pki.ca_path())?;
    for cert in rustls_pemfile_certs(&ca)? {
        roots.add(cert)?;
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match cert_of.and_then(|d| pki.cert_paths(d)) {
        Some((cert, key)) => {
            let chain = rustls_pemfile_certs(&std::fs::read(cert)?)?;
            use rustls::pki_types::pem::PemObject as _;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&std::fs::read(key)?)?;
            builder.with_client_auth_cert(chain, key)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(std::sync::Arc::new(config))
}

fn rustls_pemfile_certs(
    pem: &[u8],
) -> anyhow::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject as _;
    Ok(rustls::pki_types::CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>()?)
}

/// Opens a server stream from `from` to `to` and returns the header's stream id.
pub async fn open_server_stream(
    peer: &mut TestClient,
    from: &str,
    to: &str,
) -> anyhow::Result<String> {
    peer.send(&format!(
        "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
         xmlns:db='jabber:server:dialback' from='{from}' to='{to}' version='1.0'>"
    ))
    .await?;
    let StreamEvent::Open(header) = peer.next_event().await? else {
        anyhow::bail!("no stream header");
    };
    let id = header.attr("id").unwrap_or_default().to_owned();
    peer.expect("features", |e| e.name() == "features").await?;
    Ok(id)
}

/// Connects to `server`'s s2s listener as `from` and negotiates STARTTLS (presenting
/// `cert_of`'s certificate, if any); returns the new stream id.
pub async fn peer_over_tls(
    server: &TestServer,
    pki: &TestPki,
    from: &str,
    cert_of: Option<&str>,
) -> anyhow::Result<(TestClient, String)> {
    let mut peer = TestClient::connect(server.s2s_addr()).await?;
    open_server_stream(&mut peer, from, server.domain()).await?;
    peer.send("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        .await?;
    peer.expect("proceed", |e| e.name() == "proceed").await?;
    peer.upgrade(client_config(pki, cert_of)?, server.domain())
        .await?;
    let id = open_server_stream(&mut peer, from, server.domain()).await?;
    Ok((peer, id))
}

/// [`peer_over_tls`] with `from`'s certificate, authenticated as `from` by SASL EXTERNAL
/// (XEP-0178), on the restarted stream.
pub async fn peer_authenticated(
    server: &TestServer,
    pki: &TestPki,
    from: &str,
) -> anyhow::Result<TestClient> {
    use base64::Engine as _;
    let (mut peer, _) = peer_over_tls(server, pki, from, Some(from)).await?;
    let authzid = base64::engine::general_purpose::STANDARD.encode(from);
    peer.send(&format!(
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>{authzid}</auth>"
    ))
    .await?;
    peer.expect("success", |e| e.name() == "success").await?;
    peer.restart_stream();
    open_server_stream(&mut peer, from, server.domain()).await?;
    Ok(peer)
}
