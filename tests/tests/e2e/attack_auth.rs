//! Attack catalogue (`tests/SECURITY.md`), the negotiation rows: SCRAM proofs and component
//! handshakes compared in constant time (wrong answers of every shape get one identical
//! answer), user enumeration (an unknown user and a wrong password are indistinguishable,
//! challenge included), XEP-0138 compression (never offered, a request refused), STARTTLS
//! injection and authentication before TLS on federation streams, and plaintext on the
//! direct-TLS port.
//!
//! The comparisons themselves use `subtle::ConstantTimeEq` (SCRAM's StoredKey, channel
//! binding and nonce in `xmppd-stream` `sasl/scram.rs`, the component handshake in
//! `component.rs`, dialback keys in `dialback.rs`); what a test can prove over a socket is
//! that no answer depends on how close a guess was.

use crate::common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::attack::{IRC_SECRET, Path, Target, before_header, expect_refused, reach};
use common::federation::{A, B, client_config, online, open_server_stream};
use common::scram;
use common::{SILENCE, password};
use xmppd_core::per_address::AuthThrottleSettings;
use xmppd_stream::component::handshake_digest;
use xmppd_testkit::TestClient;
use xmppd_xml::{Element, StreamEvent};

const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
const COMPRESS_FEATURE: &str = "http://jabber.org/features/compress";
const COMPRESS: &str = "http://jabber.org/protocol/compress";

/// The target with failures never slowed down or ending the stream (the throttle has its
/// own tests in `address_limits.rs`): every guess is answered at once.
async fn target() -> anyhow::Result<Target> {
    Target::start_with(|c| {
        c.max_auth_failures = 1000;
        c.auth_throttle = AuthThrottleSettings {
            free_failures: u32::MAX,
            ..AuthThrottleSettings::default()
        };
    })
    .await
}

/// A client after STARTTLS, with the post-TLS features read.
async fn after_tls(t: &Target) -> anyhow::Result<TestClient> {
    let mut client = before_header(t, Path::C2sStartTls).await?;
    client.open_stream(B).await?;
    Ok(client)
}

/// Sends a client-final message; the server's answer, serialised.
async fn finish_scram(client: &mut TestClient, client_final: &str) -> anyhow::Result<String> {
    Ok(scram::finish(client, client_final).await?.to_string())
}

/// `client_final` with its proof replaced by `change(proof)`.
fn with_proof(client_final: &str, change: impl Fn(&mut Vec<u8>)) -> anyhow::Result<String> {
    let (without, proof) = client_final
        .rsplit_once(",p=")
        .ok_or_else(|| anyhow::anyhow!("no proof in {client_final}"))?;
    let mut proof = BASE64.decode(proof)?;
    change(&mut proof);
    Ok(format!("{without},p={}", BASE64.encode(proof)))
}

const NOT_AUTHORIZED: &str =
    "<failure xmlns=\"urn:ietf:params:xml:ns:xmpp-sasl\"><not-authorized/></failure>";

#[tokio::test]
async fn every_wrong_scram_proof_gets_the_same_answer() -> anyhow::Result<()> {
    let t = target().await?;
    let right = password("alice");
    type Change = fn(&mut Vec<u8>);
    let wrong_proofs: [(&str, Change); 5] = [
        ("the last bit flipped", |p| {
            if let Some(b) = p.last_mut() {
                *b ^= 1;
            }
        }),
        ("the first bit flipped", |p| p[0] ^= 0x80),
        ("only the first byte right", |p| {
            for b in p.iter_mut().skip(1) {
                *b = !*b;
            }
        }),
        ("all zeros", |p| p.iter_mut().for_each(|b| *b = 0)),
        ("all ones", |p| p.iter_mut().for_each(|b| *b = 0xFF)),
    ];
    let mut answers = Vec::new();
    for (what, change) in wrong_proofs {
        let mut client = after_tls(&t).await?;
        let scram = scram::start(&mut client, "alice", &right).await?;
        let answer = finish_scram(&mut client, &with_proof(&scram.client_final, change)?).await?;
        answers.push((what, answer));
    }
    for (what, answer) in &answers {
        assert_eq!(answer, NOT_AUTHORIZED, "a proof with {what}");
    }
    // A proof of the wrong length is malformed, whatever its bytes: the length of a proof is
    // the hash's, public, and says nothing of the password.
    for len in [0, 31, 33, 64] {
        let mut client = after_tls(&t).await?;
        let scram = scram::start(&mut client, "alice", &right).await?;
        let short = with_proof(&scram.client_final, |p| p.resize(len, 0))?;
        let answer = finish_scram(&mut client, &short).await?;
        assert!(
            answer.contains("<malformed-request/>"),
            "a proof of {len} bytes: {answer}"
        );
    }
    // The control: the right proof succeeds.
    let mut client = after_tls(&t).await?;
    let scram = scram::start(&mut client, "alice", &right).await?;
    let answer = finish_scram(&mut client, &scram.client_final).await?;
    assert!(answer.starts_with("<success"), "{answer}");
    Ok(())
}

/// `r=…,s=SALT,i=N`: the salt's length and the iteration count.
fn salt_and_iterations(challenge: &str) -> anyhow::Result<(usize, String)> {
    let field = |name: &str| {
        challenge
            .split(',')
            .find_map(|f| f.strip_prefix(name))
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no {name} in {challenge}"))
    };
    Ok((BASE64.decode(field("s=")?)?.len(), field("i=")?))
}

#[tokio::test]
async fn an_unknown_user_cannot_be_told_from_a_wrong_password() -> anyhow::Result<()> {
    let t = target().await?;
    let mut seen = Vec::new();
    for user in ["alice", "mallory"] {
        // SCRAM: a challenge of the same shape, then the same failure.
        let mut client = after_tls(&t).await?;
        let scram = scram::start(&mut client, user, "guess").await?;
        let shape = salt_and_iterations(&scram.server_first)?;
        let scram_answer = finish_scram(&mut client, &scram.client_final).await?;
        // PLAIN on the same stream: the same failure again.
        let plain = BASE64.encode(format!("\0{user}\0guess"));
        client
            .send(&format!(
                "<auth xmlns='{SASL}' mechanism='PLAIN'>{plain}</auth>"
            ))
            .await?;
        let plain_answer = client.recv().await?.to_string();
        seen.push((user, shape, scram_answer, plain_answer));
    }
    let (_, alice_shape, alice_scram, alice_plain) = &seen[0];
    let (_, mallory_shape, mallory_scram, mallory_plain) = &seen[1];
    assert_eq!(alice_scram, NOT_AUTHORIZED);
    assert_eq!(alice_plain, NOT_AUTHORIZED);
    assert_eq!(mallory_scram, alice_scram);
    assert_eq!(mallory_plain, alice_plain);
    assert_eq!(mallory_shape, alice_shape, "salt length and iterations");
    // The made-up salt of an unknown user is stable: asking twice cannot tell it is made up.
    let mut salts = Vec::new();
    for _ in 0..2 {
        let mut client = after_tls(&t).await?;
        let scram = scram::start(&mut client, "mallory", "guess").await?;
        salts.push(
            scram
                .server_first
                .split(',')
                .find(|f| f.starts_with("s="))
                .map(str::to_owned),
        );
    }
    assert_eq!(salts[0], salts[1]);
    Ok(())
}

#[tokio::test]
async fn every_wrong_component_handshake_gets_the_same_answer() -> anyhow::Result<()> {
    let t = target().await?;
    let mut answers = Vec::new();
    type Guess = fn(&str) -> String;
    let guesses: [(&str, Guess); 6] = [
        ("all but the last digit", |d| d[..d.len() - 1].to_owned()),
        ("the last digit changed", |d| {
            let last = if d.ends_with('0') { '1' } else { '0' };
            format!("{}{last}", &d[..d.len() - 1])
        }),
        ("the first digit changed", |d| {
            let first = if d.starts_with('0') { '1' } else { '0' };
            format!("{first}{}", &d[1..])
        }),
        ("twice the digest", |d| d.repeat(2)),
        ("nothing", |_| String::new()),
        ("not hex at all", |d| "z".repeat(d.len())),
    ];
    for (what, guess) in guesses {
        let (mut component, id) = open(&t).await?;
        let digest = handshake_digest(&id, IRC_SECRET);
        component
            .send(&format!("<handshake>{}</handshake>", guess(&digest)))
            .await?;
        answers.push((what, error_of(&mut component).await?));
    }
    let (_, first) = &answers[0];
    assert!(first.contains("<not-authorized "), "{first}");
    for (what, answer) in &answers {
        assert_eq!(answer, first, "{what}");
    }
    // The control: the secret's digest (in capitals too: it is hexadecimal) is accepted.
    let (mut component, id) = open(&t).await?;
    let digest = handshake_digest(&id, IRC_SECRET).to_ascii_uppercase();
    component
        .send(&format!("<handshake>{digest}</handshake>"))
        .await?;
    component
        .expect("the empty handshake", |e| e.name() == "handshake")
        .await?;
    Ok(())
}

/// A component stream for irc.b.test and its id.
async fn open(t: &Target) -> anyhow::Result<(TestClient, String)> {
    let mut component = before_header(t, Path::ComponentHandshake).await?;
    component.send(&Path::ComponentHandshake.header()).await?;
    let StreamEvent::Open(header) = component.next_event().await? else {
        anyhow::bail!("no header");
    };
    Ok((component, header.attr("id").unwrap_or_default().to_owned()))
}

/// The stream error that ends the stream, serialised.
async fn error_of(client: &mut TestClient) -> anyhow::Result<String> {
    let el = client.recv().await?;
    anyhow::ensure!(el.is("error", xmppd_xml::STREAM_NS), "{el}");
    Ok(el.to_string())
}

/// Whether `features` (or anything in it) mentions compression.
fn offers_compression(features: &Element) -> bool {
    features.has_child("compression", COMPRESS_FEATURE) || features.to_string().contains("compress")
}

#[tokio::test]
async fn compression_is_never_offered_and_a_request_is_refused() -> anyhow::Result<()> {
    let t = target().await?;
    // The features of every client stream: before TLS, after it, after SASL.
    let mut client = TestClient::connect(t.server.starttls_addr()).await?;
    let before = client.open_stream(B).await?;
    assert!(!offers_compression(&before), "{before}");
    client.starttls(t.server.tls_client_config(), B).await?;
    let after_tls = client
        .features
        .clone()
        .unwrap_or_else(|| Element::new("", ""));
    assert!(!offers_compression(&after_tls), "{after_tls}");
    client
        .authenticate("SCRAM-SHA-256", "alice", &password("alice"))
        .await?;
    let after_sasl = client
        .features
        .clone()
        .unwrap_or_else(|| Element::new("", ""));
    assert!(!offers_compression(&after_sasl), "{after_sasl}");
    // XEP-0138 §3 request anyway, before and after login: the element is not one this
    // server understands, and the stream ends rather than switching to zlib (CRIME-style
    // attacks on compressed TLS, and zlib bombs, have nothing to work on).
    let request = format!("<compress xmlns='{COMPRESS}'><method>zlib</method></compress>");
    // Before authentication only negotiation is allowed (`policy-violation`); after it, the
    // element is no stanza (`unsupported-stanza-type`).
    for (path, condition) in [
        (Path::C2sStartTls, "policy-violation"),
        (Path::C2sAuthenticated, "unsupported-stanza-type"),
        (Path::S2sAuthenticated, "unsupported-stanza-type"),
    ] {
        let mut client = reach(&t, path).await?;
        let what = format!("compression on {path:?}");
        expect_refused(&mut client, request.as_bytes(), condition, &what).await?;
    }
    Ok(())
}

#[tokio::test]
async fn federation_refuses_starttls_injection_and_sasl_before_tls() -> anyhow::Result<()> {
    let t = target().await?;
    let mut bob = online(&t.server, "bob").await?;
    // Bytes pipelined behind <starttls/> (RFC 6120 §5.3.3 and the CVE-2011-0411 family):
    // never read as if they had come through TLS.
    for trailer in [
        "<message from='alice@a.test/x' to='bob@b.test'><body>injected</body></message>",
        "<db:result from='a.test' to='b.test'>00ff</db:result>",
    ] {
        let mut peer = before_header(&t, Path::S2sPlain).await?;
        open_server_stream(&mut peer, A, B).await?;
        peer.send(&format!("<starttls xmlns='{TLS}'/>{trailer}"))
            .await?;
        // The server proceeds and drops what it had read behind the request: the stream
        // after TLS starts clean, with no answer to anything injected.
        peer.expect("<proceed/>", |e| e.is("proceed", TLS)).await?;
        peer.upgrade(client_config(&t.pki, Some(A))?, B).await?;
        open_server_stream(&mut peer, A, B).await?;
        peer.expect_silence(SILENCE).await?;
    }
    // SASL EXTERNAL before TLS: there is no certificate to vouch for anything, and TLS is
    // required first.
    let mut peer = before_header(&t, Path::S2sPlain).await?;
    open_server_stream(&mut peer, A, B).await?;
    let authzid = BASE64.encode(A);
    peer.send(&format!(
        "<auth xmlns='{SASL}' mechanism='EXTERNAL'>{authzid}</auth>"
    ))
    .await?;
    assert_eq!(peer.expect_stream_error().await?, "policy-violation");
    peer.expect_closed().await?;
    bob.expect_silence(SILENCE).await?;
    Ok(())
}

#[tokio::test]
async fn plaintext_on_the_direct_tls_port_is_closed() -> anyhow::Result<()> {
    let t = target().await?;
    let addr = t
        .server
        .server
        .addr(xmppd_c2s::ListenerKind::DirectTls)
        .ok_or_else(|| anyhow::anyhow!("no direct-TLS listener"))?;
    let mut client = TestClient::connect(addr).await?;
    client.send(&Path::C2sPlain.header()).await?;
    client.expect_closed().await?;
    // Nothing was ever logged in, and the listener still serves TLS.
    let mut tls = TestClient::connect_tls(addr, t.server.tls_client_config(), B).await?;
    tls.open_stream(B).await?;
    Ok(())
}
