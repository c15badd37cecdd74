//! Presence to an occupant JID: entering (XEP-0045 §7.2), changing nickname (§7.6),
//! changing availability (§7.7), exiting (§7.14), and an occupant's delivery error (333).

use std::time::{Instant, SystemTime};

use jid::{FullJid, Jid};
use xmppd_proto::muc::{self, Affiliation, Item, Join};
use xmppd_proto::{DefinedCondition, Stanza, StanzaError, StanzaKind, ns};
use xmppd_xml::Element;

use super::{Ctx, Occupant, Room, Session, refuse};
use crate::config::Whois;

/// The presence as others see it: the client's own children, minus MUC payloads and any
/// occupant id it claimed (XEP-0421 §4: the room's is the only one).
fn cleaned(presence: &Element) -> Element {
    let mut el = Element::new("presence", ns::CLIENT);
    for child in presence.children() {
        let ns = child.ns();
        if ns == muc::NS || ns == muc::NS_USER || ns == muc::NS_OCCUPANT_ID {
            continue;
        }
        el.push_child(child.clone());
    }
    el
}

impl Room {
    /// Handles a presence from `real` to `room/nick`.
    pub(crate) async fn presence(
        &mut self,
        ctx: &Ctx<'_>,
        real: &FullJid,
        nick: &str,
        stanza: &Stanza,
    ) -> Result<(), StanzaError> {
        let el = stanza.element();
        match stanza.type_attr() {
            None => {}
            Some("unavailable") => {
                self.exit(ctx, real, el).await;
                return Ok(());
            }
            Some("error") => {
                self.eject_on_error(ctx, &Jid::from(real.clone())).await;
                return Ok(());
            }
            // Subscriptions and probes mean nothing to a room.
            Some(_) => return Ok(()),
        }
        let current = self
            .occupant_of(&Jid::from(real.clone()))
            .map(|o| o.nick.clone());
        match current {
            Some(current) if current == nick => {
                self.take_broadcast_token(ctx, &current, "changing your presence")?;
                self.update_presence(ctx, real, el).await;
                Ok(())
            }
            Some(current) => {
                self.take_broadcast_token(ctx, &current, "changing your nickname")?;
                self.change_nick(ctx, real, &current, nick).await
            }
            None => self.enter(ctx, real, nick, el, false).await,
        }
    }

    /// Checks that `nick` may be used by `real` (§7.2.9, §7.6): not too long, not taken by
    /// another user, not registered by another user.
    fn check_nick(&self, ctx: &Ctx<'_>, real: &FullJid, nick: &str) -> Result<(), StanzaError> {
        let max_nick_bytes = ctx.shared.settings.get().max_nick_bytes;
        if nick.len() > max_nick_bytes || nick.trim().is_empty() {
            return Err(refuse(
                DefinedCondition::NotAcceptable,
                &format!("a nickname must be 1 to {max_nick_bytes} bytes and not only spaces"),
            ));
        }
        let bare = real.to_bare();
        if let Some(o) = self.occupants.get(nick)
            && o.bare != bare
        {
            return Err(refuse(
                DefinedCondition::Conflict,
                "that nickname is in use by another occupant",
            ));
        }
        if self
            .affiliations
            .iter()
            .any(|(j, e)| *j != bare && e.nick.as_deref() == Some(nick))
        {
            return Err(refuse(
                DefinedCondition::Conflict,
                "that nickname is registered by another user",
            ));
        }
        Ok(())
    }

    /// Enters the room (§7.2); `created` when this presence created it (status 201).
    pub(crate) async fn enter(
        &mut self,
        ctx: &Ctx<'_>,
        real: &FullJid,
        nick: &str,
        el: &Element,
        created: bool,
    ) -> Result<(), StanzaError> {
        let bare = real.to_bare();
        let affiliation = self.affiliation(ctx.shared, &bare);
        let join = Join::find_in(el).unwrap_or_default();
        if self.locked && affiliation != Affiliation::Owner {
            return Err(refuse(
                DefinedCondition::ItemNotFound,
                "the room is being created and not yet configured",
            ));
        }
        if affiliation == Affiliation::Outcast {
            return Err(refuse(
                DefinedCondition::Forbidden,
                "you are banned from this room",
            ));
        }
        if self.config.members_only && affiliation < Affiliation::Member {
            return Err(refuse(
                DefinedCondition::RegistrationRequired,
                "this room is members-only",
            ));
        }
        if let Some(password) = &self.config.password
            && affiliation < Affiliation::Owner
            && join.password.as_deref() != Some(password.as_str())
        {
            return Err(refuse(
                DefinedCondition::NotAuthorized,
                "this room needs a password",
            ));
        }
        self.check_nick(ctx, real, nick)?;
        let existing = self.occupants.contains_key(nick);
        let limit = self
            .config
            .max_users
            .min(ctx.shared.settings.get().max_occupants);
        if !existing && self.occupants.len() >= limit && affiliation < Affiliation::Admin {
            let mut e = refuse(
                DefinedCondition::ServiceUnavailable,
                "the room has as many occupants as it allows",
            );
            e.error_type = xmppd_proto::ErrorType::Wait;
            return Err(e);
        }
        let role = self.default_role(affiliation);
        let occupant = Occupant {
            nick: nick.to_owned(),
            bare: bare.clone(),
            sessions: Vec::new(),
            role,
            occupant_id: self.occupant_id(ctx.secret, &bare),
            tokens: f64::from(ctx.shared.settings.get().message_burst),
            refilled: Instant::now(),
        };
        self.add_session(
            occupant,
            Session {
                jid: real.clone(),
                presence: cleaned(el),
            },
        );
        let to = Jid::from(real.clone());
        // 1. The occupants already there, to the new session (§7.2.3).
        let sees = self.sees_jids(role);
        for o in self.occupants.values().filter(|o| o.nick != nick) {
            let item = self.item_of(o, sees, ctx.shared);
            let p = self.occupant_presence(o, item, &[], false);
            self.send_to(ctx, StanzaKind::Presence, p, &to).await;
        }
        // 2. The new occupant's presence: to the others (unless another resource of the same
        // occupant was already in), and to itself with the codes of §7.2.? (110, 100, 170,
        // 201).
        let Some(o) = self.occupants.get(nick) else {
            return Ok(());
        };
        if !existing {
            self.broadcast_to(ctx, o, &[], &[], &Item::default(), false, false)
                .await;
        }
        let mut codes = vec![110];
        if self.config.whois == Whois::Anyone {
            codes.push(100);
        }
        if self.config.archiving {
            codes.push(170);
        }
        if created {
            codes.push(201);
        }
        let item = self.item_of(o, true, ctx.shared);
        let own = self.occupant_presence(o, item, &codes, false);
        self.send_to(ctx, StanzaKind::Presence, own, &to).await;
        // 3. History, 4. the subject (§7.2.15, §7.2.16).
        let room = Jid::from(self.jid.clone());
        let history = self.with_history(|h| h.select(&join.history, &room, SystemTime::now()));
        for mut m in history {
            m.set_attr("to", to.as_str());
            self.send_to(ctx, StanzaKind::Message, m, &to).await;
        }
        let subject_from = if self.subject.by.is_empty() {
            Some(self.jid.to_string())
        } else {
            self.occupant_jid(&self.subject.by).map(|j| j.to_string())
        };
        let subject = Element::new("message", ns::CLIENT)
            .with_attr("from", subject_from.unwrap_or_else(|| self.jid.to_string()))
            .with_attr("type", "groupchat")
            .with_child(Element::new("subject", ns::CLIENT).with_text(self.subject.text.as_str()));
        self.send_to(ctx, StanzaKind::Message, subject, &to).await;
        Ok(())
    }

    /// A new availability of an occupant (§7.7), told to everyone.
    async fn update_presence(&mut self, ctx: &Ctx<'_>, real: &FullJid, el: &Element) {
        let nick = match self.by_session.get(real) {
            Some(n) => n.clone(),
            None => return,
        };
        let Some(o) = self.occupants.get_mut(&nick) else {
            return;
        };
        // The resource that spoke becomes the one shown.
        if let Some(pos) = o.sessions.iter().position(|s| &s.jid == real) {
            let mut s = o.sessions.remove(pos);
            s.presence = cleaned(el);
            o.sessions.insert(0, s);
        }
        if let Some(o) = self.occupants.get(&nick) {
            self.broadcast_presence(ctx, o, &[], &[], &Item::default(), false)
                .await;
        }
    }

    /// Exits the room (§7.14); the last resource of an occupant takes it out.
    async fn exit(&mut self, ctx: &Ctx<'_>, real: &FullJid, el: &Element) {
        let Some(nick) = self.by_session.get(real).cloned() else {
            return;
        };
        let status = el.child("status", ns::CLIENT).cloned();
        let last = self
            .occupants
            .get(&nick)
            .is_some_and(|o| o.sessions.len() == 1);
        if last {
            if let Some(o) = self.occupants.get(&nick) {
                let leaving = Occupant {
                    nick: o.nick.clone(),
                    bare: o.bare.clone(),
                    sessions: o
                        .sessions
                        .iter()
                        .map(|s| Session {
                            jid: s.jid.clone(),
                            presence: status
                                .iter()
                                .fold(Element::new("presence", ns::CLIENT), |p, s| {
                                    p.with_child(s.clone())
                                }),
                        })
                        .collect(),
                    role: o.role,
                    occupant_id: o.occupant_id.clone(),
                    tokens: 0.0,
                    refilled: o.refilled,
                };
                self.broadcast_presence(ctx, &leaving, &[], &[], &Item::default(), true)
                    .await;
            }
            self.remove_session(real);
            self.close_if_empty();
        } else {
            // Another resource stays in: only this one is told it left.
            if let Some(o) = self.occupants.get(&nick) {
                let item = self.item_of(o, true, ctx.shared);
                let p = self.occupant_presence(o, item, &[110], true);
                self.send_to(ctx, StanzaKind::Presence, p, &Jid::from(real.clone()))
                    .await;
            }
            self.remove_session(real);
        }
    }

    /// Changes an occupant's nickname (§7.6): unavailable with 303 and the new nick from the
    /// old occupant JID, then available from the new one.
    async fn change_nick(
        &mut self,
        ctx: &Ctx<'_>,
        real: &FullJid,
        old: &str,
        new: &str,
    ) -> Result<(), StanzaError> {
        self.check_nick(ctx, real, new)?;
        if self.occupants.contains_key(new) {
            // Another resource of the same user holds it: two occupants cannot merge.
            return Err(refuse(
                DefinedCondition::Conflict,
                "that nickname is in use by another occupant",
            ));
        }
        let Some(o) = self.occupants.get(old) else {
            return Ok(());
        };
        let changes = Item {
            nick: Some(new.to_owned()),
            ..Item::default()
        };
        self.broadcast_presence(ctx, o, &[303], &[], &changes, true)
            .await;
        let Some(mut o) = self.remove_occupant(old) else {
            return Ok(());
        };
        o.nick = new.to_owned();
        let sessions = std::mem::take(&mut o.sessions);
        for s in sessions {
            let occupant = Occupant {
                nick: o.nick.clone(),
                bare: o.bare.clone(),
                sessions: Vec::new(),
                role: o.role,
                occupant_id: o.occupant_id.clone(),
                tokens: o.tokens,
                refilled: o.refilled,
            };
            self.add_session(occupant, s);
        }
        if let Some(o) = self.occupants.get(new) {
            self.broadcast_presence(ctx, o, &[], &[], &Item::default(), false)
                .await;
        }
        Ok(())
    }
}
