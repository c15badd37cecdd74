//! Word-at-a-time pre-scans that let the common case skip the byte-by-byte checks.
//!
//! Nearly all XMPP traffic is ASCII without control characters, references or carriage
//! returns. The checks in `validate.rs` handle every case but look at one byte (or one `char`)
//! at a time. The functions here look at eight bytes per step (SWAR: "SIMD within a register",
//! plain `u64` arithmetic, no `unsafe`) and only answer "is this the easy case?". They never
//! accept anything themselves: a `true` means the bytes are of a kind for which the full check
//! is known to pass and to change nothing, a `false` sends the caller down the full path, which
//! then gives exactly the verdict and error it always gave.
//!
//! The bit tricks are the classic ones (Bit Twiddling Hacks, "determine if a word has a byte
//! less than n"): for `n <= 0x80`, `(x - 0x01…01 * n) & !x & 0x80…80` is non-zero if and only if
//! some byte of `x` is below `n`. Individual flag bits can be wrong above the first hit (a
//! borrow propagates), but whether the word has any hit is exact, which is all we use.

/// `0x01` in every byte.
const LO: u64 = 0x0101_0101_0101_0101;
/// `0x80` in every byte.
const HI: u64 = 0x8080_8080_8080_8080;

/// Whether some byte of `x` is below `n` (`n <= 0x80`).
fn has_less(x: u64, n: u8) -> bool {
    x.wrapping_sub(LO * u64::from(n)) & !x & HI != 0
}

/// Whether some byte of `x` equals `b`.
fn has_byte(x: u64, b: u8) -> bool {
    has_less(x ^ (LO * u64::from(b)), 1)
}

/// The 8 bytes of `bytes` from `at` as one word, if there are that many.
pub(crate) fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    let word = bytes.get(at..at.checked_add(8)?)?;
    <[u8; 8]>::try_from(word).ok().map(u64::from_le_bytes)
}

/// Whether the word `x` has a byte the writer escapes in character data (`&`, `<`, `>`, CR).
pub(crate) fn needs_text_escape(x: u64) -> bool {
    has_byte(x, b'&') || has_byte(x, b'<') || has_byte(x, b'>') || has_byte(x, b'\r')
}

/// Whether the word `x` has a byte the writer escapes in an attribute value: those of
/// [`needs_text_escape`], both quotes, tab and LF.
pub(crate) fn needs_attr_escape(x: u64) -> bool {
    // Tab, LF and CR are all below 0x20; the other printable-range bytes one by one.
    has_less(x, 0x20)
        || has_byte(x, b'&')
        || has_byte(x, b'<')
        || has_byte(x, b'>')
        || has_byte(x, b'"')
        || has_byte(x, b'\'')
}

/// Whether `hit` is true for any 8-byte word of `bytes`; the last partial word is padded with
/// spaces, which no predicate here flags.
fn any_word(bytes: &[u8], hit: impl Fn(u64) -> bool) -> bool {
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        if let Ok(word) = <[u8; 8]>::try_from(word)
            && hit(u64::from_le_bytes(word))
        {
            return true;
        }
    }
    let tail = words.remainder();
    if tail.is_empty() {
        return false;
    }
    let mut word = [b' '; 8];
    if let Some(dst) = word.get_mut(..tail.len()) {
        dst.copy_from_slice(tail);
    }
    hit(u64::from_le_bytes(word))
}

/// Whether `bytes` may contain a character that is not an XML `Char`: a byte below 0x20
/// (including the allowed tab, LF and CR) or a 0xEF lead byte (U+FFFE/U+FFFF start with it).
/// `false` means every byte is a `Char` as far as `check_chars` is concerned.
pub(crate) fn maybe_bad_chars(bytes: &[u8]) -> bool {
    any_word(bytes, |x| {
        has_less(x, 0x20) || (x & HI != 0 && has_byte(x, 0xEF))
    })
}

/// Whether `bytes` is printable ASCII (0x20–0x7F) only: valid UTF-8, and only `Char`s.
pub(crate) fn is_printable_ascii(bytes: &[u8]) -> bool {
    !any_word(bytes, |x| x & HI != 0 || has_less(x, 0x20))
}

/// Whether `bytes` is character data that needs no work beyond a copy: printable ASCII with
/// no `&` (so no references), no `]` (so no `]]>`), and, being printable, no CR to normalise.
///
/// Such a run is also final when it sits at the end of the buffer: no UTF-8 sequence, reference,
/// `\r\n` pair or `]]>` can be cut in two inside it.
pub(crate) fn is_plain_text(bytes: &[u8]) -> bool {
    !any_word(bytes, |x| {
        x & HI != 0 || has_less(x, 0x20) || has_byte(x, b'&') || has_byte(x, b']')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte-at-a-time definitions the word-at-a-time scans must agree with.
    fn bad_char_byte(b: u8) -> bool {
        b < 0x20 || b == 0xEF
    }

    fn plain_text_byte(b: u8) -> bool {
        (0x20..0x80).contains(&b) && b != b'&' && b != b']'
    }

    #[test]
    fn every_byte_at_every_position() {
        for len in 1..=17 {
            for at in 0..len {
                for b in 0..=255u8 {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    assert_eq!(
                        maybe_bad_chars(&bytes),
                        bad_char_byte(b),
                        "{b:#x} at {at}/{len}"
                    );
                    assert_eq!(
                        is_printable_ascii(&bytes),
                        (0x20..0x80).contains(&b),
                        "{b:#x} at {at}/{len}"
                    );
                    assert_eq!(
                        is_plain_text(&bytes),
                        plain_text_byte(b),
                        "{b:#x} at {at}/{len}"
                    );
                }
            }
        }
    }

    #[test]
    fn escape_words() {
        for at in 0..8 {
            for b in 0..=255u8 {
                let mut bytes = [b'a'; 8];
                bytes[at] = b;
                let x = u64::from_le_bytes(bytes);
                assert_eq!(
                    needs_text_escape(x),
                    b"&<>\r".contains(&b),
                    "{b:#x} at {at}"
                );
                // A false positive only costs time (other control characters), never a miss.
                if b"&<>\"'\t\n\r".contains(&b) {
                    assert!(needs_attr_escape(x), "{b:#x} at {at}");
                } else {
                    assert_eq!(needs_attr_escape(x), b < 0x20, "{b:#x} at {at}");
                }
            }
        }
        assert_eq!(
            word_at(b"0123456789", 2),
            Some(u64::from_le_bytes(*b"23456789"))
        );
        assert_eq!(word_at(b"0123456789", 3), None);
        assert_eq!(word_at(b"", usize::MAX), None);
    }

    #[test]
    fn borrows_do_not_hide_a_later_hit() {
        // A low byte borrows from the next one; the hit must still be reported.
        for b in [0x00, 0x01, 0x1F, 0x26, 0x5D, 0x80, 0xEF, 0xFF] {
            let mut bytes = [0x20u8; 16];
            bytes[3] = 0x00;
            bytes[4] = b;
            assert!(maybe_bad_chars(&bytes));
            assert!(!is_printable_ascii(&bytes));
            assert!(!is_plain_text(&bytes));
        }
        assert!(!maybe_bad_chars(b""));
        assert!(is_plain_text(b""));
    }

    proptest::proptest! {
        #[test]
        fn agree_with_byte_definitions(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            proptest::prop_assert_eq!(maybe_bad_chars(&bytes), bytes.iter().any(|&b| bad_char_byte(b)));
            proptest::prop_assert_eq!(is_printable_ascii(&bytes), bytes.iter().all(|b| (0x20..0x80).contains(b)));
            proptest::prop_assert_eq!(is_plain_text(&bytes), bytes.iter().all(|&b| plain_text_byte(b)));
        }
    }
}
