//! The room's iq: discovery (XEP-0045 §6.4, §7.12), moderation and ownership (`admin.rs`,
//! `owner.rs`), registration (§7.10), its archive (XEP-0313 on the room JID), and iq to an
//! occupant (XEP-0410 self-ping, otherwise passed on as §7.? "IQ to occupant").

use jid::Jid;
use xmppd_modules::mam::ArchiveView;
use xmppd_proto::data_form::{DataForm, Field, FieldType, FormType};
use xmppd_proto::disco::{DiscoInfoResult, Identity};
use xmppd_proto::mam::{ArchivedResult, Query, fields_form};
use xmppd_proto::muc::{self, Affiliation};
use xmppd_proto::{DefinedCondition, Stanza, StanzaError, StanzaKind, ns};
use xmppd_xml::Element;

use super::owner::OwnerOutcome;
use super::{Ctx, Room, refuse};

/// What the room does with an iq.
pub(crate) enum IqAnswer {
    /// Answer with a result holding this payload, if any.
    Result(Option<Element>),
    /// The room was destroyed by the request; answer with an empty result.
    Destroyed,
    /// Passed on to an occupant, who answers.
    Forwarded,
}

const NS_REGISTER: &str = "jabber:iq:register";

impl Room {
    /// An iq to the room's bare JID.
    pub(crate) async fn iq(
        &mut self,
        ctx: &Ctx<'_>,
        real: &Jid,
        stanza: &Stanza,
    ) -> Result<IqAnswer, StanzaError> {
        let get = stanza.type_attr() == Some("get");
        let Some(payload) = stanza.iq_payload() else {
            return Err(StanzaError::service_unavailable());
        };
        let ns = payload.ns();
        let answer = |el: Element| Ok(IqAnswer::Result(Some(el)));
        match (get, ns, payload.name()) {
            (true, ns::DISCO_INFO, "query") => answer(self.disco_info(ctx, real, payload)),
            (true, ns::DISCO_ITEMS, "query") => {
                let mut q = Element::new("query", ns::DISCO_ITEMS);
                if let Some(node) = payload.attr("node") {
                    q.set_attr("node", node);
                }
                answer(q)
            }
            (true, muc::NS_ADMIN, "query") => answer(self.admin_get(ctx, real, payload)?),
            (false, muc::NS_ADMIN, "query") => {
                self.admin_set(ctx, real, payload).await?;
                Ok(IqAnswer::Result(None))
            }
            (true, muc::NS_OWNER, "query") => answer(self.owner_get(ctx, real)?),
            (false, muc::NS_OWNER, "query") => {
                Ok(match self.owner_set(ctx, real, payload).await? {
                    OwnerOutcome::Done => IqAnswer::Result(None),
                    OwnerOutcome::Destroyed => IqAnswer::Destroyed,
                })
            }
            (true, NS_REGISTER, "query") => answer(self.register_form(ctx, real)?),
            (false, NS_REGISTER, "query") => {
                self.register(ctx, real, payload).await?;
                Ok(IqAnswer::Result(None))
            }
            (true, ns::MAM, "query") => answer(fields_form(true, false)),
            (false, ns::MAM, "query") => answer(self.archive_query(ctx, real, payload).await?),
            (true, ns::MAM, "metadata") => {
                self.check_archive_access(ctx, real)?;
                let cipher = self.cipher(ctx).await?;
                let view = self.archive_view(ctx, &cipher);
                answer(
                    view.metadata()
                        .await
                        .map_err(StanzaError::from)?
                        .to_element(),
                )
            }
            (true, ns::PING, "ping") => Ok(IqAnswer::Result(None)),
            _ => Err(StanzaError::service_unavailable()),
        }
    }

    /// disco#info of the room (§6.4), or of the requester's reserved nickname (§7.12).
    fn disco_info(&self, ctx: &Ctx<'_>, real: &Jid, query: &Element) -> Element {
        let node = query.attr("node");
        if node == Some(muc::NODE_RESERVED_NICK) {
            let mut q =
                Element::new("query", ns::DISCO_INFO).with_attr("node", muc::NODE_RESERVED_NICK);
            if let Some(nick) = self
                .affiliations
                .get(&real.to_bare())
                .and_then(|e| e.nick.clone())
            {
                q.push_child(
                    Identity::new("conference", "text")
                        .with_name(nick)
                        .to_element(),
                );
            }
            return q;
        }
        let name = if self.config.name.is_empty() {
            self.jid.node().map_or_else(String::new, |n| n.to_string())
        } else {
            self.config.name.clone()
        };
        let mut features: Vec<String> = vec![
            muc::NS.to_owned(),
            muc::FEATURE_SELF_PING.to_owned(),
            "http://jabber.org/protocol/muc#stable_id".to_owned(),
            muc::NS_OCCUPANT_ID.to_owned(),
            ns::SID.to_owned(),
            ns::DISCO_INFO.to_owned(),
            NS_REGISTER.to_owned(),
        ];
        if self.config.archiving {
            features.push(ns::MAM.to_owned());
        }
        features.extend(self.config.features().iter().map(|f| (*f).to_owned()));
        features.sort();
        let mut form = DataForm::new(FormType::Result)
            .with_field(Field::form_type(muc::FORM_ROOMINFO))
            .with_field(
                Field::new("muc#roominfo_description", FieldType::TextSingle)
                    .with_value(self.config.description.as_str()),
            )
            .with_field(
                Field::new("muc#roominfo_occupants", FieldType::TextSingle)
                    .with_value(self.occupant_count().to_string()),
            )
            .with_field(
                Field::new("muc#roomconfig_roomname", FieldType::TextSingle)
                    .with_value(name.as_str()),
            )
            .with_field(
                Field::new("muc#roominfo_subject", FieldType::TextSingle)
                    .with_value(self.subject.text.as_str()),
            )
            .with_field(
                Field::new("muc#roomconfig_changesubject", FieldType::Boolean)
                    .with_value(if self.config.change_subject { "1" } else { "0" }),
            );
        if !self.config.language.is_empty() {
            form = form.with_field(
                Field::new("muc#roominfo_lang", FieldType::TextSingle)
                    .with_value(self.config.language.as_str()),
            );
        }
        let _ = ctx;
        DiscoInfoResult {
            node: node.map(str::to_owned),
            identities: vec![Identity::new("conference", "text").with_name(name)],
            features,
            extensions: vec![form],
        }
        .to_element()
    }

    /// The registration form (§7.10.1), or `<registered/>` with the nick already registered.
    fn register_form(&self, ctx: &Ctx<'_>, real: &Jid) -> Result<Element, StanzaError> {
        let bare = real.to_bare();
        if self.affiliation(ctx.shared, &bare) == Affiliation::Outcast {
            return Err(refuse(
                DefinedCondition::Forbidden,
                "you are banned from this room",
            ));
        }
        let mut q = Element::new("query", NS_REGISTER);
        let current = self.affiliations.get(&bare).and_then(|e| e.nick.clone());
        if let Some(nick) = &current {
            q.push_child(Element::new("registered", NS_REGISTER));
            q.push_child(Element::new("username", NS_REGISTER).with_text(nick.as_str()));
        }
        let mut form = DataForm::new(FormType::Form);
        form.title = Some(format!("Register with {}", self.jid));
        let mut nick =
            Field::new("muc#register_roomnick", FieldType::TextSingle).with_label("Nickname");
        nick.required = true;
        if let Some(n) = current {
            nick.values.push(n);
        }
        let form = form
            .with_field(Field::form_type(muc::FORM_REGISTER))
            .with_field(nick);
        q.push_child(form.to_element());
        Ok(q)
    }

    /// Registers the requester's nickname, making them a member (§7.10), or removes the
    /// registration (`<remove/>`).
    async fn register(
        &mut self,
        ctx: &Ctx<'_>,
        real: &Jid,
        query: &Element,
    ) -> Result<(), StanzaError> {
        let bare = real.to_bare();
        let affiliation = self.affiliation(ctx.shared, &bare);
        if affiliation == Affiliation::Outcast {
            return Err(refuse(
                DefinedCondition::Forbidden,
                "you are banned from this room",
            ));
        }
        if query.has_child("remove", NS_REGISTER) {
            if affiliation == Affiliation::Member {
                self.set_affiliation(ctx, &bare, Affiliation::None, None, None, None)
                    .await?;
            } else if let Some(e) = self.affiliations.get_mut(&bare) {
                e.nick = None;
            }
            return self.save(ctx).await;
        }
        let form = query
            .child("x", ns::DATA_FORMS)
            .map(DataForm::try_from)
            .transpose()
            .map_err(StanzaError::from)?
            .ok_or_else(|| refuse(DefinedCondition::BadRequest, "registration needs the form"))?;
        let nick = form
            .value("muc#register_roomnick")
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                refuse(
                    DefinedCondition::NotAcceptable,
                    "the form needs muc#register_roomnick",
                )
            })?
            .to_owned();
        if jid::ResourcePart::new(&nick).is_err()
            || nick.len() > ctx.shared.settings.get().max_nick_bytes
        {
            return Err(refuse(
                DefinedCondition::JidMalformed,
                "that nickname is not a valid room nickname",
            ));
        }
        let taken = self
            .affiliations
            .iter()
            .any(|(j, e)| *j != bare && e.nick.as_deref() == Some(nick.as_str()))
            || self.occupants.get(&nick).is_some_and(|o| o.bare != bare);
        if taken {
            return Err(refuse(
                DefinedCondition::Conflict,
                "that nickname is taken in this room",
            ));
        }
        if self.config.members_only && affiliation < Affiliation::Member {
            return Err(refuse(
                DefinedCondition::NotAllowed,
                "only admins add members to this members-only room",
            ));
        }
        if affiliation < Affiliation::Member {
            self.set_affiliation(ctx, &bare, Affiliation::Member, Some(nick), None, None)
                .await?;
        } else if let Some(e) = self.affiliations.get_mut(&bare) {
            e.nick = Some(nick);
        }
        self.save(ctx).await
    }

    /// Who may read the archive: anyone who may enter (members only in a members-only room),
    /// never an outcast.
    fn check_archive_access(&self, ctx: &Ctx<'_>, real: &Jid) -> Result<(), StanzaError> {
        let a = self.affiliation(ctx.shared, &real.to_bare());
        if a == Affiliation::Outcast || (self.config.members_only && a < Affiliation::Member) {
            return Err(refuse(
                DefinedCondition::Forbidden,
                "you may not read this room's archive",
            ));
        }
        Ok(())
    }

    async fn cipher(&self, ctx: &Ctx<'_>) -> Result<xmppd_modules::mam::IdCipher, StanzaError> {
        ctx.shared
            .ids
            .cipher(self.jid.domain().as_str())
            .await
            .map_err(|e| {
                tracing::warn!(room = %self.jid, error = %e, "the archive key could not be read");
                StanzaError::new(DefinedCondition::InternalServerError)
            })
    }

    fn archive_view<'a>(
        &'a self,
        ctx: &'a Ctx<'_>,
        cipher: &'a xmppd_modules::mam::IdCipher,
    ) -> ArchiveView<'a> {
        let settings = ctx.shared.settings.get();
        ArchiveView {
            archive: &**ctx.shared.store.archive_store(),
            host: self.jid.domain().as_str(),
            node: self.jid.node().map_or("", |n| n.as_str()),
            store: crate::store::ARCHIVE,
            cipher,
            imported: None,
            max_page: settings.archive_max_page,
            visible_from: settings.expire_before_us(crate::now_us()),
            label: self.jid.as_str(),
        }
    }

    /// A MAM query on the room's archive: the results go to the requester from the room JID,
    /// then the `<fin/>` is returned.
    async fn archive_query(
        &self,
        ctx: &Ctx<'_>,
        real: &Jid,
        payload: &Element,
    ) -> Result<Element, StanzaError> {
        self.check_archive_access(ctx, real)?;
        let query = Query::try_from(payload).map_err(StanzaError::from)?;
        let cipher = self.cipher(ctx).await?;
        let view = self.archive_view(ctx, &cipher);
        let page = view
            .page(&query, ctx.shared.settings.get().archive_max_page)
            .await
            .map_err(StanzaError::from)?;
        for result in page.results {
            self.send_result(ctx, real, result).await;
        }
        Ok(page.fin.to_element())
    }

    async fn send_result(&self, ctx: &Ctx<'_>, to: &Jid, result: ArchivedResult) {
        let el = Element::new("message", ns::CLIENT)
            .with_attr("from", self.jid.as_str())
            .with_child(result.to_element());
        self.send_to(ctx, StanzaKind::Message, el, to).await;
    }

    /// An iq to an occupant JID: a self-ping is answered here (XEP-0410 §3); anything else
    /// from an occupant is passed to the target occupant, `from` the sender's occupant JID
    /// (vCard requests to the target's bare JID, §7.? of XEP-0045 and XEP-0054).
    pub(crate) async fn iq_to_occupant(
        &self,
        ctx: &Ctx<'_>,
        real: &Jid,
        nick: &str,
        stanza: &Stanza,
    ) -> Result<IqAnswer, StanzaError> {
        let response = matches!(stanza.type_attr(), Some("result" | "error"));
        // An answer to a vCard request passed to an account comes from its bare JID.
        let sender = self.occupant_of(real).or_else(|| {
            response
                .then(|| {
                    self.occupants.values().find(|o| {
                        real.node() == o.bare.node()
                            && real.domain() == o.bare.domain()
                            && real.resource().is_none()
                    })
                })
                .flatten()
        });
        let Some(sender) = sender else {
            return Err(refuse(
                DefinedCondition::NotAcceptable,
                "you are not in this room",
            ));
        };
        let payload = stanza.iq_payload();
        if sender.nick == nick && payload.is_some_and(|p| p.is("ping", ns::PING)) {
            return Ok(IqAnswer::Result(None));
        }
        let Some(target) = self.occupants.get(nick) else {
            return Err(refuse(
                DefinedCondition::ItemNotFound,
                "no occupant has that nickname",
            ));
        };
        let Some(from) = self.occupant_jid(&sender.nick) else {
            return Err(StanzaError::service_unavailable());
        };
        let to: Jid = if payload.is_some_and(|p| p.ns() == "vcard-temp") {
            Jid::from(target.bare.clone())
        } else {
            match target.sessions.first() {
                Some(s) => Jid::from(s.jid.clone()),
                None => {
                    return Err(refuse(
                        DefinedCondition::ItemNotFound,
                        "no occupant has that nickname",
                    ));
                }
            }
        };
        let mut el = stanza.element().clone();
        el.set_attr("from", from.as_str());
        self.send_to(ctx, StanzaKind::Iq, el, &to).await;
        Ok(IqAnswer::Forwarded)
    }
}
