//! The SM-ID of a resumable session (XEP-0198 §3, the `id` of `<enabled/>`).
//!
//! The server makes every id the same way (144 random bits, URL-safe base64: 24 characters),
//! so an id fits in 24 bytes kept inline: in the session's counters and as the key of the
//! resumption table, without an allocation per resumable session. A `previd` of any other
//! length names no session of this server.

use std::fmt;

/// Characters in an SM-ID.
const LEN: usize = 24;

/// An SM-ID: 24 bytes of text.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct SmId([u8; LEN]);

impl SmId {
    /// A new id; `None` when the system's random source fails (the session is then not
    /// resumable rather than guessable).
    pub(crate) fn generate() -> Option<SmId> {
        use base64::Engine;
        let mut random = [0u8; 18];
        getrandom::fill(&mut random).ok()?;
        let mut text = [0u8; LEN];
        let written = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode_slice(random, &mut text)
            .ok()?;
        (written == LEN).then_some(SmId(text))
    }

    /// The id named by a client's `previd` or by a saved session, when it can be one of ours.
    pub(crate) fn parse(text: &str) -> Option<SmId> {
        <[u8; LEN]>::try_from(text.as_bytes()).ok().map(SmId)
    }

    /// The id as text.
    pub(crate) fn as_str(&self) -> &str {
        // Always whole UTF-8: made from a `&str` of exactly this length, or from base64.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

impl fmt::Debug for SmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for SmId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_24_url_safe_characters_and_distinct() {
        let a = SmId::generate().unwrap();
        let b = SmId::generate().unwrap();
        assert_eq!(a.as_str().len(), 24);
        assert!(
            a.as_str()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a, b);
        assert_eq!(SmId::parse(a.as_str()), Some(a));
    }

    #[test]
    fn text_of_another_length_is_no_id() {
        assert_eq!(SmId::parse(""), None);
        assert_eq!(SmId::parse("abc"), None);
        assert_eq!(SmId::parse(&"a".repeat(25)), None);
        // 24 bytes, whatever the characters, can be looked up (and are then not found).
        let accented = "é".repeat(12);
        assert_eq!(
            SmId::parse(&accented).map(|id| id.to_string()),
            Some(accented)
        );
    }
}
