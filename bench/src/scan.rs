//! The benchmark message and the receive side's accounting.
//!
//! A benchmark message is a chat message whose body is `<seq> <sent-ns> <padding>`, 100 bytes
//! in all. The receiver does not parse XML: every server under test writes the body as
//! `<body>…</body>` (possibly with attributes), and the body holds only digits, spaces and
//! `x`, so finding the body element in the byte stream is enough to count a delivery, check
//! its order and measure its latency. Everything else (presence echoes, whitespace) is skipped.

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
#[derive(Debug, Default)]
pub struct Scanner {
    pending: Vec<u8>,
    closed: bool,
}

const OPEN: &[u8] = b"<body";
const CLOSE: &[u8] = b"</body>";
const STREAM_END: &[u8] = b"</stream:stream>";

impl Scanner {
    /// A scanner with nothing buffered.
    pub fn new() -> Self {
        Scanner::default()
    }

    /// Whether the peer closed the stream (or sent a stream error) in what was fed so far.
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Feeds bytes and calls `on` for every complete benchmark body in them.
    pub fn feed(&mut self, bytes: &[u8], mut on: impl FnMut(Delivery)) {
        let owned;
        let data: &[u8] = if self.pending.is_empty() {
            bytes
        } else {
            self.pending.extend_from_slice(bytes);
            owned = std::mem::take(&mut self.pending);
            &owned
        };
        if memmem::find(data, STREAM_END).is_some()
            || memmem::find(data, b"<stream:error").is_some()
        {
            self.closed = true;
        }
        let mut pos = 0;
        let keep_from = loop {
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
        };
        self.pending.clear();
        self.pending.extend_from_slice(&data[keep_from..]);
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
}
