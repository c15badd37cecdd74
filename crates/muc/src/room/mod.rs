//! One room: its state, and how what it says reaches the occupants.
//!
//! The handlers of each kind of request are in the submodules: entering, leaving and
//! presence ([`enter`]), messages ([`message`]), moderation ([`admin`]), configuration and
//! destruction ([`owner`]), the room's iq ([`iq`]), discussion history ([`history`]).

mod admin;
mod enter;
mod history;
mod iq;
mod message;
mod outbox;
mod owner;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use jid::{BareJid, FullJid, Jid};
use sha2::{Digest, Sha256};
use tracing::warn;
use xmppd_core::Router;
use xmppd_proto::muc::{self, Affiliation, Item, Role};
use xmppd_proto::{DefinedCondition, Stanza, StanzaError, StanzaKind, ns};
use xmppd_xml::Element;

use crate::Shared;
use crate::config::{RoomConfig, Whois};
use crate::store::{AffiliationEntry, StoredRoom, Subject};

pub(crate) use history::History;
pub(crate) use iq::IqAnswer;

/// An archived message on its way out: done once it was sent, or bounced to its sender.
pub(crate) type Deferred = xmppd_core::completion::Completion;

/// An error with the condition XEP-0045 names and a text saying why.
pub(crate) fn refuse(condition: DefinedCondition, text: &str) -> StanzaError {
    StanzaError::new(condition).with_text(text)
}

/// What a room handler needs besides the room.
pub(crate) struct Ctx<'a> {
    pub(crate) router: &'a Router,
    pub(crate) shared: &'a Shared,
    /// The service's occupant-id key.
    pub(crate) secret: &'a [u8],
}

impl Ctx<'_> {
    /// Sends a copy of `stanza` to each of `recipients`. An error bounce of a copy comes back
    /// to the room, whose lock the sender may hold (or wait for, from the outbox): bounces
    /// are routed apart ([`route_apart`]).
    pub(crate) async fn send_copies(&self, stanza: Stanza, recipients: &[Jid]) {
        let bounces = self
            .router
            .route_copies_keeping_bounces(stanza, recipients)
            .await;
        route_apart(&self.shared.router, bounces);
    }

    /// Sends one stanza; its bounce, as with [`Ctx::send_copies`], apart.
    pub(crate) async fn send(&self, stanza: Stanza) {
        if let Some(bounce) = self.router.route_keeping_bounce(stanza).await {
            route_apart(&self.shared.router, vec![bounce]);
        }
    }
}

/// Routes the bounces of what a room sent on a task of their own, which waits for the room's
/// lock like any other stanza to it: routed inline, a bounce to the room would wait for the
/// lock its own sender holds.
pub(crate) fn route_apart(router: &xmppd_core::RouterHandle, bounces: Vec<Stanza>) {
    if bounces.is_empty() {
        return;
    }
    let Some(router) = router.get() else { return };
    tokio::spawn(async move {
        for bounce in bounces {
            router.route(bounce).await;
        }
    });
}

/// One connected resource of an occupant.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) jid: FullJid,
    /// Its last presence, cleaned of MUC payloads (what others see of it).
    pub(crate) presence: Element,
}

/// Someone in the room under one nickname (possibly from several resources of one account,
/// XEP-0045 §7.2.? multi-session nicks).
#[derive(Debug)]
pub(crate) struct Occupant {
    pub(crate) nick: String,
    pub(crate) bare: BareJid,
    pub(crate) sessions: Vec<Session>,
    pub(crate) role: Role,
    /// XEP-0421: stable per room and real bare JID.
    pub(crate) occupant_id: String,
    /// Message tokens left, and when they were last refilled.
    tokens: f64,
    refilled: Instant,
}

/// A room.
pub(crate) struct Room {
    pub(crate) jid: BareJid,
    pub(crate) config: RoomConfig,
    pub(crate) affiliations: BTreeMap<BareJid, AffiliationEntry>,
    pub(crate) subject: Subject,
    /// Occupants by nickname.
    pub(crate) occupants: HashMap<String, Occupant>,
    /// Occupants' nicknames by real full JID.
    by_session: HashMap<FullJid, String>,
    /// Every occupant session, the recipients of groupchat; rebuilt on joins and leaves.
    recipients: Arc<[Jid]>,
    /// The discussion history (§7.2.15).
    pub(crate) history: Arc<Mutex<History>>,
    /// The commits of archived groupchat still awaited, once the room has archived a message.
    outbox: Option<outbox::Outbox>,
    /// Created and not yet configured (§10.1.1).
    pub(crate) locked: bool,
    /// Destroyed, or a temporary room that emptied: the service forgets it.
    pub(crate) closed: bool,
}

impl Room {
    /// A room as stored (or a new one from `stored`'s defaults).
    pub(crate) fn new(jid: BareJid, stored: StoredRoom, max_history: usize) -> Room {
        let mut affiliations = BTreeMap::new();
        for (j, entry) in stored.affiliations {
            match BareJid::new(&j) {
                Ok(bare) => {
                    affiliations.insert(bare, entry);
                }
                Err(e) => {
                    warn!(room = %jid, jid = j, error = %e, "a stored affiliation is not a JID")
                }
            }
        }
        let history = History::new(stored.config.history_length.min(max_history));
        Room {
            jid,
            config: stored.config,
            affiliations,
            subject: stored.subject,
            occupants: HashMap::new(),
            by_session: HashMap::new(),
            recipients: Arc::from(Vec::new()),
            history: Arc::new(Mutex::new(history)),
            outbox: None,
            locked: false,
            closed: false,
        }
    }

    /// What is stored of the room.
    pub(crate) fn stored(&self) -> StoredRoom {
        StoredRoom {
            config: self.config.clone(),
            affiliations: self
                .affiliations
                .iter()
                .map(|(j, e)| (j.to_string(), e.clone()))
                .collect(),
            subject: self.subject.clone(),
        }
    }

    /// Stores the room if it is persistent; a failure is an `internal-server-error` for the
    /// request that changed it.
    pub(crate) async fn save(&self, ctx: &Ctx<'_>) -> Result<(), StanzaError> {
        if !self.config.persistent {
            return Ok(());
        }
        ctx.shared
            .store
            .save(&self.jid, &self.stored())
            .await
            .map_err(|e| {
                warn!(room = %self.jid, error = %e, "the room could not be stored");
                StanzaError::new(DefinedCondition::InternalServerError)
                    .with_text("the room could not be stored")
            })
    }

    /// The affiliation of a user: the service's admins own every room.
    pub(crate) fn affiliation(&self, shared: &Shared, user: &BareJid) -> Affiliation {
        if shared.admins.contains(user) {
            return Affiliation::Owner;
        }
        self.affiliations
            .get(user)
            .map_or(Affiliation::None, |e| e.affiliation)
    }

    /// The role an occupant of this affiliation gets on entering (§5.1.2).
    pub(crate) fn default_role(&self, affiliation: Affiliation) -> Role {
        match affiliation {
            Affiliation::Owner | Affiliation::Admin => Role::Moderator,
            Affiliation::Member => Role::Participant,
            Affiliation::None if self.config.moderated => Role::Visitor,
            Affiliation::None => Role::Participant,
            Affiliation::Outcast => Role::None,
        }
    }

    /// The occupant a real JID is in the room as.
    pub(crate) fn occupant_of(&self, real: &Jid) -> Option<&Occupant> {
        let full = real.try_as_full().ok()?;
        self.by_session
            .get(full)
            .and_then(|nick| self.occupants.get(nick))
    }

    /// The occupant JID of a nickname.
    pub(crate) fn occupant_jid(&self, nick: &str) -> Option<FullJid> {
        self.jid.with_resource_str(nick).ok()
    }

    /// The bare JIDs with an affiliation, sorted.
    pub(crate) fn with_affiliation(&self, shared: &Shared, a: Affiliation) -> Vec<BareJid> {
        let mut list: Vec<BareJid> = self
            .affiliations
            .iter()
            .filter(|(_, e)| e.affiliation == a)
            .map(|(j, _)| j.clone())
            .collect();
        if a == Affiliation::Owner {
            for admin in &shared.admins {
                if !list.contains(admin) {
                    list.push(admin.clone());
                }
            }
        }
        list.sort();
        list
    }

    /// Whether a recipient with this role sees real JIDs (§7.2.3, §7.2.4).
    pub(crate) fn sees_jids(&self, role: Role) -> bool {
        self.config.whois == Whois::Anyone || role == Role::Moderator
    }

    /// XEP-0421 §4: a stable, opaque id per room and real bare JID.
    pub(crate) fn occupant_id(&self, secret: &[u8], user: &BareJid) -> String {
        let mut hash = Sha256::new();
        hash.update(secret);
        hash.update(self.jid.as_str().as_bytes());
        hash.update([0]);
        hash.update(user.as_str().as_bytes());
        base64::engine::general_purpose::STANDARD.encode(&hash.finalize()[..18])
    }

    /// Adds a session to the room (a new occupant, or another resource of one).
    fn add_session(&mut self, occupant: Occupant, session: Session) {
        let nick = occupant.nick.clone();
        self.by_session.insert(session.jid.clone(), nick.clone());
        self.occupants
            .entry(nick)
            .or_insert(occupant)
            .sessions
            .push(session);
        self.rebuild_recipients();
    }

    /// Removes a session; returns the occupant when it was its last one.
    fn remove_session(&mut self, real: &FullJid) -> Option<Occupant> {
        let nick = self.by_session.remove(real)?;
        let occupant = self.occupants.get_mut(&nick)?;
        occupant.sessions.retain(|s| &s.jid != real);
        let gone = if occupant.sessions.is_empty() {
            self.occupants.remove(&nick)
        } else {
            None
        };
        self.rebuild_recipients();
        gone
    }

    /// Removes an occupant with all its sessions.
    fn remove_occupant(&mut self, nick: &str) -> Option<Occupant> {
        let occupant = self.occupants.remove(nick)?;
        for s in &occupant.sessions {
            self.by_session.remove(&s.jid);
        }
        self.rebuild_recipients();
        Some(occupant)
    }

    fn rebuild_recipients(&mut self) {
        let mut recipients = Vec::with_capacity(self.recipients.len() + 1);
        for o in self.occupants.values() {
            recipients.extend(o.sessions.iter().map(|s| Jid::from(s.jid.clone())));
        }
        self.recipients = Arc::from(recipients);
    }

    /// Returns once every archived message the room has sent is committed, so that a query of
    /// the archive finds it.
    pub(crate) async fn flush(&self) {
        if let Some(outbox) = &self.outbox {
            outbox.flush().await;
        }
    }

    /// Runs `f` on the history (a poisoned lock only means a panic elsewhere mid-push).
    pub(crate) fn with_history<T>(&self, f: impl FnOnce(&mut History) -> T) -> T {
        let mut h = match self.history.lock() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut h)
    }

    /// The `muc#user` item describing an occupant to a recipient.
    fn item_of(&self, o: &Occupant, with_jid: bool, shared: &Shared) -> Item {
        Item {
            affiliation: Some(self.affiliation(shared, &o.bare)),
            role: Some(o.role),
            jid: with_jid
                .then(|| o.sessions.first().map(|s| Jid::from(s.jid.clone())))
                .flatten(),
            ..Item::default()
        }
    }

    /// An occupant's presence as occupants see it: its last presence, the item, the codes and
    /// its occupant id; `unavailable` with the item's changes (`role none`, actor, reason).
    fn occupant_presence(
        &self,
        o: &Occupant,
        mut item: Item,
        codes: &[u16],
        unavailable: bool,
    ) -> Element {
        let mut el = if unavailable {
            Element::new("presence", ns::CLIENT).with_attr("type", "unavailable")
        } else {
            o.sessions
                .first()
                .map(|s| s.presence.clone())
                .unwrap_or_else(|| Element::new("presence", ns::CLIENT))
        };
        if let Some(from) = self.occupant_jid(&o.nick) {
            el.set_attr("from", from.as_str());
        }
        if unavailable {
            item.role = Some(Role::None);
        }
        el.push_child(muc::user_x(&[item], codes));
        el.push_child(muc::occupant_id(&o.occupant_id));
        el
    }

    /// Sends an occupant's presence to everyone in the room: its own sessions get status 110
    /// and `self_codes` besides `codes`; the others see its real JID or not, by their role.
    /// `changes` fills in the item (actor, reason, new nick for 303).
    pub(crate) async fn broadcast_presence(
        &self,
        ctx: &Ctx<'_>,
        o: &Occupant,
        codes: &[u16],
        self_codes: &[u16],
        changes: &Item,
        unavailable: bool,
    ) {
        self.broadcast_to(ctx, o, codes, self_codes, changes, unavailable, true)
            .await;
    }

    /// [`Room::broadcast_presence`], to the occupant's own sessions only if `own`.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn broadcast_to(
        &self,
        ctx: &Ctx<'_>,
        o: &Occupant,
        codes: &[u16],
        self_codes: &[u16],
        changes: &Item,
        unavailable: bool,
        own: bool,
    ) {
        let mut with = Vec::new();
        let mut without = Vec::new();
        for other in self.occupants.values().filter(|x| x.nick != o.nick) {
            let group = if self.sees_jids(other.role) {
                &mut with
            } else {
                &mut without
            };
            group.extend(other.sessions.iter().map(|s| Jid::from(s.jid.clone())));
        }
        let own: Vec<Jid> = if own {
            o.sessions
                .iter()
                .map(|s| Jid::from(s.jid.clone()))
                .collect()
        } else {
            Vec::new()
        };
        let complete = |with_jid: bool| {
            let mut item = self.item_of(o, with_jid, ctx.shared);
            item.actor.clone_from(&changes.actor);
            item.reason.clone_from(&changes.reason);
            item.nick.clone_from(&changes.nick);
            if let Some(a) = changes.affiliation {
                item.affiliation = Some(a);
            }
            item
        };
        let mut own_codes = vec![110];
        own_codes.extend_from_slice(self_codes);
        own_codes.extend_from_slice(codes);
        own_codes.sort_unstable();
        own_codes.dedup();
        for (recipients, with_jid, codes) in [
            (&with, true, codes),
            (&without, false, codes),
            (&own, true, &own_codes[..]),
        ] {
            if recipients.is_empty() {
                continue;
            }
            let el = self.occupant_presence(o, complete(with_jid), codes, unavailable);
            let from = el.attr("from").and_then(|f| Jid::new(f).ok());
            ctx.send_copies(
                Stanza::new_unchecked(StanzaKind::Presence, from, None, el),
                recipients,
            )
            .await;
        }
    }

    /// Sends `el` (which has its `from`) to one JID.
    pub(crate) async fn send_to(&self, ctx: &Ctx<'_>, kind: StanzaKind, mut el: Element, to: &Jid) {
        el.set_attr("to", to.as_str());
        let from = el.attr("from").and_then(|f| Jid::new(f).ok());
        ctx.send(Stanza::new_unchecked(kind, from, Some(to.clone()), el))
            .await;
    }

    /// Sends a message from the room itself (`from` the room JID) to every occupant.
    pub(crate) async fn announce(&self, ctx: &Ctx<'_>, mut el: Element) {
        el.set_attr("from", self.jid.as_str());
        let from = Some(Jid::from(self.jid.clone()));
        ctx.send_copies(
            Stanza::new_unchecked(StanzaKind::Message, from, None, el),
            &self.recipients,
        )
        .await;
    }

    /// Removes an occupant by force (kick, ban, lost membership, error, destruction) and tells
    /// everyone, the occupant included, with `codes`.
    pub(crate) async fn eject(&mut self, ctx: &Ctx<'_>, nick: &str, codes: &[u16], changes: &Item) {
        let Some(o) = self.occupants.get(nick) else {
            return;
        };
        // Everyone, the occupant too, sees it leave; then it is gone.
        self.broadcast_presence(ctx, o, codes, &[], changes, true)
            .await;
        self.remove_occupant(nick);
        self.close_if_empty();
    }

    /// A delivery error from an occupant's real JID means its session is gone (XEP-0045
    /// "Service removes user because of error response"): it leaves with status 333.
    pub(crate) async fn eject_on_error(&mut self, ctx: &Ctx<'_>, real: &Jid) {
        if let Some(o) = self.occupant_of(real) {
            let nick = o.nick.clone();
            self.eject(ctx, &nick, &[333], &Item::default()).await;
        }
    }

    /// A temporary room without occupants is gone (§10.1: "destroyed when the last occupant
    /// exits").
    pub(crate) fn close_if_empty(&mut self) {
        if self.occupants.is_empty() && !self.config.persistent {
            self.closed = true;
        }
    }

    /// Whether anyone is in the room.
    pub(crate) fn occupant_count(&self) -> usize {
        self.occupants.len()
    }
}
