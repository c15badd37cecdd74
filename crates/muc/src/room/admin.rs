//! Moderation (`muc#admin`, XEP-0045 §8 and §9, owner lists of §10): roles by nickname
//! (kick, voice, moderator) and affiliations by bare JID (ban, member, admin, owner).
//!
//! A request changes nothing unless every item in it is allowed (§9: the privileges tables):
//! someone without the privilege gets `forbidden`, an allowed actor aiming at someone it may
//! not touch (an admin or owner, for a moderator) gets `not-allowed`, and taking the last
//! owner away is a `conflict` (§10.9). Effects on occupants follow each change: a ban ejects
//! with 301, a kick with 307, losing membership of a members-only room with 321; otherwise the
//! new item is broadcast. A user who is not in the room learns of an affiliation change by a
//! message with status 101 (§17.1.? service implementation notes).

use jid::{BareJid, Jid};
use xmppd_proto::muc::{self, Affiliation, Item, Role};
use xmppd_proto::{DefinedCondition, StanzaError, StanzaKind, ns};
use xmppd_xml::Element;

use super::{Ctx, Room, refuse};
use crate::store::AffiliationEntry;

/// One change of a request.
enum Change {
    Role {
        nick: String,
        role: Role,
        reason: Option<String>,
    },
    Affiliation {
        jid: BareJid,
        affiliation: Affiliation,
        nick: Option<String>,
        reason: Option<String>,
    },
}

impl Room {
    /// `<query xmlns='…muc#admin'>` of type get: the list of one affiliation or role.
    pub(crate) fn admin_get(
        &self,
        ctx: &Ctx<'_>,
        real: &Jid,
        query: &Element,
    ) -> Result<Element, StanzaError> {
        let item = query
            .children()
            .find(|c| c.is("item", muc::NS_ADMIN))
            .ok_or_else(|| refuse(DefinedCondition::BadRequest, "the query names no list"))?;
        let item = Item::parse(item).map_err(StanzaError::from)?;
        let requester = self.affiliation(ctx.shared, &real.to_bare());
        let role = self.occupant_of(real).map_or(Role::None, |o| o.role);
        let mut out = Element::new("query", muc::NS_ADMIN);
        if let Some(a) = item.affiliation {
            let allowed = requester >= Affiliation::Admin
                || (a == Affiliation::Member
                    && requester >= Affiliation::Member
                    && self.config.whois == crate::config::Whois::Anyone);
            if !allowed {
                return Err(refuse(
                    DefinedCondition::Forbidden,
                    "only admins and owners may see this list",
                ));
            }
            for jid in self.with_affiliation(ctx.shared, a) {
                let nick = self.affiliations.get(&jid).and_then(|e| e.nick.clone());
                let reason = self.affiliations.get(&jid).and_then(|e| e.reason.clone());
                out.push_child(
                    Item {
                        affiliation: Some(a),
                        jid: Some(Jid::from(jid)),
                        nick,
                        reason,
                        ..Item::default()
                    }
                    .to_element(muc::NS_ADMIN),
                );
            }
            return Ok(out);
        }
        if let Some(r) = item.role {
            if role != Role::Moderator {
                return Err(refuse(
                    DefinedCondition::Forbidden,
                    "only moderators may see the role lists",
                ));
            }
            let mut occupants: Vec<_> = self.occupants.values().filter(|o| o.role == r).collect();
            occupants.sort_by(|a, b| a.nick.cmp(&b.nick));
            for o in occupants {
                let mut i = self.item_of(o, true, ctx.shared);
                i.nick = Some(o.nick.clone());
                out.push_child(i.to_element(muc::NS_ADMIN));
            }
            return Ok(out);
        }
        Err(refuse(
            DefinedCondition::BadRequest,
            "the item names neither an affiliation nor a role",
        ))
    }

    /// `<query xmlns='…muc#admin'>` of type set: role and affiliation changes.
    pub(crate) async fn admin_set(
        &mut self,
        ctx: &Ctx<'_>,
        real: &Jid,
        query: &Element,
    ) -> Result<(), StanzaError> {
        let actor_bare = real.to_bare();
        let actor_aff = self.affiliation(ctx.shared, &actor_bare);
        let actor = self.occupant_of(real);
        let actor_role = actor.map_or(Role::None, |o| o.role);
        let actor_nick = actor.map(|o| o.nick.clone());
        let mut changes = Vec::new();
        for el in query.children().filter(|c| c.is("item", muc::NS_ADMIN)) {
            let item = Item::parse(el).map_err(StanzaError::from)?;
            let change = match (item.role, item.affiliation) {
                (Some(role), None) => {
                    let nick = item.nick.clone().ok_or_else(|| {
                        refuse(DefinedCondition::BadRequest, "a role change names a nick")
                    })?;
                    Change::Role {
                        nick,
                        role,
                        reason: item.reason,
                    }
                }
                (None, Some(affiliation)) => {
                    let jid = match (&item.jid, &item.nick) {
                        (Some(j), _) => j.to_bare(),
                        (None, Some(nick)) => self
                            .occupants
                            .get(nick)
                            .map(|o| o.bare.clone())
                            .ok_or_else(|| {
                                refuse(
                                    DefinedCondition::ItemNotFound,
                                    "no occupant has that nickname",
                                )
                            })?,
                        (None, None) => {
                            return Err(refuse(
                                DefinedCondition::BadRequest,
                                "an affiliation change names a jid",
                            ));
                        }
                    };
                    Change::Affiliation {
                        jid,
                        affiliation,
                        nick: None,
                        reason: item.reason,
                    }
                }
                _ => {
                    return Err(refuse(
                        DefinedCondition::BadRequest,
                        "each item changes either a role or an affiliation",
                    ));
                }
            };
            self.check_change(ctx, &change, actor_aff, actor_role, &actor_bare)?;
            changes.push(change);
        }
        if changes.is_empty() {
            return Err(refuse(
                DefinedCondition::BadRequest,
                "the request changes nothing",
            ));
        }
        self.check_owners_remain(ctx, &changes)?;
        for change in changes {
            match change {
                Change::Role { nick, role, reason } => {
                    self.set_role(ctx, &nick, role, actor_nick.clone(), reason)
                        .await?;
                }
                Change::Affiliation {
                    jid,
                    affiliation,
                    nick,
                    reason,
                } => {
                    self.set_affiliation(ctx, &jid, affiliation, nick, reason, actor_nick.clone())
                        .await?;
                }
            }
        }
        self.save(ctx).await
    }

    /// Whether the actor may make this change (§5.1.? and §5.2.? privileges).
    fn check_change(
        &self,
        ctx: &Ctx<'_>,
        change: &Change,
        actor_aff: Affiliation,
        actor_role: Role,
        actor: &BareJid,
    ) -> Result<(), StanzaError> {
        match change {
            Change::Role { nick, role, .. } => {
                if actor_role != Role::Moderator {
                    return Err(refuse(
                        DefinedCondition::Forbidden,
                        "only moderators may change roles",
                    ));
                }
                let target = self.occupants.get(nick).ok_or_else(|| {
                    refuse(
                        DefinedCondition::ItemNotFound,
                        "no occupant has that nickname",
                    )
                })?;
                let target_aff = self.affiliation(ctx.shared, &target.bare);
                let moderator_change = *role == Role::Moderator
                    || (target.role == Role::Moderator && *role != Role::None);
                if moderator_change && actor_aff < Affiliation::Admin {
                    return Err(refuse(
                        DefinedCondition::NotAllowed,
                        "only admins and owners may grant or revoke moderator status",
                    ));
                }
                if target_aff >= Affiliation::Admin && *role != Role::Moderator {
                    return Err(refuse(
                        DefinedCondition::NotAllowed,
                        "an admin or owner cannot lose voice or be kicked",
                    ));
                }
                if target.bare == *actor && *role == Role::None {
                    return Err(refuse(
                        DefinedCondition::NotAllowed,
                        "you cannot kick yourself",
                    ));
                }
                Ok(())
            }
            Change::Affiliation {
                jid, affiliation, ..
            } => {
                if actor_aff < Affiliation::Admin {
                    return Err(refuse(
                        DefinedCondition::Forbidden,
                        "only admins and owners may change affiliations",
                    ));
                }
                let current = self.affiliation(ctx.shared, jid);
                let owner_only =
                    *affiliation >= Affiliation::Admin || current >= Affiliation::Admin;
                if owner_only && actor_aff < Affiliation::Owner {
                    return Err(refuse(
                        DefinedCondition::NotAllowed,
                        "only owners may change admins and owners",
                    ));
                }
                if ctx.shared.admins.contains(jid) && *affiliation != Affiliation::Owner {
                    return Err(refuse(
                        DefinedCondition::NotAllowed,
                        "the service's admins own every room",
                    ));
                }
                Ok(())
            }
        }
    }

    /// §10.9: a room keeps at least one owner.
    fn check_owners_remain(&self, ctx: &Ctx<'_>, changes: &[Change]) -> Result<(), StanzaError> {
        let mut owners = self.with_affiliation(ctx.shared, Affiliation::Owner);
        for c in changes {
            if let Change::Affiliation {
                jid, affiliation, ..
            } = c
            {
                owners.retain(|o| o != jid);
                if *affiliation == Affiliation::Owner {
                    owners.push(jid.clone());
                }
            }
        }
        if owners.is_empty() {
            return Err(refuse(
                DefinedCondition::Conflict,
                "a room must keep at least one owner",
            ));
        }
        Ok(())
    }

    /// Changes an occupant's role and tells everyone; `none` is a kick (307).
    pub(crate) async fn set_role(
        &mut self,
        ctx: &Ctx<'_>,
        nick: &str,
        role: Role,
        actor: Option<String>,
        reason: Option<String>,
    ) -> Result<(), StanzaError> {
        let changes = Item {
            actor,
            reason,
            ..Item::default()
        };
        if role == Role::None {
            self.eject(ctx, nick, &[307], &changes).await;
            return Ok(());
        }
        if let Some(o) = self.occupants.get_mut(nick) {
            o.role = role;
        }
        if let Some(o) = self.occupants.get(nick) {
            self.broadcast_presence(ctx, o, &[], &[], &changes, false)
                .await;
        }
        Ok(())
    }

    /// Changes a user's affiliation and applies its effects on their occupants.
    pub(crate) async fn set_affiliation(
        &mut self,
        ctx: &Ctx<'_>,
        jid: &BareJid,
        affiliation: Affiliation,
        nick: Option<String>,
        reason: Option<String>,
        actor: Option<String>,
    ) -> Result<(), StanzaError> {
        if affiliation == Affiliation::None {
            self.affiliations.remove(jid);
        } else {
            let nick = nick.or_else(|| self.affiliations.get(jid).and_then(|e| e.nick.clone()));
            self.affiliations.insert(
                jid.clone(),
                AffiliationEntry {
                    affiliation,
                    nick,
                    reason: reason.clone(),
                },
            );
        }
        let changes = Item {
            actor,
            reason,
            affiliation: Some(affiliation),
            ..Item::default()
        };
        let nicks: Vec<String> = self
            .occupants
            .values()
            .filter(|o| o.bare == *jid)
            .map(|o| o.nick.clone())
            .collect();
        if nicks.is_empty() {
            self.tell_absent(ctx, jid, affiliation).await;
            return Ok(());
        }
        for nick in nicks {
            if affiliation == Affiliation::Outcast {
                self.eject(ctx, &nick, &[301], &changes).await;
            } else if self.config.members_only && affiliation < Affiliation::Member {
                self.eject(ctx, &nick, &[321], &changes).await;
            } else {
                let role = self.default_role(affiliation);
                let role = match self.occupants.get(&nick) {
                    // Voice granted by a moderator stays while the affiliation allows it.
                    Some(o) if o.role == Role::Participant && role == Role::Visitor => {
                        Role::Participant
                    }
                    _ => role,
                };
                if let Some(o) = self.occupants.get_mut(&nick) {
                    o.role = role;
                }
                if let Some(o) = self.occupants.get(&nick) {
                    self.broadcast_presence(ctx, o, &[], &[], &changes, false)
                        .await;
                }
            }
        }
        Ok(())
    }

    /// A user not in the room learns of their new affiliation (§17.1: status 101, to the bare
    /// JID).
    async fn tell_absent(&self, ctx: &Ctx<'_>, jid: &BareJid, affiliation: Affiliation) {
        let item = Item {
            affiliation: Some(affiliation),
            jid: Some(Jid::from(jid.clone())),
            ..Item::default()
        };
        let message = Element::new("message", ns::CLIENT)
            .with_attr("from", self.jid.as_str())
            .with_child(Element::new("body", ns::CLIENT).with_text(format!(
                "Your affiliation with {} is now {}.",
                self.jid,
                affiliation.as_str()
            )))
            .with_child(muc::user_x(&[item], &[101]));
        self.send_to(ctx, StanzaKind::Message, message, &Jid::from(jid.clone()))
            .await;
    }
}
