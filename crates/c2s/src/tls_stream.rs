//! The server side of a client's TLS connection, on rustls' unbuffered API.
//!
//! Why not `tokio-rustls`: rustls' buffered connection keeps a 4 KiB receive buffer for the
//! whole life of the connection (it sizes the buffer before every read and never frees it),
//! and copies each record through queues of its own. Most client connections are idle most of
//! the time, so that buffer was the largest single part of an idle session. Here the
//! connection owns its buffers and they are empty, with nothing allocated, whenever no TLS
//! record is half-received or half-sent:
//!
//! - reads go into a buffer that belongs to the worker thread; only the bytes of an incomplete
//!   record are kept with the connection;
//! - writes are encrypted into a worker-thread buffer and written at once; only what the socket
//!   did not take is kept;
//! - decrypted bytes go straight to the caller ([`ServerTlsStream::read_with`]).
//!
//! The unbuffered API has no keying-material exporter, which SCRAM-*-PLUS needs for the
//! `tls-exporter` channel binding (RFC 9266). rustls hands the TLS 1.3 exporter secret to the
//! configured [`KeyLog`] while the handshake runs, synchronously, inside
//! [`UnbufferedServerConnection::process_tls_records`] on the calling thread. [`ExporterCapture`]
//! keeps that secret in a thread-local slot that the stream empties right after each call, so
//! the secret reaches the connection whose handshake produced it and nothing else; the
//! exporter itself is RFC 8446 §7.5, computed with the negotiated suite's own HKDF. The
//! certificate resolver reports the client's SNI the same way.

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::crypto::tls13::{HkdfExpander, OkmBlock};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
    WriteTraffic,
};
use rustls::{KeyLog, ServerConfig, SupportedCipherSuite};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::thread_buffer::ThreadBuffer;

/// Bytes read from the socket at once.
const READ_SIZE: usize = 16 * 1024 + 512;

/// Socket reads in one poll that may bring no decrypted byte before the task yields.
const MAX_READS_WITHOUT_DATA: usize = 16;

/// Held ciphertext up to this size is read behind in the thread's buffer (the common case:
/// the tail of one record); more (a long handshake message) grows the connection's own.
const MAX_HELD_IN_SCRATCH: usize = READ_SIZE / 2;

/// The most ciphertext a connection may hold unprocessed: a 64 KiB handshake message (the
/// limit rustls' own buffered API applies) spread over records, plus one record.
const MAX_INCOMING: usize = 64 * 1024 + 17 * 1024;

/// Plaintext encrypted per write call: one full record's worth keeps the thread's buffer small.
const MAX_WRITE: usize = 16 * 1024;

/// Per-record growth of encrypted data: header, content type, padding allowance and AEAD tag.
const RECORD_OVERHEAD: usize = 5 + 1 + 16 + 42;

/// Ciphertext kept unsent before a write waits for the socket.
const MAX_OUTGOING: usize = 64 * 1024;

thread_local! {
    /// Ciphertext read from the socket, processed before anything else runs on this thread.
    static READ_SCRATCH: RefCell<ThreadBuffer> = RefCell::new(ThreadBuffer::new(READ_SIZE));
    /// Records encrypted for one write, written to the socket before anything else runs.
    static WRITE_SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// What the handshake reported through rustls' callbacks during the current call.
    static CAPTURED: RefCell<Captured> = const { RefCell::new(Captured { exporter_secret: None, server_name: None }) };
}

/// Values rustls hands to callbacks during a handshake step.
struct Captured {
    exporter_secret: Option<OkmBlock>,
    server_name: Option<Box<str>>,
}

/// The [`KeyLog`] that passes the TLS 1.3 exporter secret to the stream whose handshake is
/// running on this thread; every other secret is declined (`will_log` is false), so rustls
/// does not even compute the log line.
#[derive(Debug)]
pub(crate) struct ExporterCapture;

impl KeyLog for ExporterCapture {
    fn will_log(&self, label: &str) -> bool {
        label == "EXPORTER_SECRET"
    }

    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        if label == "EXPORTER_SECRET" && secret.len() <= OkmBlock::MAX_LEN {
            CAPTURED.with_borrow_mut(|c| c.exporter_secret = Some(OkmBlock::new(secret)));
        }
    }
}

/// Called by the certificate resolver with the SNI of the handshake running on this thread.
pub(crate) fn capture_server_name(name: Option<&str>) {
    CAPTURED.with_borrow_mut(|c| c.server_name = name.map(Box::from));
}

/// The keying-material exporter of an established TLS 1.3 connection (RFC 8446 §7.5).
pub struct Exporter {
    secret: OkmBlock,
    suite: SupportedCipherSuite,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter")
            .field("suite", &self.suite.suite())
            .finish_non_exhaustive()
    }
}

impl Exporter {
    /// `TLS-Exporter(label, context, out.len())`. In TLS 1.3 an absent context and an empty
    /// one are the same (§7.5), so `context` is a plain slice.
    pub fn export(&self, label: &[u8], context: &[u8], out: &mut [u8]) -> Option<()> {
        let SupportedCipherSuite::Tls13(suite) = self.suite else {
            return None;
        };
        let hash = suite.common.hash_provider;
        // Derive-Secret(exporter_secret, label, "") = HKDF-Expand-Label(.., Hash(""), Hash.length)
        let mut derived = [0u8; OkmBlock::MAX_LEN];
        let derived = derived.get_mut(..hash.output_len())?;
        let expander = suite.hkdf_provider.expander_for_okm(&self.secret);
        expand_label(&*expander, label, hash.hash(&[]).as_ref(), derived)?;
        let expander = suite
            .hkdf_provider
            .expander_for_okm(&OkmBlock::new(derived));
        derived.fill(0);
        expand_label(&*expander, b"exporter", hash.hash(context).as_ref(), out)
    }
}

/// HKDF-Expand-Label (RFC 8446 §7.1).
fn expand_label(
    expander: &dyn HkdfExpander,
    label: &[u8],
    context: &[u8],
    out: &mut [u8],
) -> Option<()> {
    let length = u16::try_from(out.len()).ok()?.to_be_bytes();
    let label_len = [u8::try_from(6 + label.len()).ok()?];
    let context_len = [u8::try_from(context.len()).ok()?];
    expander
        .expand_slice(
            &[&length, &label_len, b"tls13 ", label, &context_len, context],
            out,
        )
        .ok()
}

/// What to do with the connection's write side once it is reached.
type OnWritable<'a> =
    &'a mut dyn FnMut(&mut WriteTraffic<'_, ServerConnectionData>) -> io::Result<()>;

/// Where processing stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The handshake needs more bytes from the peer.
    NeedInput,
    /// Established, and every complete record has been processed.
    Established,
    /// Both sides have sent close_notify.
    Closed,
}

/// A TLS connection accepted from a client.
pub struct ServerTlsStream {
    socket: TcpStream,
    conn: UnbufferedServerConnection,
    /// Ciphertext of incomplete records, not yet processed. Empty (unallocated) when idle.
    incoming: Vec<u8>,
    /// Ciphertext not yet written. Empty (unallocated) when idle.
    outgoing: Vec<u8>,
    /// Decrypted bytes not yet read (only when a write had to process a received record).
    plaintext: Vec<u8>,
    peer_closed: bool,
    close_notify_queued: bool,
    /// Boxed: it is needed once, right after the handshake, and inline it would take 72
    /// bytes of every connection.
    exporter_secret: Option<Box<OkmBlock>>,
    server_name: Option<Box<str>>,
}

impl std::fmt::Debug for ServerTlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTlsStream")
            .field("socket", &self.socket)
            .field("incoming", &self.incoming.len())
            .field("outgoing", &self.outgoing.len())
            .field("peer_closed", &self.peer_closed)
            .finish_non_exhaustive()
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Processes `buf` (the unprocessed ciphertext, oldest first) until rustls needs more input,
/// the handshake is done and nothing is left to decrypt, or the connection closed. Returns how
/// many leading bytes of `buf` are done with. `on_writable` runs once, when established.
fn process(
    conn: &mut UnbufferedServerConnection,
    buf: &mut [u8],
    outgoing: &mut Vec<u8>,
    peer_closed: &mut bool,
    plaintext: &mut dyn FnMut(&[u8]),
    mut on_writable: Option<OnWritable<'_>>,
) -> io::Result<(usize, Stop)> {
    let mut done = 0;
    loop {
        let rest = buf.get_mut(done..).unwrap_or_default();
        let UnbufferedStatus { discard, state } = conn.process_tls_records(rest);
        let mut discard = discard;
        let stop = match state {
            Err(e) => {
                // rustls queued an alert for the peer; encode it so a flush can send it.
                done += discard;
                let rest = buf.get_mut(done..).unwrap_or_default();
                if let Ok(ConnectionState::EncodeTlsData(mut alert)) =
                    conn.process_tls_records(rest).state
                {
                    let _ = encode(&mut alert, outgoing);
                }
                return Err(tls_error(e));
            }
            Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                while let Some(record) = traffic.next_record() {
                    let record = record.map_err(tls_error)?;
                    discard += record.discard;
                    plaintext(record.payload);
                }
                None
            }
            Ok(ConnectionState::EncodeTlsData(mut data)) => {
                encode(&mut data, outgoing)?;
                None
            }
            // The encoded records are in `outgoing`, which is written before anything later.
            Ok(ConnectionState::TransmitTlsData(data)) => {
                data.done();
                None
            }
            Ok(ConnectionState::BlockedHandshake) => Some(Stop::NeedInput),
            Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                if let Some(f) = on_writable.take() {
                    f(&mut traffic)?;
                }
                Some(Stop::Established)
            }
            Ok(ConnectionState::PeerClosed) => {
                *peer_closed = true;
                None
            }
            Ok(ConnectionState::Closed) => Some(Stop::Closed),
            // The server config never accepts 0-RTT data.
            Ok(ConnectionState::ReadEarlyData(_)) | Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "unexpected TLS state",
                ));
            }
        };
        done += discard;
        if let Some(stop) = stop {
            return Ok((done, stop));
        }
    }
}

/// Appends to `out` what `fill` writes into a slice of `room` bytes, retrying once with the
/// room `required` reads from the error when rustls asks for more.
fn append_with<E: std::fmt::Display>(
    out: &mut Vec<u8>,
    mut room: usize,
    mut fill: impl FnMut(&mut [u8]) -> Result<usize, E>,
    required: impl Fn(&E) -> Option<usize>,
) -> io::Result<()> {
    let start = out.len();
    loop {
        out.resize(start + room, 0);
        let result = fill(out.get_mut(start..).unwrap_or_default());
        match result {
            Ok(written) => {
                out.truncate(start + written);
                return Ok(());
            }
            Err(e) => match required(&e) {
                Some(needed) if needed > room => room = needed,
                _ => {
                    out.truncate(start);
                    return Err(io::Error::other(e.to_string()));
                }
            },
        }
    }
}

/// Encodes a handshake or alert record at the end of `outgoing`.
fn encode(
    data: &mut rustls::unbuffered::EncodeTlsData<'_, ServerConnectionData>,
    outgoing: &mut Vec<u8>,
) -> io::Result<()> {
    append_with(
        outgoing,
        1024,
        |tail| data.encode(tail),
        |e| match e {
            EncodeError::InsufficientSize(InsufficientSizeError { required_size }) => {
                Some(*required_size)
            }
            _ => None,
        },
    )
}

/// Encrypts `data` at the end of `out`.
fn encrypt(
    traffic: &mut WriteTraffic<'_, ServerConnectionData>,
    data: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let room = data.len() + (data.len() / (16 * 1024) + 1) * RECORD_OVERHEAD;
    append_with(
        out,
        room,
        |tail| traffic.encrypt(data, tail),
        |e| match e {
            EncryptError::InsufficientSize(InsufficientSizeError { required_size }) => {
                Some(*required_size)
            }
            _ => None,
        },
    )
}

impl ServerTlsStream {
    /// Runs the server side of the handshake on `socket`.
    pub async fn accept(socket: TcpStream, config: Arc<ServerConfig>) -> io::Result<Self> {
        let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
        let mut stream = ServerTlsStream {
            socket,
            conn,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            plaintext: Vec::new(),
            peer_closed: false,
            close_notify_queued: false,
            exporter_secret: None,
            server_name: None,
        };
        std::future::poll_fn(|cx| stream.poll_handshake(cx)).await?;
        Ok(stream)
    }

    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let result = self.process_incoming(None);
            let flushed = self.poll_write_outgoing(cx)?;
            match result? {
                Stop::Established if flushed.is_ready() => return Poll::Ready(Ok(())),
                Stop::Established => return Poll::Pending,
                Stop::Closed => return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into())),
                Stop::NeedInput => {}
            }
            if self.peer_closed {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
            if ready!(self.poll_read_socket(cx))? == 0 {
                return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }

    /// The SNI the client sent, if any.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The negotiated protocol version.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
    }

    /// The TLS 1.3 keying-material exporter; it can be taken once (keeping the secret
    /// for the connection's whole life would serve nothing). `None` for TLS 1.2.
    pub fn take_exporter(&mut self) -> Option<Exporter> {
        let secret = *self.exporter_secret.take()?;
        let suite = self.conn.negotiated_cipher_suite()?;
        (self.conn.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3))
            .then_some(Exporter { secret, suite })
    }

    /// Bytes of buffer the connection holds (allocated, used or not): zero whenever no record
    /// is half-received or half-sent.
    pub fn buffered_capacity(&self) -> usize {
        self.incoming.capacity() + self.outgoing.capacity() + self.plaintext.capacity()
    }

    /// Resolves when there may be something to read: decrypted bytes already here, or the
    /// socket readable.
    pub fn readable(&self) -> impl Future<Output = io::Result<()>> + '_ {
        std::future::poll_fn(|cx| {
            if self.plaintext.is_empty() {
                self.socket.poll_read_ready(cx)
            } else {
                Poll::Ready(Ok(()))
            }
        })
    }

    /// Processes the held ciphertext; records on the way are delivered to `self.plaintext`.
    fn process_incoming(&mut self, on_writable: Option<OnWritable<'_>>) -> io::Result<Stop> {
        let Self {
            conn,
            incoming,
            outgoing,
            plaintext,
            peer_closed,
            ..
        } = self;
        let result = process(
            conn,
            incoming,
            outgoing,
            peer_closed,
            &mut |bytes| plaintext.extend_from_slice(bytes),
            on_writable,
        );
        self.take_captured();
        let (done, stop) = result?;
        self.incoming.drain(..done.min(self.incoming.len()));
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
        Ok(stop)
    }

    /// Moves what rustls reported during the last call from the thread's slot to this stream.
    fn take_captured(&mut self) {
        CAPTURED.with_borrow_mut(|c| {
            if let Some(secret) = c.exporter_secret.take() {
                self.exporter_secret = Some(Box::new(secret));
            }
            if let Some(name) = c.server_name.take() {
                self.server_name = Some(name);
            }
        });
    }

    /// Reads from the socket into `incoming`. `Ready(Ok(0))` is the end of the stream.
    fn poll_read_socket(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.incoming.len() >= MAX_INCOMING {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS peer sent an oversized message",
            )));
        }
        loop {
            ready!(self.socket.poll_read_ready(cx))?;
            let start = self.incoming.len();
            self.incoming.resize(start + READ_SIZE, 0);
            let tail = self.incoming.get_mut(start..).unwrap_or_default();
            let result = self.socket.try_read(tail);
            self.incoming
                .truncate(start + *result.as_ref().unwrap_or(&0));
            match result {
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    /// Reads what the socket has now and hands the decrypted bytes to `sink`.
    ///
    /// `Ready(Ok(n))`: `n` decrypted bytes were delivered (`0` only at the end of the stream);
    /// `Pending`: nothing complete arrived, and the socket's readiness has been cleared (with
    /// `cx`'s waker registered), or [`MAX_READS_WITHOUT_DATA`] reads brought no data and the
    /// task yields (woken at once; the socket still shows readable).
    pub fn poll_read_with(
        &mut self,
        cx: &mut Context<'_>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Poll<io::Result<usize>> {
        if !self.plaintext.is_empty() {
            let held = std::mem::take(&mut self.plaintext);
            sink(&held);
            return Poll::Ready(Ok(held.len()));
        }
        // Reads that bring no application data (handshake messages, empty records, record
        // fragments) are allowed a few times in a row; then the task yields, so one peer
        // cannot keep a worker to itself.
        for _ in 0..MAX_READS_WITHOUT_DATA {
            if self.peer_closed {
                return Poll::Ready(Ok(0));
            }
            let mut delivered = 0;
            let read = if self.incoming.len() <= MAX_HELD_IN_SCRATCH {
                ready!(self.poll_read_scratch(cx, &mut |bytes| {
                    delivered += bytes.len();
                    sink(bytes);
                }))?
            } else {
                // `plaintext` is empty here (returned above), so what it holds now is fresh.
                let n = ready!(self.poll_read_socket(cx))?;
                if n > 0 {
                    self.process_incoming(None)?;
                    let fresh = std::mem::take(&mut self.plaintext);
                    delivered += fresh.len();
                    if !fresh.is_empty() {
                        sink(&fresh);
                    }
                }
                n
            };
            // Alerts or key-update replies produced by what was read go out now if they can.
            if !self.outgoing.is_empty() {
                let _ = self.poll_write_outgoing(cx)?;
            }
            if delivered > 0 {
                return Poll::Ready(Ok(delivered));
            }
            if read == 0 {
                return Poll::Ready(Ok(0));
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// The common case of a read: at most the tail of one small record held. That tail is put
    /// at the head of the thread's buffer, the socket read behind it, the records processed
    /// there, and only the tail of an incomplete record kept.
    fn poll_read_scratch(
        &mut self,
        cx: &mut Context<'_>,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Poll<io::Result<usize>> {
        READ_SCRATCH.with_borrow_mut(|scratch| {
            loop {
                ready!(self.socket.poll_read_ready(cx))?;
                let held = self.incoming.len();
                let Some((head, tail)) = scratch.split_at_mut_checked(held) else {
                    return Poll::Ready(Err(io::Error::other("held TLS bytes exceed the buffer")));
                };
                let n = match self.socket.try_read(tail) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                    Err(e) => return Poll::Ready(Err(e)),
                };
                if n == 0 {
                    return Poll::Ready(Ok(0));
                }
                head.copy_from_slice(&self.incoming);
                let buf = scratch.get_mut(..held + n).unwrap_or_default();
                let result = process(
                    &mut self.conn,
                    buf,
                    &mut self.outgoing,
                    &mut self.peer_closed,
                    sink,
                    None,
                );
                self.take_captured();
                let (done, _) = result?;
                self.incoming.clear();
                match buf.get(done..) {
                    Some(rest) if !rest.is_empty() => self.incoming.extend_from_slice(rest),
                    _ => self.incoming = Vec::new(),
                }
                return Poll::Ready(Ok(n));
            }
        })
    }

    /// Writes `outgoing` until it is empty (`Ready`) or the socket is full (`Pending`).
    fn poll_write_outgoing(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.outgoing.is_empty() {
            ready!(self.socket.poll_write_ready(cx))?;
            match self.socket.try_write(&self.outgoing) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.outgoing.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        self.outgoing = Vec::new();
        Poll::Ready(Ok(()))
    }

    /// Runs `f` with the connection's write side once every received record is processed.
    fn with_write_traffic(
        &mut self,
        f: &mut dyn FnMut(&mut WriteTraffic<'_, ServerConnectionData>) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut ran = false;
        let stop = self.process_incoming(Some(&mut |traffic| {
            ran = true;
            f(traffic)
        }))?;
        match stop {
            _ if ran => Ok(()),
            Stop::NeedInput => Err(io::ErrorKind::NotConnected.into()),
            Stop::Closed | Stop::Established => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    /// Encrypts `data` (at most [`MAX_WRITE`] bytes of it) and writes what the socket takes
    /// now; the rest waits in `outgoing` for a flush.
    fn poll_write_plaintext(
        &mut self,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.close_notify_queued {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if self.outgoing.len() >= MAX_OUTGOING {
            ready!(self.poll_write_outgoing(cx))?;
        }
        let data = data.get(..MAX_WRITE).unwrap_or(data);
        WRITE_SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            self.with_write_traffic(&mut |traffic| encrypt(traffic, data, scratch))?;
            if self.outgoing.is_empty() {
                // Nothing queued ahead of these records: straight to the socket.
                let written = match self.socket.try_write(scratch) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                    Err(e) => return Poll::Ready(Err(e)),
                };
                if let Some(rest) = scratch.get(written..)
                    && !rest.is_empty()
                {
                    self.outgoing.extend_from_slice(rest);
                }
            } else {
                self.outgoing.extend_from_slice(scratch);
                let _ = self.poll_write_outgoing(cx)?;
            }
            if scratch.capacity() > 2 * (MAX_WRITE + RECORD_OVERHEAD) {
                *scratch = Vec::new();
            }
            Poll::Ready(Ok(data.len()))
        })
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if !self.close_notify_queued {
            self.close_notify_queued = true;
            let mut alert = Vec::new();
            let queued = self.with_write_traffic(&mut |traffic| {
                let mut room = [0u8; 64];
                let n = traffic
                    .queue_close_notify(&mut room)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                alert.extend_from_slice(room.get(..n).unwrap_or_default());
                Ok(())
            });
            if queued.is_ok() {
                self.outgoing.extend_from_slice(&alert);
            }
        }
        ready!(self.poll_write_outgoing(cx))?;
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }
}

impl AsyncWrite for ServerTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().poll_write_plaintext(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_write_outgoing(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_close(cx)
    }
}

impl AsyncRead for ServerTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.plaintext.is_empty() {
            let mut fresh = Vec::new();
            ready!(this.poll_read_with(cx, &mut |bytes| fresh.extend_from_slice(bytes)))?;
            this.plaintext = fresh;
        }
        let n = this.plaintext.len().min(buf.remaining());
        buf.put_slice(this.plaintext.get(..n).unwrap_or_default());
        this.plaintext.drain(..n);
        if this.plaintext.is_empty() {
            this.plaintext = Vec::new();
        }
        Poll::Ready(Ok(()))
    }
}
