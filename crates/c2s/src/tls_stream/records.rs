//! Driving rustls' unbuffered connection over byte buffers: received records processed in
//! place, handshake and alert records encoded, application data encrypted, each appended to
//! the caller's buffer.

use std::io;

use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
    WriteTraffic,
};

use super::RECORD_OVERHEAD;

/// What to do with the connection's write side once it is reached.
pub(super) type OnWritable<'a> =
    &'a mut dyn FnMut(&mut WriteTraffic<'_, ServerConnectionData>) -> io::Result<()>;

/// Where processing stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// The handshake needs more bytes from the peer.
    NeedInput,
    /// Established, and every complete record has been processed.
    Established,
    /// Both sides have sent close_notify.
    Closed,
}

pub(super) fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Processes `buf` (the unprocessed ciphertext, oldest first) until rustls needs more input,
/// the handshake is done and nothing is left to decrypt, or the connection closed. Returns how
/// many leading bytes of `buf` are done with. `on_writable` runs once, when established.
pub(super) fn process(
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
pub(super) fn encrypt(
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
