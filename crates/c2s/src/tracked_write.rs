//! Writes that can tell, when they fail, which of their stanzas reached the client.
//!
//! A session that ends hands back to the router what it could not write (RFC 6121 §8.5.3.2):
//! it must hand back each stanza the client did not get, and none it did. A batch whose
//! write timed out has often reached the client in part: the socket took some of it, and
//! the kernel delivers what it took even after the connection is dropped. With TLS a stanza
//! counts as reached once every record holding it was taken by the socket; records still
//! held by the TLS stream never leave, and the client cannot read a record it got only part
//! of.
//!
//! Stanzas are written in batches joined into one buffer, so a batch goes out as one TLS
//! record rather than one per stanza.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::time::Instant;
use tracing::debug;
use xmppd_core::{Next, Outbound};

use super::transport::Transport;
use super::{Conn, Flow, WRITE_BATCH};

impl Conn {
    /// Writes a queued stanza and whatever else is already queued, then flushes once. A lone
    /// stanza is written from its own bytes; a batch is joined first, so it goes out as one
    /// TLS record rather than one per stanza.
    pub(super) async fn write_outbound<S: Transport>(
        &mut self,
        io: &mut S,
        first: Outbound,
    ) -> Option<Flow> {
        let mut more = Vec::new();
        let mut ack_request = None;
        if let Some(session) = self.stream.session_mut() {
            while more.len() + 1 < WRITE_BATCH {
                match session.try_recv() {
                    Some(next) => more.push(next),
                    None => break,
                }
            }
            let every = self.ctx.router.stream_management().config().request_every;
            ack_request = session.ack_request_due(every);
        }
        let written = if more.is_empty() && ack_request.is_none() {
            self.write_stanzas(io, &first.bytes, &[first.bytes.len()])
                .await
        } else {
            let batch = std::iter::once(&first).chain(&more);
            let (bytes, ends) = joined(batch, ack_request.unwrap_or_default());
            self.write_stanzas(io, &bytes, &ends).await
        };
        if ack_request.is_some() {
            // An unanswered request tells a dead link from a quiet one.
            self.timer
                .as_mut()
                .project()
                .probe_at
                .get_or_insert_with(Instant::now);
        }
        match written {
            Ok(()) => {
                self.keepalive_sooner();
                None
            }
            Err(reached) => {
                // What did not reach the client goes back to the router with the rest of the
                // queue.
                if let Some(session) = self.stream.session_mut() {
                    session.unwritten(std::iter::once(first).chain(more).skip(reached));
                }
                Some(Flow::Lost)
            }
        }
    }

    /// Writes `bytes`, whose stanzas end at `ends`; on failure, how many of those stanzas
    /// reached the client all the same (see `tracked_write.rs`).
    async fn write_stanzas<S: Transport>(
        &self,
        io: &mut S,
        bytes: &[u8],
        ends: &[usize],
    ) -> Result<(), usize> {
        let limit = self.timer.settings.limits.write_timeout;
        write_tracked(io, bytes, limit)
            .await
            .map_err(|reached| stanzas_within(ends, reached))
    }

    /// Writes what the session's queue holds now (before a stream error that must follow it);
    /// what does not reach the client is handed back with the rest of the session.
    pub(super) async fn write_queued<S: Transport>(&mut self, io: &mut S) {
        let mut batch = Vec::new();
        if let Some(session) = self.stream.session_mut() {
            while let Next::Item(outbound) = session.next_now() {
                batch.push(outbound);
            }
        }
        if batch.is_empty() {
            return;
        }
        let (bytes, ends) = joined(&batch, &[]);
        if let Err(reached) = self.write_stanzas(io, &bytes, &ends).await
            && let Some(session) = self.stream.session_mut()
        {
            session.unwritten(batch.into_iter().skip(reached));
        }
    }
}

/// The stanzas of `batch` and then `tail` as one buffer, with where each stanza ends.
fn joined<'a, I>(batch: I, tail: &[u8]) -> (Vec<u8>, Vec<usize>)
where
    I: IntoIterator<Item = &'a Outbound>,
    I::IntoIter: Clone,
{
    let batch = batch.into_iter();
    let (len, count) = batch
        .clone()
        .fold((tail.len(), 0), |(len, n), o| (len + o.bytes.len(), n + 1));
    let mut bytes = Vec::with_capacity(len);
    let mut ends = Vec::with_capacity(count);
    for outbound in batch {
        bytes.extend_from_slice(&outbound.bytes);
        ends.push(bytes.len());
    }
    bytes.extend_from_slice(tail);
    (bytes, ends)
}

/// Writes and flushes `bytes` within `limit`. On failure, how many leading bytes of
/// `bytes` the client will receive in full.
pub(super) async fn write_tracked<S: Transport>(
    io: &mut S,
    bytes: &[u8],
    limit: Duration,
) -> Result<(), usize> {
    // How far into `bytes` the socket has certainly taken everything; and, while it is
    // behind, after each write call how far that call took and the output mark its records
    // end at (each call takes up to one record's worth). Nothing is kept, and nothing
    // allocated, while the socket keeps up.
    let mut reached = 0;
    let mut behind: Vec<(usize, u64)> = Vec::new();
    let result = {
        let write = async {
            let mut taken = 0;
            while let Some(rest) = bytes.get(taken..).filter(|r| !r.is_empty()) {
                let n = io.write(rest).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::WriteZero.into());
                }
                taken += n;
                let mark = io.output_queued();
                if mark <= io.output_sent() {
                    reached = taken;
                    behind.clear();
                } else {
                    behind.push((taken, mark));
                }
            }
            io.flush().await
        };
        tokio::time::timeout(limit, write).await
    };
    match result {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => debug!(error = %e, "write failed"),
        Err(_) => debug!("write timed out"),
    }
    let sent = io.output_sent();
    Err(behind
        .iter()
        .rev()
        .find(|(_, mark)| *mark <= sent)
        .map_or(reached, |(taken, _)| *taken))
}

/// How many of the stanzas whose bytes end at `ends` (ascending) lie within the first
/// `reached` bytes.
pub(super) fn stanzas_within(ends: &[usize], reached: usize) -> usize {
    ends.partition_point(|end| *end <= reached)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    /// The peer does not read until the write gave up; then it gets exactly what the write
    /// said had reached it, nothing more and nothing less.
    #[tokio::test]
    async fn a_write_that_times_out_says_how_much_the_peer_gets() -> std::io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let mut peer = TcpStream::connect(listener.local_addr()?).await?;
        let (mut server, _) = listener.accept().await?;
        // Far more than loopback socket buffers hold.
        let bytes: Vec<u8> = (0..64 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
        let reached = write_tracked(&mut server, &bytes, Duration::from_millis(300))
            .await
            .err();
        drop(server);
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(30), peer.read_to_end(&mut got)).await??;
        let reached = reached.unwrap_or(bytes.len());
        assert!(reached < bytes.len(), "the write never filled the socket");
        assert_eq!(got.len(), reached);
        assert!(got.as_slice() == bytes.get(..reached).unwrap_or_default());
        Ok(())
    }

    #[test]
    fn a_stanza_counts_only_when_all_its_bytes_reached() {
        let ends = [10, 25, 40];
        assert_eq!(stanzas_within(&ends, 0), 0);
        assert_eq!(stanzas_within(&ends, 9), 0);
        assert_eq!(stanzas_within(&ends, 10), 1);
        assert_eq!(stanzas_within(&ends, 39), 2);
        assert_eq!(stanzas_within(&ends, 40), 3);
        assert_eq!(stanzas_within(&ends, 41), 3);
    }
}
