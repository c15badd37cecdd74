//! Groups of users who all have each other as contacts (cliques), for the presence fan-out
//! scenario: which accounts form a group, how many presences a group's logins owe, and how the
//! receive side counts them ([`Tally`]). No I/O here: stanzas (as [`crate::scan`] finds them)
//! in, counts out, so all of it is tested without a server. Building the rosters is
//! [`crate::handshake`].

use std::ops::Range;

/// Who is whose contact inside a group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Shape {
    /// Everyone has every other member as a contact.
    #[default]
    Clique,
    /// The group's first account (the hub) has every other member as a contact; each other
    /// member has only the hub.
    Star,
}

/// `count` groups of `size` consecutive accounts, the first being account `first`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Groups {
    /// The first account of the first group.
    pub first: usize,
    /// Number of groups.
    pub count: usize,
    /// Members per group (contacts per roster plus one).
    pub size: usize,
    /// Who is whose contact in a group.
    pub shape: Shape,
}

impl Groups {
    /// All accounts of all groups.
    pub fn accounts(&self) -> Range<usize> {
        self.first..self.first + self.count * self.size
    }

    /// The group of `account`, if it is in one.
    pub fn group_of(&self, account: usize) -> Option<Range<usize>> {
        if self.size == 0 || !self.accounts().contains(&account) {
            return None;
        }
        let start = self.first + (account - self.first) / self.size * self.size;
        Some(start..start + self.size)
    }

    /// Whether `other` is a contact of `me`.
    pub fn is_contact(&self, me: usize, other: usize) -> bool {
        let Some(group) = self.group_of(me) else {
            return false;
        };
        group.contains(&other)
            && other != me
            && match self.shape {
                Shape::Clique => true,
                Shape::Star => me == group.start || other == group.start,
            }
    }

    /// How many contacts `me` has.
    pub fn contacts_of(&self, me: usize) -> usize {
        match (self.shape, self.group_of(me)) {
            (_, None) => 0,
            (Shape::Star, Some(group)) if me != group.start => 1,
            (_, Some(_)) => self.size - 1,
        }
    }

    /// Presences expected when `online[g]` members of group `g` are online.
    pub fn expected(&self, online: &[usize]) -> u64 {
        online.iter().map(|n| ordered_pairs(*n)).sum()
    }
}

/// Presences due in a group with `n` members online: each receives the available presence of
/// each of the `n − 1` others once, by broadcast or as a probe answer.
pub fn ordered_pairs(n: usize) -> u64 {
    let n = n as u64;
    n * n.saturating_sub(1)
}

/// The account number in `jid` (`<prefix><n>@domain`, with or without a resource).
pub fn account_of(jid: &[u8], prefix: &[u8]) -> Option<usize> {
    let rest = jid.strip_prefix(prefix)?;
    let digits = &rest[..memchr::memchr(b'@', rest)?];
    let canonical = digits == b"0" || digits.first().is_some_and(|d| (b'1'..=b'9').contains(d));
    if !canonical || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + usize::from(d - b'0')))
}

/// What one user's session received in the measured phase.
#[derive(Clone, Debug)]
pub struct Tally {
    me: usize,
    group: Range<usize>,
    seen: Vec<bool>,
    /// Contacts whose available presence arrived, each counted once.
    pub distinct: u64,
    /// Available presences from a contact already counted.
    pub repeats: u64,
    /// Unavailable presences from contacts (probe answers for contacts not online yet).
    pub unavailable: u64,
    /// Presences of another type from contacts (errors, subscription states).
    pub other: u64,
    /// The user's own presence, reflected to its session.
    pub own: u64,
    /// Presences from outside the group (or whose sender was not recognised).
    pub strangers: u64,
}

/// How [`Tally::record`] counted a presence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The first available presence from this contact.
    New,
    /// Another available presence from a contact already counted.
    Repeat,
    /// Not a contact's available presence.
    NotCounted,
}

impl Tally {
    /// A tally for account `me`, a member of `group`.
    pub fn new(me: usize, group: Range<usize>) -> Self {
        Tally {
            me,
            seen: vec![false; group.len()],
            group,
            distinct: 0,
            repeats: 0,
            unavailable: 0,
            other: 0,
            own: 0,
            strangers: 0,
        }
    }

    /// Records a presence from account `from` (`None`: not one of ours) of type `kind`.
    pub fn record(&mut self, from: Option<usize>, kind: Option<&[u8]>) -> Arrival {
        let Some(from) = from.filter(|f| self.group.contains(f)) else {
            self.strangers += 1;
            return Arrival::NotCounted;
        };
        if from == self.me {
            self.own += 1;
            return Arrival::NotCounted;
        }
        match kind {
            None => {}
            Some(b"unavailable") => {
                self.unavailable += 1;
                return Arrival::NotCounted;
            }
            Some(_) => {
                self.other += 1;
                return Arrival::NotCounted;
            }
        }
        let seen = &mut self.seen[from - self.group.start];
        if *seen {
            self.repeats += 1;
            Arrival::Repeat
        } else {
            *seen = true;
            self.distinct += 1;
            Arrival::New
        }
    }

    /// Every presence that came from a contact, whatever its type.
    pub fn from_contacts(&self) -> u64 {
        self.distinct + self.repeats + self.unavailable + self.other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups() -> Groups {
        Groups {
            first: 10,
            count: 2,
            size: 101,
            shape: Shape::Clique,
        }
    }

    #[test]
    fn expected_totals() {
        assert_eq!(ordered_pairs(0), 0);
        assert_eq!(ordered_pairs(1), 0);
        assert_eq!(ordered_pairs(2), 2);
        assert_eq!(ordered_pairs(101), 10_100);
        let g = groups();
        assert_eq!(g.expected(&[101, 101]), 20_200);
        // One member of the second group did not log in: 100 online there.
        assert_eq!(g.expected(&[101, 100]), 10_100 + 9_900);
        assert_eq!(g.accounts(), 10..212);
    }

    #[test]
    fn groups_are_consecutive_cliques() {
        let g = groups();
        assert_eq!(g.group_of(9), None);
        assert_eq!(g.group_of(10), Some(10..111));
        assert_eq!(g.group_of(110), Some(10..111));
        assert_eq!(g.group_of(111), Some(111..212));
        assert_eq!(g.group_of(211), Some(111..212));
        assert_eq!(g.group_of(212), None);
    }

    #[test]
    fn a_star_links_the_hub_to_every_member_and_nobody_else() {
        let g = Groups {
            shape: Shape::Star,
            ..groups()
        };
        assert!(g.is_contact(10, 11) && g.is_contact(11, 10) && g.is_contact(10, 110));
        assert!(!g.is_contact(11, 12) && !g.is_contact(11, 11) && !g.is_contact(10, 111));
        assert_eq!(
            (g.contacts_of(10), g.contacts_of(11), g.contacts_of(9)),
            (100, 1, 0)
        );
        let clique = groups();
        assert!(clique.is_contact(11, 12) && !clique.is_contact(11, 111));
        assert_eq!(clique.contacts_of(11), 100);
    }

    #[test]
    fn account_numbers_from_jids() {
        assert_eq!(account_of(b"u17@localhost/b", b"u"), Some(17));
        assert_eq!(account_of(b"u0@localhost", b"u"), Some(0));
        assert_eq!(account_of(b"u17", b"u"), None);
        assert_eq!(account_of(b"user17@localhost", b"u"), None);
        assert_eq!(account_of(b"u017@localhost", b"u"), None);
        assert_eq!(account_of(b"u@localhost", b"u"), None);
        assert_eq!(account_of(b"localhost", b"u"), None);
        assert_eq!(account_of(b"u99999999999@localhost", b"u"), None);
    }

    #[test]
    fn tally_counts_each_contact_once() {
        let mut t = Tally::new(12, 10..15);
        assert_eq!(t.record(Some(11), None), Arrival::New);
        assert_eq!(t.record(Some(11), None), Arrival::Repeat);
        assert_eq!(t.record(Some(12), None), Arrival::NotCounted);
        assert_eq!(
            t.record(Some(13), Some(b"unavailable")),
            Arrival::NotCounted
        );
        assert_eq!(t.record(Some(13), None), Arrival::New);
        assert_eq!(t.record(Some(14), Some(b"error")), Arrival::NotCounted);
        assert_eq!(t.record(Some(15), None), Arrival::NotCounted);
        assert_eq!(t.record(None, None), Arrival::NotCounted);
        assert_eq!(t.record(Some(10), None), Arrival::New);
        assert_eq!(t.record(Some(14), None), Arrival::New);
        assert_eq!(
            (
                t.distinct,
                t.repeats,
                t.unavailable,
                t.other,
                t.own,
                t.strangers
            ),
            (4, 1, 1, 1, 1, 2)
        );
        assert_eq!(t.from_contacts(), 7);
    }

    #[test]
    fn a_full_group_adds_up_to_the_expected_total() {
        let g = Groups {
            first: 0,
            count: 1,
            size: 5,
            shape: Shape::Clique,
        };
        let mut total = 0;
        for me in g.accounts() {
            let mut t = Tally::new(me, 0..5);
            for from in g.accounts() {
                t.record(Some(from), None);
            }
            total += t.distinct;
        }
        assert_eq!(total, g.expected(&[5]));
    }
}
