//! Tests of the byte scanners: every split point, byte by byte.

use super::*;

fn scan_all(chunks: &[&[u8]]) -> Vec<Delivery> {
    let mut s = Scanner::new();
    let mut out = Vec::new();
    for c in chunks {
        s.feed(c, |d| out.push(d));
    }
    out
}

#[test]
fn message_body_is_100_bytes() {
    let mut out = Vec::new();
    write_message(&mut out, "b@localhost/b", 12345, 987_654_321);
    let text = String::from_utf8(out).unwrap_or_default();
    let body = text
        .split("<body>")
        .nth(1)
        .and_then(|b| b.split("</body>").next())
        .unwrap_or_default();
    assert_eq!(body.len(), BODY_LEN);
    assert!(body.starts_with("12345 987654321 x"));
}

#[test]
fn finds_bodies_split_anywhere() {
    let mut stream = b"<presence from='a@localhost/b'/>".to_vec();
    for seq in 0..3 {
        let mut m = Vec::new();
        write_message(&mut m, "a@localhost/b", seq, seq * 10);
        // Servers add from= and may add attributes to body.
        let m = String::from_utf8(m)
            .unwrap_or_default()
            .replace("<message ", "<message from='b@localhost/b' ")
            .replace("<body>", "<body xmlns='jabber:client'>");
        stream.extend_from_slice(m.as_bytes());
    }
    for split in 1..stream.len() {
        for second in [split, (split + 7).min(stream.len())] {
            let got = scan_all(&[&stream[..split], &stream[split..second], &stream[second..]]);
            let seqs: Vec<u64> = got.iter().map(|d| d.seq).collect();
            assert_eq!(seqs, vec![0, 1, 2], "split at {split}/{second}");
            assert_eq!(got[2].sent_ns, 20);
        }
    }
}

/// A stream with stream management on, as the servers write it: ack requests in both
/// spellings between and after stanzas, an answer to the client's own request, a message
/// with an extra child (an archive's stanza id), a presence and an iq.
fn sm_stream() -> Vec<u8> {
    let mut stream = b"<presence from='a@localhost/b' to='a@localhost/b'/>".to_vec();
    for seq in 0..3 {
        let mut m = Vec::new();
        write_message(&mut m, "a@localhost/b", seq, seq * 10);
        let m = String::from_utf8(m).unwrap_or_default().replace(
            "</body>",
            "</body><stanza-id xmlns='urn:xmpp:sid:0' by='a@localhost' id='x'/>",
        );
        stream.extend_from_slice(m.as_bytes());
        stream.extend_from_slice(if seq == 1 {
            b"<r xmlns=\"urn:xmpp:sm:3\"></r>"
        } else {
            SM_REQUEST
        });
    }
    stream.extend_from_slice(b"<a xmlns='urn:xmpp:sm:3' h='7'/><iq type='get' id='p'>");
    stream.extend_from_slice(b"<ping xmlns='urn:xmpp:ping'/></iq><r xmlns='urn:xmpp:sm:3'/>");
    stream
}

#[test]
fn sm_counts_stanzas_and_requests_split_anywhere() {
    let stream = sm_stream();
    for split in 0..=stream.len() {
        for second in [split, (split + 7).min(stream.len())] {
            let mut s = Scanner::with_sm();
            let mut seqs = Vec::new();
            let mut answers = Vec::new();
            for chunk in [&stream[..split], &stream[split..second], &stream[second..]] {
                s.feed(chunk, |d| seqs.push(d.seq));
                answers.extend(s.take_request());
            }
            assert_eq!(seqs, vec![0, 1, 2], "split at {split}/{second}");
            let sm = s.sm().unwrap_or_default();
            assert_eq!(sm.handled, 5, "split at {split}/{second}");
            assert_eq!(sm.requests, 4, "split at {split}/{second}");
            assert_eq!(sm.acks, 1, "split at {split}/{second}");
            assert!(!sm.requested && !s.closed());
            // Every request is answered, with at least the stanzas before it, and the
            // last answer covers everything.
            assert!(!answers.is_empty() && answers.len() <= 3);
            assert_eq!(answers.last(), Some(&5), "split at {split}/{second}");
        }
    }
}

#[test]
fn sm_byte_by_byte_answers_each_request_with_the_count_before_it() {
    let mut s = Scanner::with_sm();
    let mut answers = Vec::new();
    for b in sm_stream() {
        s.feed(&[b], |_| {});
        answers.extend(s.take_request());
        assert!(s.pending.len() < 200, "{}", s.pending.len());
    }
    assert_eq!(answers, vec![2, 3, 4, 5]);
}

#[test]
fn sm_names_that_only_start_like_ours_are_not_counted() {
    let mut s = Scanner::with_sm();
    s.feed(
        b"<iqx/><messages/><rr xmlns='urn:xmpp:sm:3'/><r xmlns='other'/><a/><presences/>",
        |_| {},
    );
    assert_eq!(s.sm(), Some(SmCount::default()));
    s.feed(b"<stream:error><conflict/></stream:error>", |_| {});
    assert!(s.closed());
    let mut t = Scanner::with_sm();
    t.feed(b"<message/></stream:stream>", |_| {});
    assert!(t.closed());
    assert_eq!(t.sm().map(|sm| sm.handled), Some(1));
}

#[test]
fn acks_wrap_at_2_to_the_32() {
    let mut out = Vec::new();
    write_ack(&mut out, (1 << 32) + 3);
    assert_eq!(out, b"<a xmlns='urn:xmpp:sm:3' h='3'/>");
}

#[test]
fn notices_the_end_of_the_stream() {
    let mut s = Scanner::new();
    s.feed(
        b"<stream:error><conflict/></stream:error></stream:stream>",
        |_| {},
    );
    assert!(s.closed());
}

#[test]
fn accounting_counts_in_flight_and_order() {
    let mut f = Flow::default();
    for _ in 0..5 {
        f.next_seq();
    }
    assert_eq!(f.in_flight(), 5);
    f.arrived(Delivery { seq: 0, sent_ns: 0 });
    f.arrived(Delivery { seq: 2, sent_ns: 0 });
    assert_eq!(f.in_flight(), 3);
    assert_eq!(f.out_of_order, 1);
}

/// What the stanza scanner saw, owned, for comparisons.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    Presence(Option<String>, Option<String>, String),
    Iq(Option<String>, Option<String>, String),
    Message(Option<String>, Option<String>, String),
}

fn text(b: Option<&[u8]>) -> Option<String> {
    b.map(|b| String::from_utf8_lossy(b).into_owned())
}

fn stanzas(chunks: &[&[u8]]) -> (Vec<Got>, bool) {
    let mut s = StanzaScanner::new();
    let mut out = Vec::new();
    for c in chunks {
        s.feed(c, |seen| {
            out.push(match seen {
                Seen::Presence { from, kind, inner } => Got::Presence(
                    text(from),
                    text(kind),
                    String::from_utf8_lossy(inner).into_owned(),
                ),
                Seen::Iq {
                    id, kind, inner, ..
                } => Got::Iq(
                    text(id),
                    text(kind),
                    String::from_utf8_lossy(inner).into_owned(),
                ),
                Seen::Message { from, kind, inner } => Got::Message(
                    text(from),
                    text(kind),
                    String::from_utf8_lossy(inner).into_owned(),
                ),
            })
        });
    }
    (out, s.closed())
}

/// A stream as the three servers write it: self-closing and full presences with
/// children, both quote styles, a message with a body, a roster push, whitespace.
const STREAM: &str = "<presence from='u1@localhost/b' to='u0@localhost/b'>\
    <priority>0</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1'/>\
    </presence> <message from='u2@localhost/b' type='chat'><body>hi</body></message>\
    <presence type=\"unavailable\" from=\"u3@localhost\"/>\n\
    <iq type='set' id='push1' to='u0@localhost/b'><query xmlns='jabber:iq:roster' \
    ver='3'><item subscription='both' jid='u4@localhost'><group>g</group></item></query>\
    </iq><presence from='u5@localhost' type='subscribe' to='u0@localhost'/>\
    <iq id='r' type='result'/>";

fn expected() -> Vec<Got> {
    let s = |v: &str| Some(v.to_owned());
    vec![
        Got::Presence(
            s("u1@localhost/b"),
            None,
            "<priority>0</priority><c xmlns='http://jabber.org/protocol/caps' hash='sha-1'/>"
                .to_owned(),
        ),
        Got::Message(s("u2@localhost/b"), s("chat"), "<body>hi</body>".to_owned()),
        Got::Presence(s("u3@localhost"), s("unavailable"), String::new()),
        Got::Iq(
            s("push1"),
            s("set"),
            "<query xmlns='jabber:iq:roster' ver='3'><item subscription='both' \
             jid='u4@localhost'><group>g</group></item></query>"
                .to_owned(),
        ),
        Got::Presence(s("u5@localhost"), s("subscribe"), String::new()),
        Got::Iq(s("r"), s("result"), String::new()),
    ]
}

#[test]
fn finds_presences_iqs_and_messages_split_anywhere() {
    let stream = STREAM.as_bytes();
    assert_eq!(stanzas(&[stream]), (expected(), false));
    for split in 1..stream.len() {
        for second in [split, (split + 5).min(stream.len())] {
            let got = stanzas(&[&stream[..split], &stream[split..second], &stream[second..]]);
            assert_eq!(got, (expected(), false), "split at {split}/{second}");
        }
    }
}

#[test]
fn one_byte_at_a_time_keeps_little_buffered() {
    let mut s = StanzaScanner::new();
    let mut n = 0;
    for b in STREAM.as_bytes() {
        s.feed(std::slice::from_ref(b), |_| n += 1);
        // Only an unfinished presence or iq (the push is the longest) is held back.
        assert!(s.pending.len() < 200, "{}", s.pending.len());
    }
    assert_eq!(n, expected().len());
    assert!(s.pending.is_empty());
}

#[test]
fn stanza_scanner_notices_the_end_of_the_stream() {
    assert!(stanzas(&[b"<presence from='a'/></stream:stream>"]).1);
    let (got, closed) = stanzas(&[b"<stream:error><conflict xmlns='x'/></stream:error>"]);
    assert!(closed && got.is_empty());
    assert!(!stanzas(&[b"<presence from='a'/><presence"]).1);
}

#[test]
fn names_that_only_start_like_ours_are_skipped() {
    let (got, _) = stanzas(&[b"<presences from='x'/><iqx id='y'/><iq id='z'/>"]);
    assert_eq!(got, vec![Got::Iq(Some("z".into()), None, String::new())]);
}

#[test]
fn attributes_in_both_quote_styles_and_with_spaces() {
    let attrs = b" id='a' from = \"u1@localhost/b\"\ttype='x'";
    assert_eq!(attr(attrs, b"from"), Some(&b"u1@localhost/b"[..]));
    assert_eq!(attr(attrs, b"type"), Some(&b"x"[..]));
    assert_eq!(attr(attrs, b"id"), Some(&b"a"[..]));
    assert_eq!(attr(attrs, b"to"), None);
    // A name that ends like the one asked for is another attribute.
    assert_eq!(attr(b" xfrom='a'", b"from"), None);
    // Malformed lists end the search instead of panicking.
    for bad in [&b" from"[..], b" from=", b" from='x", b" from=x", b"="] {
        assert_eq!(attr(bad, b"from"), None);
    }
}

#[test]
fn roster_items_of_results_and_pushes() {
    let inner = b"<query xmlns='jabber:iq:roster'><item jid='u1@localhost' \
        subscription='both'/><item jid='u2@localhost' ask='subscribe'><group>x</group>\
        </item><items/></query>";
    let items: Vec<_> = roster_items(inner).collect();
    assert_eq!(
        items,
        vec![
            RosterItem {
                jid: b"u1@localhost",
                subscription: Some(b"both"),
            },
            RosterItem {
                jid: b"u2@localhost",
                subscription: None,
            },
        ]
    );
    assert_eq!(roster_items(b"<ping xmlns='urn:xmpp:ping'/>").count(), 0);
    assert_eq!(
        roster_items(b"<query xmlns='jabber:iq:roster'/>").count(),
        0
    );
}

#[test]
fn the_benchmark_body_is_found_in_a_messages_inner_bytes() {
    let mut out = Vec::new();
    write_message_of_type(&mut out, "room@conference.localhost", "groupchat", 7, 99);
    let text = String::from_utf8_lossy(&out).into_owned();
    assert!(
        text.starts_with("<message to='room@conference.localhost' type='groupchat' id='m7'>"),
        "{text}"
    );
    let (got, _) = stanzas(&[&out]);
    let [Got::Message(None, Some(kind), inner)] = &got[..] else {
        panic!("{got:?}");
    };
    assert_eq!(kind, "groupchat");
    assert_eq!(
        delivery_in(inner.as_bytes()),
        Some(Delivery {
            seq: 7,
            sent_ns: 99
        })
    );
    // With attributes and other children around it; not in a `<bodyx>`, nor unfinished.
    assert_eq!(
        delivery_in(b"<stanza-id id='x'/><body xml:lang='en'>3 4 xx</body><x/>"),
        Some(Delivery { seq: 3, sent_ns: 4 })
    );
    assert_eq!(delivery_in(b"<bodyx>3 4</bodyx>"), None);
    assert_eq!(delivery_in(b"<body>3 4"), None);
    assert_eq!(delivery_in(b"<subject>s</subject>"), None);
}
