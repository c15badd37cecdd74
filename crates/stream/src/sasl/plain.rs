//! RFC 4616: the server side of PLAIN (`[authzid] NUL authcid NUL passwd`).
//!
//! The password is checked against the stored SCRAM records by recomputing `StoredKey`
//! (SHA-256 preferred, else SHA-1), so PLAIN needs no plaintext password in the store. For an
//! unknown user the same PBKDF2 work is done against a fake salt, so the time to answer does
//! not reveal whether the account exists.

use super::credentials::fake_credentials;
use super::scram::as_text;
use super::{Failure, FailureCondition, ScramHash, Step, StoredCredentials};

/// The three fields of a PLAIN message after SASLprep.
#[derive(PartialEq, Eq)]
pub(crate) struct PlainMessage {
    /// Requested authorization identity (not SASLprep'd: it is a JID).
    pub(crate) authzid: Option<String>,
    /// Authentication identity, SASLprep'd.
    pub(crate) username: String,
    /// Password, SASLprep'd.
    pub(crate) password: String,
}

impl std::fmt::Debug for PlainMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainMessage")
            .field("authzid", &self.authzid)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Parses a PLAIN message.
pub(crate) fn parse_plain(msg: &[u8]) -> Result<PlainMessage, Failure> {
    let text = as_text(msg)?;
    let mut parts = text.split('\0');
    let (Some(authzid), Some(authcid), Some(passwd), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::malformed(
            "expected authzid NUL authcid NUL passwd",
        ));
    };
    if authcid.is_empty() || passwd.is_empty() {
        return Err(Failure::malformed("empty username or password"));
    }
    let username = stringprep::saslprep(authcid)
        .map_err(|_| Failure::malformed("username is not valid under SASLprep"))?;
    let password = stringprep::saslprep(passwd)
        .map_err(|_| Failure::malformed("password is not valid under SASLprep"))?;
    if username.is_empty() || password.is_empty() {
        return Err(Failure::malformed("empty username or password"));
    }
    Ok(PlainMessage {
        authzid: (!authzid.is_empty()).then(|| authzid.to_owned()),
        username: username.into_owned(),
        password: password.into_owned(),
    })
}

#[derive(Debug)]
enum State {
    AwaitMessage,
    AwaitCredentials(PlainMessage),
    Done,
}

/// Server side of one PLAIN exchange.
#[derive(Debug)]
pub(crate) struct PlainServer {
    state: State,
}

impl PlainServer {
    pub(crate) fn new() -> Self {
        PlainServer {
            state: State::AwaitMessage,
        }
    }

    /// Handles the client's (only) message.
    pub(crate) fn message(&mut self, msg: &[u8]) -> Step {
        if !matches!(self.state, State::AwaitMessage) {
            return self.fail(Failure::malformed("unexpected message"));
        }
        match parse_plain(msg) {
            Ok(parsed) => {
                let step = Step::NeedCredentials {
                    username: parsed.username.clone(),
                    authzid: parsed.authzid.clone(),
                };
                self.state = State::AwaitCredentials(parsed);
                step
            }
            Err(failure) => self.fail(failure),
        }
    }

    /// Verifies the password against the account's credentials (or a fake record).
    pub(crate) fn credentials(
        &mut self,
        creds: Option<&StoredCredentials>,
        fake_salt_secret: &[u8; 32],
    ) -> Step {
        let State::AwaitCredentials(msg) = std::mem::replace(&mut self.state, State::Done) else {
            return self.fail(Failure::new(
                FailureCondition::TemporaryAuthFailure,
                "credentials provided out of order",
            ));
        };
        let real = creds.and_then(|c| {
            c.sha256
                .as_ref()
                .map(|r| (ScramHash::Sha256, r))
                .or_else(|| c.sha1.as_ref().map(|r| (ScramHash::Sha1, r)))
        });
        // Unknown users are checked against a fake record: same PBKDF2 work, never a match.
        let fake = fake_credentials(fake_salt_secret, &msg.username, ScramHash::Sha256);
        let (hash, record, known) = match real {
            Some((hash, record)) => (hash, record, true),
            None => (ScramHash::Sha256, &fake, false),
        };
        let ok = record.verify_password(hash, msg.password.as_bytes()) && known;
        if ok {
            Step::Success {
                username: msg.username,
                authzid: msg.authzid,
                additional_data: None,
            }
        } else {
            Step::Failure(Failure::not_authorized())
        }
    }

    fn fail(&mut self, failure: Failure) -> Step {
        self.state = State::Done;
        Step::Failure(failure)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_all_fields() {
        let m = parse_plain(b"admin@example.org\0juliet\0pen cil").expect("parse");
        assert_eq!(m.authzid.as_deref(), Some("admin@example.org"));
        assert_eq!(m.username, "juliet");
        assert_eq!(m.password, "pen cil");
        let m = parse_plain(b"\0juliet\0pencil").expect("parse");
        assert_eq!(m.authzid, None);
    }

    #[test]
    fn saslprep_is_applied() {
        // U+00A0 (no-break space) maps to U+0020; U+00AD (soft hyphen) maps to nothing.
        let m = parse_plain("\0ju\u{AD}liet\0pen\u{A0}cil".as_bytes()).expect("parse");
        assert_eq!(m.username, "juliet");
        assert_eq!(m.password, "pen cil");
    }

    #[test]
    fn debug_hides_the_password() {
        let m = parse_plain(b"\0juliet\0pencil").expect("parse");
        assert!(!format!("{m:?}").contains("pencil"));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b""[..],
            b"\0",
            b"\0\0",
            b"\0user\0",
            b"\0\0pass",
            b"juliet\0pencil",
            b"\0a\0b\0c",
            b"\0us\xffer\0pencil",
            b"\0user\0bell\x07",
            "\0\u{AD}\0pencil".as_bytes(),
        ] {
            let err = parse_plain(bad).expect_err("must fail");
            assert_eq!(err.condition, FailureCondition::MalformedRequest, "{bad:?}");
        }
    }
}
