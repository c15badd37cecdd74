//! PLAIN exchanges through ServerSession: success, wrong and unknown users, TLS policy.

use super::*;

#[test]
fn plain_ok_bad_unknown() {
    let stored = creds("pencil");
    let sha1_only = StoredCredentials {
        sha1: stored.sha1.clone(),
        sha256: None,
    };
    let run = |msg: &[u8], creds: Option<&StoredCredentials>| {
        let mut server =
            ServerSession::new(Mechanism::Plain, ChannelBindingData::none(), SECRET, true);
        match server.start(Some(msg)) {
            Step::NeedCredentials { .. } => server.provide_credentials(creds),
            other => other,
        }
    };
    let ok = plain_initial_response(None, "juliet", "pencil");
    assert_eq!(
        run(&ok, Some(&stored)),
        Step::Success {
            username: "juliet".into(),
            authzid: None,
            additional_data: None
        }
    );
    assert!(matches!(run(&ok, Some(&sha1_only)), Step::Success { .. }));
    let with_authz = plain_initial_response(Some("juliet@capulet.lit"), "juliet", "pencil");
    assert!(matches!(
        run(&with_authz, Some(&stored)),
        Step::Success { authzid: Some(a), .. } if a == "juliet@capulet.lit"
    ));
    let bad = plain_initial_response(None, "juliet", "crayon");
    assert_eq!(
        run(&bad, Some(&stored)),
        Step::Failure(Failure::not_authorized())
    );
    assert_eq!(run(&ok, None), Step::Failure(Failure::not_authorized()));
    assert_eq!(
        run(&ok, Some(&StoredCredentials::default())),
        Step::Failure(Failure::not_authorized())
    );
    assert_eq!(
        condition(&run(b"\0juliet\0", Some(&stored))),
        Some(FailureCondition::MalformedRequest)
    );
}

#[test]
fn plain_requires_tls() {
    let mut server =
        ServerSession::new(Mechanism::Plain, ChannelBindingData::none(), SECRET, false);
    let step = server.start(Some(&plain_initial_response(None, "juliet", "pencil")));
    assert_eq!(condition(&step), Some(FailureCondition::EncryptionRequired));
}

#[test]
fn plain_without_initial_response() {
    let stored = creds("pencil");
    let mut server = ServerSession::new(Mechanism::Plain, ChannelBindingData::none(), SECRET, true);
    assert_eq!(server.start(None), Step::Challenge(Vec::new()));
    let msg = plain_initial_response(None, "juliet", "pencil");
    assert!(matches!(server.step(&msg), Step::NeedCredentials { .. }));
    assert!(matches!(
        server.provide_credentials(Some(&stored)),
        Step::Success { .. }
    ));
    // An explicitly empty initial response ("=") is not a PLAIN message.
    let mut server = ServerSession::new(Mechanism::Plain, ChannelBindingData::none(), SECRET, true);
    let step = server.start(Some(&decode_b64("=").expect("empty")));
    assert_eq!(condition(&step), Some(FailureCondition::MalformedRequest));
}
