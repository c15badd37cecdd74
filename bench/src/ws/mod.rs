//! XMPP over WebSocket (RFC 7395) for the generator: the opening handshake (RFC 6455 §4.1,
//! with the `xmpp` subprotocol of RFC 7395 §3.2) and [`WsStream`], a byte stream over a
//! WebSocket connection, so that negotiation and every scenario run over `wss://` as they run
//! over TCP.
//!
//! What a scenario writes is cut into top-level elements, one masked text frame each
//! ([`frame::Splitter`]); what it reads is the payloads of the server's data frames, one after
//! the other, fed to the same byte scanner as a TCP stream. Pings are answered with pongs as
//! they are read; a close frame is echoed once and reads as the end of the stream.

pub mod frame;
#[cfg(test)]
mod tests;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest as _, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};

use frame::{Control, Decoder, MaskKeys, Splitter};

/// The namespace of `<open/>` and `<close/>` (RFC 7395 §3.3.2).
pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

/// The GUID of the accept key (RFC 6455 §1.3).
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The largest response head to the upgrade request.
const MAX_HEAD: usize = 16 * 1024;

/// Encoded frames held back by a slow socket before writes wait.
const MAX_UNSENT: usize = 256 * 1024;

/// `Sec-WebSocket-Accept` for `key` (RFC 6455 §4.2.2 step 5.4).
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(ACCEPT_GUID.as_bytes());
    STANDARD.encode(h.finalize())
}

/// Sends the upgrade request for `path` on `host` over `io` and checks the answer: status
/// 101, the accept key of this request's nonce and the `xmpp` subprotocol (RFC 7395 §3.2:
/// without it the client fails the connection). Returns the stream, with any frame bytes that
/// came with the answer already in its decoder.
pub async fn connect<S>(mut io: S, host: &str, path: &str) -> anyhow::Result<WsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut keys = MaskKeys::from_os()?;
    let nonce = [keys.next_u64().to_le_bytes(), keys.next_u64().to_le_bytes()].concat();
    let key = STANDARD.encode(nonce);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: xmpp\r\n\r\n"
    );
    io.write_all(request.as_bytes()).await?;
    io.flush().await?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 2048];
    let end = loop {
        if let Some(at) = memchr::memmem::find(&head, b"\r\n\r\n") {
            break at + 4;
        }
        if head.len() > MAX_HEAD {
            bail!("the upgrade answer's head is over {MAX_HEAD} bytes");
        }
        let n = io
            .read(&mut buf)
            .await
            .context("reading the upgrade answer")?;
        if n == 0 {
            bail!("the server closed the connection before answering the upgrade");
        }
        head.extend_from_slice(&buf[..n]);
    };
    check_answer(&head[..end], &accept_key(&key))?;
    let mut ws = WsStream::new(io, keys);
    ws.decoder.feed(&head[end..]);
    Ok(ws)
}

/// Checks an upgrade answer's head (status line and headers, up to the blank line).
fn check_answer(head: &[u8], accept: &str) -> anyhow::Result<()> {
    let text = std::str::from_utf8(head).context("the upgrade answer is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code = status.split(' ').nth(1).unwrap_or_default();
    if code != "101" {
        bail!(
            "the upgrade was refused: {}",
            status.chars().take(80).collect::<String>()
        );
    }
    let (mut accepted, mut protocol) = (false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("sec-websocket-accept") {
            accepted = value == accept;
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            protocol = value.eq_ignore_ascii_case("xmpp");
        }
    }
    if !accepted {
        bail!("the upgrade answer has no Sec-WebSocket-Accept for this key");
    }
    if !protocol {
        bail!("the server did not agree to the xmpp subprotocol");
    }
    Ok(())
}

/// A byte stream over a client WebSocket connection (see the module documentation).
#[derive(Debug)]
pub struct WsStream<S> {
    io: S,
    decoder: Decoder,
    /// Payload bytes decoded but not yet read, from `data_at` on.
    data: Vec<u8>,
    data_at: usize,
    splitter: Splitter,
    /// Frames encoded but not yet written, from `out_at` on.
    out: Vec<u8>,
    out_at: usize,
    keys: MaskKeys,
    /// The server's close frame arrived, or the connection ended.
    eof: bool,
    close_sent: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// A stream over `io`, on which the upgrade has completed.
    pub fn new(io: S, keys: MaskKeys) -> Self {
        WsStream {
            io,
            decoder: Decoder::default(),
            data: Vec::with_capacity(16 * 1024),
            data_at: 0,
            splitter: Splitter::default(),
            out: Vec::with_capacity(4096),
            out_at: 0,
            keys,
            eof: false,
            close_sent: false,
        }
    }

    /// Queues one frame.
    fn queue(&mut self, opcode: u8, payload: &[u8]) {
        if self.out_at == self.out.len() {
            self.out.clear();
            self.out_at = 0;
        }
        let key = self.keys.next_key();
        frame::encode(&mut self.out, opcode, payload, key);
    }

    /// Queues the close frame (status 1000), once.
    fn queue_close(&mut self) {
        if !self.close_sent {
            self.close_sent = true;
            self.queue(frame::OP_CLOSE, &1000u16.to_be_bytes());
        }
    }

    /// Writes the queued frames to the socket.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out_at < self.out.len() {
            let n = ready!(Pin::new(&mut self.io).poll_write(cx, &self.out[self.out_at..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out_at += n;
        }
        self.out.clear();
        self.out_at = 0;
        Poll::Ready(Ok(()))
    }

    /// Writes what is queued without waiting (a pong or close echo while reading); what the
    /// socket does not take now goes with the next write or flush.
    fn push_out(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if let Poll::Ready(r) = self.poll_drain(cx) {
            r?;
            if let Poll::Ready(r) = Pin::new(&mut self.io).poll_flush(cx) {
                r?;
            }
        }
        Ok(())
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.data_at < this.data.len() {
                let n = buf.remaining().min(this.data.len() - this.data_at);
                buf.put_slice(&this.data[this.data_at..this.data_at + n]);
                this.data_at += n;
                if this.data_at == this.data.len() {
                    this.data.clear();
                    this.data_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            match this.decoder.next(&mut this.data) {
                Err(e) => return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
                Ok(Some(Control::Ping(payload))) => {
                    this.queue(frame::OP_PONG, &payload);
                    this.push_out(cx)?;
                }
                Ok(Some(Control::Pong)) => {}
                Ok(Some(Control::Close(_))) => {
                    // §5.5.1: echo the close, then the stream is over for this end.
                    this.queue_close();
                    this.push_out(cx)?;
                    this.eof = true;
                }
                Ok(None) if !this.data.is_empty() => {}
                Ok(None) => {
                    let mut rb = ReadBuf::new(this.decoder.spare());
                    ready!(Pin::new(&mut this.io).poll_read(cx, &mut rb))?;
                    let n = rb.filled().len();
                    if n == 0 {
                        this.eof = true;
                    }
                    this.decoder.filled(n);
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.out.len() - this.out_at >= MAX_UNSENT {
            ready!(this.poll_drain(cx))?;
        }
        let WsStream {
            splitter,
            out,
            out_at,
            keys,
            ..
        } = this;
        if *out_at == out.len() {
            out.clear();
            *out_at = 0;
        }
        splitter.split(buf, |element| {
            frame::encode_element(out, element, keys.next_key());
        });
        if let Poll::Ready(r) = this.poll_drain(cx) {
            r?;
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.io).poll_flush(cx)
    }

    /// Sends the close frame (1000) and shuts the socket's write side.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.queue_close();
        ready!(this.poll_drain(cx))?;
        ready!(Pin::new(&mut this.io).poll_flush(cx))?;
        Pin::new(&mut this.io).poll_shutdown(cx)
    }
}
