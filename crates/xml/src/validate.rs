//! The well-formedness checks quick-xml leaves to its caller.
//!
//! quick-xml finds token boundaries and nothing more: it accepts control characters, names made
//! of any bytes, undeclared entities and text that is only UTF-8 by luck. Everything a peer can
//! smuggle past a lenient parser and into a strict one downstream is checked here, on bytes,
//! before a value reaches an [`Element`](crate::Element):
//!
//! * XML 1.0 `Char` ranges for literal characters and for character references;
//! * the `Name`/`NCName` productions for element and attribute names;
//! * references: the five predefined entities and character references, nothing else
//!   (RFC 6120 §11.1 forbids entity declarations, so any other name is `restricted-xml`);
//! * end-of-line normalisation (XML 1.0 §2.11) and attribute-value normalisation (§3.3.3).

use std::borrow::Cow;

use crate::reader::XmlError;

/// Longest reference we wait for when it is split across reads (`&#x0000000010FFFF;` fits).
///
/// XML allows any number of leading zeros in a character reference; a peer that sends more
/// than this is not sending text, so the reference is rejected instead of buffered.
pub(crate) const MAX_REF_LEN: usize = 32;

/// XML `S`: space, tab, carriage return, line feed.
pub(crate) fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// XML 1.0 `Char`.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c as u32, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x10000..=0x10FFFF)
}

/// Checks that UTF-8-valid `bytes` contain only XML `Char`s.
///
/// In valid UTF-8 the only non-`Char`s are the C0 controls other than tab, LF and CR, and
/// U+FFFE/U+FFFF (`EF BF BE`/`EF BF BF`); surrogates cannot be encoded. So one pass over the
/// bytes suffices, and the common case (no byte below 0x20 except whitespace, no 0xEF) is a
/// branch-light scan.
pub(crate) fn check_chars(bytes: &[u8]) -> Result<(), XmlError> {
    if !crate::scan::maybe_bad_chars(bytes) {
        return Ok(());
    }
    for (i, &b) in bytes.iter().enumerate() {
        if b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r') {
            return Err(XmlError::NotWellFormed(format!(
                "forbidden character U+{b:04X}"
            )));
        }
        if b == 0xEF
            && bytes.get(i + 1) == Some(&0xBF)
            && matches!(bytes.get(i + 2), Some(0xBE | 0xBF))
        {
            return Err(XmlError::NotWellFormed(
                "forbidden character U+FFFE/U+FFFF".into(),
            ));
        }
    }
    Ok(())
}

/// Validates UTF-8, mapping the error to `not-well-formed`.
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, XmlError> {
    std::str::from_utf8(bytes).map_err(|_| XmlError::NotWellFormed("invalid UTF-8".into()))
}

fn is_name_start(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}'
        | '\u{F8}'..='\u{2FF}' | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}'
        | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}'
        | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

fn is_name_char(c: char) -> bool {
    is_name_start(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// XML Namespaces `NCName`: a `Name` without colons.
pub(crate) fn is_ncname(s: &str) -> bool {
    let bytes = s.as_bytes();
    if bytes.is_ascii() {
        // The ASCII part of the productions, without decoding chars.
        return match bytes.split_first() {
            Some((&first, rest)) => {
                (first.is_ascii_alphabetic() || first == b'_')
                    && rest
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
            }
            None => false,
        };
    }
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if is_name_start(c) => chars.all(is_name_char),
        _ => false,
    }
}

/// Splits a `QName` into optional prefix and local part; `None` if it is not a `QName`.
pub(crate) fn split_qname(s: &str) -> Option<(Option<&str>, &str)> {
    // A byte search: names are short, and ':' cannot occur inside a multi-byte sequence.
    let colon = s.as_bytes().iter().position(|&b| b == b':');
    match colon.and_then(|i| Some((s.get(..i)?, s.get(i + 1..)?))) {
        Some((prefix, local)) if is_ncname(prefix) && is_ncname(local) => {
            Some((Some(prefix), local))
        }
        Some(_) => None,
        None if is_ncname(s) => Some((None, s)),
        None => None,
    }
}

/// Resolves the body of a reference (between `&` and `;`) to the character it stands for.
fn resolve_ref(body: &str) -> Result<char, XmlError> {
    if body.len() < MAX_REF_LEN {
        match body {
            "lt" => return Ok('<'),
            "gt" => return Ok('>'),
            "amp" => return Ok('&'),
            "quot" => return Ok('"'),
            "apos" => return Ok('\''),
            _ => {}
        }
        let code = if let Some(hex) = body.strip_prefix("#x") {
            Some(parse_code(hex, 16))
        } else {
            body.strip_prefix('#').map(|dec| parse_code(dec, 10))
        };
        if let Some(Some(code)) = code {
            return match char::from_u32(code) {
                Some(c) if is_xml_char(c) => Ok(c),
                _ => Err(XmlError::NotWellFormed(format!(
                    "bad character reference &{body};"
                ))),
            };
        }
    }
    // Classify the error exactly as if the reference had arrived in pieces.
    check_partial_ref(&format!("&{body}"))?;
    Err(XmlError::NotWellFormed(format!("bad reference &{body};")))
}

/// Parses the digits of a character reference; `None` for no digits, a non-digit or overflow.
fn parse_code(digits: &str, radix: u32) -> Option<u32> {
    if digits.is_empty() {
        return None;
    }
    let mut value: u32 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix)?;
        value = value.checked_mul(radix)?.checked_add(d)?;
    }
    Some(value)
}

/// Whether one prefix `tail` (`&` and what follows, no `;`) can still become a valid reference.
fn check_ref_prefix(tail: &str) -> Result<(), XmlError> {
    if tail.len() > MAX_REF_LEN {
        return Err(XmlError::NotWellFormed("reference too long".into()));
    }
    let body = tail.get(1..).unwrap_or_default();
    let bytes = body.as_bytes();
    let ok = if let Some(digits) = bytes.strip_prefix(b"#x") {
        digits.iter().all(u8::is_ascii_hexdigit)
    } else if let Some(digits) = bytes.strip_prefix(b"#") {
        digits.iter().all(u8::is_ascii_digit)
    } else {
        [&b"lt"[..], b"gt", b"amp", b"quot", b"apos"]
            .iter()
            .any(|e| e.starts_with(bytes))
    };
    if ok {
        Ok(())
    } else if is_ncname(body) {
        Err(XmlError::RestrictedXml(format!(
            "reference to entity &{body}"
        )))
    } else {
        Err(XmlError::NotWellFormed("malformed reference".into()))
    }
}

/// Checks an unterminated reference (`&` and what follows, no `;` yet).
///
/// Used to reject `&foo` or `& ` as soon as the bytes arrive instead of buffering until a `;`
/// that may never come. The verdict is that of the shortest prefix that cannot start a valid
/// reference, so it is the same however the reference is split (and for the complete one):
/// `&nbsp;` is `restricted-xml`, `&#xZ;` and `& ` are `not-well-formed`.
pub(crate) fn check_partial_ref(tail: &str) -> Result<(), XmlError> {
    for (i, c) in tail.char_indices() {
        check_ref_prefix(tail.get(..i + c.len_utf8()).unwrap_or_default())?;
    }
    Ok(())
}

/// [`SPECIAL`] flag: the byte needs work in character data (`&`, CR).
const SPECIAL_IN_TEXT: u8 = 1;
/// [`SPECIAL`] flag: the byte needs work (or is an error) in an attribute value (`&`, CR, `<`,
/// tab, LF).
const SPECIAL_IN_ATTR: u8 = 2;

/// The bytes [`unescape`] acts on, as one table lookup per byte.
static SPECIAL: [u8; 256] = {
    let mut table = [0u8; 256];
    table[b'&' as usize] = SPECIAL_IN_TEXT | SPECIAL_IN_ATTR;
    table[b'\r' as usize] = SPECIAL_IN_TEXT | SPECIAL_IN_ATTR;
    table[b'<' as usize] = SPECIAL_IN_ATTR;
    table[b'\t' as usize] = SPECIAL_IN_ATTR;
    table[b'\n' as usize] = SPECIAL_IN_ATTR;
    table
};

/// Unescapes character data or an attribute value and normalises line ends.
///
/// `raw` must already have passed [`check_chars`] and contain only complete references. In
/// attribute values (`attr`) a literal `<` is an error and tab, LF and CR become spaces
/// (§3.3.3); in text `\r\n` and lone `\r` become `\n` (§2.11). The result borrows `raw` when
/// nothing changes, which is the common case for XMPP traffic.
pub(crate) fn unescape(raw: &str, attr: bool) -> Result<Cow<'_, str>, XmlError> {
    let bytes = raw.as_bytes();
    let mask = if attr {
        SPECIAL_IN_ATTR
    } else {
        SPECIAL_IN_TEXT
    };
    let special = |b: u8| SPECIAL[usize::from(b)] & mask != 0;
    let Some(first) = bytes.iter().position(|&b| special(b)) else {
        return Ok(Cow::Borrowed(raw));
    };
    let mut out = String::with_capacity(raw.len());
    let mut start = 0;
    let mut i = first;
    while i < bytes.len() {
        let b = bytes[i];
        if !special(b) {
            i += 1;
            continue;
        }
        out.push_str(raw.get(start..i).unwrap_or_default());
        match b {
            b'&' => {
                let semi = memchr::memchr(b';', &bytes[i..])
                    .ok_or_else(|| XmlError::NotWellFormed("unterminated reference".into()))?;
                let body = raw.get(i + 1..i + semi).unwrap_or_default();
                out.push(resolve_ref(body)?);
                i += semi + 1;
            }
            b'\r' => {
                out.push(if attr { ' ' } else { '\n' });
                i += if bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
            }
            b'<' => return Err(XmlError::NotWellFormed("'<' in attribute value".into())),
            _ => {
                // Tab or LF in an attribute value.
                out.push(' ');
                i += 1;
            }
        }
        start = i;
    }
    out.push_str(raw.get(start..).unwrap_or_default());
    Ok(Cow::Owned(out))
}

/// How much of an unterminated run of character data can be processed now.
///
/// Text at the end of the buffer may continue in the next read, so we stop short of anything a
/// later byte could change: an incomplete UTF-8 sequence, an unterminated reference, a `\r`
/// that may be the first half of `\r\n`, and up to two `]` that may start `]]>` (forbidden in
/// text). Everything before that point is final, so text is consumed as it arrives and never
/// re-scanned. Returns the processable prefix as `&str`.
pub(crate) fn safe_text_prefix(bytes: &[u8]) -> Result<&str, XmlError> {
    let valid = match std::str::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) if e.error_len().is_none() => {
            utf8(bytes.get(..e.valid_up_to()).unwrap_or_default())?
        }
        Err(_) => return Err(XmlError::NotWellFormed("invalid UTF-8".into())),
    };
    let vb = valid.as_bytes();
    let mut cut = vb.len();
    if let Some(amp) = memchr::memrchr(b'&', vb)
        && memchr::memchr(b';', &vb[amp..]).is_none()
    {
        check_partial_ref(valid.get(amp..).unwrap_or_default())?;
        cut = amp;
    }
    if cut > 0 && vb[cut - 1] == b'\r' {
        cut -= 1;
    }
    for _ in 0..2 {
        if cut > 0 && vb[cut - 1] == b']' {
            cut -= 1;
        }
    }
    Ok(valid.get(..cut).unwrap_or_default())
}

/// Applies end-of-line normalisation only (for CDATA sections, where `&` is literal).
pub(crate) fn normalize_newlines(raw: &str) -> Cow<'_, str> {
    if !raw.contains('\r') {
        return Cow::Borrowed(raw);
    }
    Cow::Owned(raw.replace("\r\n", "\n").replace('\r', "\n"))
}

/// Checks complete character data (no `<` inside) for everything except references.
pub(crate) fn check_text(raw: &str) -> Result<(), XmlError> {
    check_chars(raw.as_bytes())?;
    if raw.contains("]]>") {
        return Err(XmlError::NotWellFormed("']]>' in character data".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_ncname("message"));
        assert!(is_ncname("x-y.z_1"));
        assert!(is_ncname("été"));
        assert!(!is_ncname("1a"));
        assert!(!is_ncname("-a"));
        assert!(!is_ncname("a:b"));
        assert!(!is_ncname(""));
        assert!(!is_ncname("a\"b"));
        assert_eq!(
            split_qname("stream:stream"),
            Some((Some("stream"), "stream"))
        );
        assert_eq!(split_qname("body"), Some((None, "body")));
        assert_eq!(split_qname("a:b:c"), None);
        assert_eq!(split_qname(":a"), None);
        assert_eq!(split_qname("a:"), None);
    }

    #[test]
    fn references() {
        assert_eq!(
            unescape("a&lt;b&#x41;&#66;&amp;&quot;&apos;&gt;", false).unwrap(),
            "a<bAB&\"'>"
        );
        assert!(matches!(
            unescape("&#0;", false),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            unescape("&#xFFFE;", false),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            unescape("&#xD800;", false),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            unescape("&#x110000;", false),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            unescape("&#99999999999;", false),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            unescape("&#X41;", false),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            unescape("&foo;", false),
            Err(XmlError::RestrictedXml(_))
        ));
        assert!(matches!(
            unescape("&;", false),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(matches!(
            unescape("a & b", false),
            Err(XmlError::NotWellFormed(_))
        ));
    }

    #[test]
    fn normalisation() {
        assert_eq!(unescape("a\r\nb\rc\n", false).unwrap(), "a\nb\nc\n");
        assert_eq!(unescape("a\r\nb\tc\nd&#xA;", true).unwrap(), "a b c d\n");
        assert!(unescape("a<b", true).is_err());
    }

    #[test]
    fn chars() {
        assert!(check_chars("héllo\t\n\r 😀".as_bytes()).is_ok());
        assert!(check_chars(b"a\x00").is_err());
        assert!(check_chars(b"a\x1b").is_err());
        assert!(check_chars("\u{FFFE}".as_bytes()).is_err());
        assert!(check_chars("\u{FFFF}".as_bytes()).is_err());
        assert!(check_chars("\u{FFFD}".as_bytes()).is_ok());
    }

    #[test]
    fn safe_prefix_stops_before_ambiguous_tail() {
        assert_eq!(safe_text_prefix(b"abc").unwrap(), "abc");
        assert_eq!(safe_text_prefix(b"ab&am").unwrap(), "ab");
        assert_eq!(safe_text_prefix(b"ab&amp;c").unwrap(), "ab&amp;c");
        assert_eq!(safe_text_prefix(b"ab\r").unwrap(), "ab");
        assert_eq!(safe_text_prefix(b"ab]]").unwrap(), "ab");
        assert_eq!(
            safe_text_prefix("aé".as_bytes().get(..2).unwrap()).unwrap(),
            "a"
        );
        assert!(safe_text_prefix(b"a\xff").is_err());
        assert!(matches!(
            safe_text_prefix(b"a&foo"),
            Err(XmlError::RestrictedXml(_))
        ));
        assert!(matches!(
            safe_text_prefix(b"a& "),
            Err(XmlError::NotWellFormed(_))
        ));
        assert!(safe_text_prefix(b"a&#x1").is_ok());
    }

    #[test]
    fn reference_errors_do_not_depend_on_splits() {
        for complete in [
            "&nbsp;", "&ab cd;", "&a b;", "&#xZ;", "& ;", "&#;", "&l;", "&é;",
        ] {
            let whole = unescape(complete, false).unwrap_err();
            let tail = &complete[..complete.len() - 1];
            for (i, _) in tail.char_indices().skip(1) {
                if let Err(e) = check_partial_ref(&tail[..i]) {
                    assert_eq!(e.condition(), whole.condition(), "{complete} at {i}");
                }
            }
        }
        let long = format!("&#x{}41;", "0".repeat(40));
        assert!(matches!(
            unescape(&long, false),
            Err(XmlError::NotWellFormed(_))
        ));
    }
}
