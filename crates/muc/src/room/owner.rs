//! The owner's requests (`muc#owner`, XEP-0045 §10): the configuration form, instant and
//! reserved room creation, configuration changes with their notifications (§10.2.1: 104,
//! and 172/173 when the room's anonymity changes), and destruction (§10.9).

use jid::{BareJid, Jid};
use xmppd_proto::data_form::{DataForm, FormType};
use xmppd_proto::muc::{self, Affiliation, Item};
use xmppd_proto::{DefinedCondition, StanzaError, ns};
use xmppd_xml::Element;

use super::{Ctx, Room, refuse};
use crate::config::{ConfigLimits, Whois};
use crate::store::AffiliationEntry;

/// What an owner request did to the room.
pub(crate) enum OwnerOutcome {
    /// Configured (or nothing to report).
    Done,
    /// The room is gone (destroyed, or its creation cancelled).
    Destroyed,
}

impl Room {
    fn limits(ctx: &Ctx<'_>) -> ConfigLimits {
        let settings = ctx.shared.settings.get();
        ConfigLimits {
            max_users: settings.max_occupants,
            max_history: settings.max_history,
        }
    }

    fn require_owner(&self, ctx: &Ctx<'_>, real: &Jid) -> Result<(), StanzaError> {
        if self.affiliation(ctx.shared, &real.to_bare()) != Affiliation::Owner {
            return Err(refuse(
                DefinedCondition::Forbidden,
                "only owners may do this",
            ));
        }
        Ok(())
    }

    /// The configuration form (§10.2).
    pub(crate) fn owner_get(&self, ctx: &Ctx<'_>, real: &Jid) -> Result<Element, StanzaError> {
        self.require_owner(ctx, real)?;
        let owners = self.with_affiliation(ctx.shared, Affiliation::Owner);
        let admins = self.with_affiliation(ctx.shared, Affiliation::Admin);
        let form = self.config.to_form(&owners, &admins, Self::limits(ctx));
        Ok(Element::new("query", muc::NS_OWNER).with_child(form.to_element()))
    }

    /// A submitted form, a cancellation or a destruction.
    pub(crate) async fn owner_set(
        &mut self,
        ctx: &Ctx<'_>,
        real: &Jid,
        query: &Element,
    ) -> Result<OwnerOutcome, StanzaError> {
        self.require_owner(ctx, real)?;
        if let Some(destroy) = query.child("destroy", muc::NS_OWNER) {
            self.destroy(ctx, destroy).await?;
            return Ok(OwnerOutcome::Destroyed);
        }
        let Some(x) = query.child("x", ns::DATA_FORMS) else {
            return Err(refuse(
                DefinedCondition::BadRequest,
                "the request holds neither a form nor <destroy/>",
            ));
        };
        let form = DataForm::try_from(x).map_err(StanzaError::from)?;
        match form.kind {
            FormType::Cancel => {
                // §10.1.2: cancelling the creation of a locked room destroys it.
                if self.locked {
                    self.destroy(ctx, &Element::new("destroy", muc::NS_OWNER))
                        .await?;
                    return Ok(OwnerOutcome::Destroyed);
                }
                Ok(OwnerOutcome::Done)
            }
            FormType::Submit => {
                self.apply_form(ctx, &form).await?;
                Ok(OwnerOutcome::Done)
            }
            _ => Err(refuse(
                DefinedCondition::BadRequest,
                "a configuration form is submitted or cancelled",
            )),
        }
    }

    /// Applies a submitted form (an empty one makes an instant room, §10.1.2).
    async fn apply_form(&mut self, ctx: &Ctx<'_>, form: &DataForm) -> Result<(), StanzaError> {
        if let Some(t) = form.form_type()
            && t != muc::FORM_ROOMCONFIG
        {
            return Err(refuse(
                DefinedCondition::NotAcceptable,
                &format!("the form is '{t}', not {}", muc::FORM_ROOMCONFIG),
            ));
        }
        let before = self.config.clone();
        let lists = self.config.apply(form, Self::limits(ctx))?;
        let capacity = self.config.history_length;
        self.with_history(|h| h.set_capacity(capacity));
        let was_locked = self.locked;
        self.locked = false;
        for (list, affiliation) in [
            (lists.owners, Affiliation::Owner),
            (lists.admins, Affiliation::Admin),
        ] {
            let Some(list) = list else { continue };
            self.replace_list(ctx, affiliation, &list).await?;
        }
        if before.persistent && !self.config.persistent {
            ctx.shared
                .store
                .remove(&self.jid, false)
                .await
                .map_err(|_| {
                    refuse(
                        DefinedCondition::InternalServerError,
                        "the room could not be stored",
                    )
                })?;
        }
        self.save(ctx).await?;
        if was_locked {
            return Ok(());
        }
        // §10.2.1: tell the occupants something changed.
        let mut codes = vec![104];
        if before.whois != self.config.whois {
            codes.push(match self.config.whois {
                Whois::Anyone => 172,
                Whois::Moderators => 173,
            });
        }
        if before.archiving != self.config.archiving {
            codes.push(if self.config.archiving { 170 } else { 171 });
        }
        let message = Element::new("message", ns::CLIENT)
            .with_attr("type", "groupchat")
            .with_child(muc::user_x(&[], &codes));
        self.announce(ctx, message).await;
        if !before.members_only && self.config.members_only {
            // §9.? 322: those who are no longer allowed in leave.
            let outsiders: Vec<String> = self
                .occupants
                .values()
                .filter(|o| self.affiliation(ctx.shared, &o.bare) < Affiliation::Member)
                .map(|o| o.nick.clone())
                .collect();
            for nick in outsiders {
                self.eject(ctx, &nick, &[322], &Item::default()).await;
            }
        }
        Ok(())
    }

    /// Makes `list` the complete list of `affiliation` (from the form's `roomowners` or
    /// `roomadmins`): those dropped from it become `none`.
    async fn replace_list(
        &mut self,
        ctx: &Ctx<'_>,
        affiliation: Affiliation,
        list: &[BareJid],
    ) -> Result<(), StanzaError> {
        let current = self.with_affiliation(ctx.shared, affiliation);
        for jid in current.iter().filter(|j| !list.contains(j)) {
            if ctx.shared.admins.contains(jid) {
                continue;
            }
            self.set_affiliation(ctx, jid, Affiliation::None, None, None, None)
                .await?;
        }
        for jid in list.iter().filter(|j| !current.contains(j)) {
            self.set_affiliation(ctx, jid, affiliation, None, None, None)
                .await?;
        }
        Ok(())
    }

    /// Destroys the room (§10.9): every occupant leaves with the `<destroy/>` (reason and
    /// alternate venue), and nothing of the room is kept.
    async fn destroy(&mut self, ctx: &Ctx<'_>, destroy: &Element) -> Result<(), StanzaError> {
        let mut notice = Element::new("destroy", muc::NS_USER);
        if let Some(venue) = destroy.attr("jid") {
            let venue = Jid::new(venue).map_err(|e| {
                refuse(
                    DefinedCondition::JidMalformed,
                    &format!("the alternate venue '{venue}' is not a JID: {e}"),
                )
            })?;
            notice.set_attr("jid", venue.as_str());
        }
        if let Some(reason) = destroy.child("reason", muc::NS_OWNER) {
            notice.push_child(Element::new("reason", muc::NS_USER).with_text(reason.text()));
        }
        if let Some(password) = destroy.child("password", muc::NS_OWNER) {
            notice.push_child(Element::new("password", muc::NS_USER).with_text(password.text()));
        }
        let nicks: Vec<String> = self.occupants.keys().cloned().collect();
        for nick in nicks {
            let Some(o) = self.occupants.get(&nick) else {
                continue;
            };
            let item = Item {
                affiliation: Some(Affiliation::None),
                role: Some(muc::Role::None),
                ..Item::default()
            };
            let mut x = muc::user_x(&[item], &[]);
            x.push_child(notice.clone());
            let mut p = Element::new("presence", ns::CLIENT).with_attr("type", "unavailable");
            if let Some(from) = self.occupant_jid(&nick) {
                p.set_attr("from", from.as_str());
            }
            p.push_child(x);
            let recipients: Vec<Jid> = o
                .sessions
                .iter()
                .map(|s| Jid::from(s.jid.clone()))
                .collect();
            for to in recipients {
                self.send_to(ctx, xmppd_proto::StanzaKind::Presence, p.clone(), &to)
                    .await;
            }
        }
        let nicks: Vec<String> = self.occupants.keys().cloned().collect();
        for nick in nicks {
            self.remove_occupant(&nick);
        }
        let owners: Vec<BareJid> = self
            .affiliations
            .iter()
            .filter(|(_, e)| e.affiliation == Affiliation::Owner)
            .map(|(j, _)| j.clone())
            .collect();
        for owner in owners {
            let _ = ctx.shared.store.remove_owned(&owner, &self.jid).await;
        }
        ctx.shared
            .store
            .remove(&self.jid, true)
            .await
            .map_err(|_| {
                refuse(
                    DefinedCondition::InternalServerError,
                    "the room could not be removed",
                )
            })?;
        self.closed = true;
        Ok(())
    }

    /// Makes `creator` the owner of a new room (§10.1.1).
    pub(crate) fn set_creator(&mut self, creator: &BareJid) {
        self.affiliations.insert(
            creator.clone(),
            AffiliationEntry {
                affiliation: Affiliation::Owner,
                nick: None,
                reason: None,
            },
        );
    }
}
