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
//! The unbuffered API has no keying-material exporter, and the client's SNI comes from the
//! certificate resolver: both are captured from rustls' callbacks (see `exporter.rs`).

use std::cell::RefCell;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use rustls::ServerConfig;
use rustls::crypto::tls13::OkmBlock;
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::WriteTraffic;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::thread_buffer::ThreadBuffer;

mod exporter;
mod records;

pub use exporter::Exporter;
pub(crate) use exporter::{ExporterCapture, capture_server_name};
use records::{OnWritable, Stop, encrypt, process, tls_error};

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
}

/// A TLS connection accepted from a client.
pub struct ServerTlsStream {
    socket: TcpStream,
    conn: UnbufferedServerConnection,
    /// Ciphertext of incomplete records, not yet processed. Empty (unallocated) when idle.
    incoming: Vec<u8>,
    /// Ciphertext not yet written. Empty (unallocated) when idle.
    outgoing: Vec<u8>,
    /// Ciphertext the socket has taken, in all: with `outgoing`, it tells which writes have
    /// reached the socket in full ([`ServerTlsStream::output_sent`]).
    sent: u64,
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

impl ServerTlsStream {
    /// Runs the server side of the handshake on `socket`.
    pub async fn accept(socket: TcpStream, config: Arc<ServerConfig>) -> io::Result<Self> {
        let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
        let mut stream = ServerTlsStream {
            socket,
            conn,
            incoming: Vec::new(),
            outgoing: Vec::new(),
            sent: 0,
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

    /// The address of the peer (read from the socket, not kept).
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.socket.peer_addr()
    }

    /// The SNI the client sent, if any.
    pub fn server_name(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    /// The negotiated protocol version.
    pub fn protocol_version(&self) -> Option<rustls::ProtocolVersion> {
        self.conn.protocol_version()
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

    /// Ciphertext the socket has taken so far.
    pub fn output_sent(&self) -> u64 {
        self.sent
    }

    /// Ciphertext produced so far: what the socket took and what waits in `outgoing`. A
    /// write whose records ended at this mark has reached the client once
    /// [`ServerTlsStream::output_sent`] is there too.
    pub fn output_queued(&self) -> u64 {
        self.sent + self.outgoing.len() as u64
    }

    /// Writes `outgoing` until it is empty (`Ready`) or the socket is full (`Pending`).
    fn poll_write_outgoing(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.outgoing.is_empty() {
            ready!(self.socket.poll_write_ready(cx))?;
            match self.socket.try_write(&self.outgoing) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.outgoing.drain(..n);
                    self.sent += n as u64;
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
                self.sent += written as u64;
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
