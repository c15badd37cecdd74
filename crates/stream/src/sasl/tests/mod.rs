//! Exchanges driven end to end in memory: RFC test vectors, client↔server round trips for
//! every mechanism, attacks, garbage input, and interop with the independent `sasl` crate.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;

mod fuzz;
mod interop;
mod plain;

const SECRET: [u8; 32] = [42; 32];
const EXPORTER: [u8; 32] = [0xe1; 32];
const END_POINT: [u8; 32] = [0xe2; 32];

fn cb_both() -> ChannelBindingData {
    ChannelBindingData {
        tls_exporter: Some(EXPORTER.to_vec()),
        tls_server_end_point: Some(END_POINT.to_vec()),
    }
}

/// Cheap credentials for round trips (debug-build PBKDF2 is slow).
fn creds(password: &str) -> StoredCredentials {
    StoredCredentials::derive(password, 16).expect("derive")
}

fn condition(step: &Step) -> Option<FailureCondition> {
    match step {
        Step::Failure(f) => Some(f.condition),
        _ => None,
    }
}

/// Runs a full SCRAM exchange; returns the server's final step.
fn run_scram(
    server: &mut ServerSession,
    client: &mut ScramClient,
    stored: Option<&StoredCredentials>,
) -> Step {
    let step = server.start(Some(&client.first_message()));
    let Step::NeedCredentials { .. } = step else {
        return step;
    };
    let Step::Challenge(server_first) = server.provide_credentials(stored) else {
        panic!("expected server-first");
    };
    let client_final = client
        .handle_challenge(&server_first)
        .expect("client final");
    let step = server.step(&client_final);
    if let Step::Success {
        additional_data: Some(v),
        ..
    } = &step
    {
        client.verify_success(v).expect("server signature");
    }
    step
}

fn scram_client(hash: ScramHash, password: &str, cb: ClientChannelBinding) -> ScramClient {
    ScramClient::new(hash, "juliet", password, cb, None).expect("client")
}

fn vector(hash: ScramHash, client_nonce: &str, server_nonce: &str, salt: &str, msgs: [&str; 4]) {
    let salt = STANDARD.decode(salt).expect("salt");
    let record = ScramCredentials::derive(hash, "pencil", &salt, 4096).expect("derive");
    let stored = match hash {
        ScramHash::Sha1 => StoredCredentials {
            sha1: Some(record),
            sha256: None,
        },
        ScramHash::Sha256 => StoredCredentials {
            sha1: None,
            sha256: Some(record),
        },
    };
    let mech = Mechanism::PREFERENCE
        .into_iter()
        .find(|m| m.scram_hash() == Some(hash) && !m.is_plus())
        .expect("mechanism");
    let mut client = ScramClient::with_nonce(
        hash,
        "user",
        "pencil",
        ClientChannelBinding::None,
        None,
        client_nonce,
    )
    .expect("client");
    let mut server = ServerSession::new(mech, ChannelBindingData::none(), SECRET, true);
    server.set_server_nonce(server_nonce);

    assert_eq!(client.first_message(), msgs[0].as_bytes());
    assert_eq!(
        server.start(Some(msgs[0].as_bytes())),
        Step::NeedCredentials {
            username: "user".into(),
            authzid: None
        }
    );
    assert_eq!(
        server.provide_credentials(Some(&stored)),
        Step::Challenge(msgs[1].as_bytes().to_vec())
    );
    let client_final = client.handle_challenge(msgs[1].as_bytes()).expect("final");
    assert_eq!(String::from_utf8_lossy(&client_final), msgs[2]);
    assert_eq!(
        server.step(msgs[2].as_bytes()),
        Step::Success {
            username: "user".into(),
            authzid: None,
            additional_data: Some(msgs[3].as_bytes().to_vec()),
        }
    );
    client.verify_success(msgs[3].as_bytes()).expect("verify");
    assert!(server.is_finished());
}

#[test]
fn rfc5802_sha1_vector() {
    vector(
        ScramHash::Sha1,
        "fyko+d2lbbFgONRv9qkxdawL",
        "3rfcNHYJY1ZVvWVs7j",
        "QSXCR+Q6sek8bf92",
        [
            "n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL",
            "r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096",
            "c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts=",
            "v=rmF9pqV8S7suAoZWja4dJRkFsKQ=",
        ],
    );
}

#[test]
fn rfc7677_sha256_vector() {
    vector(
        ScramHash::Sha256,
        "rOprNGfwEbeRWgbNEkqO",
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        "W22ZaJ0SNY7soEsUEjb6gQ==",
        [
            "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
             p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        ],
    );
}

#[test]
fn mechanism_names_round_trip() {
    for m in Mechanism::PREFERENCE {
        assert_eq!(Mechanism::from_name(m.name()), Some(m));
    }
    assert_eq!(Mechanism::from_name("scram-sha-1"), None);
    assert_eq!(Mechanism::ScramSha256Plus.name(), "SCRAM-SHA-256-PLUS");
    assert_eq!(
        FailureCondition::from_name("not-authorized"),
        Some(FailureCondition::NotAuthorized)
    );
    assert_eq!(
        FailureCondition::TemporaryAuthFailure.as_str(),
        "temporary-auth-failure"
    );
}

#[test]
fn offered_mechanisms_follow_bindings_and_policy() {
    use Mechanism::*;
    assert_eq!(
        offered_mechanisms(&ChannelBindingData::none(), false),
        vec![ScramSha256, ScramSha1]
    );
    assert_eq!(
        offered_mechanisms(&cb_both(), true),
        Mechanism::PREFERENCE.to_vec()
    );
    let only_endpoint = ChannelBindingData {
        tls_exporter: None,
        tls_server_end_point: Some(END_POINT.to_vec()),
    };
    assert_eq!(
        only_endpoint.supported_channel_bindings(),
        vec![ChannelBindingType::TlsServerEndPoint]
    );
    assert_eq!(
        cb_both().supported_channel_bindings(),
        vec![
            ChannelBindingType::TlsExporter,
            ChannelBindingType::TlsServerEndPoint
        ]
    );
}

#[test]
fn round_trip_every_scram_mechanism() {
    let stored = creds("pencil");
    let cases = [
        (ScramHash::Sha1, ClientChannelBinding::None),
        (ScramHash::Sha256, ClientChannelBinding::None),
        (
            ScramHash::Sha1,
            ClientChannelBinding::TlsExporter(EXPORTER.to_vec()),
        ),
        (
            ScramHash::Sha256,
            ClientChannelBinding::TlsExporter(EXPORTER.to_vec()),
        ),
        (
            ScramHash::Sha1,
            ClientChannelBinding::TlsServerEndPoint(END_POINT.to_vec()),
        ),
        (
            ScramHash::Sha256,
            ClientChannelBinding::TlsServerEndPoint(END_POINT.to_vec()),
        ),
    ];
    for (hash, cb) in cases {
        let mut client = scram_client(hash, "pencil", cb);
        let mech = client.mechanism();
        let mut server = ServerSession::new(mech, cb_both(), SECRET, true);
        let step = run_scram(&mut server, &mut client, Some(&stored));
        assert!(
            matches!(&step, Step::Success { username, authzid: None, .. } if username == "juliet"),
            "{mech:?}: {step:?}"
        );
    }
}

#[test]
fn y_flag_accepted_when_server_has_no_binding() {
    let stored = creds("pencil");
    let mut client = scram_client(
        ScramHash::Sha256,
        "pencil",
        ClientChannelBinding::UnsupportedByServer,
    );
    let mut server = ServerSession::new(
        Mechanism::ScramSha256,
        ChannelBindingData::none(),
        SECRET,
        true,
    );
    let step = run_scram(&mut server, &mut client, Some(&stored));
    assert!(matches!(step, Step::Success { .. }), "{step:?}");
}

#[test]
fn authzid_is_returned_for_the_caller_to_check() {
    let stored = creds("pencil");
    let mut client = ScramClient::new(
        ScramHash::Sha256,
        "juliet",
        "pencil",
        ClientChannelBinding::None,
        Some("romeo@montague.lit".into()),
    )
    .expect("client");
    let mut server = ServerSession::new(Mechanism::ScramSha256, cb_both(), SECRET, true);
    let step = run_scram(&mut server, &mut client, Some(&stored));
    assert!(
        matches!(&step, Step::Success { authzid: Some(a), .. } if a == "romeo@montague.lit"),
        "{step:?}"
    );
}

#[test]
fn wrong_password_is_not_authorized() {
    let stored = creds("pencil");
    for hash in [ScramHash::Sha1, ScramHash::Sha256] {
        let mut client = scram_client(hash, "crayon", ClientChannelBinding::None);
        let mut server = ServerSession::new(client.mechanism(), cb_both(), SECRET, true);
        let step = run_scram(&mut server, &mut client, Some(&stored));
        assert_eq!(
            step,
            Step::Failure(Failure {
                condition: FailureCondition::NotAuthorized,
                text: None
            })
        );
        assert!(server.is_finished());
        assert_eq!(
            condition(&server.step(b"again")),
            Some(FailureCondition::MalformedRequest)
        );
    }
}

/// Parses `s=` and `i=` out of a server-first-message.
fn salt_and_iterations(server_first: &[u8]) -> (Vec<u8>, String) {
    let text = std::str::from_utf8(server_first).expect("utf8");
    let mut fields = text.split(',').skip(1);
    let salt = fields
        .next()
        .and_then(|f| f.strip_prefix("s="))
        .expect("s=");
    let iters = fields
        .next()
        .and_then(|f| f.strip_prefix("i="))
        .expect("i=");
    (STANDARD.decode(salt).expect("b64"), iters.to_owned())
}

fn server_first_for(user: &str, stored: Option<&StoredCredentials>) -> Vec<u8> {
    let client = ScramClient::new(
        ScramHash::Sha256,
        user,
        "pencil",
        ClientChannelBinding::None,
        None,
    )
    .expect("client");
    let mut server = ServerSession::new(Mechanism::ScramSha256, cb_both(), SECRET, true);
    assert!(matches!(
        server.start(Some(&client.first_message())),
        Step::NeedCredentials { .. }
    ));
    match server.provide_credentials(stored) {
        Step::Challenge(c) => c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_user_gets_a_plausible_deterministic_challenge() {
    let real = StoredCredentials::derive("pencil", DEFAULT_ITERATIONS).expect("derive");
    let (real_salt, real_iters) = salt_and_iterations(&server_first_for("juliet", Some(&real)));
    let (fake_salt, fake_iters) = salt_and_iterations(&server_first_for("nobody", None));
    assert_eq!(real_salt.len(), fake_salt.len());
    assert_eq!(real_iters, fake_iters);
    let (again, _) = salt_and_iterations(&server_first_for("nobody", None));
    assert_eq!(fake_salt, again, "same unknown user, same salt");
    let (other, _) = salt_and_iterations(&server_first_for("nobody2", None));
    assert_ne!(fake_salt, other);
    // A user without a SHA-256 record looks unknown to SCRAM-SHA-256.
    let sha1_only = StoredCredentials {
        sha1: real.sha1.clone(),
        sha256: None,
    };
    let (partial, _) = salt_and_iterations(&server_first_for("nobody", Some(&sha1_only)));
    assert_eq!(partial, fake_salt);
}

#[test]
fn unknown_user_fails_only_at_the_end() {
    let mut client = scram_client(ScramHash::Sha256, "pencil", ClientChannelBinding::None);
    let mut server = ServerSession::new(Mechanism::ScramSha256, cb_both(), SECRET, true);
    let step = run_scram(&mut server, &mut client, None);
    assert_eq!(step, Step::Failure(Failure::not_authorized()));
}

#[test]
fn downgrade_is_detected() {
    let mut client = scram_client(
        ScramHash::Sha256,
        "pencil",
        ClientChannelBinding::UnsupportedByServer,
    );
    let mut server = ServerSession::new(Mechanism::ScramSha256, cb_both(), SECRET, true);
    let step = run_scram(&mut server, &mut client, Some(&creds("pencil")));
    assert_eq!(condition(&step), Some(FailureCondition::NotAuthorized));
}

#[test]
fn mismatched_binding_data_is_not_authorized() {
    let stored = creds("pencil");
    // The client sees a different TLS session (a man in the middle).
    for cb in [
        ClientChannelBinding::TlsExporter(vec![0; 32]),
        ClientChannelBinding::TlsServerEndPoint(vec![0; 32]),
    ] {
        let mut client = scram_client(ScramHash::Sha256, "pencil", cb);
        let mut server = ServerSession::new(client.mechanism(), cb_both(), SECRET, true);
        let step = run_scram(&mut server, &mut client, Some(&stored));
        assert_eq!(condition(&step), Some(FailureCondition::NotAuthorized));
    }
}

#[test]
fn plus_without_bindings_or_tls_is_an_invalid_mechanism() {
    for tls in [true, false] {
        let cb = if tls {
            ChannelBindingData::none()
        } else {
            cb_both()
        };
        let mut server = ServerSession::new(Mechanism::ScramSha256Plus, cb, SECRET, tls);
        let step = server.start(Some(b"p=tls-exporter,,n=juliet,r=abc"));
        assert_eq!(condition(&step), Some(FailureCondition::InvalidMechanism));
    }
}

#[test]
fn tampered_final_messages_fail() {
    let stored = creds("pencil");
    let tamper: [fn(String) -> String; 5] = [
        // Wrong nonce.
        |m| m.replacen(",r=", ",r=x", 1),
        // Binding header of another flag.
        |m| m.replacen("c=biws", "c=eSws", 1),
        // Extra attribute after the proof.
        |m| m + ",x=1",
        // Proof truncated.
        |m| m[..m.len() - 4].to_owned(),
        // Flipped proof byte (still valid base64 of the right length).
        |m| {
            let (head, proof) = m.split_at(m.len() - 2);
            let c = if proof.starts_with('A') { "B=" } else { "A=" };
            format!("{head}{c}")
        },
    ];
    for (i, f) in tamper.into_iter().enumerate() {
        let mut client = scram_client(ScramHash::Sha1, "pencil", ClientChannelBinding::None);
        let mut server = ServerSession::new(Mechanism::ScramSha1, cb_both(), SECRET, true);
        server.start(Some(&client.first_message()));
        let Step::Challenge(sf) = server.provide_credentials(Some(&stored)) else {
            panic!("challenge");
        };
        let fin = String::from_utf8(client.handle_challenge(&sf).expect("final")).expect("utf8");
        let step = server.step(f(fin).as_bytes());
        assert!(
            matches!(
                condition(&step),
                Some(FailureCondition::NotAuthorized | FailureCondition::MalformedRequest)
            ),
            "case {i}: {step:?}"
        );
    }
}

#[test]
fn exchange_without_initial_response() {
    let stored = creds("pencil");
    let mut client = scram_client(ScramHash::Sha256, "pencil", ClientChannelBinding::None);
    let mut server = ServerSession::new(Mechanism::ScramSha256, cb_both(), SECRET, true);
    assert_eq!(server.start(None), Step::Challenge(Vec::new()));
    assert!(matches!(
        server.step(&client.first_message()),
        Step::NeedCredentials { .. }
    ));
    let Step::Challenge(sf) = server.provide_credentials(Some(&stored)) else {
        panic!("challenge");
    };
    let fin = client.handle_challenge(&sf).expect("final");
    assert!(matches!(server.step(&fin), Step::Success { .. }));
}

#[test]
fn out_of_order_calls_fail_cleanly() {
    let mut server = ServerSession::new(Mechanism::ScramSha1, cb_both(), SECRET, true);
    assert_eq!(
        condition(&server.step(b"n,,n=u,r=a")),
        Some(FailureCondition::MalformedRequest)
    );
    let mut server = ServerSession::new(Mechanism::ScramSha1, cb_both(), SECRET, true);
    assert_eq!(
        condition(&server.provide_credentials(None)),
        Some(FailureCondition::TemporaryAuthFailure)
    );
    let mut server = ServerSession::new(Mechanism::ScramSha1, cb_both(), SECRET, true);
    assert!(matches!(
        server.start(Some(b"n,,n=u,r=a")),
        Step::NeedCredentials { .. }
    ));
    assert_eq!(
        condition(&server.step(b"c=biws,r=a,p=AAAA")),
        Some(FailureCondition::MalformedRequest)
    );
    let mut server = ServerSession::new(Mechanism::Plain, cb_both(), SECRET, true);
    assert_eq!(server.abort().condition, FailureCondition::Aborted);
    assert!(server.is_finished());
}

#[test]
fn garbage_is_malformed_and_bad_base64_is_incorrect_encoding() {
    for mech in Mechanism::PREFERENCE {
        for garbage in [
            &b"hello"[..],
            b"\xff\xfe",
            b"",
            b",,,,",
            b"n,,n=u,r=a,p=x\0",
        ] {
            let mut server = ServerSession::new(mech, cb_both(), SECRET, true);
            let step = server.start(Some(garbage));
            assert_eq!(
                condition(&step),
                Some(FailureCondition::MalformedRequest),
                "{mech:?} {garbage:?}"
            );
        }
    }
    assert_eq!(
        decode_b64("not base64!").map_err(|f| f.condition),
        Err(FailureCondition::IncorrectEncoding)
    );
    assert_eq!(decode_b64("="), Ok(Vec::new()));
    assert_eq!(decode_b64(""), Ok(Vec::new()));
    assert_eq!(decode_b64(" AG\nFi "), Ok(b"\0ab".to_vec()));
    assert_eq!(encode_b64(b"\0ab"), "AGFi");
}

#[test]
fn cached_client_keys_skip_derivation_and_still_verify() {
    let stored = creds("pencil");
    let mut first = scram_client(ScramHash::Sha256, "pencil", ClientChannelBinding::None);
    let mut server = ServerSession::new(Mechanism::ScramSha256, cb_both(), SECRET, true);
    assert!(matches!(
        run_scram(&mut server, &mut first, Some(&stored)),
        Step::Success { .. }
    ));
    let keys = first.keys().expect("keys").clone();
    // A client with cached keys and a wrong password still succeeds: the keys are used.
    let mut cached = scram_client(ScramHash::Sha256, "unused", ClientChannelBinding::None)
        .with_keys(keys.clone());
    let mut server = ServerSession::new(Mechanism::ScramSha256, cb_both(), SECRET, true);
    assert!(matches!(
        run_scram(&mut server, &mut cached, Some(&stored)),
        Step::Success { .. }
    ));
    // After a password change (new salt) the stale keys are ignored.
    let changed = creds("crayon");
    let mut stale =
        scram_client(ScramHash::Sha256, "crayon", ClientChannelBinding::None).with_keys(keys);
    let mut server = ServerSession::new(Mechanism::ScramSha256, cb_both(), SECRET, true);
    assert!(matches!(
        run_scram(&mut server, &mut stale, Some(&changed)),
        Step::Success { .. }
    ));
}

#[test]
fn session_debug_hides_secrets() {
    let mut server = ServerSession::new(Mechanism::Plain, cb_both(), SECRET, true);
    server.start(Some(&plain_initial_response(None, "juliet", "pencil")));
    let text = format!("{server:?}");
    assert!(!text.contains("pencil") && !text.contains("42"), "{text}");
}
