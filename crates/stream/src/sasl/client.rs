//! The client side of SCRAM (RFC 5802 §3, §7) and PLAIN (RFC 4616), for tests, interop checks
//! and the load generator. It validates everything the server sends, including the final
//! server signature, so it doubles as a check on our server.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use subtle::ConstantTimeEq as _;

use super::credentials::Digest;
use super::scram::{attr, is_valid_nonce};
use super::{ChannelBindingType, Mechanism, ScramHash};

/// Random bytes in the client nonce (base64'd to 24 characters).
const CLIENT_NONCE_BYTES: usize = 18;

/// What the client says about channel binding in its gs2 header.
#[derive(Clone, PartialEq, Eq)]
pub enum ClientChannelBinding {
    /// `n`: the client does not support channel binding.
    None,
    /// `y`: the client supports channel binding but the server did not offer `-PLUS`.
    UnsupportedByServer,
    /// `p=tls-exporter` with the RFC 9266 value of the client's TLS session.
    TlsExporter(Vec<u8>),
    /// `p=tls-server-end-point` with the RFC 5929 hash of the server certificate.
    TlsServerEndPoint(Vec<u8>),
}

impl std::fmt::Debug for ClientChannelBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientChannelBinding::None => f.write_str("None"),
            ClientChannelBinding::UnsupportedByServer => f.write_str("UnsupportedByServer"),
            ClientChannelBinding::TlsExporter(_) => f.write_str("TlsExporter(..)"),
            ClientChannelBinding::TlsServerEndPoint(_) => f.write_str("TlsServerEndPoint(..)"),
        }
    }
}

impl ClientChannelBinding {
    /// The channel binding type, for the `p=` flag.
    pub fn binding_type(&self) -> Option<ChannelBindingType> {
        match self {
            ClientChannelBinding::TlsExporter(_) => Some(ChannelBindingType::TlsExporter),
            ClientChannelBinding::TlsServerEndPoint(_) => {
                Some(ChannelBindingType::TlsServerEndPoint)
            }
            ClientChannelBinding::None | ClientChannelBinding::UnsupportedByServer => None,
        }
    }

    fn data(&self) -> &[u8] {
        match self {
            ClientChannelBinding::TlsExporter(d) | ClientChannelBinding::TlsServerEndPoint(d) => d,
            ClientChannelBinding::None | ClientChannelBinding::UnsupportedByServer => &[],
        }
    }
}

/// Why the client side of SCRAM gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The username or authzid is not valid under SASLprep (or empty).
    #[error("username is not valid under SASLprep")]
    InvalidUsername,
    /// The password is not valid under SASLprep (or empty).
    #[error("password is not valid under SASLprep")]
    InvalidPassword,
    /// The system random number generator failed.
    #[error("random number generator failed")]
    Random,
    /// The server's message does not follow the SCRAM grammar.
    #[error("malformed server message: {0}")]
    Malformed(&'static str),
    /// The server nonce does not extend our nonce.
    #[error("server nonce does not start with the client nonce")]
    NonceMismatch,
    /// The server sent `e=`.
    #[error("server reported an error: {0}")]
    Server(String),
    /// The server signature is wrong: the server does not know our credentials.
    #[error("server signature verification failed")]
    BadServerSignature,
    /// A method was called out of order.
    #[error("SCRAM client used out of order")]
    InvalidState,
}

/// `ClientKey` and `ServerKey` for one password, hash, salt and iteration count.
///
/// RFC 5802 §5.1 lets a client cache these instead of the password-derived `SaltedPassword`.
/// A load generator logging the same account in repeatedly takes them from
/// [`ScramClient::keys`] after the first login and hands them to later clients with
/// [`ScramClient::with_keys`], skipping PBKDF2; they are used only if the server's salt and
/// iteration count still match.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientKeys {
    hash: ScramHash,
    salt: Vec<u8>,
    iterations: u32,
    client_key: Digest,
    server_key: Digest,
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKeys")
            .field("hash", &self.hash)
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy)]
enum State {
    Initial,
    SentFinal { server_signature: Digest },
    Done,
}

/// The client side of one SCRAM exchange.
pub struct ScramClient {
    hash: ScramHash,
    binding: ClientChannelBinding,
    /// SASLprep'd password.
    password: String,
    /// The gs2 header, e.g. `n,,` or `p=tls-exporter,a=admin@example.org,`.
    gs2_header: String,
    /// client-first-message-bare, `n=user,r=nonce`.
    bare: String,
    /// Length of the nonce at the end of `bare`.
    nonce_len: usize,
    /// Cached or last derived keys.
    keys: Option<ClientKeys>,
    state: State,
}

impl std::fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramClient")
            .field("hash", &self.hash)
            .field("binding", &self.binding)
            .field("bare", &self.bare)
            .finish_non_exhaustive()
    }
}

/// Escapes `,` and `=` for a `saslname`.
fn encode_saslname(name: &str, out: &mut String) {
    for c in name.chars() {
        match c {
            ',' => out.push_str("=2C"),
            '=' => out.push_str("=3D"),
            c => out.push(c),
        }
    }
}

impl ScramClient {
    /// A client for `hash` with a random nonce. `username` and `password` are SASLprep'd;
    /// `authzid` is sent as `a=` if given.
    pub fn new(
        hash: ScramHash,
        username: &str,
        password: &str,
        binding: ClientChannelBinding,
        authzid: Option<String>,
    ) -> Result<Self, ClientError> {
        let mut raw = [0u8; CLIENT_NONCE_BYTES];
        getrandom::fill(&mut raw).map_err(|_| ClientError::Random)?;
        Self::with_nonce(
            hash,
            username,
            password,
            binding,
            authzid,
            &STANDARD.encode(raw),
        )
    }

    /// Like [`ScramClient::new`] with a fixed nonce: only for test vectors and reproducible
    /// tests, never for real authentication. The nonce must be printable ASCII without `,`.
    pub fn with_nonce(
        hash: ScramHash,
        username: &str,
        password: &str,
        binding: ClientChannelBinding,
        authzid: Option<String>,
        nonce: &str,
    ) -> Result<Self, ClientError> {
        let username = stringprep::saslprep(username).map_err(|_| ClientError::InvalidUsername)?;
        let password = stringprep::saslprep(password).map_err(|_| ClientError::InvalidPassword)?;
        if username.is_empty() {
            return Err(ClientError::InvalidUsername);
        }
        if password.is_empty() {
            return Err(ClientError::InvalidPassword);
        }
        if !is_valid_nonce(nonce) {
            return Err(ClientError::Malformed("invalid client nonce"));
        }
        let mut gs2_header = String::with_capacity(32);
        match binding.binding_type() {
            Some(ty) => {
                gs2_header.push_str("p=");
                gs2_header.push_str(ty.name());
            }
            None if binding == ClientChannelBinding::UnsupportedByServer => gs2_header.push('y'),
            None => gs2_header.push('n'),
        }
        gs2_header.push(',');
        if let Some(authzid) = authzid.as_deref() {
            if authzid.is_empty() {
                return Err(ClientError::InvalidUsername);
            }
            gs2_header.push_str("a=");
            encode_saslname(authzid, &mut gs2_header);
        }
        gs2_header.push(',');
        let mut bare = String::with_capacity(username.len() + nonce.len() + 8);
        bare.push_str("n=");
        encode_saslname(&username, &mut bare);
        bare.push_str(",r=");
        bare.push_str(nonce);
        Ok(ScramClient {
            hash,
            binding,
            password: password.into_owned(),
            gs2_header,
            bare,
            nonce_len: nonce.len(),
            keys: None,
            state: State::Initial,
        })
    }

    /// Reuses keys from an earlier login instead of running PBKDF2, provided the server
    /// sends the same salt and iteration count (otherwise they are derived afresh).
    pub fn with_keys(mut self, keys: ClientKeys) -> Self {
        self.keys = Some(keys);
        self
    }

    /// The keys used by [`handle_challenge`](Self::handle_challenge), for caching; `None`
    /// before it has run.
    pub fn keys(&self) -> Option<&ClientKeys> {
        self.keys.as_ref()
    }

    /// The mechanism to name in `<auth/>`.
    pub fn mechanism(&self) -> Mechanism {
        let plus = self.binding.binding_type().is_some();
        match (self.hash, plus) {
            (ScramHash::Sha1, false) => Mechanism::ScramSha1,
            (ScramHash::Sha1, true) => Mechanism::ScramSha1Plus,
            (ScramHash::Sha256, false) => Mechanism::ScramSha256,
            (ScramHash::Sha256, true) => Mechanism::ScramSha256Plus,
        }
    }

    /// client-first-message, the `<auth/>` initial response.
    pub fn first_message(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.gs2_header.len() + self.bare.len());
        out.extend_from_slice(self.gs2_header.as_bytes());
        out.extend_from_slice(self.bare.as_bytes());
        out
    }

    fn client_nonce(&self) -> &str {
        self.bare
            .get(self.bare.len().saturating_sub(self.nonce_len)..)
            .unwrap_or_default()
    }

    /// Takes server-first-message and returns client-final-message. Runs PBKDF2.
    pub fn handle_challenge(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ClientError> {
        if !matches!(self.state, State::Initial) {
            return Err(ClientError::InvalidState);
        }
        self.state = State::Done;
        let text =
            std::str::from_utf8(server_first).map_err(|_| ClientError::Malformed("not UTF-8"))?;
        let mut fields = text.split(',');
        let first = fields.next().unwrap_or_default();
        if attr(first, 'm').is_some() {
            return Err(ClientError::Malformed("mandatory extension"));
        }
        let nonce = attr(first, 'r').ok_or(ClientError::Malformed("expected r="))?;
        let salt = fields
            .next()
            .and_then(|f| attr(f, 's'))
            .and_then(|s| STANDARD.decode(s).ok())
            .filter(|s| !s.is_empty())
            .ok_or(ClientError::Malformed("expected s="))?;
        let iterations: u32 = fields
            .next()
            .and_then(|f| attr(f, 'i'))
            .and_then(|i| i.parse().ok())
            .filter(|i| *i > 0)
            .ok_or(ClientError::Malformed("expected i="))?;
        let client_nonce = self.client_nonce();
        if !is_valid_nonce(nonce)
            || nonce.len() <= client_nonce.len()
            || !nonce.starts_with(client_nonce)
        {
            return Err(ClientError::NonceMismatch);
        }

        let cb_len = self.gs2_header.len() + self.binding.data().len();
        let mut cb_input = Vec::with_capacity(cb_len);
        cb_input.extend_from_slice(self.gs2_header.as_bytes());
        cb_input.extend_from_slice(self.binding.data());
        let mut out = Vec::with_capacity(cb_len * 4 / 3 + nonce.len() + 64);
        out.extend_from_slice(b"c=");
        out.extend_from_slice(STANDARD.encode(&cb_input).as_bytes());
        out.extend_from_slice(b",r=");
        out.extend_from_slice(nonce.as_bytes());

        let h = self.hash;
        let keys = match self.keys.take() {
            Some(k) if k.hash == h && k.iterations == iterations && k.salt == salt => k,
            _ => {
                let salted = h.salted_password(self.password.as_bytes(), &salt, iterations);
                ClientKeys {
                    hash: h,
                    salt,
                    iterations,
                    client_key: h.client_key(&salted),
                    server_key: h.server_key(&salted),
                }
            }
        };
        let client_key = keys.client_key;
        let stored_key = h.hash(&client_key);
        let auth_message: [&[u8]; 5] = [self.bare.as_bytes(), b",", server_first, b",", &out];
        let signature = h.hmac(&stored_key, &auth_message);
        let server_signature = h.hmac(&keys.server_key, &auth_message);
        self.keys = Some(keys);
        let mut proof = [0u8; 32];
        for (p, (k, s)) in proof
            .iter_mut()
            .zip(client_key.iter().zip(signature.iter()))
        {
            *p = k ^ s;
        }
        let proof = proof.get(..h.output_len()).unwrap_or_default();
        out.extend_from_slice(b",p=");
        out.extend_from_slice(STANDARD.encode(proof).as_bytes());
        self.state = State::SentFinal { server_signature };
        Ok(out)
    }

    /// Checks server-final-message (the `<success/>` additional data): `v=` must carry the
    /// expected server signature; `e=` is reported as [`ClientError::Server`].
    pub fn verify_success(&mut self, server_final: &[u8]) -> Result<(), ClientError> {
        let State::SentFinal { server_signature } = self.state else {
            return Err(ClientError::InvalidState);
        };
        self.state = State::Done;
        let text =
            std::str::from_utf8(server_final).map_err(|_| ClientError::Malformed("not UTF-8"))?;
        let first = text.split(',').next().unwrap_or_default();
        if let Some(err) = attr(first, 'e') {
            return Err(ClientError::Server(err.to_owned()));
        }
        let verifier = attr(first, 'v')
            .and_then(|v| STANDARD.decode(v).ok())
            .ok_or(ClientError::Malformed("expected v="))?;
        if bool::from(verifier.ct_eq(&server_signature)) {
            Ok(())
        } else {
            Err(ClientError::BadServerSignature)
        }
    }
}

/// The PLAIN initial response `authzid NUL authcid NUL passwd` (RFC 4616 §2). The caller
/// should SASLprep or at least NFKC the strings; the server applies SASLprep.
pub fn plain_initial_response(authzid: Option<&str>, username: &str, password: &str) -> Vec<u8> {
    let authzid = authzid.unwrap_or_default();
    let mut out = Vec::with_capacity(authzid.len() + username.len() + password.len() + 2);
    out.extend_from_slice(authzid.as_bytes());
    out.push(0);
    out.extend_from_slice(username.as_bytes());
    out.push(0);
    out.extend_from_slice(password.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(binding: ClientChannelBinding, authzid: Option<&str>) -> ScramClient {
        ScramClient::with_nonce(
            ScramHash::Sha1,
            "us,er=",
            "pencil",
            binding,
            authzid.map(str::to_owned),
            "abc",
        )
        .expect("client")
    }

    #[test]
    fn first_message_shapes() {
        let c = client(ClientChannelBinding::None, None);
        assert_eq!(c.first_message(), b"n,,n=us=2Cer=3D,r=abc");
        assert_eq!(c.mechanism(), Mechanism::ScramSha1);
        let c = client(ClientChannelBinding::UnsupportedByServer, Some("a,b"));
        assert_eq!(c.first_message(), b"y,a=a=2Cb,n=us=2Cer=3D,r=abc");
        let c = client(ClientChannelBinding::TlsExporter(vec![1]), None);
        assert_eq!(c.first_message(), b"p=tls-exporter,,n=us=2Cer=3D,r=abc");
        assert_eq!(c.mechanism(), Mechanism::ScramSha1Plus);
        let c = client(ClientChannelBinding::TlsServerEndPoint(vec![1]), None);
        assert_eq!(
            c.first_message(),
            b"p=tls-server-end-point,,n=us=2Cer=3D,r=abc"
        );
    }

    #[test]
    fn rejects_bad_server_first() {
        for bad in [
            &b""[..],
            b"r=abcdef",
            b"r=abcdef,s=QSXCR+Q6sek8bf92",
            b"r=abcdef,s=QSXCR+Q6sek8bf92,i=0",
            b"r=abcdef,s=QSXCR+Q6sek8bf92,i=x",
            b"r=abcdef,s=!,i=1",
            b"m=x,r=abcdef,s=QSXCR+Q6sek8bf92,i=1",
            b"r=xyzdef,s=QSXCR+Q6sek8bf92,i=1",
            b"r=abc,s=QSXCR+Q6sek8bf92,i=1",
            b"\xff",
        ] {
            let mut c = client(ClientChannelBinding::None, None);
            assert!(c.handle_challenge(bad).is_err(), "{bad:?}");
            // A failed client cannot be reused.
            assert_eq!(
                c.handle_challenge(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=1"),
                Err(ClientError::InvalidState)
            );
        }
    }

    #[test]
    fn verify_success_needs_state_and_signature() {
        let mut c = client(ClientChannelBinding::None, None);
        assert_eq!(c.verify_success(b"v=AAAA"), Err(ClientError::InvalidState));
        let mut c = client(ClientChannelBinding::None, None);
        c.handle_challenge(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=1")
            .expect("final");
        assert_eq!(
            c.verify_success(b"v=AAAA"),
            Err(ClientError::BadServerSignature)
        );
        let mut c = client(ClientChannelBinding::None, None);
        c.handle_challenge(b"r=abcdef,s=QSXCR+Q6sek8bf92,i=1")
            .expect("final");
        assert_eq!(
            c.verify_success(b"e=invalid-proof"),
            Err(ClientError::Server("invalid-proof".into()))
        );
    }

    #[test]
    fn constructor_rejects_bad_input() {
        let mk = |user: &str, pass: &str, nonce: &str| {
            ScramClient::with_nonce(
                ScramHash::Sha256,
                user,
                pass,
                ClientChannelBinding::None,
                None,
                nonce,
            )
        };
        assert_eq!(mk("", "p", "n").err(), Some(ClientError::InvalidUsername));
        assert_eq!(mk("u", "", "n").err(), Some(ClientError::InvalidPassword));
        assert_eq!(
            mk("u\u{7}", "p", "n").err(),
            Some(ClientError::InvalidUsername)
        );
        assert!(mk("u", "p", "a,b").is_err());
        assert!(mk("u", "p", "").is_err());
    }

    #[test]
    fn plain_response_layout() {
        assert_eq!(
            plain_initial_response(None, "juliet", "pencil"),
            b"\0juliet\0pencil"
        );
        assert_eq!(
            plain_initial_response(Some("a@b"), "juliet", "pencil"),
            b"a@b\0juliet\0pencil"
        );
    }
}
