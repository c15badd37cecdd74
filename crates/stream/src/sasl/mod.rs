//! SASL for XMPP (RFC 6120 §6): SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), their
//! `-PLUS` variants with `tls-exporter` (RFC 9266) and `tls-server-end-point` (RFC 5929)
//! channel binding, and PLAIN (RFC 4616). Sans-IO: raw SASL payloads in, [`Step`]s out.
//!
//! # Shape
//!
//! [`ServerSession`] is one authentication exchange on the server side. The caller decodes
//! the base64 text of `<auth/>` and `<response/>` with [`decode_b64`] and feeds the bytes to
//! [`ServerSession::start`] and [`ServerSession::step`]. When the session has learnt the
//! username it returns [`Step::NeedCredentials`]; the caller looks the account up (an
//! asynchronous store read, which is why this is a separate step) and answers with
//! [`ServerSession::provide_credentials`]. The exchange ends in [`Step::Success`] or
//! [`Step::Failure`]; a [`Failure`] carries an RFC 6120 §6.5 condition for `<failure/>`.
//! [`ScramClient`] and [`plain_initial_response`] are the client side, used by tests and the
//! load generator.
//!
//! # Why we store `StoredKey` and `ServerKey`
//!
//! SCRAM lets the server verify a password it never sees and never stores. The account store
//! keeps, per hash, the salt, the iteration count, `StoredKey = H(HMAC(SaltedPassword,
//! "Client Key"))` and `ServerKey = HMAC(SaltedPassword, "Server Key")` ([`ScramCredentials`]).
//! A client proves knowledge of `ClientKey` by sending it XOR-masked with an HMAC keyed by
//! `StoredKey` over the whole exchange; we unmask it, hash it and compare with `StoredKey`.
//! Someone who steals the database therefore cannot log in directly: `StoredKey` is a hash of
//! what the client must present, and inverting it means brute-forcing PBKDF2. Keeping the
//! `SaltedPassword` instead (as some implementations do) would be password-equivalent.
//! `ServerKey` lets us prove to the client that we know its credentials too (the `v=`
//! attribute), which defeats a man in the middle who only relays. PLAIN is verified against
//! the same records by recomputing `StoredKey` from the offered password. The same four
//! values are what Prosody and ejabberd store, so XEP-0227 imports remain possible.
//!
//! # Why unknown users get a fake salt
//!
//! The SCRAM server-first message must contain the user's salt and iteration count before
//! the client has proven anything. If unknown users were rejected at that point, or given a
//! fresh random salt each time, anybody could enumerate accounts. Instead an unknown user
//! (or one without a record for the requested hash) gets a salt computed as an HMAC of the
//! username under a per-server secret (`fake_salt_secret`), the default iteration count and
//! dummy keys; the exchange then runs exactly the code path of a wrong password and fails
//! with `not-authorized` after the client's final message. Asking twice gives the same salt,
//! as for a real account. For this to hold, real accounts should use [`DEFAULT_ITERATIONS`]
//! and [`SALT_LEN`]-byte salts, and the secret must be stable across restarts and kept
//! private. PLAIN similarly runs PBKDF2 against a fake salt for unknown users so the
//! response time does not reveal whether the account exists.
//!
//! # Why constant time
//!
//! The final comparison `H(ClientKey) == StoredKey` uses [`subtle::ConstantTimeEq`]. An
//! early-exit comparison leaks, through timing, how many leading bytes of a guess were right,
//! which in principle lets an attacker who can choose proofs learn `StoredKey` byte by byte.
//! The channel-binding comparison is constant-time too; it is cheap and removes a question.
//!
//! # Channel binding and downgrades
//!
//! The caller passes the channel bindings of its TLS session in [`ChannelBindingData`]. The
//! `-PLUS` mechanisms are offered only when at least one binding is available
//! ([`offered_mechanisms`]), and the available types are advertised per XEP-0440
//! ([`ChannelBindingData::supported_channel_bindings`]). A client that picks a non-PLUS
//! mechanism but sends the `y` flag ("I support channel binding but think you don't") while
//! we do offer it has seen a stripped feature list: that is a downgrade attack and fails
//! (RFC 5802 §6). The `c=` attribute must be exactly base64(gs2 header || binding data).
//!
//! # Failure conditions
//!
//! Syntax errors, invalid UTF-8, SASLprep failures, `m=` extensions and a `p=` flag with a
//! non-PLUS mechanism (or `n`/`y` with a PLUS one) give `malformed-request`; bad base64 gives
//! `incorrect-encoding`. Wrong password, unknown user, wrong nonce, a `c=` mismatch, a
//! detected downgrade or an unavailable channel binding type give `not-authorized`, without
//! saying which. A `-PLUS` mechanism when no binding is available, or PLAIN without TLS,
//! gives `invalid-mechanism` and `encryption-required` respectively.
//!
//! # Authorization identities
//!
//! Both SCRAM (`a=`) and PLAIN carry an optional authzid. This module only parses and
//! returns it in [`Step::NeedCredentials`] and [`Step::Success`]; whether a user may act as
//! another JID is the caller's policy (normally: only its own bare JID), and a refusal maps
//! to [`FailureCondition::InvalidAuthzid`].

mod client;
mod credentials;
mod plain;
mod scram;
mod session;
#[cfg(test)]
mod tests;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

pub use client::{
    ClientChannelBinding, ClientError, ClientKeys, ScramClient, plain_initial_response,
};
pub use credentials::{
    DEFAULT_ITERATIONS, SALT_LEN, ScramCredentials, ScramHash, StoredCredentials,
};
pub use session::ServerSession;

/// Largest SASL payload (after base64 decoding) we accept; anything longer is malformed.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// A SASL mechanism we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mechanism {
    /// SCRAM-SHA-256-PLUS (RFC 7677 with channel binding).
    ScramSha256Plus,
    /// SCRAM-SHA-1-PLUS (RFC 5802 with channel binding).
    ScramSha1Plus,
    /// SCRAM-SHA-256 (RFC 7677).
    ScramSha256,
    /// SCRAM-SHA-1 (RFC 5802).
    ScramSha1,
    /// PLAIN (RFC 4616); only to be offered over TLS.
    Plain,
}

impl Mechanism {
    /// All mechanisms, most preferred first; advertise them in this order.
    pub const PREFERENCE: [Mechanism; 5] = [
        Mechanism::ScramSha256Plus,
        Mechanism::ScramSha1Plus,
        Mechanism::ScramSha256,
        Mechanism::ScramSha1,
        Mechanism::Plain,
    ];

    /// The IANA mechanism name, e.g. `"SCRAM-SHA-256-PLUS"`.
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
            Mechanism::ScramSha1Plus => "SCRAM-SHA-1-PLUS",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha1 => "SCRAM-SHA-1",
            Mechanism::Plain => "PLAIN",
        }
    }

    /// Parses a mechanism name (exact, case-sensitive as in RFC 4422 §3.1).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::PREFERENCE.into_iter().find(|m| m.name() == name)
    }

    /// The SCRAM hash, or `None` for PLAIN.
    pub fn scram_hash(self) -> Option<ScramHash> {
        match self {
            Mechanism::ScramSha256Plus | Mechanism::ScramSha256 => Some(ScramHash::Sha256),
            Mechanism::ScramSha1Plus | Mechanism::ScramSha1 => Some(ScramHash::Sha1),
            Mechanism::Plain => None,
        }
    }

    /// Whether this is a `-PLUS` (channel-binding) mechanism.
    pub fn is_plus(self) -> bool {
        matches!(self, Mechanism::ScramSha256Plus | Mechanism::ScramSha1Plus)
    }
}

/// The mechanisms to advertise, in preference order: `-PLUS` ones only if `cb` has a binding,
/// PLAIN only if `allow_plain` (the caller's policy: TLS is active and PLAIN is enabled).
pub fn offered_mechanisms(cb: &ChannelBindingData, allow_plain: bool) -> Vec<Mechanism> {
    Mechanism::PREFERENCE
        .into_iter()
        .filter(|m| !m.is_plus() || cb.is_available())
        .filter(|m| *m != Mechanism::Plain || allow_plain)
        .collect()
}

/// A channel binding type we support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelBindingType {
    /// `tls-exporter` (RFC 9266): an exporter value; works on TLS 1.3.
    TlsExporter,
    /// `tls-server-end-point` (RFC 5929): a hash of the server certificate.
    TlsServerEndPoint,
}

impl ChannelBindingType {
    /// The name used in the gs2 header and in XEP-0440 (`"tls-exporter"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            ChannelBindingType::TlsExporter => "tls-exporter",
            ChannelBindingType::TlsServerEndPoint => "tls-server-end-point",
        }
    }

    /// Parses a channel binding type name.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "tls-exporter" => Some(ChannelBindingType::TlsExporter),
            "tls-server-end-point" => Some(ChannelBindingType::TlsServerEndPoint),
            _ => None,
        }
    }
}

/// Channel binding values of the current TLS session, computed by the connection layer.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ChannelBindingData {
    /// The RFC 9266 value: 32 bytes exported with label `"EXPORTER-Channel-Binding"` and an
    /// empty context.
    pub tls_exporter: Option<Vec<u8>>,
    /// The RFC 5929 value: the server certificate hashed as §4.1 prescribes.
    pub tls_server_end_point: Option<Vec<u8>>,
}

impl std::fmt::Debug for ChannelBindingData {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelBindingData")
            .field("tls_exporter", &self.tls_exporter.is_some())
            .field("tls_server_end_point", &self.tls_server_end_point.is_some())
            .finish()
    }
}

impl ChannelBindingData {
    /// No channel binding (plain-text stream, or TLS without usable bindings).
    pub fn none() -> Self {
        Self::default()
    }

    /// The value for `ty`, if available.
    pub fn get(&self, ty: ChannelBindingType) -> Option<&[u8]> {
        match ty {
            ChannelBindingType::TlsExporter => self.tls_exporter.as_deref(),
            ChannelBindingType::TlsServerEndPoint => self.tls_server_end_point.as_deref(),
        }
    }

    /// Whether any binding is available, i.e. whether `-PLUS` mechanisms are offered.
    pub fn is_available(&self) -> bool {
        self.tls_exporter.is_some() || self.tls_server_end_point.is_some()
    }

    /// The available types, preferred first, for the XEP-0440 `<sasl-channel-binding/>`
    /// stream feature.
    pub fn supported_channel_bindings(&self) -> Vec<ChannelBindingType> {
        [
            ChannelBindingType::TlsExporter,
            ChannelBindingType::TlsServerEndPoint,
        ]
        .into_iter()
        .filter(|ty| self.get(*ty).is_some())
        .collect()
    }
}

/// An RFC 6120 §6.5 SASL failure condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureCondition {
    /// The client aborted the exchange (`<abort/>`).
    Aborted,
    /// The account is disabled.
    AccountDisabled,
    /// The credentials have expired.
    CredentialsExpired,
    /// The mechanism needs an encrypted stream (PLAIN without TLS).
    EncryptionRequired,
    /// The data was not valid base64.
    IncorrectEncoding,
    /// The authzid is malformed or the user may not act as it (the caller decides).
    InvalidAuthzid,
    /// The mechanism is unknown or not offered.
    InvalidMechanism,
    /// The request is syntactically wrong or out of order.
    MalformedRequest,
    /// The mechanism is weaker than policy allows.
    MechanismTooWeak,
    /// Authentication failed (wrong password, unknown user, failed proof).
    NotAuthorized,
    /// A temporary server-side error; the client may retry.
    TemporaryAuthFailure,
}

impl FailureCondition {
    /// The element name inside `<failure/>`, e.g. `"not-authorized"`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureCondition::Aborted => "aborted",
            FailureCondition::AccountDisabled => "account-disabled",
            FailureCondition::CredentialsExpired => "credentials-expired",
            FailureCondition::EncryptionRequired => "encryption-required",
            FailureCondition::IncorrectEncoding => "incorrect-encoding",
            FailureCondition::InvalidAuthzid => "invalid-authzid",
            FailureCondition::InvalidMechanism => "invalid-mechanism",
            FailureCondition::MalformedRequest => "malformed-request",
            FailureCondition::MechanismTooWeak => "mechanism-too-weak",
            FailureCondition::NotAuthorized => "not-authorized",
            FailureCondition::TemporaryAuthFailure => "temporary-auth-failure",
        }
    }

    /// Parses an element name produced by [`FailureCondition::as_str`].
    pub fn from_name(name: &str) -> Option<Self> {
        use FailureCondition::*;
        [
            Aborted,
            AccountDisabled,
            CredentialsExpired,
            EncryptionRequired,
            IncorrectEncoding,
            InvalidAuthzid,
            InvalidMechanism,
            MalformedRequest,
            MechanismTooWeak,
            NotAuthorized,
            TemporaryAuthFailure,
        ]
        .into_iter()
        .find(|c| c.as_str() == name)
    }
}

/// A SASL failure: the condition and an optional human-readable `<text/>`.
///
/// The text never says whether the account exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The RFC 6120 §6.5 condition.
    pub condition: FailureCondition,
    /// Optional explanation for `<text/>`.
    pub text: Option<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SASL failure: {}", self.condition.as_str())?;
        if let Some(text) = &self.text {
            write!(f, " ({text})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Failure {}

impl Failure {
    /// A failure with a condition and an explanation.
    pub fn new(condition: FailureCondition, text: impl Into<String>) -> Self {
        Failure {
            condition,
            text: Some(text.into()),
        }
    }

    /// `malformed-request` with an explanation.
    pub(crate) fn malformed(text: &str) -> Self {
        Self::new(FailureCondition::MalformedRequest, text)
    }

    /// `not-authorized` without an explanation, so failures cannot be told apart.
    pub(crate) fn not_authorized() -> Self {
        Failure {
            condition: FailureCondition::NotAuthorized,
            text: None,
        }
    }
}

/// What the server does next in a SASL exchange.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send `<challenge/>` with these bytes (base64 them; empty means an empty element).
    Challenge(Vec<u8>),
    /// Look up the account and call [`ServerSession::provide_credentials`].
    NeedCredentials {
        /// The authentication identity: SASLprep'd, `=2C`/`=3D` decoded (a JID localpart).
        username: String,
        /// The requested authorization identity, if any; the caller checks it.
        authzid: Option<String>,
    },
    /// Send `<success/>` (with `additional_data` base64'd, if any).
    Success {
        /// The authenticated username.
        username: String,
        /// The requested authorization identity, if any; the caller checks it.
        authzid: Option<String>,
        /// SCRAM's `v=` server signature; `None` for PLAIN.
        additional_data: Option<Vec<u8>>,
    },
    /// Send `<failure/>`; the exchange is over.
    Failure(Failure),
}

/// Errors outside an exchange (credential derivation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    /// The password contains characters SASLprep prohibits.
    #[error("password is not valid under SASLprep")]
    InvalidPassword,
    /// The iteration count is zero.
    #[error("iteration count must be at least 1")]
    InvalidIterations,
    /// The salt is empty.
    #[error("salt must not be empty")]
    InvalidSalt,
    /// The system random number generator failed.
    #[error("random number generator failed")]
    Random,
}

/// Decodes the base64 text of `<auth/>`, `<response/>` (or `<challenge/>`, `<success/>`).
///
/// `=` means an empty payload (RFC 6120 §6.4.2), as does empty text; for `<auth/>` the caller
/// must map an absent or empty text to "no initial response" *before* calling this. ASCII
/// whitespace is ignored. Bad base64 gives `incorrect-encoding`.
pub fn decode_b64(text: &str) -> Result<Vec<u8>, Failure> {
    let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if compact.is_empty() || compact == b"=" {
        return Ok(Vec::new());
    }
    STANDARD
        .decode(&compact)
        .map_err(|_| Failure::new(FailureCondition::IncorrectEncoding, "invalid base64"))
}

/// Encodes a payload as base64 text; empty data gives an empty string (the caller decides
/// whether its element needs `=`, as `<success/>` additional data does).
pub fn encode_b64(data: &[u8]) -> String {
    STANDARD.encode(data)
}
