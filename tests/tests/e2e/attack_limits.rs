//! Attack catalogue (`tests/SECURITY.md`), the size and time rows: a stanza larger than the
//! path's limit (16 KiB before authentication everywhere; 256 KiB on an authenticated client
//! stream, 512 KiB on an authenticated federation or component stream), and slowloris — a peer
//! that sends a byte now and then and never finishes negotiating — on every listener,
//! the component listener's handshake included.
//!
//! Pass criteria: `policy-violation` and the connection closed, the server having read little
//! more than the limit; `connection-timeout` at the configured negotiation deadline (set short
//! here), however the peer dribbles.

use crate::common;

use std::time::Duration;

use common::SILENCE;
use common::attack::{Path, Target, before_header, reach};
use common::federation::online;
use xmppd_testkit::TestClient;
use xmppd_xml::{STREAM_NS, StreamEvent};

const STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";

/// The stanza limit of the path (the defaults).
fn limit(path: Path) -> usize {
    match path {
        Path::C2sAuthenticated => 256 * 1024,
        Path::S2sAuthenticated | Path::ComponentAuthenticated => 512 * 1024,
        _ => 16 * 1024,
    }
}

/// Writes a message to bob that never ends, in 4 KiB pieces, looking for the server's answer
/// between pieces; returns the stream error condition and how many bytes were written
/// before it came. Write errors after the server cut the connection are expected.
async fn send_endless_message(
    client: &mut TestClient,
    path: Path,
) -> anyhow::Result<(String, usize)> {
    let start = format!("{}<body>", path.message_start());
    let _ = client.send(&start).await;
    let mut sent = start.len();
    let piece = vec![b'a'; 4096];
    // Four times the largest limit: the server must have answered long before.
    while sent < 4 * 512 * 1024 {
        if client.send_raw(&piece).await.is_err() {
            break;
        }
        sent += piece.len();
        match client.next_event_within(Duration::from_millis(5)).await {
            Ok(None) => continue,
            Ok(Some(StreamEvent::Stanza(el))) if el.is("error", STREAM_NS) => {
                return Ok((condition_of(&el)?, sent));
            }
            Ok(Some(other)) => anyhow::bail!("{path:?}: unexpected {other:?}"),
            // Cut off: the error is read below (or was lost with the connection).
            Err(_) => break,
        }
    }
    Ok((client.expect_stream_error().await?, sent))
}

fn condition_of(error: &xmppd_xml::Element) -> anyhow::Result<String> {
    error
        .children()
        .find(|c| c.ns() == STREAMS && c.name() != "text")
        .map(|c| c.name().to_owned())
        .ok_or_else(|| anyhow::anyhow!("stream error without condition: {error}"))
}

#[tokio::test]
async fn an_oversized_stanza_is_cut_off_on_every_path() -> anyhow::Result<()> {
    let t = Target::start().await?;
    let mut bob = online(&t.server, "bob").await?;
    for path in Path::ALL {
        let mut client = reach(&t, path).await?;
        let (condition, sent) = send_endless_message(&mut client, path).await?;
        assert_eq!(condition, "policy-violation", "{path:?}");
        let limit = limit(path);
        // The server answers after the limit (nothing less is refused) and reads no more
        // than what was in flight then.
        assert!(sent > limit, "{path:?}: refused after {sent} bytes");
        assert!(
            sent < limit + 256 * 1024,
            "{path:?}: answered only after {sent} bytes (limit {limit})"
        );
        client.expect_closed().await?;
    }
    bob.expect_silence(SILENCE).await?;
    Ok(())
}

/// Sends `bytes` one byte at a time, `gap` apart, until the stream ends; the condition.
async fn dribble(client: &mut TestClient, bytes: &[u8], gap: Duration) -> anyhow::Result<String> {
    for byte in bytes {
        if client.send_raw(&[*byte]).await.is_err() {
            break;
        }
        match client.next_event_within(gap).await? {
            None => continue,
            Some(StreamEvent::Stanza(el)) if el.is("error", STREAM_NS) => return condition_of(&el),
            // The server's header and features, when the dribbled header completes.
            Some(_) => continue,
        }
    }
    client.expect_stream_error().await
}

/// What a slowloris peer dribbles on `path`: the stream header, or after it the first
/// element of negotiation.
fn dribbled(path: Path) -> String {
    match path {
        Path::C2sStartTls | Path::C2sDirectTls => format!(
            "{}<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{}</auth>",
            path.header(),
            "A".repeat(200)
        ),
        Path::S2sStartTls => format!(
            "{}<db:result from='a.test' to='b.test'>{}</db:result>",
            path.header()
                .replace(" version=", " xmlns:db='jabber:server:dialback' version="),
            "0".repeat(200)
        ),
        _ => path.header(),
    }
}

#[tokio::test]
async fn slowloris_is_cut_at_the_negotiation_deadline() -> anyhow::Result<()> {
    let deadline = Duration::from_secs(2);
    let t = Target::start_with(|c| {
        c.limits.auth_timeout = deadline;
        c.s2s.settings.negotiation_timeout = deadline;
        c.component_handshake_timeout = deadline;
    })
    .await?;
    // A byte every 100 ms: never idle, never done. The header alone takes over 10 s.
    let gap = Duration::from_millis(100);
    let paths = [
        Path::C2sPlain,
        Path::C2sStartTls,
        Path::C2sDirectTls,
        Path::S2sPlain,
        Path::S2sStartTls,
        Path::ComponentHandshake,
    ];
    let attempts = paths.map(|path| {
        let t = &t;
        async move {
            let mut client = before_header(t, path).await?;
            let started = tokio::time::Instant::now();
            let condition = dribble(&mut client, dribbled(path).as_bytes(), gap).await?;
            anyhow::Ok((path, condition, started.elapsed()))
        }
    });
    for result in futures::future::join_all(attempts).await {
        let (path, condition, waited) = result?;
        assert_eq!(condition, "connection-timeout", "{path:?}");
        // Not before the deadline: the dribbling peer was served until then.
        assert!(
            waited >= deadline - Duration::from_millis(300),
            "{path:?}: cut after {waited:?}"
        );
    }
    Ok(())
}
