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
    use std::io::Write as _;
    let _ = write!(out, "<message to='{to}' type='chat' id='m{seq}'><body>");
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

/// One `<presence>` or `<iq>` found by [`StanzaScanner`], as raw slices of the stream.
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
    },
    /// An iq stanza.
    Iq {
        /// Its `id` attribute.
        id: Option<&'a [u8]>,
        /// Its `type` attribute.
        kind: Option<&'a [u8]>,
        /// The bytes between its start and end tags (empty when self-closing).
        inner: &'a [u8],
    },
}

/// Finds the `<presence>` and `<iq>` stanzas in a byte stream that arrives in arbitrary
/// pieces, and notices the end of the stream.
///
/// It looks at every `<` and reads the element name after it. A presence or iq is handed out
/// once its start tag and end tag (`</presence>`, `</iq>`) are both in; neither element
/// nests in itself in a client stream, so the first end tag is its own. Other elements
/// (messages, their children, stream-management acks) are stepped over, so their children are
/// looked at too, which is harmless: a `<presence` inside character data would be written
/// `&lt;presence`. Attribute values must not contain a raw `>`; servers escape it, and the
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

    /// Feeds bytes and calls `on` for every complete presence and iq stanza in them.
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
            on(if end_tag == b"</iq>" {
                Seen::Iq {
                    id: attr(attrs, b"id"),
                    kind: attr(attrs, b"type"),
                    inner,
                }
            } else {
                Seen::Presence {
                    from: attr(attrs, b"from"),
                    kind: attr(attrs, b"type"),
                }
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
mod tests {
    use super::*;

    fn scan_all(chunks: &[&[u8]]) -> Vec<Delivery> {
        let mut s = Scanner::new();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |d| out.push(d));
        }
        out
    }

    #[test]
    fn message_body_is_100_bytes() {
        let mut out = Vec::new();
        write_message(&mut out, "b@localhost/b", 12345, 987_654_321);
        let text = String::from_utf8(out).unwrap_or_default();
        let body = text
            .split("<body>")
            .nth(1)
            .and_then(|b| b.split("</body>").next())
            .unwrap_or_default();
        assert_eq!(body.len(), BODY_LEN);
        assert!(body.starts_with("12345 987654321 x"));
    }

    #[test]
    fn finds_bodies_split_anywhere() {
        let mut stream = b"<presence from='a@localhost/b'/>".to_vec();
        for seq in 0..3 {
            let mut m = Vec::new();
            write_message(&mut m, "a@localhost/b", seq, seq * 10);
            // Servers add from= and may add attributes to body.
            let m = String::from_utf8(m)
                .unwrap_or_default()
                .replace("<message ", "<message from='b@localhost/b' ")
                .replace("<body>", "<body xmlns='jabber:client'>");
            stream.extend_from_slice(m.as_bytes());
        }
        for split in 1..stream.len() {
            for second in [split, (split + 7).min(stream.len())] {
                let got = scan_all(&[&stream[..split], &stream[split..second], &stream[second..]]);
                let seqs: Vec<u64> = got.iter().map(|d| d.seq).collect();
                assert_eq!(seqs, vec![0, 1, 2], "split at {split}/{second}");
                assert_eq!(got[2].sent_ns, 20);
            }
        }
    }

    /// A stream with stream management on, as the servers write it: ack requests in both
    /// spellings between and after stanzas, an answer to the client's own request, a message
    /// with an extra child (an archive's stanza id), a presence and an iq.
    fn sm_stream() -> Vec<u8> {
        let mut stream = b"<presence from='a@localhost/b' to='a@localhost/b'/>".to_vec();
        for seq in 0..3 {
            let mut m = Vec::new();
            write_message(&mut m, "a@localhost/b", seq, seq * 10);
            let m = String::from_utf8(m).unwrap_or_default().replace(
                "</body>",
                "</body><stanza-id xmlns='urn:xmpp:sid:0' by='a@localhost' id='x'/>",
            );
            stream.extend_from_slice(m.as_bytes());
            stream.extend_from_slice(if seq == 1 {
                b"<r xmlns=\"urn:xmpp:sm:3\"></r>"
            } else {
                SM_REQUEST
            });
        }
        stream.extend_from_slice(b"<a xmlns='urn:xmpp:sm:3' h='7'/><iq type='get' id='p'>");
        stream.extend_from_slice(b"<ping xmlns='urn:xmpp:ping'/></iq><r xmlns='urn:xmpp:sm:3'/>");
        stream
    }

    #[test]
    fn sm_counts_stanzas_and_requests_split_anywhere() {
        let stream = sm_stream();
        for split in 0..=stream.len() {
            for second in [split, (split + 7).min(stream.len())] {
                let mut s = Scanner::with_sm();
                let mut seqs = Vec::new();
                let mut answers = Vec::new();
                for chunk in [&stream[..split], &stream[split..second], &stream[second..]] {
                    s.feed(chunk, |d| seqs.push(d.seq));
                    answers.extend(s.take_request());
                }
                assert_eq!(seqs, vec![0, 1, 2], "split at {split}/{second}");
                let sm = s.sm().unwrap_or_default();
                assert_eq!(sm.handled, 5, "split at {split}/{second}");
                assert_eq!(sm.requests, 4, "split at {split}/{second}");
                assert_eq!(sm.acks, 1, "split at {split}/{second}");
                assert!(!sm.requested && !s.closed());
                // Every request is answered, with at least the stanzas before it, and the
                // last answer covers everything.
                assert!(!answers.is_empty() && answers.len() <= 3);
                assert_eq!(answers.last(), Some(&5), "split at {split}/{second}");
            }
        }
    }

    #[test]
    fn sm_byte_by_byte_answers_each_request_with_the_count_before_it() {
        let mut s = Scanner::with_sm();
        let mut answers = Vec::new();
        for b in sm_stream() {
            s.feed(&[b], |_| {});
            answers.extend(s.take_request());
            assert!(s.pending.len() < 200, "{}", s.pending.len());
        }
        assert_eq!(answers, vec![2, 3, 4, 5]);
    }

    #[test]
    fn sm_names_that_only_start_like_ours_are_not_counted() {
        let mut s = Scanner::with_sm();
        s.feed(
            b"<iqx/><messages/><rr xmlns='urn:xmpp:sm:3'/><r xmlns='other'/><a/><presences/>",
            |_| {},
        );
        assert_eq!(s.sm(), Some(SmCount::default()));
        s.feed(b"<stream:error><conflict/></stream:error>", |_| {});
        assert!(s.closed());
        let mut t = Scanner::with_sm();
        t.feed(b"<message/></stream:stream>", |_| {});
        assert!(t.closed());
        assert_eq!(t.sm().map(|sm| sm.handled), Some(1));
    }

    #[test]
    fn acks_wrap_at_2_to_the_32() {
        let mut out = Vec::new();
        write_ack(&mut out, (1 << 32) + 3);
        assert_eq!(out, b"<a xmlns='urn:xmpp:sm:3' h='3'/>");
    }

    #[test]
    fn notices_the_end_of_the_stream() {
        let mut s = Scanner::new();
        s.feed(
            b"<stream:error><conflict/></stream:error></stream:stream>",
            |_| {},
        );
        assert!(s.closed());
    }

    #[test]
    fn accounting_counts_in_flight_and_order() {
        let mut f = Flow::default();
        for _ in 0..5 {
            f.next_seq();
        }
        assert_eq!(f.in_flight(), 5);
        f.arrived(Delivery { seq: 0, sent_ns: 0 });
        f.arrived(Delivery { seq: 2, sent_ns: 0 });
        assert_eq!(f.in_flight(), 3);
        assert_eq!(f.out_of_order, 1);
    }

    /// What the stanza scanner saw, owned, for comparisons.
    #[derive(Debug, PartialEq, Eq)]
    enum Got {
        Presence(Option<String>, Option<String>),
        Iq(Option<String>, Option<String>, String),
    }

    fn text(b: Option<&[u8]>) -> Option<String> {
        b.map(|b| String::from_utf8_lossy(b).into_owned())
    }

    fn stanzas(chunks: &[&[u8]]) -> (Vec<Got>, bool) {
        let mut s = StanzaScanner::new();
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, |seen| {
                out.push(match seen {
                    Seen::Presence { from, kind } => Got::Presence(text(from), text(kind)),
                    Seen::Iq { id, kind, inner } => Got::Iq(
                        text(id),
                        text(kind),
                        String::from_utf8_lossy(inner).into_owned(),
                    ),
                })
            });
        }
        (out, s.closed())
    }

    /// A stream as the three servers write it: self-closing and full presences with
    /// children, both quote styles, a message with a body, a roster push, whitespace.
    const STREAM: &str = "<presence from='u1@localhost/b' to='u0@localhost/b'>\
        <priority>0</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1'/>\
        </presence> <message from='u2@localhost/b' type='chat'><body>hi</body></message>\
        <presence type=\"unavailable\" from=\"u3@localhost\"/>\n\
        <iq type='set' id='push1' to='u0@localhost/b'><query xmlns='jabber:iq:roster' \
        ver='3'><item subscription='both' jid='u4@localhost'><group>g</group></item></query>\
        </iq><presence from='u5@localhost' type='subscribe' to='u0@localhost'/>\
        <iq id='r' type='result'/>";

    fn expected() -> Vec<Got> {
        let s = |v: &str| Some(v.to_owned());
        vec![
            Got::Presence(s("u1@localhost/b"), None),
            Got::Presence(s("u3@localhost"), s("unavailable")),
            Got::Iq(
                s("push1"),
                s("set"),
                "<query xmlns='jabber:iq:roster' ver='3'><item subscription='both' \
                 jid='u4@localhost'><group>g</group></item></query>"
                    .to_owned(),
            ),
            Got::Presence(s("u5@localhost"), s("subscribe")),
            Got::Iq(s("r"), s("result"), String::new()),
        ]
    }

    #[test]
    fn finds_presences_and_iqs_split_anywhere() {
        let stream = STREAM.as_bytes();
        assert_eq!(stanzas(&[stream]), (expected(), false));
        for split in 1..stream.len() {
            for second in [split, (split + 5).min(stream.len())] {
                let got = stanzas(&[&stream[..split], &stream[split..second], &stream[second..]]);
                assert_eq!(got, (expected(), false), "split at {split}/{second}");
            }
        }
    }

    #[test]
    fn one_byte_at_a_time_keeps_little_buffered() {
        let mut s = StanzaScanner::new();
        let mut n = 0;
        for b in STREAM.as_bytes() {
            s.feed(std::slice::from_ref(b), |_| n += 1);
            // Only an unfinished presence or iq (the push is the longest) is held back.
            assert!(s.pending.len() < 200, "{}", s.pending.len());
        }
        assert_eq!(n, expected().len());
        assert!(s.pending.is_empty());
    }

    #[test]
    fn stanza_scanner_notices_the_end_of_the_stream() {
        assert!(stanzas(&[b"<presence from='a'/></stream:stream>"]).1);
        let (got, closed) = stanzas(&[b"<stream:error><conflict xmlns='x'/></stream:error>"]);
        assert!(closed && got.is_empty());
        assert!(!stanzas(&[b"<presence from='a'/><presence"]).1);
    }

    #[test]
    fn names_that_only_start_like_ours_are_skipped() {
        let (got, _) = stanzas(&[b"<presences from='x'/><iqx id='y'/><iq id='z'/>"]);
        assert_eq!(got, vec![Got::Iq(Some("z".into()), None, String::new())]);
    }

    #[test]
    fn attributes_in_both_quote_styles_and_with_spaces() {
        let attrs = b" id='a' from = \"u1@localhost/b\"\ttype='x'";
        assert_eq!(attr(attrs, b"from"), Some(&b"u1@localhost/b"[..]));
        assert_eq!(attr(attrs, b"type"), Some(&b"x"[..]));
        assert_eq!(attr(attrs, b"id"), Some(&b"a"[..]));
        assert_eq!(attr(attrs, b"to"), None);
        // A name that ends like the one asked for is another attribute.
        assert_eq!(attr(b" xfrom='a'", b"from"), None);
        // Malformed lists end the search instead of panicking.
        for bad in [&b" from"[..], b" from=", b" from='x", b" from=x", b"="] {
            assert_eq!(attr(bad, b"from"), None);
        }
    }

    #[test]
    fn roster_items_of_results_and_pushes() {
        let inner = b"<query xmlns='jabber:iq:roster'><item jid='u1@localhost' \
            subscription='both'/><item jid='u2@localhost' ask='subscribe'><group>x</group>\
            </item><items/></query>";
        let items: Vec<_> = roster_items(inner).collect();
        assert_eq!(
            items,
            vec![
                RosterItem {
                    jid: b"u1@localhost",
                    subscription: Some(b"both"),
                },
                RosterItem {
                    jid: b"u2@localhost",
                    subscription: None,
                },
            ]
        );
        assert_eq!(roster_items(b"<ping xmlns='urn:xmpp:ping'/>").count(), 0);
        assert_eq!(
            roster_items(b"<query xmlns='jabber:iq:roster'/>").count(),
            0
        );
    }
}
