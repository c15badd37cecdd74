//! The decoder fed as a client writes (masked frames), split at every byte, and every refusal
//! with its close code.

use super::*;

const LIMITS: FrameLimits = FrameLimits {
    max_message: 1000,
    max_fragments: 4,
};

/// A masked client frame.
fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12, 0x34, 0x56, 0x78];
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

fn decode(bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
    let mut d = Decoder::new(LIMITS);
    let mut out = Vec::new();
    d.feed(bytes, &mut out)?;
    Ok(out)
}

#[test]
fn text_ping_pong_close() {
    let mut bytes = client_frame(true, OP_TEXT, b"<open/>");
    bytes.extend(client_frame(true, OP_PING, b"hi"));
    bytes.extend(client_frame(true, OP_PONG, b""));
    bytes.extend(client_frame(true, OP_CLOSE, &[0x03, 0xE8, b'o', b'k']));
    assert_eq!(
        decode(&bytes).unwrap(),
        vec![
            Frame::Text(b"<open/>".to_vec()),
            Frame::Ping(b"hi".to_vec()),
            Frame::Pong,
            Frame::Close(Some(1000)),
        ]
    );
}

#[test]
fn any_split_gives_the_same_frames_and_frees_the_buffer() {
    let long = vec![b'a'; 300];
    let mut bytes = client_frame(false, OP_TEXT, b"<mess");
    bytes.extend(client_frame(true, OP_PING, b""));
    bytes.extend(client_frame(true, OP_CONTINUATION, b"age/>"));
    bytes.extend(client_frame(true, OP_TEXT, &long));
    let whole = decode(&bytes).unwrap();
    assert_eq!(
        whole,
        vec![
            Frame::Ping(Vec::new()),
            Frame::Text(b"<message/>".to_vec()),
            Frame::Text(long.clone()),
        ]
    );
    for chunk in [1, 2, 3, 7, 100] {
        let mut d = Decoder::new(LIMITS);
        let mut out = Vec::new();
        for piece in bytes.chunks(chunk) {
            d.feed(piece, &mut out).unwrap();
        }
        assert_eq!(out, whole, "split every {chunk} bytes");
        assert!(d.is_idle(), "nothing held once every frame is whole");
    }
}

#[test]
fn a_frame_over_the_limit_is_refused_from_its_header() {
    // Only the header and the first bytes of a huge frame arrive: refused at once, 1009.
    let mut header = client_frame(true, OP_TEXT, &vec![b'x'; 1001]);
    header.truncate(20);
    let err = decode(&header).unwrap_err();
    assert_eq!(err.code(), code::TOO_BIG);
    // 64-bit lengths too.
    let mut huge = vec![0x81, 0x80 | 127];
    huge.extend_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(decode(&huge).unwrap_err().code(), code::TOO_BIG);
}

#[test]
fn fragments_add_up_to_the_limit() {
    let mut bytes = client_frame(false, OP_TEXT, &[b'a'; 600]);
    bytes.extend(client_frame(true, OP_CONTINUATION, &[b'a'; 401]));
    assert_eq!(decode(&bytes).unwrap_err().code(), code::TOO_BIG);
}

#[test]
fn a_flood_of_continuation_frames_is_refused_after_the_cap() {
    let mut d = Decoder::new(LIMITS);
    let mut out = Vec::new();
    d.feed(&client_frame(false, OP_TEXT, b"<"), &mut out)
        .unwrap();
    let mut refused_after = None;
    for i in 1..10_000 {
        if let Err(e) = d.feed(&client_frame(false, OP_CONTINUATION, b"a"), &mut out) {
            assert_eq!(e.code(), code::POLICY);
            refused_after = Some(i);
            break;
        }
    }
    assert_eq!(refused_after, Some(LIMITS.max_fragments));
    assert!(out.is_empty());
    assert!(d.is_idle(), "a refused decoder frees what it held");
}

#[test]
fn protocol_errors() {
    let cases: Vec<(Vec<u8>, u16)> = vec![
        // Unmasked.
        (vec![0x81, 0x01, b'a'], code::PROTOCOL),
        // Reserved bit.
        (client_frame(true, OP_TEXT | 0x40, b"a"), code::PROTOCOL),
        // Unknown opcode.
        (client_frame(true, 0x3, b"a"), code::PROTOCOL),
        // Continuation first.
        (client_frame(true, OP_CONTINUATION, b"a"), code::PROTOCOL),
        // Fragmented ping.
        (client_frame(false, OP_PING, b""), code::PROTOCOL),
        // Long control frame.
        (client_frame(true, OP_PING, &[0; 126]), code::PROTOCOL),
        // Not UTF-8.
        (
            client_frame(true, OP_TEXT, &[0xC3, 0x28]),
            code::INVALID_DATA,
        ),
    ];
    for (bytes, expected) in cases {
        assert_eq!(decode(&bytes).unwrap_err().code(), expected, "{bytes:x?}");
    }
    let mut two_starts = client_frame(false, OP_TEXT, b"a");
    two_starts.extend(client_frame(true, OP_TEXT, b"b"));
    assert_eq!(decode(&two_starts).unwrap_err().code(), code::PROTOCOL);
}

#[test]
fn server_frames_are_unmasked_with_the_shortest_length() {
    let mut out = Vec::new();
    text(&mut out, b"abc");
    assert_eq!(out, [0x81, 3, b'a', b'b', b'c']);
    let mut out = Vec::new();
    text(&mut out, &[0; 200]);
    assert_eq!(&out[..4], &[0x81, 126, 0, 200]);
    let mut out = Vec::new();
    text(&mut out, &[0; 70_000]);
    assert_eq!(&out[..2], &[0x81, 127]);
    assert_eq!(out.len(), 10 + 70_000);
    let mut out = Vec::new();
    close(&mut out, code::TOO_BIG);
    assert_eq!(out, [0x88, 2, 0x03, 0xF1]);
}
