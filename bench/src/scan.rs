//! The benchmark message and the receive side's accounting.
//!
//! A benchmark message is a chat message whose body is `<seq> <sent-ns> <padding>`, 100 bytes
//! in all. The receiver does not parse XML: every server under test writes the body as
//! `<body>…</body>` (possibly with attributes), and the body holds only digits, spaces and
//! `x`, so finding the body element in the byte stream is enough to count a delivery, check
//! its order and measure its latency. Everything else (presence echoes, whitespace) is skipped.
//!
//! The presence fan-out scenario needs a little more: which contact a `<presence>` came from
//! and its type, and, while rosters are built, the roster pushes and subscription requests.
//! [`StanzaScanner`] finds `<presence>` and `<iq>` elements in the byte stream and hands out
//! their start-tag attributes (and an iq's inner bytes) as slices, still without building
//! element trees: the generator must not become the bottleneck when a server delivers tens of
//! thousands of presences in a second.

use memchr::memmem;

/// Length of the message body in bytes.
pub const BODY_LEN: usize = 100;

/// Appends one benchmark message for `to` carrying `seq` and the send time `sent_ns`.
pub fn write_message(out: &mut Vec<u8>, to: &str, seq: u64, sent_ns: u64) {
    write_message_of_type(out, to, "chat", seq, sent_ns);
}

/// [`write_message`] with another message type (`groupchat` for a MUC room).
pub fn write_message_of_type(out: &mut Vec<u8>, to: &str, kind: &str, seq: u64, sent_ns: u64) {
    use std::io::Write as _;
    let _ = write!(out, "<message to='{to}' type='{kind}' id='m{seq}'><body>");
    let body_start = out.len();
    let _ = write!(out, "{seq} {sent_ns} ");
    let pad = BODY_LEN.saturating_sub(out.len() - body_start);
    out.resize(out.len() + pad, b'x');
    out.extend_from_slice(b"</body></message>");
}

/// One delivered benchmark message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Its sequence number.
    pub seq: u64,
    /// When it was sent, in ns since the generator's epoch.
    pub sent_ns: u64,
}

/// Finds benchmark bodies in a byte stream that arrives in arbitrary pieces.
///
/// With stream management ([`Scanner::with_sm`]) it also counts the stanzas received (the
/// `<message`, `<presence` and `<iq` start tags) for the `h` of its acks, and notices the
/// server's ack requests (`<r/>`) and its answers to ours (`<a/>`), in the sm namespace.
#[derive(Debug, Default)]
pub struct Scanner {
    pending: Vec<u8>,
    closed: bool,
    sm: Option<SmCount>,
}

/// The receive side's XEP-0198 counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SmCount {
    /// Stanzas received since `<enabled/>` (the `h` of the next ack, before wrapping).
    pub handled: u64,
    /// Whether an `<r/>` came in that has not been answered yet.
    pub requested: bool,
    /// `<r/>` received in all.
    pub requests: u64,
    /// `<a/>` received in all (answers to the client's own requests).
    pub acks: u64,
}

/// The stream management namespace (XEP-0198 version 3).
pub const NS_SM: &[u8] = b"urn:xmpp:sm:3";
/// The client's ack request.
pub const SM_REQUEST: &[u8] = b"<r xmlns='urn:xmpp:sm:3'/>";

/// Appends an ack of `handled` stanzas (`h` wraps at 2^32, XEP-0198 §4).
pub fn write_ack(out: &mut Vec<u8>, handled: u64) {
    use std::io::Write as _;
    let _ = write!(
        out,
        "<a xmlns='urn:xmpp:sm:3' h='{}'/>",
        handled % (1 << 32)
    );
}

const OPEN: &[u8] = b"<body";
const CLOSE: &[u8] = b"</body>";
const STREAM_END: &[u8] = b"</stream:stream>";

impl Scanner {
    /// A scanner with nothing buffered.
    pub fn new() -> Self {
        Scanner::default()
    }

    /// A scanner that also keeps the stream management counters.
    pub fn with_sm() -> Self {
        Scanner {
            sm: Some(SmCount::default()),
            ..Scanner::default()
        }
    }

    /// Whether the peer closed the stream (or sent a stream error) in what was fed so far.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// The stream management counters (`None` without [`Scanner::with_sm`]).
    pub fn sm(&self) -> Option<SmCount> {
        self.sm
    }

    /// When an `<r/>` is waiting for its answer: the stanzas handled, for the `<a h/>` that
    /// answers it (the request counts as answered from here on).
    pub fn take_request(&mut self) -> Option<u64> {
        let sm = self.sm.as_mut().filter(|sm| sm.requested)?;
        sm.requested = false;
        Some(sm.handled)
    }

    /// Feeds bytes and calls `on` for every complete benchmark body in them.
    pub fn feed(&mut self, bytes: &[u8], on: impl FnMut(Delivery)) {
        let owned;
        let data: &[u8] = if self.pending.is_empty() {
            bytes
        } else {
            self.pending.extend_from_slice(bytes);
            owned = std::mem::take(&mut self.pending);
            &owned
        };
        let keep_from = match self.sm.as_mut() {
            None => self.bodies(data, on),
            Some(sm) => scan_tags(data, sm, &mut self.closed, on),
        };
        self.pending.clear();
        self.pending.extend_from_slice(&data[keep_from..]);
    }

    /// Without stream management: a search for bodies only. Returns where the unfinished
    /// tail starts.
    fn bodies(&mut self, data: &[u8], mut on: impl FnMut(Delivery)) -> usize {
        if memmem::find(data, STREAM_END).is_some()
            || memmem::find(data, b"<stream:error").is_some()
        {
            self.closed = true;
        }
        let mut pos = 0;
        loop {
            let Some(open) = memmem::find(&data[pos..], OPEN).map(|i| pos + i) else {
                // Keep a tail that could be the start of "<body".
                break data.len().saturating_sub(OPEN.len() - 1).max(pos);
            };
            let Some(gt) = memchr::memchr(b'>', &data[open..]).map(|i| open + i + 1) else {
                break open;
            };
            let Some(close) = memmem::find(&data[gt..], CLOSE).map(|i| gt + i) else {
                break open;
            };
            if let Some(d) = parse_body(&data[gt..close]) {
                on(d);
            }
            pos = close + CLOSE.len();
        }
    }
}

/// Whether `rest` (the bytes after a `<`) starts with the element name `name`: `None` while
/// too few bytes have arrived to tell.
fn starts_name(rest: &[u8], name: &[u8]) -> Option<bool> {
    let n = name.len();
    if rest.len() <= n {
        return if name.starts_with(rest) {
            None
        } else {
            Some(false)
        };
    }
    Some(&rest[..n] == name && is_name_end(rest[n]))
}

/// With stream management: every `<` is looked at once, by its name's first byte. Counts the
/// stanza start tags, notices `<r/>`, `<a/>` and the end of the stream, and hands out the
/// bodies. Returns where the unfinished tail starts.
fn scan_tags(
    data: &[u8],
    sm: &mut SmCount,
    closed: &mut bool,
    mut on: impl FnMut(Delivery),
) -> usize {
    let mut pos = 0;
    loop {
        let Some(lt) = memchr::memchr(b'<', &data[pos..]).map(|i| pos + i) else {
            return data.len();
        };
        let rest = &data[lt + 1..];
        let name: &[u8] = match rest.first() {
            None => return lt,
            Some(b'b') => b"body",
            Some(b'm') => b"message",
            Some(b'p') => b"presence",
            Some(b'i') => b"iq",
            Some(b'r') => b"r",
            Some(b'a') => b"a",
            Some(b's') => b"stream:error",
            Some(b'/') => b"/stream:stream",
            Some(_) => {
                pos = lt + 1;
                continue;
            }
        };
        match starts_name(rest, name) {
            None => return lt,
            Some(false) => {
                pos = lt + 1;
                continue;
            }
            Some(true) => {}
        }
        let name_end = lt + 1 + name.len();
        match name {
            b"message" | b"presence" | b"iq" => {
                sm.handled += 1;
                pos = name_end;
            }
            b"stream:error" | b"/stream:stream" => {
                *closed = true;
                pos = name_end;
            }
            _ => {
                // body, r, a: the whole start tag is needed.
                let Some(gt) = memchr::memchr(b'>', &data[name_end..]).map(|i| name_end + i) else {
                    return lt;
                };
                if name == b"body" {
                    let Some(close) = memmem::find(&data[gt + 1..], CLOSE).map(|i| gt + 1 + i)
                    else {
                        return lt;
                    };
                    if let Some(d) = parse_body(&data[gt + 1..close]) {
                        on(d);
                    }
                    pos = close + CLOSE.len();
                    continue;
                }
                if memmem::find(&data[name_end..gt], NS_SM).is_some() {
                    if name == b"r" {
                        sm.requested = true;
                        sm.requests += 1;
                    } else {
                        sm.acks += 1;
                    }
                }
                pos = gt + 1;
            }
        }
    }
}

/// The benchmark body in a message's inner bytes (as [`Seen::Message`] hands them out).
pub fn delivery_in(inner: &[u8]) -> Option<Delivery> {
    let open = memmem::find(inner, OPEN)?;
    let after = &inner[open + OPEN.len()..];
    // `<body>` or `<body xml:lang='en'>`, not `<bodyguard>`.
    if !after.first().is_some_and(|b| is_name_end(*b)) {
        return None;
    }
    let gt = memchr::memchr(b'>', after)? + 1;
    let close = memmem::find(&after[gt..], CLOSE)?;
    parse_body(&after[gt..gt + close])
}

fn parse_body(body: &[u8]) -> Option<Delivery> {
    let mut parts = body.split(|b| *b == b' ');
    let seq = parse_u64(parts.next()?)?;
    let sent_ns = parse_u64(parts.next()?)?;
    Some(Delivery { seq, sent_ns })
}

fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |acc, d| {
        d.is_ascii_digit().then(|| acc * 10 + u64::from(d - b'0'))
    })
}

/// Per-direction accounting: what was sent, what arrived, in order or not.
#[derive(Debug, Default, Clone)]
pub struct Flow {
    /// Messages written.
    pub sent: u64,
    /// Messages received.
    pub received: u64,
    /// Received with a sequence number other than the next expected one (loss, duplicate or
    /// reordering).
    pub out_of_order: u64,
}

impl Flow {
    /// The sequence number of the next message to send.
    pub fn next_seq(&mut self) -> u64 {
        let s = self.sent;
        self.sent += 1;
        s
    }

    /// Messages sent and not yet received.
    pub fn in_flight(&self) -> u64 {
        self.sent.saturating_sub(self.received)
    }

    /// Records one arrival.
    pub fn arrived(&mut self, d: Delivery) {
        if d.seq != self.received {
            self.out_of_order += 1;
        }
        self.received += 1;
    }
}

/// One `<presence>`, `<iq>` or `<message>` found by [`StanzaScanner`], as raw slices of the
/// stream.
///
/// Attribute values are as written (entities are not decoded): the JIDs, ids and types the
/// scenarios look at contain no characters that a server would escape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seen<'a> {
    /// A presence stanza.
    Presence {
        /// Its `from` attribute.
        from: Option<&'a [u8]>,
        /// Its `type` attribute (absent for available presence).
        kind: Option<&'a [u8]>,
        /// The bytes between its start and end tags (empty when self-closing).
        inner: &'a [u8],
    },
    /// An iq stanza.
    Iq {
        /// Its `from` attribute.
        from: Option<&'a [u8]>,
        /// Its `id` attribute.
        id: Option<&'a [u8]>,
        /// Its `type` attribute.
        kind: Option<&'a [u8]>,
        /// The bytes between its start and end tags (empty when self-closing).
        inner: &'a [u8],
    },
    /// A message stanza. It ends at the first `</message>`, so a message that forwards
    /// another (carbons, archive results) is cut short; the scenarios use neither.
    Message {
        /// Its `from` attribute.
        from: Option<&'a [u8]>,
        /// Its `type` attribute.
        kind: Option<&'a [u8]>,
        /// The bytes between its start and end tags (empty when self-closing).
        inner: &'a [u8],
    },
}

/// Finds the `<presence>`, `<iq>` and `<message>` stanzas in a byte stream that arrives in
/// arbitrary pieces, and notices the end of the stream.
///
/// It looks at every `<` and reads the element name after it. A presence or iq is handed out
/// once its start tag and end tag (`</presence>`, `</iq>`, `</message>`) are both in; none
/// of them nests in itself in the streams the scenarios read, so the first end tag is its
/// own. Other elements (stream-management acks) are stepped over: a `<presence` inside
/// character data would be written `&lt;presence`. Attribute values must not contain a raw `>`; servers escape it, and the
/// JIDs used here have none.
#[derive(Debug, Default)]
pub struct StanzaScanner {
    pending: Vec<u8>,
    closed: bool,
}

/// An element name longer than this is not one the scanner looks for.
const MAX_NAME: usize = 32;

impl StanzaScanner {
    /// A scanner with nothing buffered.
    pub fn new() -> Self {
        StanzaScanner::default()
    }

    /// Whether the peer closed the stream (or sent a stream error) in what was fed so far.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Feeds bytes and calls `on` for every complete presence, iq and message stanza in them.
    pub fn feed(&mut self, bytes: &[u8], mut on: impl FnMut(Seen<'_>)) {
        let owned;
        let data: &[u8] = if self.pending.is_empty() {
            bytes
        } else {
            self.pending.extend_from_slice(bytes);
            owned = std::mem::take(&mut self.pending);
            &owned
        };
        let mut pos = 0;
        let keep_from = loop {
            let Some(lt) = memchr::memchr(b'<', &data[pos..]).map(|i| pos + i) else {
                break data.len();
            };
            let name_start = lt + 1;
            // An end tag's name comes after its `/`.
            let name_from = name_start + usize::from(data.get(name_start) == Some(&b'/'));
            let window = &data[name_from..data.len().min(name_from + MAX_NAME + 1)];
            let Some(name_len) = window.iter().position(|b| is_name_end(*b)) else {
                if window.len() > MAX_NAME {
                    // Too long to be a name we look for.
                    pos = name_from;
                    continue;
                }
                // The name may still be arriving.
                break lt;
            };
            let name_end = name_from + name_len;
            let end_tag: &[u8] = match &data[name_start..name_end] {
                b"presence" => b"</presence>",
                b"iq" => b"</iq>",
                b"message" => b"</message>",
                b"stream:error" | b"/stream:stream" => {
                    self.closed = true;
                    pos = name_end;
                    continue;
                }
                _ => {
                    pos = name_end;
                    continue;
                }
            };
            let Some(gt) = memchr::memchr(b'>', &data[name_end..]).map(|i| name_end + i) else {
                break lt;
            };
            let (attrs, inner, end) = match data[name_end..gt].strip_suffix(b"/") {
                Some(attrs) => (attrs, &data[gt + 1..gt + 1], gt + 1),
                None => {
                    let body = gt + 1;
                    let Some(close) = memmem::find(&data[body..], end_tag).map(|i| body + i) else {
                        break lt;
                    };
                    (
                        &data[name_end..gt],
                        &data[body..close],
                        close + end_tag.len(),
                    )
                }
            };
            let from = attr(attrs, b"from");
            on(match end_tag {
                b"</iq>" => Seen::Iq {
                    from,
                    id: attr(attrs, b"id"),
                    kind: attr(attrs, b"type"),
                    inner,
                },
                b"</message>" => Seen::Message {
                    from,
                    kind: attr(attrs, b"type"),
                    inner,
                },
                _ => Seen::Presence {
                    from,
                    kind: attr(attrs, b"type"),
                    inner,
                },
            });
            pos = end;
        };
        self.pending.clear();
        self.pending.extend_from_slice(&data[keep_from..]);
    }
}

fn is_name_end(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>')
}

/// The raw value of attribute `name` in `attrs`, the part of a start tag after the element
/// name (`name='v'` or `name="v"`, whitespace allowed around `=`). A malformed attribute list
/// ends the search.
pub fn attr<'a>(attrs: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let skip_ws = |mut i: usize| {
        while attrs.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        i
    };
    let mut i = 0;
    loop {
        i = skip_ws(i);
        let key_start = i;
        while attrs
            .get(i)
            .is_some_and(|b| *b != b'=' && !b.is_ascii_whitespace())
        {
            i += 1;
        }
        let key = &attrs[key_start..i];
        i = skip_ws(i);
        if key.is_empty() || attrs.get(i) != Some(&b'=') {
            return None;
        }
        i = skip_ws(i + 1);
        let quote = *attrs.get(i).filter(|q| matches!(q, b'\'' | b'"'))?;
        let value_start = i + 1;
        let value_len = memchr::memchr(quote, attrs.get(value_start..)?)?;
        if key == name {
            return Some(&attrs[value_start..value_start + value_len]);
        }
        i = value_start + value_len + 1;
    }
}

/// One `<item/>` of a roster query (RFC 6121 §2.1.2), as raw attribute values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RosterItem<'a> {
    /// The contact's bare JID.
    pub jid: &'a [u8],
    /// `none`, `to`, `from`, `both` or `remove`; absent means `none`.
    pub subscription: Option<&'a [u8]>,
}

/// The items of the roster query in an iq's inner bytes (a roster result or push); nothing
/// when the iq carries no `jabber:iq:roster` query.
pub fn roster_items(inner: &[u8]) -> impl Iterator<Item = RosterItem<'_>> {
    let roster = memmem::find(inner, b"jabber:iq:roster").is_some();
    let mut pos = if roster { 0 } else { inner.len() };
    std::iter::from_fn(move || {
        loop {
            let at = memmem::find(&inner[pos..], b"<item").map(|i| pos + i)?;
            let name_end = at + b"<item".len();
            let gt = memchr::memchr(b'>', &inner[name_end..]).map(|i| name_end + i)?;
            pos = gt + 1;
            if !inner.get(name_end).copied().is_some_and(is_name_end) {
                // `<items` or another name that starts the same way.
                continue;
            }
            let tag = &inner[name_end..gt];
            let attrs = tag.strip_suffix(b"/").unwrap_or(tag);
            if let Some(jid) = attr(attrs, b"jid") {
                return Some(RosterItem {
                    jid,
                    subscription: attr(attrs, b"subscription"),
                });
            }
        }
    })
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
