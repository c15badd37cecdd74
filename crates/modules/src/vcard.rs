//! XEP-0054: vcard-temp.
//!
//! **Own vCard** (§3.1, §3.2): a get or set with no `to`, or to the user's own bare JID. A
//! set replaces the whole vCard (there are no partial updates, §3.2). A user without a
//! vCard gets an empty `<vCard/>`, which §3.1 allows beside `item-not-found` and which
//! clients handle best (an error reads as a failure to many of them).
//!
//! **Another user's vCard** (§3.3): anyone, local or from another server, may get it from
//! the user's bare JID; the server answers on the user's behalf (the router never forwards
//! such an iq to a resource). A user without a vCard gets `service-unavailable`, the answer
//! a missing account gets from the router, so that the two cannot be told apart (§3.3:
//! directory harvesting). A set to anyone else's JID is `forbidden` (§3.2).
//!
//! **Limits**: a vCard larger than `[modules.vcard] max_size` bytes (serialised) is refused
//! with `not-acceptable`. The stream's stanza limit (256 KiB by default) comes first: a
//! larger vCard ends the stream with a `policy-violation` stream error naming the limit.
//!
//! **Storage**: one KeyVal document per user (store `vcard`), holding the vCard's XML and the
//! SHA-1 of its photo (XEP-0153), computed once when it is set. Account removal deletes it
//! with everything else the user owns.
//!
//! **Changes** are told to the [`VCardObserver`]s wired in (the XEP-0153 avatar module
//! re-announces the user's presence with the new hash).

use std::sync::{Arc, PoisonError, RwLock};

use async_trait::async_trait;
use jid::BareJid;
use serde::{Deserialize, Serialize};
use xmppd_core::storage::{KeyVal, Storage, StorageError};
use xmppd_core::{
    IqHandler, IqRequest, IqTarget, IqType, Live, Module, Reconfigure, Registry, Router,
};
use xmppd_proto::payload::PayloadError;
use xmppd_proto::stanza::parse_stored;
use xmppd_proto::vcard::VCard;
use xmppd_proto::{DefinedCondition, StanzaError, ns};
use xmppd_xml::Element;

/// The KeyVal store of users' vCards.
pub const STORE: &str = "vcard";

/// `[modules.vcard]`.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VCardSettings {
    /// Largest vCard accepted, in bytes as serialised (default 64 KiB: room for a photo of
    /// the 8 KiB XEP-0153 §3.6 recommends, several times over).
    pub max_size: usize,
}

impl Default for VCardSettings {
    fn default() -> Self {
        VCardSettings {
            max_size: 64 * 1024,
        }
    }
}

/// Why a vCard request failed.
#[derive(Debug, thiserror::Error)]
pub enum VCardError {
    /// A set to someone else's vCard (§3.2).
    #[error("only the user may change their own vCard")]
    Forbidden,
    /// Another user has no vCard, or there is no such user (§3.3).
    #[error("no vCard")]
    NotFound,
    /// The vCard is larger than the configured maximum.
    #[error("the vCard is {size} bytes; at most {max} are accepted")]
    TooLarge {
        /// Its serialised size.
        size: usize,
        /// `max_size`.
        max: usize,
    },
    /// The payload is broken (a photo that is not base64).
    #[error(transparent)]
    Invalid(#[from] PayloadError),
    /// Storage failed or holds an undecodable document.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<VCardError> for StanzaError {
    fn from(e: VCardError) -> Self {
        match e {
            VCardError::Forbidden => StanzaError::new(DefinedCondition::Forbidden),
            VCardError::NotFound => StanzaError::service_unavailable(),
            VCardError::TooLarge { .. } => {
                StanzaError::new(DefinedCondition::NotAcceptable).with_text(e.to_string())
            }
            VCardError::Invalid(p) => p.into(),
            VCardError::Storage(_) => StanzaError::new(DefinedCondition::InternalServerError),
        }
    }
}

/// A user's document in the store (JSON).
#[derive(Serialize, Deserialize)]
struct Document {
    /// XEP-0153 photo hash, `None` without a photo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    photo: Option<String>,
    /// The vCard element, serialised.
    vcard: String,
}

/// A stored vCard and its photo hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredVCard {
    /// The vCard as it was set.
    pub vcard: VCard,
    /// The SHA-1 of its photo, lower-case hex (XEP-0153), `None` without a photo.
    pub photo_hash: Option<String>,
}

/// `(host, user)` of an account's documents.
fn owner(user: &BareJid) -> (&str, &str) {
    (
        user.domain().as_str(),
        user.node().map_or("", |n| n.as_str()),
    )
}

/// Users' vCards in the KeyVal store [`STORE`]: what the vCard module writes, and what other
/// modules (avatars) read.
#[derive(Clone)]
pub struct VCardStore {
    keyval: Arc<dyn KeyVal>,
}

impl std::fmt::Debug for VCardStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VCardStore")
    }
}

impl VCardStore {
    /// Over `storage`'s KeyVal shape.
    pub fn new(storage: &Storage) -> Self {
        VCardStore {
            keyval: storage.keyval.clone(),
        }
    }

    async fn document(&self, user: &BareJid) -> Result<Option<Document>, StorageError> {
        let (host, node) = owner(user);
        let Some(bytes) = self.keyval.get(host, node, STORE).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StorageError::Corrupt(format!("vCard of {user}: {e}")))
    }

    /// The user's vCard, if one was set.
    pub async fn get(&self, user: &BareJid) -> Result<Option<StoredVCard>, StorageError> {
        let Some(doc) = self.document(user).await? else {
            return Ok(None);
        };
        let vcard = parse_stored(doc.vcard.as_bytes())
            .and_then(|el| VCard::try_from(&el).ok())
            .ok_or_else(|| StorageError::Corrupt(format!("vCard of {user}: not a vCard")))?;
        Ok(Some(StoredVCard {
            vcard,
            photo_hash: doc.photo,
        }))
    }

    /// The photo hash of the user's vCard (`None`: no vCard, or no photo in it).
    pub async fn photo_hash(&self, user: &BareJid) -> Result<Option<String>, StorageError> {
        Ok(self.document(user).await?.and_then(|d| d.photo))
    }

    /// Replaces the user's vCard; returns its photo hash.
    pub async fn put(&self, user: &BareJid, vcard: &VCard) -> Result<Option<String>, VCardError> {
        let photo = vcard.photo_hash()?;
        let doc = Document {
            photo: photo.clone(),
            vcard: vcard.element().to_string(),
        };
        let bytes = serde_json::to_vec(&doc)
            .map_err(|e| StorageError::Corrupt(format!("vCard of {user}: {e}")))?;
        let (host, node) = owner(user);
        self.keyval.put(host, node, STORE, &bytes).await?;
        Ok(photo)
    }
}

/// Told when a user's vCard was replaced (after the write is committed).
#[async_trait]
pub trait VCardObserver: Send + Sync + 'static {
    /// `user` set a vCard whose photo hash is `photo_hash` (`None`: no photo).
    async fn vcard_changed(&self, router: &Router, user: &BareJid, photo_hash: Option<&str>);
}

/// The observers of vCard changes, shared between the vCard module and the modules that
/// subscribe while the server's modules are built (before any request is served).
#[derive(Clone, Default)]
pub struct VCardObservers(Arc<RwLock<Vec<Arc<dyn VCardObserver>>>>);

impl std::fmt::Debug for VCardObservers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VCardObservers")
    }
}

impl VCardObservers {
    /// Adds an observer.
    pub fn add(&self, observer: Arc<dyn VCardObserver>) {
        self.0
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(observer);
    }

    fn all(&self) -> Vec<Arc<dyn VCardObserver>> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Tells every observer that `user`'s vCard changed: the vCard module after a client's
    /// set, and modules that write vCards themselves (XEP-0398's conversion).
    pub async fn notify(&self, router: &Router, user: &BareJid, photo_hash: Option<&str>) {
        for observer in self.all() {
            observer.vcard_changed(router, user, photo_hash).await;
        }
    }
}

/// The vcard-temp module.
#[derive(Debug)]
pub struct VCards {
    store: VCardStore,
    /// Replaced by a reload; a set reads it once.
    settings: Live<VCardSettings>,
    observers: VCardObservers,
}

impl VCards {
    /// The module over `storage` (claimed as [`STORE`]), telling `observers` of changes.
    pub fn new(storage: &Storage, settings: VCardSettings, observers: VCardObservers) -> Self {
        VCards {
            store: VCardStore::new(storage),
            settings: Live::new(settings),
            observers,
        }
    }

    /// The answer to a get of `user`'s vCard by `requester`.
    async fn get(&self, requester: &BareJid, user: &BareJid) -> Result<Element, VCardError> {
        match self.store.get(user).await? {
            Some(stored) => Ok(stored.vcard.into_element()),
            None if requester == user => Ok(VCard::empty().into_element()),
            None => Err(VCardError::NotFound),
        }
    }

    /// A set of `user`'s vCard by `requester`.
    async fn set(
        &self,
        router: &Router,
        requester: &BareJid,
        user: &BareJid,
        payload: &Element,
    ) -> Result<(), VCardError> {
        if requester != user {
            return Err(VCardError::Forbidden);
        }
        let size = payload.to_bytes().len();
        let max = self.settings.get().max_size;
        if size > max {
            return Err(VCardError::TooLarge { size, max });
        }
        let vcard = VCard::try_from(payload)?;
        let photo = self.store.put(user, &vcard).await?;
        self.observers.notify(router, user, photo.as_deref()).await;
        Ok(())
    }
}

impl Reconfigure for VCards {
    type Settings = VCardSettings;

    /// A stored vCard over a lowered `max_size` stays; only the next set is measured.
    fn reconfigure(&self, new: VCardSettings) {
        self.settings.set(new);
    }
}

impl Module for VCards {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        for iq_type in [IqType::Get, IqType::Set] {
            registry.iq(IqTarget::Account, iq_type, ns::VCARD, "vCard", self.clone());
        }
        registry.server_feature(ns::VCARD);
    }
}

#[async_trait]
impl IqHandler for VCards {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        let requester = request.from.to_bare();
        let user = request.to;
        let answer = match request.stanza.type_attr() {
            Some("set") => self
                .set(request.router, &requester, user, request.payload)
                .await
                .map(|()| None),
            _ => self.get(&requester, user).await.map(Some),
        };
        answer.map_err(|e| {
            if let VCardError::Storage(s) = &e {
                tracing::warn!(%user, error = %s, "vCard storage failed");
            }
            e.into()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_have_a_default_and_refuse_unknown_keys() {
        assert_eq!(VCardSettings::default().max_size, 65_536);
        let s: VCardSettings = toml::from_str("max_size = 1000").expect("parses");
        assert_eq!(s.max_size, 1000);
        assert!(toml::from_str::<VCardSettings>("max_bytes = 3").is_err());
    }

    #[test]
    fn errors_map_to_the_conditions_the_xep_names() {
        let cases = [
            (VCardError::Forbidden, DefinedCondition::Forbidden),
            (VCardError::NotFound, DefinedCondition::ServiceUnavailable),
            (
                VCardError::TooLarge { size: 2, max: 1 },
                DefinedCondition::NotAcceptable,
            ),
            (
                VCardError::Invalid(PayloadError::invalid("x")),
                DefinedCondition::BadRequest,
            ),
            (
                VCardError::Storage(StorageError::Backend("down".into())),
                DefinedCondition::InternalServerError,
            ),
        ];
        for (error, condition) in cases {
            assert_eq!(StanzaError::from(error).condition, condition);
        }
    }

    #[tokio::test]
    async fn a_vcard_is_stored_with_its_photo_hash_and_read_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = xmppd_storage::StorageConfig::Sqlite {
            path: dir.path().join("vcard.db"),
        };
        let storage = xmppd_storage::open(&config).await.expect("storage");
        let store = VCardStore::new(&storage);
        let juliet = BareJid::new("juliet@capulet.lit").expect("jid");
        assert_eq!(store.get(&juliet).await.expect("get"), None);
        let el = Element::new("vCard", ns::VCARD)
            .with_child(Element::new("FN", ns::VCARD).with_text("Juliet & <co>"))
            .with_child(
                Element::new("PHOTO", ns::VCARD)
                    .with_child(Element::new("BINVAL", ns::VCARD).with_text("aGVsbG8=")),
            );
        let vcard = VCard::try_from(&el).expect("vCard");
        let hash = store.put(&juliet, &vcard).await.expect("put");
        assert_eq!(
            hash.as_deref(),
            Some("aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d")
        );
        let stored = store.get(&juliet).await.expect("get").expect("stored");
        assert_eq!(stored.vcard, vcard);
        assert_eq!(stored.photo_hash, hash);
        assert_eq!(store.photo_hash(&juliet).await.expect("hash"), hash);
    }
}
