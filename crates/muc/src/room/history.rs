//! Discussion history (XEP-0045 §7.2.15): the last messages of the room, sent to a new
//! occupant after the occupant list, each with a `<delay/>` from the room (XEP-0203).
//!
//! The room keeps the last `historylength` reflected messages in memory (without `to`). A
//! join's `<history/>` narrows what is sent: `maxstanzas` (the newest that many), `seconds`
//! and `since` (nothing older), and `maxchars` — the total characters of the messages as
//! sent, counted from the newest, so that a client asking for little gets the most recent
//! rather than the oldest. `maxchars='0'` or `maxstanzas='0'` asks for none.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use jid::Jid;
use xmppd_proto::delay::Delay;
use xmppd_proto::muc::HistoryRequest;
use xmppd_xml::Element;

/// One message of the history.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The reflected message without `to`.
    pub(crate) message: Element,
    /// When the room reflected it.
    pub(crate) at: SystemTime,
    /// Its length as sent (bytes of its serialisation, a bound on characters).
    pub(crate) chars: usize,
}

/// The last messages of a room.
#[derive(Debug)]
pub(crate) struct History {
    entries: VecDeque<Entry>,
    capacity: usize,
}

impl History {
    /// An empty history keeping `capacity` messages.
    pub(crate) fn new(capacity: usize) -> Self {
        History {
            entries: VecDeque::with_capacity(capacity.min(64)),
            capacity,
        }
    }

    /// Changes how many messages are kept (a configuration change).
    pub(crate) fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        while self.entries.len() > capacity {
            self.entries.pop_front();
        }
    }

    /// Adds a message, dropping the oldest beyond the capacity.
    pub(crate) fn push(&mut self, message: Element, at: SystemTime) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.entries.pop_front();
        }
        let chars = message.to_bytes().len();
        self.entries.push_back(Entry { message, at, chars });
    }

    /// The messages a join asks for, oldest first, each with its `<delay/>` from `room`.
    pub(crate) fn select(
        &self,
        request: &HistoryRequest,
        room: &Jid,
        now: SystemTime,
    ) -> Vec<Element> {
        let mut since = request.since;
        if let Some(seconds) = request.seconds {
            let limit = now
                .checked_sub(Duration::from_secs(seconds))
                .unwrap_or(SystemTime::UNIX_EPOCH);
            since = Some(since.map_or(limit, |s| s.max(limit)));
        }
        let mut chosen = Vec::new();
        let mut chars = 0usize;
        for entry in self.entries.iter().rev() {
            if request.max_stanzas.is_some_and(|max| chosen.len() >= max) {
                break;
            }
            if since.is_some_and(|s| entry.at < s) {
                break;
            }
            if let Some(max) = request.max_chars {
                chars = chars.saturating_add(entry.chars);
                if chars > max {
                    break;
                }
            }
            chosen.push(entry);
        }
        chosen
            .into_iter()
            .rev()
            .map(|e| {
                let mut m = e.message.clone();
                m.push_child(Delay::new(e.at).with_from(room.clone()).to_element());
                m
            })
            .collect()
    }

    /// How many messages are kept now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: usize) -> Element {
        Element::new("message", "jabber:client").with_attr("id", n.to_string())
    }

    fn ids(v: &[Element]) -> Vec<String> {
        v.iter()
            .map(|m| m.attr("id").unwrap_or("").to_owned())
            .collect()
    }

    #[test]
    fn each_limit_keeps_the_newest_messages_in_order() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut h = History::new(5);
        for n in 0..8 {
            h.push(message(n), start + Duration::from_secs(n as u64 * 10));
        }
        assert_eq!(h.len(), 5);
        let room = Jid::new("room@conference.localhost").unwrap();
        let now = start + Duration::from_secs(75);
        let all = h.select(&HistoryRequest::default(), &room, now);
        assert_eq!(ids(&all), ["3", "4", "5", "6", "7"]);
        assert!(all[0].child("delay", "urn:xmpp:delay").is_some());
        let two = HistoryRequest {
            max_stanzas: Some(2),
            ..HistoryRequest::default()
        };
        assert_eq!(ids(&h.select(&two, &room, now)), ["6", "7"]);
        let recent = HistoryRequest {
            seconds: Some(20),
            ..HistoryRequest::default()
        };
        assert_eq!(ids(&h.select(&recent, &room, now)), ["6", "7"]);
        let since = HistoryRequest {
            since: Some(start + Duration::from_secs(50)),
            ..HistoryRequest::default()
        };
        assert_eq!(ids(&h.select(&since, &room, now)), ["5", "6", "7"]);
        let one_message = message(0).to_bytes().len();
        let chars = HistoryRequest {
            max_chars: Some(one_message),
            ..HistoryRequest::default()
        };
        assert_eq!(ids(&h.select(&chars, &room, now)), ["7"]);
        let none = HistoryRequest {
            max_chars: Some(0),
            ..HistoryRequest::default()
        };
        assert!(h.select(&none, &room, now).is_empty());
        h.set_capacity(1);
        assert_eq!(h.len(), 1);
    }
}
