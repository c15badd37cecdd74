//! XEP-0153: vCard-Based Avatars, on the server's side (as ejabberd's `mod_vcard_xupdate`).
//!
//! The server knows the avatar better than any one client: it holds the vCard. So it stamps
//! every available presence a user sends, broadcast (RFC 6121 §4.2, §4.4) or directed (§4.6;
//! XEP-0153 §4.1 rule 1 asks for both, e.g. to MUC rooms), with
//! `<x xmlns='vcard-temp:x:update'><photo>HASH</photo></x>`, the SHA-1 of the stored vCard's
//! photo, or an empty `<photo/>` when there is none (§4.1 rule 3). Any `x` of that namespace
//! the client put there is replaced: a client that is not up to date (§4.3) cannot announce a
//! stale or forged hash.
//!
//! **After a vCard update** whose photo changed, the server announces the user's presence
//! again with the new hash, for every available session ([`Router::rebroadcast_presence`]).
//! §3.1 leaves that to the client that uploaded the photo; done here, the contacts learn it
//! also when the uploading client does not re-send its presence and when another resource
//! (§4.3) keeps sending the old one. Entities that only got directed presence learn it at the
//! client's next directed presence.
//!
//! **Cost**: the hash of an account is kept in each of its sessions' state, loaded from
//! storage at the first presence of the first session (copied from a sibling session for
//! later ones) and replaced when the vCard is set. No process-wide map: it goes with the
//! sessions, so it is right after a restart (loaded again) and takes no memory for users who
//! are not online. A vCard set on another node of a cluster reaches this node's sessions only
//! at their next login.

use std::sync::Arc;

use async_trait::async_trait;
use jid::BareJid;
use xmppd_core::{
    BroadcastPresenceHook, Flow, KindMask, Module, OutboundHook, Registry, Router, SessionRef,
};
use xmppd_proto::vcard_update::VCardUpdate;
use xmppd_proto::{Stanza, ns};

use crate::vcard::{VCardObserver, VCardStore};

/// Where the hooks run among others: after the features that read the presence as the
/// client sent it, which none does yet.
const PRIORITY: i32 = 0;

/// The photo hash of the session's account (`None`: no photo), as last loaded or set.
#[derive(Debug, PartialEq, Eq)]
struct PhotoHash(Option<String>);

/// The avatar module.
#[derive(Debug)]
pub struct Avatars(Arc<Stamper>);

impl Avatars {
    /// The module, reading hashes from `store` (the vCard module writes it).
    pub fn new(store: VCardStore) -> Self {
        Avatars(Arc::new(Stamper { store }))
    }

    /// What the vCard module tells of changes (see [`crate::vcard::VCardObservers`]).
    pub fn observer(&self) -> Arc<dyn VCardObserver> {
        self.0.clone()
    }
}

/// Stamps presence with the hash and follows vCard changes.
#[derive(Debug)]
struct Stamper {
    store: VCardStore,
}

impl Stamper {
    /// The hash for `session`'s account: the session's own, a sibling session's, or the
    /// stored one. `Err` when storage cannot say.
    async fn hash(&self, router: &Router, session: SessionRef<'_>) -> Result<Arc<PhotoHash>, ()> {
        if let Some(hash) = session.ext.get::<PhotoHash>() {
            return Ok(hash);
        }
        let user = session.jid.to_bare();
        let sibling = router
            .sessions()
            .resources(&user)
            .into_iter()
            .find_map(|r| r.ext().get::<PhotoHash>());
        let hash = match sibling {
            Some(hash) => hash,
            None => match self.store.photo_hash(&user).await {
                Ok(hash) => Arc::new(PhotoHash(hash)),
                Err(e) => {
                    tracing::warn!(%user, error = %e, "avatar hash unknown: presence left as sent");
                    return Err(());
                }
            },
        };
        // A hash set meanwhile by a vCard update wins over the one read before it.
        Ok(session.ext.get_or_insert_with(|| PhotoHash(hash.0.clone())))
    }

    /// The presence with `hash` as its only `vcard-temp:x:update` element, built anew.
    fn stamp(stanza: Stanza, hash: &PhotoHash) -> Stanza {
        let (kind, from, to) = (stanza.kind(), stanza.from().cloned(), stanza.to().cloned());
        let mut el = stanza.into_element();
        el.remove_children("x", ns::VCARD_UPDATE);
        el.push_child(VCardUpdate::from_hash(hash.0.as_deref()).to_element());
        Stanza::new_unchecked(kind, from, to, el)
    }

    async fn stamped(&self, router: &Router, session: SessionRef<'_>, stanza: Stanza) -> Stanza {
        // Available presence only: unavailable, subscription and probe stanzas say nothing of
        // an avatar.
        if stanza.type_attr().is_some() {
            return stanza;
        }
        match self.hash(router, session).await {
            Ok(hash) => Self::stamp(stanza, &hash),
            Err(()) => stanza,
        }
    }
}

impl Module for Avatars {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        registry.broadcast_presence(PRIORITY, self.0.clone());
        registry.outbound(PRIORITY, KindMask::PRESENCE, self.0.clone());
    }
}

#[async_trait]
impl BroadcastPresenceHook for Stamper {
    async fn broadcast_presence(
        &self,
        router: &Router,
        session: SessionRef<'_>,
        stanza: Stanza,
    ) -> Stanza {
        self.stamped(router, session, stanza).await
    }
}

#[async_trait]
impl OutboundHook for Stamper {
    /// Directed presence (§4.1 rule 1).
    async fn outbound(&self, router: &Router, session: SessionRef<'_>, stanza: Stanza) -> Flow {
        Flow::Continue(self.stamped(router, session, stanza).await)
    }
}

#[async_trait]
impl VCardObserver for Stamper {
    async fn vcard_changed(&self, router: &Router, user: &BareJid, photo_hash: Option<&str>) {
        let mut changed = false;
        for r in router.sessions().resources(user) {
            let new = PhotoHash(photo_hash.map(str::to_owned));
            let old = r.ext().insert(new);
            changed |= old.is_none_or(|old| old.0.as_deref() != photo_hash);
        }
        if changed {
            router.rebroadcast_presence(user).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jid::Jid;
    use xmppd_xml::Element;

    #[test]
    fn a_stamp_replaces_the_clients_update_and_keeps_the_rest() {
        let from = Jid::new("juliet@capulet.lit/balcony").expect("jid");
        let el = Element::new("presence", ns::CLIENT)
            .with_child(Element::new("show", ns::CLIENT).with_text("away"))
            .with_child(
                Element::new("x", ns::VCARD_UPDATE)
                    .with_child(Element::new("photo", ns::VCARD_UPDATE).with_text("forged")),
            )
            .with_child(Element::new("x", "jabber:x:other"));
        let stanza = Stanza::new_unchecked(xmppd_proto::StanzaKind::Presence, Some(from), None, el);
        let stamped = Stamper::stamp(stanza, &PhotoHash(Some("ab12".into())));
        let el = stamped.element();
        let updates: Vec<_> = el
            .children()
            .filter(|c| c.is("x", ns::VCARD_UPDATE))
            .collect();
        assert_eq!(updates.len(), 1);
        assert_eq!(
            VCardUpdate::try_from(updates[0]).expect("update"),
            VCardUpdate::Photo("ab12".into())
        );
        assert!(el.has_child("show", ns::CLIENT) && el.has_child("x", "jabber:x:other"));
        assert_eq!(
            stamped.from().map(Jid::as_str),
            Some("juliet@capulet.lit/balcony")
        );
        let none = Stamper::stamp(stamped, &PhotoHash(None));
        let update = none.element().child("x", ns::VCARD_UPDATE).expect("x");
        assert_eq!(
            VCardUpdate::try_from(update).expect("update"),
            VCardUpdate::NoPhoto
        );
    }
}
