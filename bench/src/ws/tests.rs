//! The frame codec, the stanza splitter and the stream against a server end written here
//! (unmasked frames out, masked frames in), in memory.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::frame::{self, Control, Decoder, FrameError, MaskKeys, Splitter};
use super::*;

/// A server frame: final unless `fin` is false, unmasked.
fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    let len = payload.len();
    if len < 126 {
        out.push(len as u8);
    } else if len <= 0xffff {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

/// Decodes one client frame as a server does: (opcode, unmasked payload, bytes used).
fn client_frame(bytes: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (b0, b1) = (*bytes.first()?, *bytes.get(1)?);
    assert_eq!(b0 & 0x80, 0x80, "every client frame is final");
    assert_eq!(
        b1 & 0x80,
        0x80,
        "every client frame is masked (RFC 6455 §5.3)"
    );
    let (len, at) = match b1 & 0x7f {
        126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
        127 => {
            let mut l = [0u8; 8];
            l.copy_from_slice(&bytes[2..10]);
            (usize::try_from(u64::from_be_bytes(l)).ok()?, 10)
        }
        n => (usize::from(n), 2),
    };
    let key = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
    let mut payload = bytes.get(at + 4..at + 4 + len)?.to_vec();
    frame::apply_mask(&mut payload, key);
    Some((b0 & 0x0f, payload, at + 4 + len))
}

fn all_client_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while let Some((op, payload, used)) = client_frame(bytes) {
        frames.push((op, payload));
        bytes = &bytes[used..];
    }
    assert!(
        bytes.is_empty(),
        "{} bytes left after the last frame",
        bytes.len()
    );
    frames
}

#[test]
fn encoded_frames_round_trip_with_7_16_and_64_bit_lengths() {
    let mut keys = MaskKeys::from_seed(7);
    for len in [0usize, 1, 7, 8, 125, 126, 127, 0xffff, 0x1_0000, 70_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        frame::encode(&mut out, frame::OP_TEXT, &payload, keys.next_key());
        let header = match len {
            0..=125 => 2,
            126..=0xffff => 4,
            _ => 10,
        };
        assert_eq!(out.len(), header + 4 + len, "length {len}");
        if len >= 8 {
            assert_ne!(&out[header + 4..], &payload[..], "the payload is masked");
        }
        let (op, back, used) = client_frame(&out).unwrap_or_else(|| panic!("frame of {len}"));
        assert_eq!((op, used), (frame::OP_TEXT, out.len()));
        assert_eq!(back, payload, "length {len}");
    }
}

#[test]
fn masking_keys_differ_from_frame_to_frame_and_connection_to_connection() {
    let mut a = MaskKeys::from_os().unwrap_or_else(|e| panic!("{e}"));
    let mut b = MaskKeys::from_os().unwrap_or_else(|e| panic!("{e}"));
    let ka: Vec<[u8; 4]> = (0..64).map(|_| a.next_key()).collect();
    let kb: Vec<[u8; 4]> = (0..64).map(|_| b.next_key()).collect();
    assert_ne!(ka, kb);
    let distinct: std::collections::HashSet<_> = ka.iter().collect();
    assert!(distinct.len() > 60, "{distinct:?}");
}

#[test]
fn apply_mask_matches_the_bytewise_definition() {
    let key = [0x12, 0x34, 0x56, 0x78];
    for len in 0..40 {
        let data: Vec<u8> = (0..len).map(|i| i as u8 ^ 0xa5).collect();
        let mut fast = data.clone();
        frame::apply_mask(&mut fast, key);
        let slow: Vec<u8> = data
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ key[i % 4])
            .collect();
        assert_eq!(fast, slow, "length {len}");
    }
}

#[test]
fn decoder_takes_frames_split_anywhere_and_several_per_read() {
    let big = vec![b'x'; 70_000];
    let mut wire = server_frame(frame::OP_TEXT, true, b"<message><body>1</body></message>");
    wire.extend(server_frame(frame::OP_TEXT, true, &big));
    wire.extend(server_frame(frame::OP_TEXT, false, b"<presence"));
    wire.extend(server_frame(frame::OP_CONTINUATION, true, b"/>"));
    let mut expected = b"<message><body>1</body></message>".to_vec();
    expected.extend_from_slice(&big);
    expected.extend_from_slice(b"<presence/>");
    // All at once, then in pieces of every size from 1 byte.
    for piece in [wire.len(), 1, 2, 3, 5, 13, 1000, 4096] {
        let mut d = Decoder::with_capacity(1024);
        let mut data = Vec::new();
        for chunk in wire.chunks(piece) {
            d.feed(chunk);
            let control = d.next(&mut data).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(control, None, "no control frame was sent");
        }
        assert_eq!(data.len(), expected.len(), "pieces of {piece}");
        assert_eq!(data, expected, "pieces of {piece}");
    }
}

#[test]
fn decoder_stops_at_control_frames_and_refuses_what_rfc_6455_forbids() {
    let mut d = Decoder::default();
    let mut wire = server_frame(frame::OP_TEXT, true, b"<a/>");
    wire.extend(server_frame(frame::OP_PING, true, b"hi"));
    wire.extend(server_frame(frame::OP_TEXT, true, b"<b/>"));
    wire.extend(server_frame(frame::OP_CLOSE, true, &1001u16.to_be_bytes()));
    d.feed(&wire);
    let mut data = Vec::new();
    assert_eq!(d.next(&mut data), Ok(Some(Control::Ping(b"hi".to_vec()))));
    assert_eq!(data, b"<a/>");
    assert_eq!(d.next(&mut data), Ok(Some(Control::Close(Some(1001)))));
    assert_eq!(data, b"<a/><b/>");
    assert_eq!(d.next(&mut data), Ok(None));

    let refused = |wire: Vec<u8>| {
        let mut d = Decoder::default();
        d.feed(&wire);
        d.next(&mut Vec::new())
    };
    let mut masked = Vec::new();
    frame::encode(&mut masked, frame::OP_TEXT, b"<a/>", [1, 2, 3, 4]);
    assert_eq!(refused(masked), Err(FrameError::Masked));
    let mut rsv = server_frame(frame::OP_TEXT, true, b"<a/>");
    rsv[0] |= 0x40;
    assert_eq!(refused(rsv), Err(FrameError::Reserved));
    assert_eq!(
        refused(server_frame(0x3, true, b"")),
        Err(FrameError::Opcode(3))
    );
    assert_eq!(
        refused(server_frame(frame::OP_PING, false, b"")),
        Err(FrameError::Control)
    );
    assert_eq!(
        refused(server_frame(frame::OP_PING, true, &[0; 126])),
        Err(FrameError::Control)
    );
    assert_eq!(
        refused(server_frame(frame::OP_CONTINUATION, true, b"x")),
        Err(FrameError::Fragments)
    );
    let mut two = server_frame(frame::OP_TEXT, false, b"<a");
    two.extend(server_frame(frame::OP_TEXT, true, b"<b/>"));
    assert_eq!(refused(two), Err(FrameError::Fragments));
    let mut huge = vec![0x81, 127];
    huge.extend_from_slice(&(u64::MAX / 2).to_be_bytes());
    assert_eq!(refused(huge), Err(FrameError::TooLong(u64::MAX / 2)));
}

fn split_all(splitter: &mut Splitter, pieces: &[&[u8]]) -> Vec<String> {
    let mut got = Vec::new();
    for p in pieces {
        splitter.split(p, |e| got.push(String::from_utf8_lossy(e).into_owned()));
    }
    got
}

#[test]
fn splitter_cuts_writes_into_top_level_elements() {
    let batch = b"<a xmlns='urn:xmpp:sm:3' h='3'/><message to='b@l' id='m1'><body>1 2 xx</body></message>\n<r xmlns='urn:xmpp:sm:3'/>";
    let want = [
        "<a xmlns='urn:xmpp:sm:3' h='3'/>",
        "<message to='b@l' id='m1'><body>1 2 xx</body></message>",
        "<r xmlns='urn:xmpp:sm:3'/>",
    ];
    assert_eq!(split_all(&mut Splitter::default(), &[batch]), want);
    // The same bytes written in pieces of every size come out as the same elements.
    for size in 1..batch.len() {
        let pieces: Vec<&[u8]> = batch.chunks(size).collect();
        assert_eq!(
            split_all(&mut Splitter::default(), &pieces),
            want,
            "pieces of {size}"
        );
    }
    // `>` and `/` in attribute values, nested elements of the same name, empty writes.
    let tricky: &[&[u8]] = &[
        b"<iq id='a>b' to=\"x/y\"><q><q/><q a='/'></q></q></iq>",
        b"",
        b"<presence/>",
    ];
    assert_eq!(
        split_all(&mut Splitter::default(), tricky),
        [
            "<iq id='a>b' to=\"x/y\"><q><q/><q a='/'></q></q></iq>",
            "<presence/>"
        ]
    );
}

/// A client stream over one end of a pipe; the other end plays the server.
fn pair() -> (WsStream<tokio::io::DuplexStream>, tokio::io::DuplexStream) {
    let (client, server) = tokio::io::duplex(1 << 20);
    (WsStream::new(client, MaskKeys::from_seed(1)), server)
}

async fn read_some(server: &mut tokio::io::DuplexStream) -> Vec<u8> {
    let mut buf = vec![0u8; 1 << 16];
    let n = tokio::time::timeout(Duration::from_secs(5), server.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("nothing written"))
        .unwrap_or_else(|e| panic!("{e}"));
    buf.truncate(n);
    buf
}

#[tokio::test]
async fn writes_go_out_one_stanza_per_masked_text_frame() {
    let (mut ws, mut server) = pair();
    ws.write_all(b"<message to='b'><body>1</body></message><message to='b'><body>2</body>")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    ws.write_all(b"</message>")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    ws.flush().await.unwrap_or_else(|e| panic!("{e}"));
    let frames = all_client_frames(&read_some(&mut server).await);
    let sent = |n: u8| {
        let mut m = b"<message xmlns='jabber:client' to='b'><body>".to_vec();
        m.push(n);
        m.extend_from_slice(b"</body></message>");
        (frame::OP_TEXT, m)
    };
    assert_eq!(frames, [sent(b'1'), sent(b'2')]);
}

#[test]
fn stanzas_get_the_content_namespace_and_other_elements_stay_as_written() {
    let cases: &[(&[u8], &[u8])] = &[
        (b"<presence/>", b"<presence xmlns='jabber:client'/>"),
        (
            b"<iq type='set' id='b'><bind/></iq>",
            b"<iq xmlns='jabber:client' type='set' id='b'><bind/></iq>",
        ),
        (
            b"<message xmlns='jabber:client' to='a'/>",
            b"<message xmlns='jabber:client' to='a'/>",
        ),
        (
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>x</auth>",
            b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>x</auth>",
        ),
        (b"<r xmlns='urn:xmpp:sm:3'/>", b"<r xmlns='urn:xmpp:sm:3'/>"),
        (b"<iqx/>", b"<iqx/>"),
    ];
    let mut keys = MaskKeys::from_seed(3);
    for (written, sent) in cases {
        let mut out = Vec::new();
        frame::encode_element(&mut out, written, keys.next_key());
        assert_eq!(all_client_frames(&out), [(frame::OP_TEXT, sent.to_vec())]);
    }
    // A long stanza takes the 16-bit length with the namespace counted.
    let long = format!("<message to='a'><body>{}</body></message>", "x".repeat(200));
    let mut out = Vec::new();
    frame::encode_element(&mut out, long.as_bytes(), keys.next_key());
    let frames = all_client_frames(&out);
    assert_eq!(
        frames[0].1.len(),
        long.len() + " xmlns='jabber:client'".len()
    );
}

#[tokio::test]
async fn a_ping_from_the_server_is_answered_with_a_pong_while_reading() {
    let (mut ws, mut server) = pair();
    let mut wire = server_frame(frame::OP_PING, true, b"keepalive");
    wire.extend(server_frame(frame::OP_TEXT, true, b"<message/>"));
    server
        .write_all(&wire)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut buf = [0u8; 64];
    let n = ws.read(&mut buf).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&buf[..n], b"<message/>");
    let frames = all_client_frames(&read_some(&mut server).await);
    assert_eq!(frames, [(frame::OP_PONG, b"keepalive".to_vec())]);
}

#[tokio::test]
async fn a_close_from_the_server_is_echoed_and_ends_the_stream() {
    let (mut ws, mut server) = pair();
    let mut wire = server_frame(
        frame::OP_TEXT,
        true,
        b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>",
    );
    wire.extend(server_frame(frame::OP_CLOSE, true, &1000u16.to_be_bytes()));
    server
        .write_all(&wire)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut got = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), ws.read_to_end(&mut got))
        .await
        .unwrap_or_else(|_| panic!("the stream did not end"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        &got[..n],
        b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"
    );
    let frames = all_client_frames(&read_some(&mut server).await);
    assert_eq!(frames, [(frame::OP_CLOSE, 1000u16.to_be_bytes().to_vec())]);
    // Shutting down afterwards sends no second close.
    ws.shutdown().await.unwrap_or_else(|e| panic!("{e}"));
    let mut rest = Vec::new();
    server
        .read_to_end(&mut rest)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test]
async fn a_server_masking_its_frames_is_an_error_not_data() {
    let (mut ws, mut server) = pair();
    let mut masked = Vec::new();
    frame::encode(&mut masked, frame::OP_TEXT, b"<message/>", [9, 9, 9, 9]);
    server
        .write_all(&masked)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut buf = [0u8; 64];
    let err = ws.read(&mut buf).await.err();
    assert_eq!(err.map(|e| e.kind()), Some(std::io::ErrorKind::InvalidData));
}

#[test]
fn the_accept_key_is_rfc_6455s_example() {
    // RFC 6455 §1.3.
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}

#[test]
fn an_upgrade_answer_needs_101_the_accept_key_and_the_xmpp_subprotocol() {
    let accept = accept_key("k");
    let ok = format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
         sec-websocket-accept: {accept}\r\nsec-websocket-protocol: xmpp\r\n\r\n"
    );
    assert!(check_answer(ok.as_bytes(), &accept).is_ok());
    let no_protocol = ok.replace("sec-websocket-protocol: xmpp\r\n", "");
    assert!(check_answer(no_protocol.as_bytes(), &accept).is_err());
    let wrong_key = ok.replace(&accept, "AAAA");
    assert!(check_answer(wrong_key.as_bytes(), &accept).is_err());
    let refused = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
    assert!(check_answer(refused.as_bytes(), &accept).is_err());
}
