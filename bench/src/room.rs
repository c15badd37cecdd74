//! The group chat scenario's I/O-free part: the stanzas an occupant writes (XEP-0045 join,
//! the owner's room configuration, an XEP-0313 count query), what it looks for in what comes
//! back, and the per-occupant accounting of the copies it receives.
//!
//! **Join** (XEP-0045 §7.2): presence to `room@service/nick` with
//! `<x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x>`, so that no
//! discussion history is sent (§7.2.15). The join is complete when the occupant's own
//! presence comes back from its occupant JID (§7.2.3, status code 110); a new room adds status
//! code 201 (§10.1.1) and stays locked until its owner submits a configuration.
//!
//! **Creation**: the owner submits the configuration form (§10.1.2: an empty form makes an
//! instant room). With an archiving field the form carries `FORM_TYPE` and that one field
//! (§10.1.3): `muc#roomconfig_enablearchiving` for xmppd and Prosody's `mod_muc_mam`,
//! `muc#roomconfig_mam` for ejabberd. Every other setting keeps the server's default.
//!
//! **Accounting**: the bodies carry `seq sent_ns`, where `seq` names the sender and its
//! message number ([`seq`]); each occupant counts, per sender, the copies reflected by the
//! room (§7.4: the room sends every occupant, the sender included, a copy) and whether they
//! came in order. [`verify`] then says whether every occupant got every message exactly
//! once.

use memchr::memmem;

use crate::scan::{Delivery, Seen, attr, write_message_of_type};

/// XEP-0045's join namespace.
pub const NS_MUC: &str = "http://jabber.org/protocol/muc";
/// The owner's namespace (room configuration).
pub const NS_MUC_OWNER: &str = "http://jabber.org/protocol/muc#owner";
/// The room configuration form's `FORM_TYPE`.
pub const FORM_ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
/// XEP-0313 (message archive management), version 2.
pub const NS_MAM: &str = "urn:xmpp:mam:2";
/// XEP-0059 (result set management), for a count without items.
pub const NS_RSM: &str = "http://jabber.org/protocol/rsm";

/// The id of the owner's configuration request.
pub const CONFIG_ID: &[u8] = b"muc-config";
/// The id of the archive count query.
pub const COUNT_ID: &[u8] = b"muc-count";

/// Message numbers of one sender stay below this; `seq = sender × SENDER_STRIDE + n`.
pub const SENDER_STRIDE: u64 = 1_000_000_000;

/// The sequence number of sender `sender`'s message `n`.
pub fn seq(sender: usize, n: u64) -> u64 {
    sender as u64 * SENDER_STRIDE + n
}

/// How room archiving is set when the room is created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archiving {
    /// Archiving wanted.
    pub on: bool,
    /// The configuration field that says so (`None`: the server's default decides, and the
    /// owner submits an empty form).
    pub field: Option<String>,
}

/// One room of the scenario.
#[derive(Clone, Debug)]
pub struct Room {
    /// `room@service`.
    jid: String,
}

/// What an occupant learned from a presence about its own join.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Joined {
    /// In the room; `created` when the room was new (status code 201).
    Yes {
        /// The room did not exist before this join.
        created: bool,
    },
    /// The room refused the join (an error presence), with the error's bytes.
    Refused(String),
}

impl Room {
    /// The room `name` at the MUC service `service`.
    pub fn new(name: &str, service: &str) -> Self {
        Room {
            jid: format!("{name}@{service}"),
        }
    }

    /// The room's bare JID.
    pub fn jid(&self) -> &str {
        &self.jid
    }

    /// Appends the join presence of `nick`.
    pub fn join(&self, nick: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(
            format!(
                "<presence to='{}/{nick}'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x>\
                 </presence>",
                self.jid
            )
            .as_bytes(),
        );
    }

    /// Appends the owner's configuration: an instant room, or one with archiving set.
    pub fn configure(&self, archiving: &Archiving, out: &mut Vec<u8>) {
        let fields = match &archiving.field {
            None => String::new(),
            Some(field) => format!(
                "<field var='FORM_TYPE' type='hidden'><value>{FORM_ROOMCONFIG}</value></field>\
                 <field var='{field}'><value>{}</value></field>",
                u8::from(archiving.on)
            ),
        };
        out.extend_from_slice(
            format!(
                "<iq type='set' to='{}' id='{}'><query xmlns='{NS_MUC_OWNER}'>\
                 <x xmlns='jabber:x:data' type='submit'>{fields}</x></query></iq>",
                self.jid,
                String::from_utf8_lossy(CONFIG_ID)
            )
            .as_bytes(),
        );
    }

    /// Appends a query of the room's archive for one message and the total a server reports
    /// in `<fin><set><count/>` (XEP-0313 §4.3 with XEP-0059 §2.6, where the count is
    /// optional: the one message shows an archive that is not empty either way).
    pub fn count_query(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(
            format!(
                "<iq type='set' to='{}' id='{}'><query xmlns='{NS_MAM}'>\
                 <set xmlns='{NS_RSM}'><max>1</max></set></query></iq>",
                self.jid,
                String::from_utf8_lossy(COUNT_ID)
            )
            .as_bytes(),
        );
    }

    /// Appends one 100-byte benchmark message to the room.
    pub fn message(&self, seq: u64, sent_ns: u64, out: &mut Vec<u8>) {
        write_message_of_type(out, &self.jid, "groupchat", seq, sent_ns);
    }

    /// Whether `from` is an occupant JID of this room (`room@service/…`).
    pub fn is_occupant(&self, from: Option<&[u8]>) -> bool {
        from.and_then(|f| f.strip_prefix(self.jid.as_bytes()))
            .is_some_and(|rest| rest.first() == Some(&b'/'))
    }

    /// What a presence says about `nick`'s own join: `None` for anyone else's presence.
    pub fn own_presence(&self, nick: &str, seen: &Seen<'_>) -> Option<Joined> {
        let Seen::Presence { from, kind, inner } = *seen else {
            return None;
        };
        let rest = from?
            .strip_prefix(self.jid.as_bytes())?
            .strip_prefix(b"/")?;
        if rest != nick.as_bytes() {
            return None;
        }
        match kind {
            Some(b"error") => Some(Joined::Refused(excerpt(inner))),
            Some(b"unavailable") => Some(Joined::Refused("unavailable presence".to_owned())),
            _ => Some(Joined::Yes {
                created: status_codes(inner).any(|c| c == b"201"),
            }),
        }
    }
}

/// At most 300 bytes of `bytes`, for a report.
pub fn excerpt(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned()
}

/// The `code` of every `<status/>` in a presence's inner bytes (XEP-0045 §15.6).
pub fn status_codes(inner: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut pos = 0;
    std::iter::from_fn(move || {
        while let Some(at) = memmem::find(&inner[pos..], b"<status").map(|i| pos + i) {
            let name_end = at + b"<status".len();
            let gt = memchr::memchr(b'>', &inner[name_end..]).map(|i| name_end + i)?;
            pos = gt + 1;
            // `<status>` text of a presence has no code; `<statusx` is another element.
            if !inner.get(name_end).is_some_and(|b| b.is_ascii_whitespace()) {
                continue;
            }
            let attrs = &inner[name_end..gt];
            if let Some(code) = attr(attrs.strip_suffix(b"/").unwrap_or(attrs), b"code") {
                return Some(code);
            }
        }
        None
    })
}

/// Whether a message's inner bytes are an archive query's result (XEP-0313 §4.2).
pub fn is_archive_result(inner: &[u8]) -> bool {
    memmem::find(inner, b"<result").is_some() && memmem::find(inner, NS_MAM.as_bytes()).is_some()
}

/// The `<count>` of an archive query's `<fin/>` (in the iq's inner bytes).
pub fn archive_count(inner: &[u8]) -> Option<u64> {
    let start = memmem::find(inner, b"<count>")? + b"<count>".len();
    let end = memmem::find(&inner[start..], b"</count>")? + start;
    let digits = inner[start..end].trim_ascii();
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Messages each sender may have on their way (sent, not yet received by every occupant) so
/// that at most about `in_flight` copies are on their way in the whole room: at least one.
pub fn window_messages(in_flight: u64, senders: usize, occupants: usize) -> u64 {
    let per_message = (senders.max(1) * occupants.max(1)) as u64;
    in_flight.div_ceil(per_message).max(1)
}

/// What one occupant received from one sender.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lane {
    /// Copies received.
    pub received: u64,
    /// The message number expected next, if the copies come in order.
    pub next: u64,
}

/// What one occupant received.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    /// Per sender.
    pub lanes: Vec<Lane>,
    /// Copies whose number was not the next expected from their sender.
    pub out_of_order: u64,
    /// Bodies from the room that name no sender of this run.
    pub strays: u64,
    /// Error messages received (a refused groupchat message comes back as one).
    pub errors: u64,
    /// The first of them.
    pub first_error: Option<String>,
}

impl Tally {
    /// Nothing received yet from any of `senders` senders.
    pub fn new(senders: usize) -> Self {
        Tally {
            lanes: vec![Lane::default(); senders],
            ..Tally::default()
        }
    }

    /// Records a message this occupant received; returns the sender and message number of a
    /// benchmark copy reflected by `room`. Anything else (other rooms, chat messages left
    /// over in offline storage from other scenarios, subjects) is not a copy.
    pub fn record(&mut self, room: &Room, seen: &Seen<'_>) -> Option<(usize, u64)> {
        let Seen::Message { from, kind, inner } = *seen else {
            return None;
        };
        if kind == Some(b"error") {
            self.errors += 1;
            self.first_error.get_or_insert_with(|| excerpt(inner));
            return None;
        }
        if kind != Some(b"groupchat") || !room.is_occupant(from) {
            return None;
        }
        let Delivery { seq, .. } = crate::scan::delivery_in(inner)?;
        let sender = usize::try_from(seq / SENDER_STRIDE).ok();
        let Some((sender, lane)) = sender.and_then(|s| self.lanes.get_mut(s).map(|lane| (s, lane)))
        else {
            self.strays += 1;
            return None;
        };
        let n = seq % SENDER_STRIDE;
        if n != lane.next {
            self.out_of_order += 1;
        }
        lane.next = lane.next.max(n + 1);
        lane.received += 1;
        Some((sender, n))
    }
}

/// Every occupant's tally against what each sender sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Copies that should have arrived: messages sent × occupants.
    pub expected: u64,
    /// Copies that did.
    pub received: u64,
    /// Copies missing, summed over occupants and senders.
    pub missing: u64,
    /// Copies received more often than sent.
    pub extra: u64,
    /// Occupants that lack at least one message.
    pub occupants_short: u64,
}

impl Verdict {
    /// Every occupant received every message exactly once (by count).
    pub fn complete(&self) -> bool {
        self.missing == 0 && self.extra == 0 && self.received == self.expected
    }
}

/// Compares each tally with `sent` (messages per sender). `occupants` counts the room's
/// occupants, so that one whose tally is missing (its task failed) counts as short.
pub fn verify(tallies: &[Tally], sent: &[u64], occupants: usize) -> Verdict {
    let total: u64 = sent.iter().sum();
    let mut v = Verdict {
        expected: total * occupants as u64,
        ..Verdict::default()
    };
    for t in tallies {
        let mut short = false;
        for (s, &sent) in sent.iter().enumerate() {
            let got = t.lanes.get(s).map_or(0, |l| l.received);
            v.received += got;
            v.missing += sent.saturating_sub(got);
            v.extra += got.saturating_sub(sent);
            short |= got < sent;
        }
        v.occupants_short += u64::from(short);
    }
    let absent = occupants.saturating_sub(tallies.len()) as u64;
    v.occupants_short += absent;
    v.missing += absent * total;
    v
}

#[cfg(test)]
#[path = "room_tests.rs"]
mod tests;
