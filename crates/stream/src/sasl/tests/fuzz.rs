//! Fuzz-style property tests: no input, however broken, makes either side panic, and no
//! tampered message authenticates.

use proptest::prelude::*;

use super::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Random bytes at every step, for every mechanism, never panic.
    #[test]
    fn random_input_never_panics(
        mech in 0usize..5,
        known in any::<bool>(),
        initial in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..96)),
        later in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..96), 0..3),
    ) {
        let stored = StoredCredentials::derive("pencil", 1).expect("derive");
        let mech = Mechanism::PREFERENCE[mech];
        let mut server = ServerSession::new(mech, cb_both(), SECRET, true);
        let mut step = server.start(initial.as_deref());
        for msg in &later {
            step = match step {
                Step::NeedCredentials { .. } => server.provide_credentials(known.then_some(&stored)),
                _ => server.step(msg),
            };
        }
        if matches!(step, Step::Success { .. }) {
            prop_assert!(false, "random input authenticated: {:?}", step);
        }
    }

    /// A valid client-first followed by a mutated client-final never panics and never
    /// succeeds unless it is the genuine message.
    #[test]
    fn mutated_final_never_succeeds(pos in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let stored = StoredCredentials::derive("pencil", 1).expect("derive");
        let mut client = scram_client(ScramHash::Sha1, "pencil", ClientChannelBinding::None);
        let mut server = ServerSession::new(Mechanism::ScramSha1, cb_both(), SECRET, true);
        server.start(Some(&client.first_message()));
        let Step::Challenge(sf) = server.provide_credentials(Some(&stored)) else {
            panic!("challenge");
        };
        let mut fin = client.handle_challenge(&sf).expect("final");
        let i = pos.index(fin.len());
        let changed = fin[i] != byte;
        fin[i] = byte;
        let step = server.step(&fin);
        prop_assert!(!changed || matches!(step, Step::Failure(_)), "{:?}", step);
    }

    /// The client never panics on random server messages.
    #[test]
    fn client_survives_random_server_messages(
        first in proptest::collection::vec(any::<u8>(), 0..96),
        last in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut client = scram_client(ScramHash::Sha256, "pencil", ClientChannelBinding::None);
        let _ = client.handle_challenge(&first);
        let _ = client.verify_success(&last);
    }
}
