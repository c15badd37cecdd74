//! The generator's side of the WebSocket framing (RFC 6455 §5): client frames out (masked,
//! §5.3), server frames in (unmasked, §5.1), and the splitting of what a scenario writes into
//! one complete stanza per text frame (RFC 7395 §3.3.3).
//!
//! A load generator only needs a small part of RFC 6455, but it needs it cheap: a message is
//! masked eight bytes at a time, and the decoder hands the payloads of data frames on as one
//! byte stream (the server's stanzas, one after the other) to the byte scanner, without
//! building messages: a stanza split over frames or over reads is just bytes arriving in
//! pieces, which the scanner already handles.

use thiserror::Error;

/// Continuation frame (§5.2).
pub const OP_CONTINUATION: u8 = 0x0;
/// Text frame.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Connection close.
pub const OP_CLOSE: u8 = 0x8;
/// Ping.
pub const OP_PING: u8 = 0x9;
/// Pong.
pub const OP_PONG: u8 = 0xA;

/// The largest frame payload the decoder accepts from a server; more is an error, not memory.
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// What is wrong with a server's frames.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// A reserved bit is set, but no extension was negotiated (§5.2).
    #[error("a reserved bit is set (RSV1-3) without a negotiated extension")]
    Reserved,
    /// The server masked a frame (§5.1: the client closes the connection).
    #[error("the server masked a frame")]
    Masked,
    /// An opcode RFC 6455 reserves.
    #[error("reserved opcode {0:#x}")]
    Opcode(u8),
    /// A control frame longer than 125 bytes or fragmented (§5.5).
    #[error("a control frame is fragmented or longer than 125 bytes")]
    Control,
    /// A continuation frame with no message to continue, or a new message before the last
    /// one ended (§5.4).
    #[error("fragments out of order")]
    Fragments,
    /// A 64-bit length with its most significant bit set (§5.2), or over [`MAX_PAYLOAD`].
    #[error("a frame of {0} bytes")]
    TooLong(u64),
}

/// The masking keys of one connection: a fast generator (wyrand) seeded from the operating
/// system's random source, so that the keys cannot be predicted from outside as §5.3 requires
/// while a key costs a multiplication; the masking cost is the client's, and the generator
/// must stay cheaper than the servers it measures.
#[derive(Debug, Clone)]
pub struct MaskKeys(u64);

impl MaskKeys {
    /// Keys seeded from the OS (`getrandom`).
    pub fn from_os() -> std::io::Result<Self> {
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).map_err(std::io::Error::other)?;
        Ok(MaskKeys(u64::from_le_bytes(seed)))
    }

    /// Keys from a fixed seed (tests).
    pub fn from_seed(seed: u64) -> Self {
        MaskKeys(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = u128::from(self.0) * u128::from(self.0 ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    }

    /// The next masking key.
    pub fn next_key(&mut self) -> [u8; 4] {
        let v = self.next_u64();
        [v as u8, (v >> 8) as u8, (v >> 16) as u8, (v >> 24) as u8]
    }
}

/// XORs `data` with `key` repeated (§5.3), `data[0]` with `key[0]`; eight bytes at a time.
pub fn apply_mask(data: &mut [u8], key: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ wide).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= key[i % 4];
    }
}

/// Appends one final, masked client frame of `opcode` carrying `payload` (§5.2: the length in
/// 7, 16 or 64 bits, whichever is shortest).
pub fn encode(out: &mut Vec<u8>, opcode: u8, payload: &[u8], key: [u8; 4]) {
    header(out, opcode, payload.len(), key);
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key);
}

/// The header of a final, masked frame of `len` bytes, its key included.
fn header(out: &mut Vec<u8>, opcode: u8, len: usize, key: [u8; 4]) {
    out.push(0x80 | opcode);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(short) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&short.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&key);
}

/// Appends `element` as one masked text frame, with `xmlns='jabber:client'` added to the start
/// tag of a stanza (`message`, `presence`, `iq`) that declares no namespace: over WebSocket
/// each message is an element of its own, and RFC 7395 §3.3.3 has stanzas carry the content
/// namespace themselves (Prosody refuses one without it, `unsupported-stanza-type`), where
/// over TCP they inherit it from the stream header.
pub fn encode_element(out: &mut Vec<u8>, element: &[u8], key: [u8; 4]) {
    const NS: &[u8] = b" xmlns='jabber:client'";
    let name_end = element
        .iter()
        .position(|&b| matches!(b, b' ' | b'/' | b'>' | b'\t' | b'\n' | b'\r'))
        .unwrap_or(element.len());
    let stanza = matches!(
        &element[1.min(name_end)..name_end],
        b"message" | b"presence" | b"iq"
    );
    let tag_end = memchr::memchr(b'>', element).unwrap_or(element.len());
    if !stanza || memchr::memmem::find(&element[..tag_end], b"xmlns=").is_some() {
        encode(out, OP_TEXT, element, key);
        return;
    }
    header(out, OP_TEXT, element.len() + NS.len(), key);
    let start = out.len();
    out.extend_from_slice(&element[..name_end]);
    out.extend_from_slice(NS);
    out.extend_from_slice(&element[name_end..]);
    apply_mask(&mut out[start..], key);
}

/// A control frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// Ping with its application data, to be echoed in a pong (§5.5.2).
    Ping(Vec<u8>),
    /// Pong (unsolicited or not), ignored.
    Pong,
    /// Close with its status code, if it has one (§5.5.1).
    Close(Option<u16>),
}

/// Decodes server frames from a byte buffer the connection reads into.
#[derive(Debug)]
pub struct Decoder {
    raw: Vec<u8>,
    start: usize,
    end: usize,
    /// A fragmented data message is under way.
    in_message: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::with_capacity(16 * 1024)
    }
}

impl Decoder {
    /// A decoder whose read buffer starts at `capacity` bytes (it grows for a larger frame,
    /// up to [`MAX_PAYLOAD`] and its header).
    pub fn with_capacity(capacity: usize) -> Self {
        Decoder {
            raw: vec![0; capacity.max(64)],
            start: 0,
            end: 0,
            in_message: false,
        }
    }

    /// Room to read into, at least a quarter of the buffer; call [`Decoder::filled`] with
    /// what was read.
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.raw.len() - self.end < self.raw.len() / 4 {
            self.raw.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.raw[self.end..]
    }

    /// `n` bytes were read into [`Decoder::spare`].
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.raw.len());
    }

    /// Copies `bytes` in (bytes read before the decoder existed, and tests).
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let spare = self.spare();
            let n = spare.len().min(bytes.len());
            spare[..n].copy_from_slice(&bytes[..n]);
            self.filled(n);
            bytes = &bytes[n..];
            if n == 0 {
                self.grow(bytes.len());
            }
        }
    }

    fn grow(&mut self, at_least: usize) {
        let want = (self.end - self.start + at_least).max(self.raw.len() * 2);
        self.raw.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        self.raw
            .resize(want.min(MAX_PAYLOAD + 14).max(self.raw.len()), 0);
    }

    /// Decodes the complete frames buffered: appends the payloads of data frames to `data`
    /// and stops at the first control frame, which it returns; `None` when what is left is
    /// not a whole frame (the buffer then has room for the rest of it).
    pub fn next(&mut self, data: &mut Vec<u8>) -> Result<Option<Control>, FrameError> {
        loop {
            let avail = &self.raw[self.start..self.end];
            if avail.len() < 2 {
                return Ok(None);
            }
            let (b0, b1) = (avail[0], avail[1]);
            if b0 & 0x70 != 0 {
                return Err(FrameError::Reserved);
            }
            if b1 & 0x80 != 0 {
                return Err(FrameError::Masked);
            }
            let fin = b0 & 0x80 != 0;
            let opcode = b0 & 0x0f;
            let (len, header) = match b1 & 0x7f {
                126 if avail.len() >= 4 => (u64::from(u16::from_be_bytes([avail[2], avail[3]])), 4),
                127 if avail.len() >= 10 => {
                    let mut l = [0u8; 8];
                    l.copy_from_slice(&avail[2..10]);
                    (u64::from_be_bytes(l), 10)
                }
                126 | 127 => return Ok(None),
                n => (u64::from(n), 2),
            };
            let len = usize::try_from(len)
                .ok()
                .filter(|&l| l <= MAX_PAYLOAD)
                .ok_or(FrameError::TooLong(len))?;
            if opcode >= OP_CLOSE && (!fin || len > 125) {
                return Err(FrameError::Control);
            }
            if avail.len() < header + len {
                if self.raw.len() < header + len {
                    self.grow(header + len);
                }
                return Ok(None);
            }
            let payload = &avail[header..header + len];
            self.start += header + len;
            match opcode {
                OP_CONTINUATION | OP_TEXT | OP_BINARY => {
                    if (opcode == OP_CONTINUATION) != self.in_message {
                        return Err(FrameError::Fragments);
                    }
                    self.in_message = !fin;
                    data.extend_from_slice(payload);
                }
                OP_CLOSE => {
                    let code = (len >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    return Ok(Some(Control::Close(code)));
                }
                OP_PING => return Ok(Some(Control::Ping(payload.to_vec()))),
                OP_PONG => return Ok(Some(Control::Pong)),
                other => return Err(FrameError::Opcode(other)),
            }
        }
    }
}

/// Cuts what a scenario writes into top-level XML elements, one text frame each (RFC 7395
/// §3.3.3: a message holds exactly one complete stanza or stream-level element).
///
/// It reads only what the generator itself writes (its own stanzas: no comments, CDATA or
/// processing instructions; text escaped; `>` allowed in attribute values), so it follows
/// tags, quotes and depth and nothing else. Bytes between top-level elements (whitespace)
/// are dropped; an element split over writes waits for its end.
#[derive(Debug, Default)]
pub struct Splitter {
    pending: Vec<u8>,
    depth: u32,
    state: State,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Text,
    /// Just after `<`.
    Open,
    /// Inside a start tag (`slash`: the last byte was `/`).
    Start { slash: bool },
    /// Inside an end tag.
    End,
    /// Inside a quoted attribute value of a start tag.
    Quoted(u8),
}

impl Splitter {
    /// Calls `element` with each top-level element that `bytes` completes.
    pub fn split(&mut self, bytes: &[u8], mut element: impl FnMut(&[u8])) {
        // An element begun in an earlier call (its first bytes in `pending`) is under way.
        let mut carried = self.depth > 0 || self.state != State::Text;
        // Where the current element began in `bytes`, when it began in this call.
        let mut begin = None;
        for (i, &b) in bytes.iter().enumerate() {
            let was_outside = self.depth == 0 && self.state == State::Text;
            self.state = match (self.state, b) {
                (State::Text, b'<') => State::Open,
                (State::Text, _) => State::Text,
                (State::Open, b'/') => State::End,
                (State::Open, b'>') => State::Text,
                (State::Open | State::Start { .. }, b'"' | b'\'') => State::Quoted(b),
                (State::Start { .. }, b'>') => {
                    if !matches!(self.state, State::Start { slash: true }) {
                        self.depth += 1;
                    }
                    State::Text
                }
                (State::Open | State::Start { .. }, _) => State::Start { slash: b == b'/' },
                (State::End, b'>') => {
                    self.depth = self.depth.saturating_sub(1);
                    State::Text
                }
                (State::End, _) => State::End,
                (State::Quoted(q), _) if b == q => State::Start { slash: false },
                (State::Quoted(q), _) => State::Quoted(q),
            };
            if was_outside && self.state == State::Open {
                begin = Some(i);
                carried = false;
            }
            let outside = self.depth == 0 && self.state == State::Text;
            if outside && !was_outside {
                if carried {
                    self.pending.extend_from_slice(&bytes[..=i]);
                    element(&self.pending);
                    self.pending.clear();
                    carried = false;
                } else if let Some(s) = begin {
                    element(&bytes[s..=i]);
                }
                begin = None;
            }
        }
        if carried {
            self.pending.extend_from_slice(bytes);
        } else if let Some(s) = begin {
            self.pending.extend_from_slice(&bytes[s..]);
        }
    }
}
