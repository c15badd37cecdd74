//! The socket side of a WebSocket connection: reads into the worker thread's buffer, and the
//! lingering close.

use std::cell::RefCell;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use super::frame::{Decoder, Frame};

/// Bytes read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;

thread_local! {
    /// The read buffer of every WebSocket on this worker thread; a read fills it and hands
    /// the bytes to the connection's decoder before anything else runs.
    static READ_BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// Reads what the socket has into the thread's buffer and feeds it to `decoder` at once, so
/// no buffer is held while waiting.
pub(super) fn poll_read_into(
    io: &mut TokioIo<Upgraded>,
    decoder: &mut Decoder,
    frames: &mut Vec<Frame>,
    cx: &mut std::task::Context<'_>,
) -> Poll<std::io::Result<usize>> {
    READ_BUF.with_borrow_mut(|buf| {
        let mut read = ReadBuf::new(buf);
        match Pin::new(io).poll_read(cx, &mut read) {
            Poll::Ready(Ok(())) => {
                let filled = read.filled();
                let n = filled.len();
                if let Err(e) = decoder.feed(filled, frames) {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        e,
                    )));
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
}

/// Most bytes read and dropped after our close frame.
const LINGER_BYTES: usize = 64 * 1024;

/// After our close frame: ends our side, then reads what the client still sends until its
/// close frame (or the end of the connection), for at most a second and [`LINGER_BYTES`].
/// Closing a socket with unread bytes resets the connection, and a reset can destroy our
/// close frame before the client has read it (RFC 6455 §7.1.1 has the server wait for the
/// client's close as well). After a framing error the decoder decodes nothing more, and the
/// bytes are only drained.
pub(super) async fn linger(io: &mut TokioIo<Upgraded>, decoder: &mut Decoder) {
    let drain = async {
        io.shutdown().await?;
        let mut dropped = 0;
        let mut buf = [0u8; 1024];
        let mut frames = Vec::new();
        while dropped < LINGER_BYTES {
            let n = tokio::io::AsyncReadExt::read(io, &mut buf).await?;
            let read = buf.get(..n).unwrap_or_default();
            if n == 0 || decoder.feed(read, &mut frames).is_err() {
                break;
            }
            if frames.iter().any(|f| matches!(f, Frame::Close(_))) {
                break;
            }
            frames.clear();
            dropped += n;
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}
