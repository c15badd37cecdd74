//! Building the cliques' rosters over the protocol (RFC 6121 §3.1), for the presence fan-out
//! scenario: a user's side of the subscription handshake ([`Handshake`]) and what the setup
//! does with the rosters it finds ([`plan`]). No I/O here: stanzas (as [`crate::scan`] finds
//! them) in, bytes to write out, so all of it is tested without a server.

use std::ops::Range;

use crate::clique::{Groups, account_of};
use crate::scan::{Seen, roster_items};

/// Requests of its own that a user has unanswered at once during the setup.
///
/// Sending all of them at once works, but then the backlog waits in the server's queues while
/// each unanswered request is kept in the contact's roster, and Prosody rewrites the whole
/// roster file, kept requests included, on every change: with everything sent at once its
/// setup of 2 × 101 users took 494 s, with 8 at a time 105–311 s (1 × 101: 133 s → 38 s).
pub const REQUEST_WINDOW: usize = 8;

/// One user's side of building its group's clique (RFC 6121 §3.1), without I/O: stanzas in,
/// bytes to write out.
///
/// It subscribes to every member with a higher number, [`REQUEST_WINDOW`] unanswered at a
/// time; answers every request with `subscribed`, and a request from a lower number also with
/// a request back. So for `a < b`: `a → b subscribe`, `b → a subscribed`, `b → a subscribe`,
/// `a → b subscribed`. A request counts as answered when the contact's `subscribed` arrives or a
/// roster push shows subscription `to` or `both`. Roster pushes are acknowledged (RFC 6121
/// §2.1.6) and tell when a contact has reached `both`.
#[derive(Clone, Debug)]
pub struct Handshake {
    me: usize,
    group: Range<usize>,
    prefix: String,
    domain: String,
    /// The next member to ask.
    next: usize,
    /// Own requests not answered yet.
    in_flight: usize,
    /// Per member: our request to it was answered.
    answered: Vec<bool>,
    /// Per member: seen with subscription `both`.
    both: Vec<bool>,
    done: usize,
    /// A star's member other than the hub: its one contact is the hub (the group's first
    /// account, which asks it), so it asks nobody.
    hub_only: bool,
}

impl Handshake {
    /// Account `me` of `group`; JIDs are `<prefix><n>@<domain>`.
    pub fn new(me: usize, group: Range<usize>, prefix: &str, domain: &str) -> Self {
        Handshake {
            me,
            next: me + 1,
            in_flight: 0,
            answered: vec![false; group.len()],
            both: vec![false; group.len()],
            group,
            prefix: prefix.to_owned(),
            domain: domain.to_owned(),
            done: 0,
            hub_only: false,
        }
    }

    /// Account `me`'s side in `groups` (a clique or a star); `None` if it is in none.
    pub fn in_groups(me: usize, groups: &Groups, prefix: &str, domain: &str) -> Option<Self> {
        let group = groups.group_of(me)?;
        let mut hs = Handshake::new(me, group, prefix, domain);
        if groups.contacts_of(me) == 1 && groups.size > 2 {
            hs.hub_only = true;
            hs.next = hs.group.end;
        }
        Some(hs)
    }

    fn presence(&self, out: &mut Vec<u8>, to: usize, kind: &str) {
        let to = jid(&self.prefix, to, &self.domain);
        out.extend_from_slice(format!("<presence to='{to}' type='{kind}'/>").as_bytes());
    }

    /// The opening requests, to the first members with a higher number.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        self.fill(out);
    }

    /// Asks further members while the window has room.
    fn fill(&mut self, out: &mut Vec<u8>) {
        while self.in_flight < REQUEST_WINDOW && self.next < self.group.end {
            self.presence(out, self.next, "subscribe");
            self.next += 1;
            self.in_flight += 1;
        }
    }

    /// Notes that `member` answered our request (once).
    fn answered(&mut self, member: usize) {
        if member > self.me && member < self.next {
            let answered = &mut self.answered[member - self.group.start];
            if !*answered {
                *answered = true;
                self.in_flight -= 1;
            }
        }
    }

    /// Reacts to one stanza.
    pub fn on(&mut self, seen: Seen<'_>, out: &mut Vec<u8>) {
        match seen {
            Seen::Presence {
                from,
                kind: Some(b"subscribe"),
                ..
            } => {
                let Some(from) = self.member(from) else {
                    return;
                };
                self.presence(out, from, "subscribed");
                if from < self.me {
                    self.presence(out, from, "subscribe");
                }
            }
            Seen::Presence {
                from,
                kind: Some(b"subscribed"),
                ..
            } => {
                if let Some(from) = self.member(from) {
                    self.answered(from);
                }
            }
            Seen::Iq {
                id,
                kind: Some(b"set"),
                inner,
                ..
            } => {
                let mut roster = false;
                for item in roster_items(inner) {
                    roster = true;
                    let Some(i) = self.member(Some(item.jid)) else {
                        continue;
                    };
                    match item.subscription {
                        Some(b"to") => self.answered(i),
                        Some(b"both") => {
                            self.answered(i);
                            let both = &mut self.both[i - self.group.start];
                            if !*both {
                                *both = true;
                                self.done += 1;
                            }
                        }
                        _ => {}
                    }
                }
                if let (true, Some(id)) = (roster, id) {
                    out.extend_from_slice(b"<iq type='result' id='");
                    out.extend_from_slice(id);
                    out.extend_from_slice(b"'/>");
                }
            }
            _ => {}
        }
        self.fill(out);
    }

    /// Another member of the group, from a JID.
    fn member(&self, jid: Option<&[u8]>) -> Option<usize> {
        account_of(jid?, self.prefix.as_bytes()).filter(|a| {
            self.group.contains(a) && *a != self.me && (!self.hub_only || *a == self.group.start)
        })
    }

    /// Contacts not yet seen with subscription `both`.
    pub fn missing(&self) -> usize {
        let contacts = if self.hub_only {
            1
        } else {
            self.group.len() - 1
        };
        contacts.saturating_sub(self.done)
    }

    /// Whether every other member has been seen with subscription `both`.
    pub fn complete(&self) -> bool {
        self.missing() == 0
    }
}

/// What a user's roster held before the setup, counting group members only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Existing {
    /// Members with subscription `both`.
    pub both: usize,
    /// Members present at all.
    pub any: usize,
}

/// What the setup has to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// No roster holds a member: run the handshakes.
    Build,
    /// Every roster already holds the whole group with `both`.
    Present,
}

/// Why the rosters could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// Some setup logins failed (the first error is printed by the login loop).
    #[error("{failed} of {total} setup logins failed")]
    Logins {
        /// Failed logins.
        failed: usize,
        /// Logins tried.
        total: usize,
    },
    /// Roster requests got no result in time, or the session ended.
    #[error("{users} users got no roster result")]
    RosterFetch {
        /// Users without a result.
        users: usize,
    },
    /// Some rosters hold part of the group already.
    #[error(
        "{users} users already have part of their group as contacts (an interrupted earlier \
         setup?); use fresh accounts (--fanout-first)"
    )]
    Partial {
        /// Users with a partial group.
        users: usize,
    },
    /// Not every user saw every member with subscription `both` in time.
    #[error(
        "rosters incomplete after {secs:.1} s: {users} users miss {contacts} contacts with \
         subscription both ({closed} sessions closed by the server)"
    )]
    Incomplete {
        /// Users not done.
        users: usize,
        /// Contacts missing over all of them.
        contacts: usize,
        /// Sessions the server ended.
        closed: usize,
        /// Time spent.
        secs: f64,
    },
}

/// Decides from the rosters found what the setup does: each entry is what a user's roster
/// held and how many contacts the user should have.
pub fn plan(existing: &[(Existing, usize)]) -> Result<Plan, SetupError> {
    if existing
        .iter()
        .all(|(e, contacts)| e.both == *contacts && e.any == *contacts)
    {
        Ok(Plan::Present)
    } else if existing.iter().all(|(e, _)| e.any == 0) {
        Ok(Plan::Build)
    } else {
        let users = existing
            .iter()
            .filter(|(e, contacts)| e.any > 0 && (e.both, e.any) != (*contacts, *contacts))
            .count();
        Err(SetupError::Partial {
            users: users.max(1),
        })
    }
}

fn jid(prefix: &str, account: usize, domain: &str) -> String {
    format!("{prefix}{account}@{domain}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(out: &mut Vec<u8>) -> String {
        String::from_utf8(std::mem::take(out)).unwrap_or_default()
    }

    #[test]
    fn handshake_subscribes_upwards_and_answers_requests() {
        let mut hs = Handshake::new(2, 0..4, "u", "localhost");
        let mut out = Vec::new();
        hs.start(&mut out);
        assert_eq!(
            text(&mut out),
            "<presence to='u3@localhost' type='subscribe'/>"
        );
        // From a lower number: approve and ask back.
        hs.on(
            Seen::Presence {
                from: Some(b"u0@localhost"),
                kind: Some(b"subscribe"),
                inner: b"",
            },
            &mut out,
        );
        assert_eq!(
            text(&mut out),
            "<presence to='u0@localhost' type='subscribed'/>\
             <presence to='u0@localhost' type='subscribe'/>"
        );
        // From a higher number (answering our request): approve only.
        hs.on(
            Seen::Presence {
                from: Some(b"u3@localhost/b"),
                kind: Some(b"subscribe"),
                inner: b"",
            },
            &mut out,
        );
        assert_eq!(
            text(&mut out),
            "<presence to='u3@localhost' type='subscribed'/>"
        );
        // Strangers, ourselves and other presence types are ignored.
        for (from, kind) in [
            (&b"u9@localhost"[..], Some(&b"subscribe"[..])),
            (b"u2@localhost", Some(b"subscribe")),
            (b"u1@localhost", Some(b"subscribed")),
            (b"u1@localhost", None),
        ] {
            hs.on(
                Seen::Presence {
                    from: Some(from),
                    kind,
                    inner: b"",
                },
                &mut out,
            );
        }
        assert!(out.is_empty());
    }

    #[test]
    fn handshake_keeps_a_window_of_own_requests() {
        let mut hs = Handshake::new(0, 0..12, "u", "localhost");
        let mut out = Vec::new();
        hs.start(&mut out);
        let asked: Vec<String> = (1..=REQUEST_WINDOW)
            .map(|i| format!("<presence to='u{i}@localhost' type='subscribe'/>"))
            .collect();
        assert_eq!(text(&mut out), asked.concat());
        let subscribed = |from: &'static [u8]| Seen::Presence {
            from: Some(from),
            kind: Some(b"subscribed"),
            inner: b"",
        };
        // An answer makes room for one more request, a repeated answer does not.
        hs.on(subscribed(b"u3@localhost"), &mut out);
        assert_eq!(
            text(&mut out),
            "<presence to='u9@localhost' type='subscribe'/>"
        );
        hs.on(subscribed(b"u3@localhost"), &mut out);
        assert!(out.is_empty());
        // So does a roster push showing `to`; the later `both` for the same member does not.
        let push = |sub: &str| {
            format!(
                "<query xmlns='jabber:iq:roster'><item jid='u4@localhost' subscription='{sub}'/>\
                 </query>"
            )
        };
        for (sub, expect) in [
            ("to", "<presence to='u10@localhost' type='subscribe'/>"),
            ("both", ""),
        ] {
            let inner = push(sub);
            hs.on(
                Seen::Iq {
                    from: None,
                    id: None,
                    kind: Some(b"set"),
                    inner: inner.as_bytes(),
                },
                &mut out,
            );
            assert_eq!(text(&mut out), expect, "{sub}");
        }
        // Answers for members not asked yet, or below us, change nothing.
        hs.on(subscribed(b"u11@localhost"), &mut out);
        assert!(out.is_empty());
        assert_eq!(hs.missing(), 10);
    }

    #[test]
    fn handshake_completes_on_pushes_with_both() {
        let mut hs = Handshake::new(0, 0..3, "u", "localhost");
        let mut out = Vec::new();
        hs.start(&mut out);
        text(&mut out);
        let push = |jid: &str, sub: &str| {
            format!(
                "<query xmlns='jabber:iq:roster' ver='1'><item jid='{jid}' \
                 subscription='{sub}'/></query>"
            )
        };
        let to = push("u1@localhost", "to");
        hs.on(
            Seen::Iq {
                from: None,
                id: Some(b"p1"),
                kind: Some(b"set"),
                inner: to.as_bytes(),
            },
            &mut out,
        );
        assert_eq!(text(&mut out), "<iq type='result' id='p1'/>");
        assert_eq!(hs.missing(), 2);
        let both = push("u1@localhost", "both");
        for _ in 0..2 {
            hs.on(
                Seen::Iq {
                    from: None,
                    id: Some(b"p2"),
                    kind: Some(b"set"),
                    inner: both.as_bytes(),
                },
                &mut out,
            );
        }
        assert_eq!(hs.missing(), 1);
        assert!(!hs.complete());
        let both = push("u2@localhost", "both");
        hs.on(
            Seen::Iq {
                from: None,
                id: Some(b"p3"),
                kind: Some(b"set"),
                inner: both.as_bytes(),
            },
            &mut out,
        );
        assert!(hs.complete());
        // An iq that is not a roster push is not acknowledged here.
        text(&mut out);
        hs.on(
            Seen::Iq {
                from: None,
                id: Some(b"x"),
                kind: Some(b"set"),
                inner: b"<ping xmlns='urn:xmpp:ping'/>",
            },
            &mut out,
        );
        assert!(out.is_empty());
    }

    #[test]
    fn plan_builds_skips_or_refuses() {
        let full = Existing { both: 4, any: 4 };
        let empty = Existing::default();
        assert_eq!(plan(&[(empty, 4), (empty, 4)]).ok(), Some(Plan::Build));
        assert_eq!(plan(&[(full, 4), (full, 4)]).ok(), Some(Plan::Present));
        let half = Existing { both: 2, any: 3 };
        assert!(matches!(
            plan(&[(full, 4), (half, 4), (empty, 4)]),
            Err(SetupError::Partial { users: 1 })
        ));
        assert!(matches!(
            plan(&[(full, 4), (empty, 4)]),
            Err(SetupError::Partial { .. })
        ));
        // A star: the hub has 4 contacts, each member 1.
        let one = Existing { both: 1, any: 1 };
        assert_eq!(
            plan(&[(full, 4), (one, 1), (one, 1)]).ok(),
            Some(Plan::Present)
        );
    }

    #[test]
    fn in_a_star_only_the_hub_asks_and_members_answer_it_alone() {
        let groups = Groups {
            first: 0,
            count: 1,
            size: 4,
            shape: crate::clique::Shape::Star,
        };
        let mut out = Vec::new();
        let mut hub = Handshake::in_groups(0, &groups, "u", "localhost").expect("hub");
        hub.start(&mut out);
        assert_eq!(text(&mut out).matches("type='subscribe'").count(), 3);
        let mut member = Handshake::in_groups(2, &groups, "u", "localhost").expect("member");
        member.start(&mut out);
        assert!(out.is_empty(), "a member asks nobody");
        // Another member's request is not its business; the hub's is answered both ways.
        let from = |jid: &'static [u8]| Seen::Presence {
            from: Some(jid),
            kind: Some(b"subscribe"),
            inner: b"",
        };
        member.on(from(b"u1@localhost"), &mut out);
        assert!(out.is_empty());
        member.on(from(b"u0@localhost"), &mut out);
        assert_eq!(
            text(&mut out),
            "<presence to='u0@localhost' type='subscribed'/><presence to='u0@localhost' \
             type='subscribe'/>"
        );
        assert_eq!(member.missing(), 1);
        assert!(Handshake::in_groups(4, &groups, "u", "localhost").is_none());
    }
}
