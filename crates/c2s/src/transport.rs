//! The byte streams a client connection reads from (TCP, then TLS), and how: readiness is
//! awaited without a buffer, and a read goes through the worker thread's buffer straight
//! into the connection's XML reader.

use std::cell::RefCell;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use xmppd_xml::Reader;

use crate::thread_buffer::ThreadBuffer;
use crate::tls_stream::ServerTlsStream;

/// Bytes read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    /// The read buffer of every connection running on this worker thread: a read fills it
    /// and hands the bytes to the connection's XML reader before anything else runs.
    static READ_BUF: RefCell<ThreadBuffer> = RefCell::new(ThreadBuffer::new(READ_CHUNK));
}

/// A connection's byte stream whose readiness can be awaited without lending it a buffer.
pub(crate) trait Transport: AsyncWrite + Unpin {
    /// Resolves when the underlying socket may have bytes (or EOF, or an error) to read.
    fn readable(&self) -> impl Future<Output = std::io::Result<()>>;

    /// Reads what is available now, without waiting, and feeds it to `reader`. `Pending`
    /// means nothing was available (the socket's readiness is cleared, so
    /// [`Transport::readable`] waits for new bytes); `Ready(Ok(0))` is the end of the stream.
    ///
    /// TLS may hold decrypted bytes the socket no longer shows as readable, which is why a
    /// read is always tried before waiting for readiness.
    fn read_now(&mut self, reader: &mut Reader) -> Poll<std::io::Result<usize>>;

    /// The client's address, asked of the socket when needed rather than kept in every
    /// connection.
    fn peer_ip(&self) -> Option<std::net::IpAddr>;

    /// Output bytes the socket has taken, in all, for a transport that holds output back
    /// (TLS records the socket did not take at once); see [`Transport::output_queued`].
    fn output_sent(&self) -> u64 {
        0
    }

    /// Output bytes produced, in all: those sent and those held. A write that ended at this
    /// mark has reached the socket in full once [`Transport::output_sent`] reaches it. A
    /// transport that holds nothing back leaves both at 0: what it accepted was sent.
    fn output_queued(&self) -> u64 {
        0
    }
}

impl Transport for TcpStream {
    /// Through the socket's own reader slot, not an intrusive waiter (`TcpStream::readable`),
    /// which would add its size to every idle connection's task.
    fn readable(&self) -> impl Future<Output = std::io::Result<()>> {
        std::future::poll_fn(|cx| self.poll_read_ready(cx))
    }

    fn peer_ip(&self) -> Option<std::net::IpAddr> {
        self.peer_addr().ok().map(|a| a.ip())
    }

    /// Into the thread's buffer, then into the reader.
    fn read_now(&mut self, reader: &mut Reader) -> Poll<std::io::Result<usize>> {
        READ_BUF.with_borrow_mut(|buf| {
            let mut cx = Context::from_waker(Waker::noop());
            let mut read = ReadBuf::new(buf);
            match Pin::new(self).poll_read(&mut cx, &mut read) {
                Poll::Ready(Ok(())) => {
                    let filled = read.filled();
                    reader.feed(filled);
                    Poll::Ready(Ok(filled.len()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
    }
}

impl Transport for ServerTlsStream {
    fn readable(&self) -> impl Future<Output = std::io::Result<()>> {
        ServerTlsStream::readable(self)
    }

    fn peer_ip(&self) -> Option<std::net::IpAddr> {
        self.peer_addr().ok().map(|a| a.ip())
    }

    fn output_sent(&self) -> u64 {
        ServerTlsStream::output_sent(self)
    }

    fn output_queued(&self) -> u64 {
        ServerTlsStream::output_queued(self)
    }

    /// Decrypted records go to the reader as they are decrypted.
    fn read_now(&mut self, reader: &mut Reader) -> Poll<std::io::Result<usize>> {
        let mut cx = Context::from_waker(Waker::noop());
        self.poll_read_with(&mut cx, &mut |bytes| reader.feed(bytes))
    }
}
