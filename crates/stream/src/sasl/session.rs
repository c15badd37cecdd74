//! [`ServerSession`]: one server-side SASL exchange, whatever the mechanism.

use super::plain::PlainServer;
use super::scram::ScramServer;
use super::{
    ChannelBindingData, ChannelBindingType, Failure, FailureCondition, Mechanism, Step,
    StoredCredentials,
};

#[derive(Debug)]
enum Inner {
    Scram(Box<ScramServer>),
    Plain(PlainServer),
}

/// One server-side SASL exchange.
///
/// Drive it with [`start`](Self::start) (the `<auth/>` payload), then
/// [`step`](Self::step) for each `<response/>`, answering [`Step::NeedCredentials`] with
/// [`provide_credentials`](Self::provide_credentials). Once a [`Step::Success`] or
/// [`Step::Failure`] has been returned the session is finished and every further call fails
/// with `malformed-request`.
///
/// ```
/// use xmppd_stream::sasl::*;
///
/// let creds = StoredCredentials::derive("pencil", 64).unwrap();
/// let cb = ChannelBindingData::none();
/// let mut server = ServerSession::new(Mechanism::ScramSha256, cb, [7; 32], true);
/// let mut client = ScramClient::new(
///     ScramHash::Sha256, "juliet", "pencil", ClientChannelBinding::None, None,
/// ).unwrap();
///
/// let Step::NeedCredentials { username, .. } = server.start(Some(&client.first_message()))
/// else { panic!() };
/// assert_eq!(username, "juliet");
/// let Step::Challenge(server_first) = server.provide_credentials(Some(&creds)) else { panic!() };
/// let client_final = client.handle_challenge(&server_first).unwrap();
/// let Step::Success { additional_data: Some(v), .. } = server.step(&client_final)
/// else { panic!() };
/// client.verify_success(&v).unwrap();
/// ```
pub struct ServerSession {
    mechanism: Mechanism,
    cb: ChannelBindingData,
    fake_salt_secret: [u8; 32],
    tls_active: bool,
    inner: Inner,
    started: bool,
    finished: bool,
}

/// Shows the exchange's progress only: no secret, binding data or client message.
impl std::fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSession")
            .field("mechanism", &self.mechanism)
            .field("tls_active", &self.tls_active)
            .field("started", &self.started)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl ServerSession {
    /// Starts an exchange for `mechanism` (the one named in `<auth/>`).
    ///
    /// `cb` holds the channel bindings of the current TLS session; it is ignored when
    /// `tls_active` is false. `fake_salt_secret` must be a stable, private per-server random
    /// value: it derives the salts handed out for unknown users. `tls_active` also gates PLAIN
    /// (refused with `encryption-required` without TLS), as a second line behind the caller
    /// not offering it.
    pub fn new(
        mechanism: Mechanism,
        cb: ChannelBindingData,
        fake_salt_secret: [u8; 32],
        tls_active: bool,
    ) -> Self {
        let inner = match mechanism.scram_hash() {
            Some(hash) => Inner::Scram(Box::new(ScramServer::new(mechanism, hash))),
            None => Inner::Plain(PlainServer::new()),
        };
        ServerSession {
            mechanism,
            cb: if tls_active {
                cb
            } else {
                ChannelBindingData::none()
            },
            fake_salt_secret,
            tls_active,
            inner,
            started: false,
            finished: false,
        }
    }

    /// The mechanism of this exchange.
    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// The channel binding of a `-PLUS` exchange, as the client chose it; `None` for PLAIN
    /// and SCRAM without binding. Final once [`Step::Success`] is returned.
    pub fn channel_binding(&self) -> Option<ChannelBindingType> {
        match &self.inner {
            Inner::Scram(s) => s.binding(),
            Inner::Plain(_) => None,
        }
    }

    /// Whether the exchange has ended (success, failure or abort).
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Handles `<auth/>`: `initial_response` is its decoded payload, or `None` if it had no
    /// text (then an empty challenge is returned and the client sends its first message as a
    /// `<response/>`).
    pub fn start(&mut self, initial_response: Option<&[u8]>) -> Step {
        if self.started || self.finished {
            return self.finish(Step::Failure(Failure::malformed(
                "exchange already started",
            )));
        }
        self.started = true;
        if self.mechanism == Mechanism::Plain && !self.tls_active {
            return self.finish(Step::Failure(Failure::new(
                FailureCondition::EncryptionRequired,
                "PLAIN requires TLS",
            )));
        }
        if self.mechanism.is_plus() && !self.cb.is_available() {
            return self.finish(Step::Failure(Failure::new(
                FailureCondition::InvalidMechanism,
                "channel binding is not available on this stream",
            )));
        }
        match initial_response {
            None => Step::Challenge(Vec::new()),
            Some(msg) => self.step(msg),
        }
    }

    /// Handles a `<response/>` payload.
    pub fn step(&mut self, response: &[u8]) -> Step {
        if !self.started || self.finished {
            return self.finish(Step::Failure(Failure::malformed("unexpected response")));
        }
        let step = match &mut self.inner {
            Inner::Scram(s) => s.message(response, &self.cb),
            Inner::Plain(p) => p.message(response),
        };
        self.finish(step)
    }

    /// Answers [`Step::NeedCredentials`] with the account's stored credentials, or `None` if
    /// there is no such account. An unknown account is not revealed here: the exchange goes on
    /// with fake credentials and fails with `not-authorized` at the end.
    pub fn provide_credentials(&mut self, creds: Option<&StoredCredentials>) -> Step {
        if self.finished {
            return self.finish(Step::Failure(Failure::malformed("exchange finished")));
        }
        let step = match &mut self.inner {
            Inner::Scram(s) => s.credentials(creds, &self.fake_salt_secret),
            Inner::Plain(p) => p.credentials(creds, &self.fake_salt_secret),
        };
        self.finish(step)
    }

    /// Handles `<abort/>`: ends the exchange with `aborted`.
    pub fn abort(&mut self) -> Failure {
        self.finished = true;
        Failure {
            condition: FailureCondition::Aborted,
            text: None,
        }
    }

    /// Fixes the server nonce, for test vectors.
    #[cfg(test)]
    pub(crate) fn set_server_nonce(&mut self, nonce: &str) {
        if let Inner::Scram(s) = &mut self.inner {
            s.nonce_override = Some(nonce.to_owned());
        }
    }

    fn finish(&mut self, step: Step) -> Step {
        if matches!(step, Step::Success { .. } | Step::Failure(_)) {
            self.finished = true;
        }
        step
    }
}
