//! The connection a session ends up on: TLS (XMPP over TCP and the relay) or a WebSocket over
//! TLS. Both are byte streams to the scenarios, which write whole stanzas and scan what they
//! read; [`crate::ws::WsStream`] does the framing.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::client::Tls;
use crate::ws::WsStream;

/// A session's connection.
#[derive(Debug)]
pub enum Conn {
    /// TLS over TCP.
    Tls(Box<Tls>),
    /// XMPP over WebSocket (RFC 7395) over TLS.
    Ws(Box<WsStream<Tls>>),
}

impl Conn {
    /// Whether this is a WebSocket.
    pub fn is_websocket(&self) -> bool {
        matches!(self, Conn::Ws(_))
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tls(t) => Pin::new(t.as_mut()).poll_read(cx, buf),
            Conn::Ws(w) => Pin::new(w.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tls(t) => Pin::new(t.as_mut()).poll_write(cx, buf),
            Conn::Ws(w) => Pin::new(w.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tls(t) => Pin::new(t.as_mut()).poll_flush(cx),
            Conn::Ws(w) => Pin::new(w.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tls(t) => Pin::new(t.as_mut()).poll_shutdown(cx),
            Conn::Ws(w) => Pin::new(w.as_mut()).poll_shutdown(cx),
        }
    }
}
