use super::*;
use crate::scan::StanzaScanner;

fn room() -> Room {
    Room::new("bench-10-1", "conference.localhost")
}

fn text(out: &mut Vec<u8>) -> String {
    let s = String::from_utf8_lossy(out).into_owned();
    out.clear();
    s
}

/// Feeds `stream` through the stanza scanner and hands each stanza to `on`.
fn each(stream: &[u8], mut on: impl FnMut(Seen<'_>)) {
    let mut s = StanzaScanner::new();
    s.feed(stream, &mut on);
}

#[test]
fn the_join_asks_for_no_history() {
    let mut out = Vec::new();
    room().join("n3", &mut out);
    assert_eq!(
        text(&mut out),
        "<presence to='bench-10-1@conference.localhost/n3'><x \
         xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>"
    );
}

#[test]
fn an_instant_room_is_an_empty_form_and_archiving_one_field() {
    let mut out = Vec::new();
    let r = room();
    r.configure(
        &Archiving {
            on: true,
            field: None,
        },
        &mut out,
    );
    assert_eq!(
        text(&mut out),
        "<iq type='set' to='bench-10-1@conference.localhost' id='muc-config'><query \
         xmlns='http://jabber.org/protocol/muc#owner'><x xmlns='jabber:x:data' \
         type='submit'></x></query></iq>"
    );
    for (on, value) in [(true, "1"), (false, "0")] {
        r.configure(
            &Archiving {
                on,
                field: Some("muc#roomconfig_mam".into()),
            },
            &mut out,
        );
        let form = text(&mut out);
        assert!(
            form.contains(
                "<field var='FORM_TYPE' type='hidden'><value>\
                 http://jabber.org/protocol/muc#roomconfig</value></field>"
            ),
            "{form}"
        );
        assert!(
            form.contains(&format!(
                "<field var='muc#roomconfig_mam'><value>{value}</value></field>"
            )),
            "{form}"
        );
    }
}

#[test]
fn own_presence_is_told_apart_with_its_status_codes() {
    let r = room();
    // Prosody's and ejabberd's shapes: another occupant first, then our own with 110 (+201).
    let stream = b"<presence from='bench-10-1@conference.localhost/n1' to='u0@localhost/b'>\
        <x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='none' role='participant'/>\
        </x></presence>\
        <presence from='bench-10-1@conference.localhost/n0' to='u0@localhost/b'>\
        <x xmlns='http://jabber.org/protocol/muc#user'><item affiliation='owner' role='moderator'/>\
        <status code='110'/><status code=\"201\"/></x></presence>";
    let mut got = Vec::new();
    each(stream, |seen| got.push(r.own_presence("n0", &seen)));
    assert_eq!(got, vec![None, Some(Joined::Yes { created: true })]);
    // An existing room: 110 without 201.
    let stream = b"<presence from='bench-10-1@conference.localhost/n4'><x \
        xmlns='http://jabber.org/protocol/muc#user'><status code='110'/></x></presence>";
    let mut got = Vec::new();
    each(stream, |seen| got.push(r.own_presence("n4", &seen)));
    assert_eq!(got, vec![Some(Joined::Yes { created: false })]);
    // A nick that only starts like ours, another room, and a refusal.
    let stream = b"<presence from='bench-10-1@conference.localhost/n40'/>\
        <presence from='bench-10-10@conference.localhost/n4'/>\
        <presence from='bench-10-1@conference.localhost/n4' type='error'><error type='cancel'>\
        <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>";
    let mut got = Vec::new();
    each(stream, |seen| got.push(r.own_presence("n4", &seen)));
    assert_eq!(got.len(), 3);
    assert_eq!(got[..2], [None, None]);
    assert!(
        matches!(&got[2], Some(Joined::Refused(e)) if e.contains("service-unavailable")),
        "{got:?}"
    );
}

#[test]
fn status_codes_skip_text_and_other_elements() {
    let inner = b"<status>away</status><statusx code='1'/><status code='110'/>\
        <status\ncode='170' />";
    let codes: Vec<&[u8]> = status_codes(inner).collect();
    assert_eq!(codes, vec![&b"110"[..], &b"170"[..]]);
}

#[test]
fn the_archive_count_is_read_from_fin() {
    let mut out = Vec::new();
    room().count_query(&mut out);
    let q = text(&mut out);
    assert!(q.contains("<query xmlns='urn:xmpp:mam:2'>"), "{q}");
    assert!(q.contains("<max>1</max>"), "{q}");
    assert!(is_archive_result(
        b"<result xmlns='urn:xmpp:mam:2' id='a1'><forwarded xmlns='urn:xmpp:forward:0'>"
    ));
    assert!(!is_archive_result(b"<body>urn:xmpp:mam:2</body>"));
    let fin = b"<fin xmlns='urn:xmpp:mam:2' complete='false'><set \
        xmlns='http://jabber.org/protocol/rsm'><count>12345</count></set></fin>";
    assert_eq!(archive_count(fin), Some(12345));
    assert_eq!(archive_count(b"<count> 7 </count>"), Some(7));
    assert_eq!(archive_count(b"<fin/>"), None);
    assert_eq!(archive_count(b"<count>x</count>"), None);
    assert_eq!(archive_count(b"<count></count>"), None);
}

#[test]
fn the_window_keeps_about_the_copies_asked_for_and_at_least_one_message() {
    assert_eq!(window_messages(4000, 5, 10), 80);
    assert_eq!(window_messages(4000, 5, 100), 8);
    assert_eq!(window_messages(4000, 5, 1000), 1);
    assert_eq!(window_messages(4000, 3, 100), 14);
    assert_eq!(window_messages(0, 0, 0), 1);
}

/// A copy of `seq` as a room reflects it.
fn copy(room: &str, nick: &str, seq: u64) -> String {
    let mut out = Vec::new();
    crate::scan::write_message_of_type(&mut out, "u0@localhost/b", "groupchat", seq, 42);
    String::from_utf8_lossy(&out).replacen(
        "<message ",
        &format!("<message from='{room}/{nick}' "),
        1,
    )
}

#[test]
fn copies_are_counted_per_sender_and_in_order() {
    let r = room();
    let jid = r.jid().to_owned();
    let mut t = Tally::new(2);
    let mut stream = String::new();
    for seq in [seq(0, 0), seq(1, 0), seq(0, 1), seq(1, 2), seq(1, 1)] {
        stream.push_str(&copy(&jid, "n0", seq));
    }
    // Not copies: another room, a chat message (left in offline storage), a subject, a body
    // naming no sender of the run.
    stream.push_str(&copy("other@conference.localhost", "n0", seq(0, 2)));
    stream.push_str(&copy(&jid, "n1", seq(0, 2)).replace("groupchat", "chat"));
    stream.push_str(&format!(
        "<message from='{jid}' type='groupchat'><subject>s</subject></message>"
    ));
    stream.push_str(&copy(&jid, "n9", seq(7, 0)));
    // A refused message comes back as an error.
    stream.push_str(&format!(
        "<message from='{jid}' type='error'><body>0 1 x</body><error type='wait'>\
         <resource-constraint xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></message>"
    ));
    let mut senders = Vec::new();
    each(stream.as_bytes(), |seen| {
        if let Some(s) = t.record(&r, &seen) {
            senders.push(s);
        }
    });
    assert_eq!(senders, vec![(0, 0), (1, 0), (0, 1), (1, 2), (1, 1)]);
    assert_eq!(
        t.lanes,
        vec![
            Lane {
                received: 2,
                next: 2
            },
            Lane {
                received: 3,
                next: 3
            }
        ]
    );
    assert_eq!(t.out_of_order, 2, "1:2 before 1:1, then 1:1 late");
    assert_eq!(t.strays, 1);
    assert_eq!(t.errors, 1);
    assert!(
        t.first_error
            .as_deref()
            .is_some_and(|e| e.contains("resource-constraint"))
    );
}

fn tally(counts: &[u64]) -> Tally {
    Tally {
        lanes: counts
            .iter()
            .map(|&received| Lane {
                received,
                next: received,
            })
            .collect(),
        ..Tally::default()
    }
}

#[test]
fn the_verdict_needs_every_copy_exactly_once() {
    let sent = [3, 2];
    let v = verify(&[tally(&[3, 2]), tally(&[3, 2])], &sent, 2);
    assert!(v.complete(), "{v:?}");
    assert_eq!((v.expected, v.received), (10, 10));
    // One copy missing at one occupant.
    let v = verify(&[tally(&[3, 2]), tally(&[3, 1])], &sent, 2);
    assert!(!v.complete());
    assert_eq!((v.missing, v.extra, v.occupants_short), (1, 0, 1));
    // A duplicate does not make up for a loss elsewhere.
    let v = verify(&[tally(&[4, 2]), tally(&[2, 2])], &sent, 2);
    assert!(!v.complete());
    assert_eq!((v.missing, v.extra, v.received), (1, 1, 10));
    // An occupant whose tally is absent misses everything.
    let v = verify(&[tally(&[3, 2])], &sent, 2);
    assert_eq!((v.missing, v.occupants_short), (5, 1));
    // Nothing sent: nothing expected, complete.
    assert!(verify(&[tally(&[0, 0])], &[0, 0], 1).complete());
}
