//! XEP-0045: Multi-User Chat — the payloads a room service reads and writes: the join
//! element with its history request, `muc#user` presence items and status codes, and the
//! `muc#admin` items of role and affiliation changes. XEP-0421 occupant ids are here too.

use std::time::SystemTime;

use jid::Jid;
use xmppd_xml::Element;

use crate::datetime::parse_datetime;
use crate::payload::PayloadError;

/// The join element (§7.2).
pub const NS: &str = "http://jabber.org/protocol/muc";
/// Occupant presence and room notifications (§19.2).
pub const NS_USER: &str = "http://jabber.org/protocol/muc#user";
/// Moderator and admin requests (§8, §9).
pub const NS_ADMIN: &str = "http://jabber.org/protocol/muc#admin";
/// Owner requests (§10).
pub const NS_OWNER: &str = "http://jabber.org/protocol/muc#owner";
/// The `FORM_TYPE` of room configuration (§15.5.3).
pub const FORM_ROOMCONFIG: &str = "http://jabber.org/protocol/muc#roomconfig";
/// The `FORM_TYPE` of the room information in disco#info (§15.5.4).
pub const FORM_ROOMINFO: &str = "http://jabber.org/protocol/muc#roominfo";
/// The `FORM_TYPE` of voice requests (§8.6, §15.5.2).
pub const FORM_REQUEST: &str = "http://jabber.org/protocol/muc#request";
/// The `FORM_TYPE` of registration with a room (§7.10, §15.5.1).
pub const FORM_REGISTER: &str = "http://jabber.org/protocol/muc#register";
/// XEP-0421: anonymous unique occupant identifiers.
pub const NS_OCCUPANT_ID: &str = "urn:xmpp:occupant-id:0";
/// XEP-0410: the room answers a self-ping itself.
pub const FEATURE_SELF_PING: &str = "http://jabber.org/protocol/muc#self-ping-optimization";
/// XEP-0045 §7.12: the disco node of a user's reserved nickname.
pub const NODE_RESERVED_NICK: &str = "x-roomuser-item";

/// A user's long-lived standing in a room (§5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Affiliation {
    /// Banned.
    Outcast,
    /// No affiliation.
    None,
    /// On the member list.
    Member,
    /// Room administrator.
    Admin,
    /// Room owner.
    Owner,
}

impl Affiliation {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Affiliation::Outcast => "outcast",
            Affiliation::None => "none",
            Affiliation::Member => "member",
            Affiliation::Admin => "admin",
            Affiliation::Owner => "owner",
        }
    }

    /// The affiliation with this attribute value.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "outcast" => Affiliation::Outcast,
            "none" => Affiliation::None,
            "member" => Affiliation::Member,
            "admin" => Affiliation::Admin,
            "owner" => Affiliation::Owner,
            _ => return None,
        })
    }
}

/// An occupant's role while in the room (§5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Not in the room.
    None,
    /// In the room without voice.
    Visitor,
    /// In the room with voice.
    Participant,
    /// May kick, grant and revoke voice.
    Moderator,
}

impl Role {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Visitor => "visitor",
            Role::Participant => "participant",
            Role::Moderator => "moderator",
        }
    }

    /// The role with this attribute value.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "none" => Role::None,
            "visitor" => Role::Visitor,
            "participant" => Role::Participant,
            "moderator" => Role::Moderator,
            _ => return None,
        })
    }
}

/// What a join presence asks for (§7.2.1, §7.2.15).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Join {
    /// The room password (§7.2.6).
    pub password: Option<String>,
    /// How much discussion history to send.
    pub history: HistoryRequest,
}

/// The `<history/>` limits (§7.2.15); each one that is set applies.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryRequest {
    /// Total characters of the history stanzas as XML.
    pub max_chars: Option<usize>,
    /// Number of messages.
    pub max_stanzas: Option<usize>,
    /// Only messages of the last this many seconds.
    pub seconds: Option<u64>,
    /// Only messages since this time.
    pub since: Option<SystemTime>,
}

impl Join {
    /// The join request of a presence, `None` when it has no `<x xmlns='…muc'/>` (a presence
    /// update of an occupant, or a Groupchat 1.0 join, §7.2.2). A history attribute that is
    /// not a number or a date is ignored, as if absent: the client still gets in.
    pub fn find_in(presence: &Element) -> Option<Join> {
        let x = presence.child("x", NS)?;
        let password = x.child("password", NS).map(Element::text);
        let history = x
            .child("history", NS)
            .map(|h| HistoryRequest {
                max_chars: h.attr("maxchars").and_then(|v| v.trim().parse().ok()),
                max_stanzas: h.attr("maxstanzas").and_then(|v| v.trim().parse().ok()),
                seconds: h.attr("seconds").and_then(|v| v.trim().parse().ok()),
                since: h.attr("since").and_then(|v| parse_datetime(v.trim())),
            })
            .unwrap_or_default();
        Some(Join { password, history })
    }
}

/// An `<item/>` of `muc#user` (in occupant presence) or `muc#admin` (in requests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Item {
    /// The affiliation set or reported.
    pub affiliation: Option<Affiliation>,
    /// The role set or reported.
    pub role: Option<Role>,
    /// The real JID.
    pub jid: Option<Jid>,
    /// The room nickname.
    pub nick: Option<String>,
    /// The `<reason/>`.
    pub reason: Option<String>,
    /// The `<actor nick/>` who made a change.
    pub actor: Option<String>,
}

impl Item {
    /// The item as an element of namespace `ns` (`muc#user` or `muc#admin`).
    pub fn to_element(&self, ns: &str) -> Element {
        let mut el = Element::new("item", ns);
        if let Some(a) = self.affiliation {
            el.set_attr("affiliation", a.as_str());
        }
        if let Some(jid) = &self.jid {
            el.set_attr("jid", jid.as_str());
        }
        if let Some(nick) = &self.nick {
            el.set_attr("nick", nick.as_str());
        }
        if let Some(r) = self.role {
            el.set_attr("role", r.as_str());
        }
        if let Some(actor) = &self.actor {
            el.push_child(Element::new("actor", ns).with_attr("nick", actor.as_str()));
        }
        if let Some(reason) = &self.reason {
            el.push_child(Element::new("reason", ns).with_text(reason.as_str()));
        }
        el
    }

    /// Reads an `<item/>`: an unknown role or affiliation, or a `jid` that is not a JID, is
    /// invalid (the request gets `bad-request` or `jid-malformed`).
    pub fn parse(el: &Element) -> Result<Item, PayloadError> {
        let affiliation = el
            .attr("affiliation")
            .map(|a| {
                Affiliation::from_name(a)
                    .ok_or_else(|| PayloadError::invalid(format!("unknown affiliation '{a}'")))
            })
            .transpose()?;
        let role = el
            .attr("role")
            .map(|r| {
                Role::from_name(r)
                    .ok_or_else(|| PayloadError::invalid(format!("unknown role '{r}'")))
            })
            .transpose()?;
        let jid = el
            .attr("jid")
            .map(|j| Jid::new(j).map_err(|e| PayloadError::JidMalformed(format!("'{j}': {e}"))))
            .transpose()?;
        Ok(Item {
            affiliation,
            role,
            jid,
            nick: el.attr("nick").map(str::to_owned),
            reason: el
                .children()
                .find(|c| c.name() == "reason")
                .map(Element::text),
            actor: None,
        })
    }
}

/// `<x xmlns='…muc#user'>` with `items` and the status `codes`.
pub fn user_x(items: &[Item], codes: &[u16]) -> Element {
    let mut x = Element::new("x", NS_USER);
    for item in items {
        x.push_child(item.to_element(NS_USER));
    }
    for code in codes {
        x.push_child(Element::new("status", NS_USER).with_attr("code", code.to_string()));
    }
    x
}

/// `<occupant-id xmlns='urn:xmpp:occupant-id:0' id='…'/>` (XEP-0421 §4).
pub fn occupant_id(id: &str) -> Element {
    Element::new("occupant-id", NS_OCCUPANT_ID).with_attr("id", id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::element as parse;

    #[test]
    fn a_join_reads_the_password_and_the_history_limits() {
        let p = parse(
            "<presence xmlns='jabber:client'><x xmlns='http://jabber.org/protocol/muc'>\
             <password>pw</password><history maxstanzas='5' maxchars='x' \
             since='1970-01-01T00:00:10Z' seconds='60'/></x></presence>",
        );
        let join = Join::find_in(&p).unwrap();
        assert_eq!(join.password.as_deref(), Some("pw"));
        assert_eq!(join.history.max_stanzas, Some(5));
        assert_eq!(join.history.max_chars, None);
        assert_eq!(join.history.seconds, Some(60));
        assert_eq!(
            join.history.since,
            Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(10))
        );
        assert_eq!(
            Join::find_in(&parse("<presence xmlns='jabber:client'/>")),
            None
        );
    }

    #[test]
    fn items_round_trip_and_refuse_unknown_values() {
        let item = Item {
            affiliation: Some(Affiliation::Member),
            role: Some(Role::Participant),
            jid: Some(Jid::new("a@b/c").unwrap()),
            nick: Some("n".into()),
            reason: Some("why".into()),
            actor: None,
        };
        assert_eq!(Item::parse(&item.to_element(NS_ADMIN)).unwrap(), item);
        let bad = parse("<item xmlns='http://jabber.org/protocol/muc#admin' role='king'/>");
        assert!(!Item::parse(&bad).unwrap_err().is_mismatch());
        let bad = parse("<item xmlns='http://jabber.org/protocol/muc#admin' jid='@@'/>");
        assert!(Item::parse(&bad).is_err());
        assert!(
            Affiliation::Owner > Affiliation::Admin && Affiliation::None > Affiliation::Outcast
        );
    }

    #[test]
    fn the_user_element_lists_items_then_status_codes() {
        let x = user_x(&[Item::default()], &[110, 201]);
        let codes: Vec<_> = x.children().filter_map(|c| c.attr("code")).collect();
        assert_eq!(codes, ["110", "201"]);
    }
}
