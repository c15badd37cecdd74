//! The server side of RFC 6455 framing, sans-IO: bytes in, whole messages and control frames
//! out; and the frames we send.
//!
//! Why our own codec rather than tungstenite's: an XMPP-over-WebSocket connection is idle most
//! of its life, and tungstenite keeps a read buffer (and a write buffer) per connection for
//! as long as it lives, and has no limit on the number of fragments of a message. Here the
//! decoder holds bytes only while a frame or a fragmented message is incomplete, and frees
//! them once it is whole; and every limit is checked from a frame's header, before its
//! payload is buffered:
//!
//! - a frame, or a message assembled from fragments, longer than `max_message` is refused
//!   with 1009 (RFC 6455 §7.4.1, "message too big");
//! - a message in more than `max_fragments` frames is refused with 1008 (policy violation),
//!   so that a flood of one-byte continuation frames costs a bounded amount of work and
//!   memory;
//! - unmasked client frames, reserved bits (no extension is negotiated), unknown opcodes,
//!   fragmented or oversized control frames and continuation frames out of place are 1002
//!   (protocol error, §5.1–§5.5); a text message that is not UTF-8 is 1007 (§8.1).

use thiserror::Error;

/// Close codes of RFC 6455 §7.4.1 that we send.
pub mod code {
    /// Normal closure.
    pub const NORMAL: u16 = 1000;
    /// The server is going away (shutdown).
    pub const GOING_AWAY: u16 = 1001;
    /// The peer broke the framing protocol.
    pub const PROTOCOL: u16 = 1002;
    /// A data type we do not accept (binary frames: RFC 7395 "WebSocket Messages" uses text).
    pub const UNSUPPORTED: u16 = 1003;
    /// A text message that is not UTF-8.
    pub const INVALID_DATA: u16 = 1007;
    /// A message that breaks a policy (too many fragments).
    pub const POLICY: u16 = 1008;
    /// A message too big to process.
    pub const TOO_BIG: u16 = 1009;
}

/// Why the decoder refused the input; the connection is closed with [`FrameError::code`].
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum FrameError {
    /// A framing rule of RFC 6455 §5 was broken.
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A frame or message is longer than the limit.
    #[error("message of at least {len} bytes is over the limit of {limit}")]
    TooBig {
        /// The length announced so far.
        len: u64,
        /// The limit.
        limit: usize,
    },
    /// A message came in more frames than the limit.
    #[error("message in more than {0} fragments")]
    TooManyFragments(usize),
    /// A text message is not UTF-8.
    #[error("text message is not UTF-8")]
    InvalidUtf8,
}

impl FrameError {
    /// The close code that tells the peer why.
    pub fn code(&self) -> u16 {
        match self {
            FrameError::Protocol(_) => code::PROTOCOL,
            FrameError::TooBig { .. } => code::TOO_BIG,
            FrameError::TooManyFragments(_) => code::POLICY,
            FrameError::InvalidUtf8 => code::INVALID_DATA,
        }
    }
}

/// What the decoder produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete text message (one frame, or its fragments joined), UTF-8 checked.
    Text(Vec<u8>),
    /// A complete binary message.
    Binary(Vec<u8>),
    /// A ping, to be answered with a pong carrying the same payload.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// The peer closes, with its code if it gave one.
    Close(Option<u16>),
}

/// Limits of the decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameLimits {
    /// Longest message (the payload of one frame, or of all fragments of a message).
    pub max_message: usize,
    /// Most frames one message may be split into.
    pub max_fragments: usize,
}

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// A data message being assembled from fragments.
#[derive(Debug)]
struct Partial {
    opcode: u8,
    payload: Vec<u8>,
    fragments: usize,
}

/// Decodes a client's frames (RFC 6455 §5.2).
#[derive(Debug)]
pub struct Decoder {
    limits: FrameLimits,
    /// Received bytes of an incomplete frame; empty (unallocated) between frames.
    buf: Vec<u8>,
    /// A fragmented message waiting for its last frame (boxed: rare, and idle connections
    /// should not carry its room).
    partial: Option<Box<Partial>>,
    failed: bool,
}

impl Decoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: FrameLimits) -> Self {
        Decoder {
            limits,
            buf: Vec::new(),
            partial: None,
            failed: false,
        }
    }

    /// Whether nothing is buffered (for memory accounting and tests).
    pub fn is_idle(&self) -> bool {
        self.buf.capacity() == 0 && self.partial.is_none()
    }

    /// Decodes `bytes` (following what was fed before) and appends every complete frame to
    /// `out`. After an error nothing more is decoded.
    pub fn feed(&mut self, bytes: &[u8], out: &mut Vec<Frame>) -> Result<(), FrameError> {
        if self.failed {
            return Ok(());
        }
        let result = if self.buf.is_empty() {
            // The common case: whole frames in one read are decoded from the read itself.
            let used = self.decode_from(bytes, out);
            used.map(|used| {
                if let Some(rest) = bytes.get(used..).filter(|r| !r.is_empty()) {
                    self.buf.extend_from_slice(rest);
                }
            })
        } else {
            self.buf.extend_from_slice(bytes);
            let buf = std::mem::take(&mut self.buf);
            let used = self.decode_from(&buf, out);
            used.map(|used| {
                if let Some(rest) = buf.get(used..).filter(|r| !r.is_empty()) {
                    self.buf = rest.to_vec();
                }
            })
        };
        if result.is_err() {
            self.failed = true;
            self.buf = Vec::new();
            self.partial = None;
        }
        result
    }

    /// Decodes whole frames from the start of `bytes`; returns how many bytes they used. The
    /// limits are checked on each header, so an incomplete frame left over is within them.
    fn decode_from(&mut self, bytes: &[u8], out: &mut Vec<Frame>) -> Result<usize, FrameError> {
        let mut used = 0;
        loop {
            let rest = bytes.get(used..).unwrap_or_default();
            let Some(header) = self.header(rest)? else {
                return Ok(used);
            };
            let end = header.len + header.payload_len;
            let Some(frame) = rest.get(..end) else {
                return Ok(used);
            };
            let mut payload = frame.get(header.len..).unwrap_or_default().to_vec();
            unmask(&mut payload, header.mask);
            used += end;
            if let Some(frame) = self.complete(header.fin, header.opcode, payload)? {
                out.push(frame);
            }
        }
    }

    /// Parses and checks the header at the start of `bytes`; `None` until it is complete.
    fn header(&self, bytes: &[u8]) -> Result<Option<Header>, FrameError> {
        let (Some(&b0), Some(&b1)) = (bytes.first(), bytes.get(1)) else {
            return Ok(None);
        };
        let fin = b0 & 0x80 != 0;
        if b0 & 0x70 != 0 {
            return Err(FrameError::Protocol("reserved bits set"));
        }
        let opcode = b0 & 0x0F;
        if b1 & 0x80 == 0 {
            return Err(FrameError::Protocol("client frames must be masked"));
        }
        let (payload_len, at) = match b1 & 0x7F {
            126 => match bytes.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match bytes.get(2..10).and_then(|b| <[u8; 8]>::try_from(b).ok()) {
                Some(b) => (u64::from_be_bytes(b), 10),
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        match opcode {
            OP_CLOSE | OP_PING | OP_PONG => {
                if !fin || payload_len > 125 {
                    return Err(FrameError::Protocol("control frames are short and whole"));
                }
            }
            OP_CONTINUATION | OP_TEXT | OP_BINARY => {
                let partial = self.partial.as_ref();
                match (opcode, partial) {
                    (OP_CONTINUATION, None) => {
                        return Err(FrameError::Protocol("continuation without a message"));
                    }
                    (OP_TEXT | OP_BINARY, Some(_)) => {
                        return Err(FrameError::Protocol("new message inside a fragmented one"));
                    }
                    _ => {}
                }
                let so_far = partial.map_or(0, |p| p.payload.len() as u64);
                let len = so_far.saturating_add(payload_len);
                if len > self.limits.max_message as u64 {
                    return Err(FrameError::TooBig {
                        len,
                        limit: self.limits.max_message,
                    });
                }
                if partial.is_some_and(|p| p.fragments >= self.limits.max_fragments) {
                    return Err(FrameError::TooManyFragments(self.limits.max_fragments));
                }
            }
            _ => return Err(FrameError::Protocol("unknown opcode")),
        }
        let Some(mask) = bytes
            .get(at..at + 4)
            .and_then(|m| <[u8; 4]>::try_from(m).ok())
        else {
            return Ok(None);
        };
        // Within max_message (checked above), so it fits a usize.
        let payload_len = usize::try_from(payload_len)
            .map_err(|_| FrameError::Protocol("frame length does not fit"))?;
        Ok(Some(Header {
            fin,
            opcode,
            mask,
            len: at + 4,
            payload_len,
        }))
    }

    /// A whole frame: a control frame, a complete message, or one more fragment.
    fn complete(
        &mut self,
        fin: bool,
        opcode: u8,
        payload: Vec<u8>,
    ) -> Result<Option<Frame>, FrameError> {
        let (opcode, payload) = match opcode {
            OP_PING => return Ok(Some(Frame::Ping(payload))),
            OP_PONG => return Ok(Some(Frame::Pong)),
            OP_CLOSE => {
                let code = match payload.as_slice() {
                    [] => None,
                    [a, b, reason @ ..] => {
                        if std::str::from_utf8(reason).is_err() {
                            return Err(FrameError::InvalidUtf8);
                        }
                        Some(u16::from_be_bytes([*a, *b]))
                    }
                    [_] => return Err(FrameError::Protocol("close payload of one byte")),
                };
                return Ok(Some(Frame::Close(code)));
            }
            OP_CONTINUATION => {
                let Some(mut partial) = self.partial.take() else {
                    return Err(FrameError::Protocol("continuation without a message"));
                };
                partial.payload.extend_from_slice(&payload);
                partial.fragments += 1;
                if !fin {
                    self.partial = Some(partial);
                    return Ok(None);
                }
                (partial.opcode, partial.payload)
            }
            _ if !fin => {
                self.partial = Some(Box::new(Partial {
                    opcode,
                    payload,
                    fragments: 1,
                }));
                return Ok(None);
            }
            _ => (opcode, payload),
        };
        if opcode == OP_BINARY {
            return Ok(Some(Frame::Binary(payload)));
        }
        if std::str::from_utf8(&payload).is_err() {
            return Err(FrameError::InvalidUtf8);
        }
        Ok(Some(Frame::Text(payload)))
    }
}

#[derive(Debug)]
struct Header {
    fin: bool,
    opcode: u8,
    mask: [u8; 4],
    /// Bytes of the header itself.
    len: usize,
    payload_len: usize,
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// Appends an unmasked (server) frame with `payload`.
fn push_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xFFFF => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

/// Appends a text frame.
pub fn text(out: &mut Vec<u8>, payload: &[u8]) {
    push_frame(out, OP_TEXT, payload);
}

/// Appends a ping frame.
pub fn ping(out: &mut Vec<u8>) {
    push_frame(out, OP_PING, b"");
}

/// Appends a pong answering a ping with `payload`.
pub fn pong(out: &mut Vec<u8>, payload: &[u8]) {
    push_frame(out, OP_PONG, payload);
}

/// Appends a close frame with `code`.
pub fn close(out: &mut Vec<u8>, code: u16) {
    push_frame(out, OP_CLOSE, &code.to_be_bytes());
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
