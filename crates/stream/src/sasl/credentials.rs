//! SCRAM key derivation (RFC 5802 §3) and the credential records the account store persists.
//!
//! `SaltedPassword = Hi(Normalize(password), salt, i)` (PBKDF2 with HMAC-H),
//! `ClientKey = HMAC(SaltedPassword, "Client Key")`, `StoredKey = H(ClientKey)`,
//! `ServerKey = HMAC(SaltedPassword, "Server Key")`. Only `StoredKey`, `ServerKey`, the salt
//! and the iteration count are kept; see the module documentation of [`super`] for why.

use std::fmt;
use std::ops::Deref;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac as _};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use super::SaslError;

/// Iteration count used for new credentials and for fake (unknown-user) challenges.
///
/// 4096 is what RFC 7677 recommends as a minimum and what Prosody and ejabberd use by
/// default, so imported credentials and fake challenges look alike.
pub const DEFAULT_ITERATIONS: u32 = 4096;

/// Length in bytes of the random salts [`StoredCredentials::derive`] generates, and of the
/// fake salts handed out for unknown users.
pub const SALT_LEN: usize = 16;

/// HMAC block size of both SHA-1 and SHA-256.
const BLOCK_LEN: usize = 64;

/// The hash function of a SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScramHash {
    /// SHA-1 (SCRAM-SHA-1, RFC 5802).
    Sha1,
    /// SHA-256 (SCRAM-SHA-256, RFC 7677).
    Sha256,
}

/// A hash or HMAC output kept on the stack (at most 32 bytes).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Digest {
    bytes: [u8; 32],
    len: usize,
}

impl Digest {
    fn from_slice(data: &[u8]) -> Self {
        let mut bytes = [0u8; 32];
        let len = data.len().min(32);
        bytes[..len].copy_from_slice(&data[..len]);
        Digest { bytes, len }
    }
}

impl Deref for Digest {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl ScramHash {
    /// The hash name as used in SCRAM mechanism names (`"SHA-1"`, `"SHA-256"`).
    pub fn name(self) -> &'static str {
        match self {
            ScramHash::Sha1 => "SHA-1",
            ScramHash::Sha256 => "SHA-256",
        }
    }

    /// Output length of the hash in bytes (20 or 32); also the length of every SCRAM key.
    pub fn output_len(self) -> usize {
        match self {
            ScramHash::Sha1 => 20,
            ScramHash::Sha256 => 32,
        }
    }

    /// `H(data)`.
    pub(crate) fn hash(self, data: &[u8]) -> Digest {
        match self {
            ScramHash::Sha1 => Digest::from_slice(&Sha1::digest(data)),
            ScramHash::Sha256 => Digest::from_slice(&Sha256::digest(data)),
        }
    }

    /// `HMAC(key, parts[0] || parts[1] || ...)`.
    ///
    /// HMAC zero-pads keys shorter than the block and hashes longer ones (RFC 2104 §2), so we
    /// build the block ourselves and use the infallible fixed-size constructor.
    pub(crate) fn hmac(self, key: &[u8], parts: &[&[u8]]) -> Digest {
        let mut block = [0u8; BLOCK_LEN];
        if key.len() > BLOCK_LEN {
            let hashed = self.hash(key);
            block[..hashed.len()].copy_from_slice(&hashed);
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        match self {
            ScramHash::Sha1 => {
                let mut mac = <Hmac<Sha1> as KeyInit>::new(&block.into());
                for part in parts {
                    mac.update(part);
                }
                Digest::from_slice(&mac.finalize().into_bytes())
            }
            ScramHash::Sha256 => {
                let mut mac = <Hmac<Sha256> as KeyInit>::new(&block.into());
                for part in parts {
                    mac.update(part);
                }
                Digest::from_slice(&mac.finalize().into_bytes())
            }
        }
    }

    /// `Hi(password, salt, iterations)`: PBKDF2-HMAC-H with one output block.
    ///
    /// `password` must already be SASLprep'd.
    pub(crate) fn salted_password(self, password: &[u8], salt: &[u8], iterations: u32) -> Digest {
        match self {
            ScramHash::Sha1 => {
                let mut out = [0u8; 20];
                pbkdf2::pbkdf2_hmac::<Sha1>(password, salt, iterations, &mut out);
                Digest::from_slice(&out)
            }
            ScramHash::Sha256 => {
                let mut out = [0u8; 32];
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut out);
                Digest::from_slice(&out)
            }
        }
    }

    /// `ClientKey = HMAC(SaltedPassword, "Client Key")`.
    pub(crate) fn client_key(self, salted_password: &[u8]) -> Digest {
        self.hmac(salted_password, &[b"Client Key"])
    }

    /// `ServerKey = HMAC(SaltedPassword, "Server Key")`.
    pub(crate) fn server_key(self, salted_password: &[u8]) -> Digest {
        self.hmac(salted_password, &[b"Server Key"])
    }
}

/// What the server keeps for one account and one SCRAM hash.
///
/// Enough to verify a SCRAM proof and to prove the server's own identity, but not enough to
/// log in as the user: that needs `ClientKey`, which is only ever sent XOR-masked.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredentials {
    /// The salt (base64 in serialised form).
    #[serde(with = "b64_bytes")]
    pub salt: Vec<u8>,
    /// PBKDF2 iteration count.
    pub iterations: u32,
    /// `StoredKey = H(ClientKey)` (base64 in serialised form).
    #[serde(with = "b64_bytes")]
    pub stored_key: Vec<u8>,
    /// `ServerKey = HMAC(SaltedPassword, "Server Key")` (base64 in serialised form).
    #[serde(with = "b64_bytes")]
    pub server_key: Vec<u8>,
}

impl fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("salt_len", &self.salt.len())
            .field("iterations", &self.iterations)
            .field("stored_key", &"<redacted>")
            .field("server_key", &"<redacted>")
            .finish()
    }
}

impl ScramCredentials {
    /// Derives the credentials for `password` with a caller-chosen salt.
    ///
    /// The password is SASLprep'd first. Use this for test vectors and imports; new accounts
    /// should use [`StoredCredentials::derive`], which picks random salts.
    pub fn derive(
        hash: ScramHash,
        password: &str,
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, SaslError> {
        if iterations == 0 {
            return Err(SaslError::InvalidIterations);
        }
        if salt.is_empty() {
            return Err(SaslError::InvalidSalt);
        }
        let prepared = stringprep::saslprep(password).map_err(|_| SaslError::InvalidPassword)?;
        let salted = hash.salted_password(prepared.as_bytes(), salt, iterations);
        let client_key = hash.client_key(&salted);
        Ok(ScramCredentials {
            salt: salt.to_vec(),
            iterations,
            stored_key: hash.hash(&client_key).to_vec(),
            server_key: hash.server_key(&salted).to_vec(),
        })
    }

    /// Checks a plaintext password (already SASLprep'd) against these credentials in
    /// constant time with respect to the key contents. Costs one PBKDF2 run.
    pub(crate) fn verify_password(&self, hash: ScramHash, prepared_password: &[u8]) -> bool {
        use subtle::ConstantTimeEq as _;
        let salted = hash.salted_password(prepared_password, &self.salt, self.iterations.max(1));
        let stored = hash.hash(&hash.client_key(&salted));
        bool::from(stored.ct_eq(&self.stored_key))
    }
}

/// Everything the account store persists for SASL: one SCRAM record per hash.
///
/// PLAIN is verified against these records too, so no plaintext password is ever stored.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StoredCredentials {
    /// Credentials for SCRAM-SHA-1(-PLUS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<ScramCredentials>,
    /// Credentials for SCRAM-SHA-256(-PLUS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<ScramCredentials>,
}

impl StoredCredentials {
    /// Derives SHA-1 and SHA-256 credentials for `password`, each with its own random
    /// [`SALT_LEN`]-byte salt. Use [`DEFAULT_ITERATIONS`] unless there is a reason not to.
    ///
    /// Costs two PBKDF2 runs; call it from a blocking context in async code.
    pub fn derive(password: &str, iterations: u32) -> Result<Self, SaslError> {
        let mut salt1 = [0u8; SALT_LEN];
        let mut salt256 = [0u8; SALT_LEN];
        getrandom::fill(&mut salt1).map_err(|_| SaslError::Random)?;
        getrandom::fill(&mut salt256).map_err(|_| SaslError::Random)?;
        Ok(StoredCredentials {
            sha1: Some(ScramCredentials::derive(
                ScramHash::Sha1,
                password,
                &salt1,
                iterations,
            )?),
            sha256: Some(ScramCredentials::derive(
                ScramHash::Sha256,
                password,
                &salt256,
                iterations,
            )?),
        })
    }

    /// The record for `hash`, if any.
    pub fn get(&self, hash: ScramHash) -> Option<&ScramCredentials> {
        match hash {
            ScramHash::Sha1 => self.sha1.as_ref(),
            ScramHash::Sha256 => self.sha256.as_ref(),
        }
    }
}

/// Credentials that look like a real account's but belong to nobody.
///
/// The salt is `HMAC-SHA-256(secret, username || 0 || hash name)` truncated to [`SALT_LEN`],
/// so asking twice for the same unknown user gives the same salt, as for a real user. The
/// keys are derived the same way from a different label; they never verify because the
/// caller also tracks that the user is unknown.
pub(crate) fn fake_credentials(
    secret: &[u8; 32],
    username: &str,
    hash: ScramHash,
) -> ScramCredentials {
    let name = hash.name().as_bytes();
    let user = username.as_bytes();
    let salt = ScramHash::Sha256.hmac(secret, &[user, b"\0", name]);
    let stored = ScramHash::Sha256.hmac(secret, &[user, b"\0", name, b"\0stored"]);
    let server = ScramHash::Sha256.hmac(secret, &[user, b"\0", name, b"\0server"]);
    let len = hash.output_len();
    ScramCredentials {
        salt: salt[..SALT_LEN].to_vec(),
        iterations: DEFAULT_ITERATIONS,
        stored_key: stored[..len].to_vec(),
        server_key: server[..len].to_vec(),
    }
}

/// Serde helper: `Vec<u8>` as a standard base64 string.
mod b64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let mac = ScramHash::Sha256.hmac(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
    }

    #[test]
    fn hmac_long_key_is_hashed() {
        // RFC 4231 test case 6: 131-byte key of 0xaa.
        let key = [0xaau8; 131];
        let mac = ScramHash::Sha256.hmac(
            &key,
            &[b"Test Using Larger Than Block-Size Key - Hash Key First"],
        );
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn derive_gives_random_salts_and_both_hashes() {
        let a = StoredCredentials::derive("pencil", 16).expect("derive");
        let b = StoredCredentials::derive("pencil", 16).expect("derive");
        let (a1, b1) = (a.sha1.expect("sha1"), b.sha1.expect("sha1"));
        assert_eq!(a1.salt.len(), SALT_LEN);
        assert_ne!(a1.salt, b1.salt);
        assert_eq!(a1.stored_key.len(), 20);
        let a256 = a.sha256.expect("sha256");
        assert_eq!(a256.stored_key.len(), 32);
        assert_eq!(a256.server_key.len(), 32);
        assert_eq!(a256.iterations, 16);
    }

    #[test]
    fn derive_rejects_bad_input() {
        assert!(matches!(
            StoredCredentials::derive("pencil", 0),
            Err(SaslError::InvalidIterations)
        ));
        // U+0007 is a prohibited control character in SASLprep.
        assert!(matches!(
            StoredCredentials::derive("bell\u{7}", 16),
            Err(SaslError::InvalidPassword)
        ));
    }

    #[test]
    fn serde_round_trip_uses_base64() {
        let creds = StoredCredentials::derive("pencil", 16).expect("derive");
        let json = serde_json::to_string(&creds).expect("serialise");
        assert!(json.contains("\"salt\":\""), "{json}");
        let back: StoredCredentials = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, creds);
        let bad = json.replace("\"salt\":\"", "\"salt\":\"!");
        assert!(serde_json::from_str::<StoredCredentials>(&bad).is_err());
    }

    #[test]
    fn debug_redacts_keys() {
        let creds = StoredCredentials::derive("pencil", 16).expect("derive");
        let text = format!("{creds:?}");
        assert!(text.contains("redacted"));
    }

    #[test]
    fn fake_credentials_are_deterministic_and_shaped_like_real_ones() {
        let secret = [7u8; 32];
        let a = fake_credentials(&secret, "nobody", ScramHash::Sha1);
        let b = fake_credentials(&secret, "nobody", ScramHash::Sha1);
        assert_eq!(a, b);
        assert_eq!(a.salt.len(), SALT_LEN);
        assert_eq!(a.stored_key.len(), 20);
        assert_eq!(a.iterations, DEFAULT_ITERATIONS);
        let c = fake_credentials(&secret, "nobody", ScramHash::Sha256);
        assert_ne!(a.salt, c.salt);
        let d = fake_credentials(&[8u8; 32], "nobody", ScramHash::Sha1);
        assert_ne!(a.salt, d.salt);
    }

    #[test]
    fn verify_password_accepts_only_the_right_password() {
        let creds =
            ScramCredentials::derive(ScramHash::Sha256, "pencil", b"salty", 16).expect("derive");
        assert!(creds.verify_password(ScramHash::Sha256, b"pencil"));
        assert!(!creds.verify_password(ScramHash::Sha256, b"pencil2"));
    }
}
