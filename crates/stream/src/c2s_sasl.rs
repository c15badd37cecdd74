//! The SASL exchange of a client stream (RFC 6120 §6): `<auth/>` with the mechanisms this
//! stream offers, the credential lookup, challenges and responses, success (an implicit
//! stream restart) and the failures, with the limit on retries (§6.4.5).

use jid::BareJid;
use xmppd_proto::StreamErrorCondition as Cond;
use xmppd_xml::Element;

use super::{C2sOutput, C2sResponder, Phase, bytes_of, sasl_el};
use crate::sasl::{
    Failure, FailureCondition, Mechanism, ServerSession, Step, StoredCredentials, decode_b64,
    encode_b64,
};

impl C2sResponder {
    pub(super) fn on_sasl(&mut self, el: &Element, out: &mut Vec<C2sOutput>) {
        match (el.name(), self.phase) {
            ("auth", _) => {
                let offered = self.offered_mechanisms();
                let mech = el
                    .attr("mechanism")
                    .and_then(Mechanism::from_name)
                    .filter(|m| offered.contains(m));
                let Some(mech) = mech else {
                    let failure = Failure::new(
                        FailureCondition::InvalidMechanism,
                        "that mechanism is not offered on this stream",
                    );
                    return self.sasl_failed(failure, out);
                };
                let mut session = ServerSession::new(
                    mech,
                    self.channel_binding().clone(),
                    self.policy.fake_salt_secret,
                    self.tls,
                );
                let text = el.text();
                let initial = if text.is_empty() {
                    None
                } else {
                    Some(decode_b64(&text))
                };
                let step = match initial {
                    None => session.start(None),
                    Some(Ok(bytes)) => session.start(Some(&bytes)),
                    Some(Err(failure)) => return self.sasl_failed(failure, out),
                };
                self.sasl = Some(Box::new(session));
                self.phase = Phase::Authenticating;
                self.on_step(step, out);
            }
            ("response", Phase::Authenticating) => {
                let step = match (decode_b64(&el.text()), self.sasl.as_mut()) {
                    (Ok(bytes), Some(session)) => session.step(&bytes),
                    (Err(failure), _) => return self.sasl_failed(failure, out),
                    (Ok(_), None) => Step::Failure(Failure::new(
                        FailureCondition::MalformedRequest,
                        "no authentication in progress",
                    )),
                };
                self.on_step(step, out);
            }
            ("abort", _) => {
                let failure = Failure::new(FailureCondition::Aborted, "aborted by the client");
                self.sasl_failed(failure, out);
            }
            _ => {
                let text = format!("unexpected SASL element <{}/>", el.name());
                self.close(Cond::PolicyViolation, &text, out);
            }
        }
    }

    /// Supplies the account looked up for [`C2sOutput::LookupCredentials`] (`None` when the
    /// account does not exist; the exchange then fails only at its last step).
    pub fn credentials(&mut self, creds: Option<&StoredCredentials>, out: &mut Vec<C2sOutput>) {
        let step = match self.sasl.as_mut() {
            Some(session) => session.provide_credentials(creds),
            None => return,
        };
        self.on_step(step, out);
    }

    fn on_step(&mut self, step: Step, out: &mut Vec<C2sOutput>) {
        let host = self.host.clone().unwrap_or_default();
        match step {
            Step::Challenge(data) => {
                // Empty data is sent as `=` (RFC 6120 §6.4.2).
                let text = if data.is_empty() {
                    "=".to_owned()
                } else {
                    encode_b64(&data)
                };
                let challenge = sasl_el("challenge").with_text(text);
                out.push(C2sOutput::Send(bytes_of(&challenge)));
            }
            Step::NeedCredentials { username, .. } => {
                // Only a valid localpart can name an account; anything else is looked up as
                // an unknown user so that the exchange fails at the same step.
                match BareJid::new(&format!("{username}@{host}")) {
                    Ok(jid) => {
                        let username = jid.node().map(|n| n.as_str().to_owned());
                        self.pending_user = username.clone();
                        out.push(C2sOutput::LookupCredentials {
                            host,
                            username: username.unwrap_or_default(),
                        });
                    }
                    Err(_) => self.credentials(None, out),
                }
            }
            Step::Success {
                authzid,
                additional_data,
                ..
            } => {
                let jid = self
                    .pending_user
                    .take()
                    .and_then(|user| BareJid::new(&format!("{user}@{host}")).ok());
                let Some(jid) = jid else {
                    let failure =
                        Failure::new(FailureCondition::NotAuthorized, "authentication failed");
                    return self.sasl_failed(failure, out);
                };
                if let Some(authzid) = authzid.filter(|a| !a.is_empty())
                    && BareJid::new(&authzid).ok().as_ref() != Some(&jid)
                {
                    let failure = Failure::new(
                        FailureCondition::InvalidAuthzid,
                        "you may only authorize as your own account",
                    );
                    return self.sasl_failed(failure, out);
                }
                let mut success = sasl_el("success");
                if let Some(data) = additional_data {
                    success.push_text(encode_b64(&data));
                }
                out.push(C2sOutput::SaslAnswer { success: true });
                out.push(C2sOutput::Send(bytes_of(&success)));
                out.push(C2sOutput::ResetStream);
                if let Some(session) = self.sasl.take() {
                    out.push(C2sOutput::Authenticated {
                        jid: jid.clone(),
                        mechanism: session.mechanism(),
                        channel_binding: session.channel_binding(),
                    });
                }
                // Channel binding serves authentication only.
                self.cb = None;
                self.user = Some(jid);
                self.phase = Phase::AwaitHeader;
                // The restart begins a new stream: an error before our next header must
                // still open it (RFC 6120 §4.9.1.2), or the client cannot parse the error.
                self.header_sent = false;
            }
            Step::Failure(failure) => self.sasl_failed(failure, out),
        }
    }

    fn sasl_failed(&mut self, failure: Failure, out: &mut Vec<C2sOutput>) {
        let mechanism = self.sasl.take().map(|s| s.mechanism());
        self.pending_user = None;
        self.failures += 1;
        let mut el = sasl_el("failure");
        el.push_child(sasl_el(failure.condition.as_str()));
        if let Some(text) = &failure.text {
            el.push_child(sasl_el("text").with_attr("xml:lang", "en").with_text(text));
        }
        out.push(C2sOutput::SaslAnswer { success: false });
        out.push(C2sOutput::Send(bytes_of(&el)));
        out.push(C2sOutput::AuthFailed {
            mechanism,
            condition: failure.condition,
        });
        self.phase = Phase::Features;
        if self.failures >= self.policy.max_auth_failures {
            self.close(
                Cond::PolicyViolation,
                "too many failed authentication attempts",
                out,
            );
        }
    }
}
