//! The service of one domain: finds (or loads, or creates) the room a stanza is for and hands
//! it over; answers what is addressed to the service itself ([`crate::disco`]).
//!
//! The directory holds the rooms in memory: live temporary rooms, and persistent rooms
//! loaded since the start. A room that closes (destroyed, or a temporary room that emptied)
//! is removed from it under the room's own lock, flagged `closed`; a stanza that raced to the
//! closed room finds the flag and looks the room up again, so it either creates a new room or
//! gets `item-not-found`, never lands in a room nobody can reach.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use jid::{BareJid, Jid};
use tokio::sync::{Mutex, OnceCell};
use tracing::warn;
use xmppd_core::module::Routed;
use xmppd_core::storage::ArchiveQuery;
use xmppd_core::{Router, Service};
use xmppd_proto::muc;
use xmppd_proto::stanza::parse_stored;
use xmppd_proto::stanza_id::StanzaId;
use xmppd_proto::{DefinedCondition, Stanza, StanzaError, StanzaKind};

use crate::room::{Ctx, Deferred, IqAnswer, Room, refuse};
use crate::store::StoredRoom;
use crate::{CreateRooms, Shared};

/// A room shared between the stanzas that reach it.
pub(crate) type RoomRef = Arc<Mutex<Room>>;

/// The MUC service of one domain.
pub(crate) struct MucService {
    pub(crate) domain: String,
    pub(crate) shared: Arc<Shared>,
    /// The rooms in memory, by localpart.
    pub(crate) rooms: Mutex<HashMap<String, RoomRef>>,
    secret: OnceCell<Vec<u8>>,
}

fn internal(e: &dyn std::fmt::Display) -> StanzaError {
    warn!(error = %e, "MUC storage failed");
    StanzaError::new(DefinedCondition::InternalServerError)
}

impl MucService {
    pub(crate) fn new(domain: String, shared: Arc<Shared>) -> Self {
        MucService {
            domain,
            shared,
            rooms: Mutex::new(HashMap::new()),
            secret: OnceCell::new(),
        }
    }

    async fn secret(&self) -> Result<&[u8], StanzaError> {
        self.secret
            .get_or_try_init(|| self.shared.store.secret(&self.domain))
            .await
            .map(Vec::as_slice)
            .map_err(|e| internal(&e))
    }

    /// The room in memory, or loaded from storage if it is persistent.
    pub(crate) async fn find(
        &self,
        name: &str,
        jid: &BareJid,
    ) -> Result<Option<RoomRef>, StanzaError> {
        let mut rooms = self.rooms.lock().await;
        if let Some(room) = rooms.get(name) {
            return Ok(Some(room.clone()));
        }
        let Some(stored) = self
            .shared
            .store
            .load(jid)
            .await
            .map_err(|e| internal(&e))?
        else {
            return Ok(None);
        };
        let mut room = Room::new(jid.clone(), stored, self.shared.settings.get().max_history);
        self.load_history(&mut room).await;
        let room = Arc::new(Mutex::new(room));
        rooms.insert(name.to_owned(), room.clone());
        Ok(Some(room))
    }

    /// A persistent room's history comes back from its archive.
    async fn load_history(&self, room: &mut Room) {
        let n = room.config.history_length;
        if n == 0 || !room.config.archiving {
            return;
        }
        let query = ArchiveQuery {
            limit: Some(u32::try_from(n).unwrap_or(u32::MAX)),
            reverse: true,
            ..ArchiveQuery::default()
        };
        let cipher = match self.shared.ids.cipher(&self.domain).await {
            Ok(c) => c,
            Err(e) => {
                warn!(room = %room.jid, error = %e, "the archive key could not be read");
                return;
            }
        };
        let by = Jid::from(room.jid.clone());
        match self.shared.store.query(&room.jid, &query).await {
            Ok(records) => {
                for r in records {
                    let Some(mut message) = parse_stored(&r.payload) else {
                        continue;
                    };
                    message
                        .push_child(StanzaId::new(cipher.encode(&r.id), by.clone()).to_element());
                    let at = UNIX_EPOCH
                        + Duration::from_micros(u64::try_from(r.timestamp_us).unwrap_or(0));
                    room.with_history(|h| h.push(message, at));
                }
            }
            Err(e) => warn!(room = %room.jid, error = %e, "the room's history could not be read"),
        }
    }

    /// Creates a room for `creator` if the service allows it (§10.1.1).
    async fn create(
        &self,
        name: &str,
        jid: &BareJid,
        creator: &BareJid,
    ) -> Result<RoomRef, StanzaError> {
        let settings = self.shared.settings.get();
        let admin = self.shared.admins.contains(creator);
        let allowed = admin
            || match settings.create_rooms {
                CreateRooms::Anyone => true,
                CreateRooms::Local => self
                    .shared
                    .hosts
                    .get()
                    .iter()
                    .any(|h| h == creator.domain().as_str()),
                CreateRooms::Admins => false,
            };
        if !allowed {
            return Err(refuse(
                DefinedCondition::NotAllowed,
                "you may not create rooms on this service",
            ));
        }
        if !admin {
            let owned = self
                .shared
                .store
                .owned(creator)
                .await
                .map_err(|e| internal(&e))?;
            if owned >= settings.max_rooms_per_user {
                return Err(refuse(
                    DefinedCondition::NotAllowed,
                    &format!("you own {owned} rooms, as many as this service allows"),
                ));
            }
        }
        let stored = StoredRoom {
            config: crate::config::RoomConfig {
                max_users: settings.default_max_users.min(settings.max_occupants),
                history_length: settings.default_history.min(settings.max_history),
                archiving: settings.archive_by_default,
                ..crate::config::RoomConfig::default()
            },
            ..StoredRoom::default()
        };
        let mut room = Room::new(jid.clone(), stored, settings.max_history);
        room.set_creator(creator);
        self.shared
            .store
            .add_owned(creator, jid)
            .await
            .map_err(|e| internal(&e))?;
        let room = Arc::new(Mutex::new(room));
        self.rooms
            .lock()
            .await
            .insert(name.to_owned(), room.clone());
        Ok(room)
    }

    /// Forgets a closed room; a temporary room's owners own one room fewer.
    async fn forget(&self, name: &str, room: &RoomRef, guard: &Room) {
        let mut rooms = self.rooms.lock().await;
        if rooms.get(name).is_some_and(|r| Arc::ptr_eq(r, room)) {
            rooms.remove(name);
        }
        drop(rooms);
        for owner in guard.with_affiliation(&self.shared, muc::Affiliation::Owner) {
            if let Err(e) = self.shared.store.remove_owned(&owner, &guard.jid).await {
                warn!(room = %guard.jid, error = %e, "a room's owner record could not be removed");
            }
        }
    }

    /// Handles a stanza to a room or occupant JID.
    async fn to_room(&self, router: &Router, stanza: Stanza, real: Jid, name: &str) -> Routed {
        let Some(to) = stanza.to().cloned() else {
            return Routed::Done(None);
        };
        let jid = to.to_bare();
        let nick = to.resource().map(|r| r.as_str().to_owned());
        let secret = match self.secret().await {
            Ok(s) => s,
            Err(e) => return Routed::Done(stanza.error_reply(&e)),
        };
        let ctx = Ctx {
            router,
            shared: &self.shared,
            secret,
        };
        let joining =
            stanza.kind() == StanzaKind::Presence && stanza.type_attr().is_none() && nick.is_some();
        for _ in 0..2 {
            let (room, created) = match self.find(name, &jid).await {
                Ok(Some(room)) => (room, false),
                Ok(None) if joining => match self.create(name, &jid, &real.to_bare()).await {
                    Ok(room) => (room, true),
                    Err(e) => return Routed::Done(stanza.error_reply(&e)),
                },
                Ok(None) => {
                    if stanza.kind() == StanzaKind::Presence {
                        return Routed::Done(None);
                    }
                    return Routed::Done(
                        stanza.error_reply(&refuse(DefinedCondition::ItemNotFound, "no such room")),
                    );
                }
                Err(e) => return Routed::Done(stanza.error_reply(&e)),
            };
            let mut guard = room.lock().await;
            if guard.closed {
                continue;
            }
            let reply = if created {
                let nick = nick.as_deref().unwrap_or_default();
                // §10.1.1: a client speaking MUC gets a locked room to configure; an old
                // Groupchat 1.0 client an instant one.
                guard.locked = muc::Join::find_in(stanza.element()).is_some();
                let full = match real.try_as_full() {
                    Ok(f) => f.clone(),
                    Err(_) => return Routed::Done(None),
                };
                match guard.enter(&ctx, &full, nick, stanza.element(), true).await {
                    Ok(()) => None,
                    Err(e) => {
                        guard.closed = true;
                        stanza.error_reply(&e)
                    }
                }
            } else {
                match dispatch(&mut guard, &ctx, &stanza, &real, nick.as_deref()).await {
                    Ok(Handled::Now(reply)) => reply,
                    Ok(Handled::Later(completion)) => {
                        // An archived message, sent: the sender's stream counts it once its
                        // commit is done, which the room's outbox awaits without the room.
                        drop(guard);
                        return Routed::Later(completion);
                    }
                    Err(e) => stanza.error_reply(&e),
                }
            };
            if guard.closed {
                self.forget(name, &room, &guard).await;
            }
            return Routed::Done(reply);
        }
        Routed::Done(stanza.error_reply(&refuse(DefinedCondition::ItemNotFound, "no such room")))
    }
}

/// What became of a stanza a room took.
enum Handled {
    /// Done; this goes back to the sender, if anything.
    Now(Option<Stanza>),
    /// An archived message on its way out.
    Later(Deferred),
}

/// Hands a stanza to the room's handler for its kind and target.
async fn dispatch(
    room: &mut Room,
    ctx: &Ctx<'_>,
    stanza: &Stanza,
    real: &Jid,
    nick: Option<&str>,
) -> Result<Handled, StanzaError> {
    if stanza.kind() == StanzaKind::Iq {
        // A query of the archive finds every message the room has sent (super::room::outbox).
        room.flush().await;
    }
    let result = match (stanza.kind(), nick) {
        (StanzaKind::Presence, Some(nick)) => match real.try_as_full() {
            Ok(full) => room.presence(ctx, full, nick, stanza).await,
            Err(_) => Err(refuse(
                DefinedCondition::BadRequest,
                "presence to a room comes from a resource",
            )),
        },
        (StanzaKind::Presence, None) => {
            if stanza.type_attr().is_some() {
                return Ok(Handled::Now(None));
            }
            Err(refuse(
                DefinedCondition::JidMalformed,
                "enter a room as room@service/nickname",
            ))
        }
        (StanzaKind::Message, None) => {
            return Ok(match room.message_to_room(ctx, real, stanza).await? {
                Some(deferred) => Handled::Later(deferred),
                None => Handled::Now(None),
            });
        }
        (StanzaKind::Message, Some(nick)) => room.private_message(ctx, real, nick, stanza).await,
        (StanzaKind::Iq, target) => {
            let answer = match target {
                None => room.iq(ctx, real, stanza).await,
                Some(nick) => room.iq_to_occupant(ctx, real, nick, stanza).await,
            };
            return Ok(Handled::Now(match answer? {
                IqAnswer::Result(payload) => Some(stanza.iq_result(payload)),
                IqAnswer::Destroyed => Some(stanza.iq_result(None)),
                IqAnswer::Forwarded => None,
            }));
        }
    };
    result.map(|()| Handled::Now(None))
}

#[async_trait]
impl Service for MucService {
    async fn handle(&self, router: &Router, stanza: Stanza) -> Option<Stanza> {
        match self.handle_from_session(router, stanza).await {
            Routed::Done(next) => next,
            Routed::Later(completion) => {
                completion.done().await;
                None
            }
        }
    }

    async fn handle_from_session(&self, router: &Router, stanza: Stanza) -> Routed {
        let (Some(real), Some(to)) = (stanza.from().cloned(), stanza.to()) else {
            return Routed::Done(None);
        };
        match to.node().map(|n| n.as_str().to_owned()) {
            None => Routed::Done(self.to_service(router, stanza).await),
            Some(name) => self.to_room(router, stanza, real, &name).await,
        }
    }
}
