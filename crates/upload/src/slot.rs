//! What a slot is made of: an acceptable file name and content type, a random id, and the
//! signature that authorises the PUT.
//!
//! # The PUT's authorisation
//!
//! XEP-0363 §4 lets a slot carry `Authorization`, `Cookie` or `Expires` headers; we use none
//! of them. The PUT URL itself is signed, so that any HTTP client (curl, a browser's `fetch`,
//! a client that drops the optional headers) can upload with the URL alone:
//!
//! ```text
//! https://HOST:PORT/upload/ID/NAME?o=OWNER&e=EXPIRES&s=SIGNATURE
//! ```
//!
//! `SIGNATURE` is the lowercase hex HMAC-SHA-256, under the host's key (32 random bytes kept
//! in the `upload_key` KeyVal document of the host), of the path (`ID/NAME`), the size, the
//! content type, the expiry (Unix seconds) and the owner's bare JID, each followed by a
//! newline. Size and content type are not in the URL: the PUT reads them from the slot's
//! stored record, so a changed record, a changed URL or a later time all fail the check.
//! The comparison is constant-time ([`subtle`] through `hmac`'s `verify_slice`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length of a slot id: 128 random bits in lowercase hex (§10.3: long random URL parts).
pub const ID_LEN: usize = 32;

/// Longest accepted file name in bytes (what common file systems allow in one component).
pub const MAX_FILENAME_BYTES: usize = 255;

/// Why a requested file name or content type is refused (`not-acceptable`).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// The name is empty, too long, a path, or holds control characters.
    #[error("the file name is not acceptable: {0}")]
    BadFilename(&'static str),
    /// The content type is not `type/subtype`, or not among the allowed ones.
    #[error("the content type is not acceptable: {0}")]
    BadContentType(&'static str),
}

/// Checks a client's file name: it becomes a URL path segment and, on download, a
/// `Content-Disposition` file name, so separators, `.`/`..`, control characters and quotes
/// are refused rather than rewritten (the client can retry with another name).
pub fn check_filename(name: &str) -> Result<(), SlotError> {
    if name.is_empty() {
        return Err(SlotError::BadFilename("it is empty"));
    }
    if name.len() > MAX_FILENAME_BYTES {
        return Err(SlotError::BadFilename("it is longer than 255 bytes"));
    }
    if name == "." || name == ".." {
        return Err(SlotError::BadFilename("it names a directory"));
    }
    if name.contains(['/', '\\']) {
        return Err(SlotError::BadFilename("it holds a path separator"));
    }
    if name.chars().any(|c| c.is_control() || c == '"') {
        return Err(SlotError::BadFilename(
            "it holds a control character or a quote",
        ));
    }
    Ok(())
}

/// Checks a declared content type (`type/subtype`, RFC 6838 token characters, no
/// parameters) against `allowed` (empty: any). The answer is the type in lowercase.
pub fn check_content_type(content_type: &str, allowed: &[String]) -> Result<String, SlotError> {
    let lower = content_type.trim().to_ascii_lowercase();
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match lower.split_once('/') {
        Some((t, sub)) if token(t) && token(sub) => {}
        _ => return Err(SlotError::BadContentType("it is not type/subtype")),
    }
    if !allowed.is_empty() && !allowed.iter().any(|a| a.eq_ignore_ascii_case(&lower)) {
        return Err(SlotError::BadContentType("the service does not accept it"));
    }
    Ok(lower)
}

/// Whether `id` has the shape of a slot id (anything else in a URL is refused before the
/// file system is touched).
pub fn is_id(id: &str) -> bool {
    id.len() == ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A new random slot id.
pub fn new_id() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; ID_LEN / 2];
    getrandom::fill(&mut bytes)?;
    Ok(hex::encode(bytes))
}

/// What a slot's signature covers.
#[derive(Clone, Copy, Debug)]
pub struct Signed<'a> {
    /// The slot id.
    pub id: &'a str,
    /// The file name (not percent-encoded).
    pub name: &'a str,
    /// The size in bytes.
    pub size: u64,
    /// The content type (empty when none was declared).
    pub content_type: &'a str,
    /// Unix seconds after which the PUT is refused.
    pub expires: u64,
    /// The owner's bare JID.
    pub owner: &'a str,
}

impl Signed<'_> {
    fn mac(&self, key: &[u8]) -> HmacSha256 {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        let mut mac = match HmacSha256::new_from_slice(key) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of any length"),
        };
        for part in [
            self.id,
            "/",
            self.name,
            "\n",
            &self.size.to_string(),
            "\n",
            self.content_type,
            "\n",
            &self.expires.to_string(),
            "\n",
            self.owner,
            "\n",
        ] {
            mac.update(part.as_bytes());
        }
        mac
    }

    /// The signature, in lowercase hex.
    pub fn sign(&self, key: &[u8]) -> String {
        hex::encode(self.mac(key).finalize().into_bytes())
    }

    /// Whether `signature` (hex) is this slot's, compared in constant time.
    pub fn verify(&self, key: &[u8], signature: &str) -> bool {
        match hex::decode(signature) {
            Ok(bytes) => self.mac(key).verify_slice(&bytes).is_ok(),
            Err(_) => false,
        }
    }
}

/// Characters left as they are in a URL path segment (RFC 3986 unreserved); everything else,
/// non-ASCII included, is percent-encoded (XEP-0363 §4).
const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `s` percent-encoded for a path segment or a query value.
pub fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_table() {
        for ok in [
            "très cool.jpg",
            "a",
            "x.tar.gz",
            "..hidden",
            "name with spaces",
        ] {
            assert_eq!(check_filename(ok), Ok(()), "{ok}");
        }
        let long = "a".repeat(256);
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "..\\x",
            "a\nb",
            "q\"uote",
            long.as_str(),
        ] {
            assert!(check_filename(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn content_types_table() {
        assert_eq!(
            check_content_type("Image/JPEG", &[]),
            Ok("image/jpeg".to_owned())
        );
        for bad in [
            "",
            "image",
            "image/",
            "/jpeg",
            "text/html; charset=utf-8",
            "a b/c",
        ] {
            assert!(check_content_type(bad, &[]).is_err(), "{bad:?}");
        }
        let allowed = vec!["image/png".to_owned()];
        assert!(check_content_type("image/png", &allowed).is_ok());
        assert_eq!(
            check_content_type("image/gif", &allowed),
            Err(SlotError::BadContentType("the service does not accept it"))
        );
    }

    #[test]
    fn ids_are_random_hex_of_the_right_length() {
        let a = new_id().expect("random");
        let b = new_id().expect("random");
        assert!(is_id(&a) && is_id(&b) && a != b);
        for bad in ["", "..", "0123", &"A".repeat(32), &"g".repeat(32)] {
            assert!(!is_id(bad), "{bad}");
        }
    }

    #[test]
    fn signatures_cover_every_part() {
        let key = [7u8; 32];
        let slot = Signed {
            id: "0123456789abcdef0123456789abcdef",
            name: "a.jpg",
            size: 10,
            content_type: "image/jpeg",
            expires: 1_000,
            owner: "alice@example.org",
        };
        let sig = slot.sign(&key);
        assert!(slot.verify(&key, &sig));
        assert!(!slot.verify(&[8u8; 32], &sig));
        assert!(!slot.verify(&key, "zz"));
        assert!(!slot.verify(&key, &sig[..10]));
        let changed = [
            Signed { size: 11, ..slot },
            Signed {
                name: "b.jpg",
                ..slot
            },
            Signed {
                content_type: "",
                ..slot
            },
            Signed {
                expires: 1_001,
                ..slot
            },
            Signed {
                owner: "bob@example.org",
                ..slot
            },
        ];
        for other in changed {
            assert!(!other.verify(&key, &sig), "{other:?}");
        }
    }

    #[test]
    fn names_are_percent_encoded() {
        assert_eq!(encode("très cool.jpg"), "tr%C3%A8s%20cool.jpg");
        assert_eq!(encode("a@b"), "a%40b");
    }
}
