//! Our server against the `sasl` crate's SCRAM client (xmpp-rs), an independent
//! implementation.

use super::*;
use sasl::client::Mechanism as _;
use sasl::client::mechanisms::Scram;
use sasl::common::ChannelBinding;
use sasl::common::scram::{ScramProvider, Sha1, Sha256};

fn run<S: ScramProvider>(mech: Mechanism, binding: ChannelBinding, password: &str) -> Step {
    let stored = creds("pencil");
    let mut client = Scram::<S>::new("juliet", password, binding).expect("client");
    let mut server = ServerSession::new(mech, cb_both(), SECRET, true);
    let Step::NeedCredentials { .. } = server.start(Some(&client.initial())) else {
        panic!("need credentials");
    };
    let Step::Challenge(sf) = server.provide_credentials(Some(&stored)) else {
        panic!("challenge");
    };
    let fin = client.response(&sf).expect("client final");
    let step = server.step(&fin);
    if let Step::Success {
        additional_data: Some(v),
        ..
    } = &step
    {
        client
            .success(v)
            .expect("server signature accepted by sasl crate");
    }
    step
}

#[test]
fn sasl_crate_client_authenticates() {
    let exporter = || ChannelBinding::TlsExporter(EXPORTER.to_vec());
    for step in [
        run::<Sha1>(Mechanism::ScramSha1, ChannelBinding::None, "pencil"),
        run::<Sha256>(Mechanism::ScramSha256, ChannelBinding::None, "pencil"),
        run::<Sha1>(Mechanism::ScramSha1Plus, exporter(), "pencil"),
        run::<Sha256>(Mechanism::ScramSha256Plus, exporter(), "pencil"),
    ] {
        assert!(matches!(step, Step::Success { .. }), "{step:?}");
    }
}

#[test]
fn sasl_crate_client_wrong_password_and_downgrade() {
    let step = run::<Sha256>(Mechanism::ScramSha256, ChannelBinding::None, "crayon");
    assert_eq!(condition(&step), Some(FailureCondition::NotAuthorized));
    let mut client =
        Scram::<Sha256>::new("juliet", "pencil", ChannelBinding::Unsupported).expect("c");
    let mut server = ServerSession::new(Mechanism::ScramSha256, cb_both(), SECRET, true);
    let step = server.start(Some(&client.initial()));
    assert_eq!(condition(&step), Some(FailureCondition::NotAuthorized));
}
