//! Messages: to all occupants (XEP-0045 §7.4), the subject (§8.1), private messages (§7.5),
//! mediated invitations and declines (§7.8.2), and voice requests (§7.13, §8.6).

use std::time::{Instant, SystemTime};

use jid::{FullJid, Jid};
use xmppd_core::storage::NewArchiveRecord;
use xmppd_proto::data_form::{DataForm, Field, FieldType, FormType};
use xmppd_proto::muc::{self, Affiliation, Role};
use xmppd_proto::stanza_id::StanzaId;
use xmppd_proto::{DefinedCondition, ErrorType, Stanza, StanzaError, StanzaKind, ns};
use xmppd_xml::Element;

use super::outbox::{Outbox, Queued};
use super::{Ctx, Deferred, Room, refuse};
use crate::config::AllowPm;

/// A random id for a message the room does not archive.
fn random_id() -> String {
    let mut bytes = [0u8; 12];
    let _ = getrandom::fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Room {
    /// Checks size and rate of a message from occupant `nick` (the limits, XEP-0045
    /// §16? business rules): too large is `policy-violation`, too fast `resource-constraint`.
    fn admit_message(
        &mut self,
        ctx: &Ctx<'_>,
        nick: &str,
        el: &Element,
    ) -> Result<(), StanzaError> {
        let settings = ctx.shared.settings.get();
        let size = el.to_bytes().len();
        if size > settings.max_message_bytes {
            return Err(refuse(
                DefinedCondition::PolicyViolation,
                &format!(
                    "the message is {size} bytes, more than the {} this room takes",
                    settings.max_message_bytes
                ),
            ));
        }
        self.take_broadcast_token(ctx, nick, "sending messages")
    }

    /// Spends one of occupant `nick`'s tokens for a stanza the room broadcasts for it (a
    /// message, a presence update, a nickname change): they share `messages_per_second` with
    /// `message_burst`, so no stanza kind lets one occupant flood every other.
    /// `resource-constraint` (type `wait`) when none is left.
    pub(crate) fn take_broadcast_token(
        &mut self,
        ctx: &Ctx<'_>,
        nick: &str,
        doing: &str,
    ) -> Result<(), StanzaError> {
        let settings = ctx.shared.settings.get();
        let Some(o) = self.occupants.get_mut(nick) else {
            return Ok(());
        };
        let now = Instant::now();
        let elapsed = now.duration_since(o.refilled).as_secs_f64();
        o.refilled = now;
        o.tokens = (o.tokens + elapsed * settings.messages_per_second)
            .min(f64::from(settings.message_burst));
        if o.tokens < 1.0 {
            let mut e = refuse(
                DefinedCondition::ResourceConstraint,
                &format!("you are {doing} too fast; slow down"),
            );
            e.error_type = ErrorType::Wait;
            return Err(e);
        }
        o.tokens -= 1.0;
        Ok(())
    }

    /// A message to the room's bare JID.
    pub(crate) async fn message_to_room(
        &mut self,
        ctx: &Ctx<'_>,
        real: &Jid,
        stanza: &Stanza,
    ) -> Result<Option<Deferred>, StanzaError> {
        let el = stanza.element();
        if stanza.type_attr() == Some("groupchat") {
            return self.groupchat(ctx, real, el).await;
        }
        self.other_message(ctx, real, stanza).await.map(|()| None)
    }

    /// A message to the room that is not groupchat.
    async fn other_message(
        &mut self,
        ctx: &Ctx<'_>,
        real: &Jid,
        stanza: &Stanza,
    ) -> Result<(), StanzaError> {
        let el = stanza.element();
        if stanza.type_attr() == Some("error") {
            self.eject_on_error(ctx, real).await;
            return Ok(());
        }
        if let Some(x) = el.child("x", muc::NS_USER) {
            if let Some(invite) = x.child("invite", muc::NS_USER) {
                return self.invite(ctx, real, invite).await;
            }
            if let Some(decline) = x.child("decline", muc::NS_USER) {
                return self.decline(ctx, real, decline).await;
            }
        }
        if let Some(form) = el
            .child("x", ns::DATA_FORMS)
            .and_then(|x| DataForm::try_from(x).ok())
            .filter(|f| f.form_type() == Some(muc::FORM_REQUEST))
        {
            return self.voice_request(ctx, real, &form).await;
        }
        Err(refuse(
            DefinedCondition::BadRequest,
            "a message to the room must be groupchat, an invitation, a decline or a voice request",
        ))
    }

    /// Reflects a groupchat message (§7.4) or changes the subject (§8.1).
    async fn groupchat(
        &mut self,
        ctx: &Ctx<'_>,
        real: &Jid,
        el: &Element,
    ) -> Result<Option<Deferred>, StanzaError> {
        let Some(o) = self.occupant_of(real) else {
            return Err(refuse(
                DefinedCondition::NotAcceptable,
                "only occupants may send messages to the room",
            ));
        };
        let (nick, role, occupant_id) = (o.nick.clone(), o.role, o.occupant_id.clone());
        if role == Role::Visitor || role == Role::None {
            return Err(refuse(
                DefinedCondition::Forbidden,
                "visitors may not speak in this moderated room",
            ));
        }
        self.admit_message(ctx, &nick, el)?;
        let subject = el.child("subject", ns::CLIENT);
        let has_body = el.child("body", ns::CLIENT).is_some();
        if let Some(subject) = subject.filter(|_| !has_body) {
            if role != Role::Moderator && !self.config.change_subject {
                return Err(refuse(
                    DefinedCondition::Forbidden,
                    "only moderators may change the subject of this room",
                ));
            }
            self.subject.text = subject.text();
            self.subject.by = nick.clone();
            self.save(ctx).await?;
        }
        let Some(from) = self.occupant_jid(&nick) else {
            return Ok(None);
        };
        let room = Jid::from(self.jid.clone());
        // The copy the occupants get: `from` the occupant JID, the sender's id, no claimed
        // occupant or room stanza ids (XEP-0421 §4, XEP-0359 §3).
        let mut out = Element::new("message", ns::CLIENT)
            .with_attr("from", from.as_str())
            .with_attr("type", "groupchat");
        if let Some(id) = el.attr("id") {
            out.set_attr("id", id);
        }
        if let Some(lang) = el.attr("xml:lang") {
            out.set_attr("xml:lang", lang);
        }
        for child in el.children() {
            if child.is("occupant-id", muc::NS_OCCUPANT_ID)
                || (child.is("stanza-id", ns::SID) && child.attr("by") == Some(room.as_str()))
            {
                continue;
            }
            out.push_child(child.clone());
        }
        out.push_child(muc::occupant_id(&occupant_id));
        if has_body && self.config.archiving {
            return self.archive(ctx, out, &from, real).await.map(Some);
        }
        out.push_child(StanzaId::new(random_id(), room).to_element());
        self.send_to_occupants(ctx, out, from, has_body).await;
        Ok(None)
    }

    /// Sends a groupchat message to every occupant, the sender included (§7.4), and keeps it
    /// in the discussion history if it has a body.
    async fn send_to_occupants(
        &self,
        ctx: &Ctx<'_>,
        message: Element,
        from: FullJid,
        has_body: bool,
    ) {
        if has_body {
            self.with_history(|h| h.push(message.clone(), SystemTime::now()));
        }
        let from = Some(Jid::from(from));
        ctx.send_copies(
            Stanza::new_unchecked(StanzaKind::Message, from, None, message),
            &self.recipients,
        )
        .await;
    }

    /// Archives a message and sends it: the record gets an id reserved ahead, so the message
    /// goes out with its stanza-id while the commit runs, and the completion returned is done
    /// once the commit is ([`super::outbox`]). Without an id or a place in the writer's
    /// queue the message is refused, unsent.
    async fn archive(
        &mut self,
        ctx: &Ctx<'_>,
        mut message: Element,
        from: &FullJid,
        sender: &Jid,
    ) -> Result<Deferred, StanzaError> {
        let failed = |e: &dyn std::fmt::Display| {
            tracing::warn!(room = %self.jid, error = %e, "a room message could not be archived");
            refuse(
                DefinedCondition::InternalServerError,
                "the message could not be archived; it was not sent",
            )
        };
        let domain = self.jid.domain().as_str();
        let cipher = ctx
            .shared
            .ids
            .cipher(domain)
            .await
            .map_err(|e| failed(&e))?;
        let settings = ctx.shared.settings.get();
        let max = settings.archive_max_messages;
        if self.outbox.is_none() {
            self.outbox = Outbox::start(&ctx.shared.router, Jid::from(self.jid.clone()));
        }
        let Some(outbox) = &self.outbox else {
            return Err(failed(&"the room's outbox could not start"));
        };
        let id = ctx
            .shared
            .writer
            .reserve_id()
            .await
            .map_err(|e| failed(&e))?;
        let append = xmppd_core::storage::ArchiveAppend {
            host: domain.to_owned(),
            user: self.jid.node().map_or("", |n| n.as_str()).to_owned(),
            store: crate::store::ARCHIVE.to_owned(),
            record: NewArchiveRecord {
                with: from.to_string(),
                timestamp_us: crate::now_us(),
                payload: message.to_bytes(),
            },
            id: Some(id.clone()),
            // Trimming walks the archive's index: done on a tenth of the appends.
            keep_last: xmppd_modules::mam::keep_last(max),
            expire_before_us: settings.expire_before_us(crate::now_us()),
            keep_bytes: None,
        };
        let commit = ctx
            .shared
            .writer
            .submit(append)
            .await
            .map_err(|e| failed(&e))?;
        let (done, deferred) = xmppd_core::completion::completion();
        outbox
            .queue(Queued {
                commit,
                id: message.attr("id").map(str::to_owned),
                sender: sender.clone(),
                done,
            })
            .await?;
        let room = Jid::from(self.jid.clone());
        message.push_child(StanzaId::new(cipher.encode(&id), room).to_element());
        self.send_to_occupants(ctx, message, from.clone(), true)
            .await;
        Ok(deferred)
    }

    /// A private message to an occupant (§7.5).
    pub(crate) async fn private_message(
        &mut self,
        ctx: &Ctx<'_>,
        real: &Jid,
        nick: &str,
        stanza: &Stanza,
    ) -> Result<(), StanzaError> {
        let el = stanza.element();
        if stanza.type_attr() == Some("error") {
            self.eject_on_error(ctx, real).await;
            return Ok(());
        }
        if stanza.type_attr() == Some("groupchat") {
            return Err(refuse(
                DefinedCondition::BadRequest,
                "a groupchat message goes to the room, not to an occupant",
            ));
        }
        let Some(sender) = self.occupant_of(real) else {
            return Err(refuse(
                DefinedCondition::NotAcceptable,
                "only occupants may send private messages",
            ));
        };
        let (sender_nick, role, occupant_id) =
            (sender.nick.clone(), sender.role, sender.occupant_id.clone());
        let allowed = match self.config.allow_pm {
            AllowPm::Anyone => true,
            AllowPm::Participants => role >= Role::Participant,
            AllowPm::Moderators => role == Role::Moderator,
            AllowPm::None => false,
        };
        if !allowed {
            return Err(refuse(
                DefinedCondition::Forbidden,
                "private messages are not allowed in this room",
            ));
        }
        self.admit_message(ctx, &sender_nick, el)?;
        let Some(target) = self.occupants.get(nick) else {
            return Err(refuse(
                DefinedCondition::ItemNotFound,
                "no occupant has that nickname",
            ));
        };
        let Some(from) = self.occupant_jid(&sender_nick) else {
            return Ok(());
        };
        let mut out = el.clone();
        out.remove_attr("to");
        out.set_attr("from", from.as_str());
        out.remove_children("occupant-id", muc::NS_OCCUPANT_ID);
        if !out.has_child("x", muc::NS_USER) {
            out.push_child(Element::new("x", muc::NS_USER));
        }
        out.push_child(muc::occupant_id(&occupant_id));
        let recipients: Vec<Jid> = target
            .sessions
            .iter()
            .map(|s| Jid::from(s.jid.clone()))
            .collect();
        ctx.send_copies(
            Stanza::new_unchecked(StanzaKind::Message, Some(Jid::from(from)), None, out),
            &recipients,
        )
        .await;
        Ok(())
    }

    /// A mediated invitation (§7.8.2): from an occupant (any, or only moderators and
    /// members-list editors when `allowinvites` is off), passed to the invitee from the room
    /// with the password; in a members-only room an invitation by an admin makes the
    /// invitee a member.
    async fn invite(
        &mut self,
        ctx: &Ctx<'_>,
        real: &Jid,
        invite: &Element,
    ) -> Result<(), StanzaError> {
        let Some(o) = self.occupant_of(real) else {
            return Err(refuse(
                DefinedCondition::NotAcceptable,
                "only occupants may invite",
            ));
        };
        let inviter_affiliation = self.affiliation(ctx.shared, &o.bare);
        let may = o.role == Role::Moderator
            || inviter_affiliation >= Affiliation::Admin
            || (self.config.allow_invites
                && (!self.config.members_only || inviter_affiliation >= Affiliation::Member));
        if !may {
            return Err(refuse(
                DefinedCondition::Forbidden,
                "only moderators may invite to this room",
            ));
        }
        let to = invite
            .attr("to")
            .ok_or_else(|| refuse(DefinedCondition::BadRequest, "the invitation has no 'to'"))?;
        let invitee = Jid::new(to).map_err(|e| {
            refuse(
                DefinedCondition::JidMalformed,
                &format!("the invitee '{to}' is not a JID: {e}"),
            )
        })?;
        if self.config.members_only && inviter_affiliation >= Affiliation::Admin {
            let bare = invitee.to_bare();
            if self.affiliation(ctx.shared, &bare) < Affiliation::Member {
                self.affiliations.insert(
                    bare,
                    crate::store::AffiliationEntry {
                        affiliation: Affiliation::Member,
                        nick: None,
                        reason: None,
                    },
                );
                self.save(ctx).await?;
            }
        }
        let mut out_invite = Element::new("invite", muc::NS_USER).with_attr("from", real.as_str());
        if let Some(reason) = invite.child("reason", muc::NS_USER) {
            out_invite.push_child(reason.clone());
        }
        let mut x = Element::new("x", muc::NS_USER).with_child(out_invite);
        if let Some(password) = &self.config.password {
            x.push_child(Element::new("password", muc::NS_USER).with_text(password.as_str()));
        }
        let message = Element::new("message", ns::CLIENT)
            .with_attr("from", self.jid.as_str())
            .with_child(x);
        self.send_to(ctx, StanzaKind::Message, message, &invitee)
            .await;
        Ok(())
    }

    /// A declined invitation (§7.8.2), passed to the inviter from the room.
    async fn decline(
        &mut self,
        ctx: &Ctx<'_>,
        real: &Jid,
        decline: &Element,
    ) -> Result<(), StanzaError> {
        let to = decline
            .attr("to")
            .ok_or_else(|| refuse(DefinedCondition::BadRequest, "the decline has no 'to'"))?;
        let inviter = Jid::new(to).map_err(|e| {
            refuse(
                DefinedCondition::JidMalformed,
                &format!("the inviter '{to}' is not a JID: {e}"),
            )
        })?;
        let mut out =
            Element::new("decline", muc::NS_USER).with_attr("from", real.to_bare().as_str());
        if let Some(reason) = decline.child("reason", muc::NS_USER) {
            out.push_child(reason.clone());
        }
        let message = Element::new("message", ns::CLIENT)
            .with_attr("from", self.jid.as_str())
            .with_child(Element::new("x", muc::NS_USER).with_child(out));
        self.send_to(ctx, StanzaKind::Message, message, &inviter)
            .await;
        Ok(())
    }

    /// A visitor asks for voice (§7.13): the form goes to every moderator. A moderator who
    /// sends it back with `muc#request_allow` true grants voice (§8.6).
    async fn voice_request(
        &mut self,
        ctx: &Ctx<'_>,
        real: &Jid,
        form: &DataForm,
    ) -> Result<(), StanzaError> {
        let Some(o) = self.occupant_of(real) else {
            return Err(refuse(
                DefinedCondition::NotAcceptable,
                "only occupants may request voice",
            ));
        };
        if o.role == Role::Moderator {
            let allow = form
                .bool("muc#request_allow")
                .map_err(StanzaError::from)?
                .unwrap_or(false);
            let nick = form.value("muc#roomnick").unwrap_or_default().to_owned();
            if allow
                && self
                    .occupants
                    .get(&nick)
                    .is_some_and(|t| t.role == Role::Visitor)
            {
                let actor = o.nick.clone();
                self.set_role(ctx, &nick, Role::Participant, Some(actor), None)
                    .await?;
            }
            return Ok(());
        }
        if o.role != Role::Visitor {
            return Ok(());
        }
        let mut request = DataForm::new(FormType::Form);
        request.title = Some("Voice request".to_owned());
        let approve = Field::new("muc#request_allow", FieldType::Boolean)
            .with_label("Grant voice to this person?")
            .with_value("false");
        let request = request
            .with_field(Field::form_type(muc::FORM_REQUEST))
            .with_field(Field::new("muc#role", FieldType::ListSingle).with_value("participant"))
            .with_field(Field::new("muc#jid", FieldType::JidSingle).with_value(o.bare.to_string()))
            .with_field(
                Field::new("muc#roomnick", FieldType::TextSingle).with_value(o.nick.as_str()),
            )
            .with_field(approve);
        let message = Element::new("message", ns::CLIENT)
            .with_attr("from", self.jid.as_str())
            .with_child(request.to_element());
        let moderators: Vec<Jid> = self
            .occupants
            .values()
            .filter(|m| m.role == Role::Moderator)
            .flat_map(|m| m.sessions.iter().map(|s| Jid::from(s.jid.clone())))
            .collect();
        for to in &moderators {
            self.send_to(ctx, StanzaKind::Message, message.clone(), to)
                .await;
        }
        Ok(())
    }
}
