//! XEP-0398: User Avatar to vCard-Based Avatars Conversion, both ways.
//!
//! **PEP to vCard** (§3, a MUST): when the owner publishes to `urn:xmpp:avatar:metadata`, the
//! image its first `<info/>` without a `url` names is read from `urn:xmpp:avatar:data` and,
//! if its SHA-1 is the id (§3 SHOULD), becomes the vCard's `PHOTO`; an empty `<metadata/>`
//! (XEP-0084 §4.5, avatar disabled) removes the photo. The vCard modules' observers are then
//! told, so the XEP-0153 hash in the user's presence follows (§4).
//!
//! **vCard to PEP** (§3, a MAY done here): when a client sets a vCard whose photo differs from
//! the published avatar, the image is published to the data node with its SHA-1 as id, then a
//! metadata item with one `<info/>` (type from the vCard); a vCard without a photo publishes
//! the empty metadata.
//!
//! **No loops**: the PEP writes go through [`PepHandle`], whose changes observers are not
//! told of; the vCard write is followed by the vCard observers, this module among them, which
//! find the published avatar's id already equal to the photo's hash and stop.

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jid::{BareJid, Jid};
use xmppd_core::{Module, Registry, Router};
use xmppd_modules::vcard::{VCardObserver, VCardObservers, VCardStore};
use xmppd_proto::ns;
use xmppd_proto::pubsub::Item;
use xmppd_proto::vcard::{VCard, sha1_hex};
use xmppd_xml::Element;

use crate::observe::{NodeChange, PepObserver, PepObservers};
use crate::{PepError, PepHandle};

/// XEP-0084's data node and namespace.
pub const DATA: &str = "urn:xmpp:avatar:data";
/// XEP-0084's metadata node and namespace.
pub const METADATA: &str = "urn:xmpp:avatar:metadata";
/// The account feature (§2).
const FEATURE: &str = "urn:xmpp:pep-vcard-conversion:0";

/// The avatar a metadata item announces: `None` for the empty `<metadata/>`.
#[derive(Debug, PartialEq, Eq)]
struct Announced {
    id: String,
    mime: Option<String>,
}

/// The first `<info/>` without a `url` (§3: the one stored in the data node).
fn announced(metadata: &Element) -> Option<Announced> {
    metadata
        .children()
        .filter(|i| i.is("info", METADATA) && i.attr("url").is_none())
        .find_map(|i| {
            Some(Announced {
                id: i.attr("id")?.to_owned(),
                mime: i.attr("type").map(str::to_owned),
            })
        })
}

/// `vcard` with its `PHOTO` replaced by `photo` (type, image), or removed.
fn with_photo(vcard: &VCard, photo: Option<(&str, &[u8])>) -> Option<VCard> {
    let mut el = vcard.to_element();
    el.remove_children("PHOTO", ns::VCARD);
    if let Some((mime, image)) = photo {
        el.push_child(
            Element::new("PHOTO", ns::VCARD)
                .with_child(Element::new("TYPE", ns::VCARD).with_text(mime))
                .with_child(Element::new("BINVAL", ns::VCARD).with_text(BASE64.encode(image))),
        );
    }
    VCard::try_from(&el).ok()
}

/// The conversion module.
pub struct VCardConversion {
    pep: PepHandle,
    vcards: VCardStore,
    vcard_observers: VCardObservers,
    pep_observers: PepObservers,
}

impl std::fmt::Debug for VCardConversion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VCardConversion")
    }
}

impl VCardConversion {
    /// Over the PEP service and the vCards, watching both once registered.
    pub fn new(
        pep: PepHandle,
        pep_observers: PepObservers,
        vcards: VCardStore,
        vcard_observers: VCardObservers,
    ) -> Self {
        VCardConversion {
            pep,
            vcards,
            vcard_observers,
            pep_observers,
        }
    }

    /// The id of the avatar the metadata node announces now: `Some(None)` for none (empty
    /// metadata, or no node), `None` when the node cannot be read.
    async fn published(&self, owner: &BareJid) -> Option<Option<String>> {
        let me = Jid::from(owner.clone());
        match self.pep.items(owner, &me, METADATA, &[], Some(1)).await {
            Ok(items) => Some(
                items
                    .last()
                    .and_then(|i| i.payload.as_ref())
                    .and_then(announced)
                    .map(|a| a.id),
            ),
            Err(PepError::NotFound(_)) => Some(None),
            Err(e) => {
                tracing::warn!(%owner, error = %e, "avatar conversion: metadata unreadable");
                None
            }
        }
    }

    /// PEP to vCard for one metadata item.
    async fn to_vcard(
        &self,
        router: &Router,
        owner: &BareJid,
        metadata: &Element,
    ) -> Result<(), String> {
        let photo = match announced(metadata) {
            None => None,
            Some(a) => {
                let me = Jid::from(owner.clone());
                let items = self
                    .pep
                    .items(owner, &me, DATA, std::slice::from_ref(&a.id), None)
                    .await
                    .map_err(|e| format!("data item {}: {e}", a.id))?;
                let data = items
                    .first()
                    .and_then(|i| i.payload.as_ref())
                    .filter(|p| p.is("data", DATA))
                    .ok_or_else(|| format!("no data item {}", a.id))?;
                let mut text = data.text();
                text.retain(|c| !c.is_ascii_whitespace());
                let image = BASE64
                    .decode(text.as_bytes())
                    .map_err(|e| format!("data item {} is not base64: {e}", a.id))?;
                if sha1_hex(&image) != a.id.to_ascii_lowercase() {
                    return Err(format!("data item {} is not the image its id hashes", a.id));
                }
                Some((a.mime.unwrap_or_else(|| "image/png".to_owned()), image))
            }
        };
        let current = self
            .vcards
            .get(owner)
            .await
            .map_err(|e| e.to_string())?
            .map(|s| s.vcard)
            .unwrap_or_else(VCard::empty);
        let photo_ref = photo.as_ref().map(|(m, i)| (m.as_str(), i.as_slice()));
        let vcard = with_photo(&current, photo_ref).ok_or("the vCard would not be valid")?;
        let hash = self
            .vcards
            .put(owner, &vcard)
            .await
            .map_err(|e| e.to_string())?;
        self.vcard_observers
            .notify(router, owner, hash.as_deref())
            .await;
        Ok(())
    }

    /// vCard to PEP, when the photo is not the published avatar.
    async fn to_pep(
        &self,
        router: &Router,
        user: &BareJid,
        hash: Option<&str>,
    ) -> Result<(), String> {
        let Some(published) = self.published(user).await else {
            return Ok(());
        };
        if published.as_deref() == hash {
            return Ok(());
        }
        let metadata = match hash {
            None => Element::new("metadata", METADATA),
            Some(hash) => {
                let stored = self.vcards.get(user).await.map_err(|e| e.to_string())?;
                let Some(vcard) = stored.map(|s| s.vcard) else {
                    return Ok(());
                };
                let image = vcard
                    .photo()
                    .map_err(|e| e.to_string())?
                    .unwrap_or_default();
                let mime = vcard
                    .element()
                    .child("PHOTO", ns::VCARD)
                    .and_then(|p| p.child("TYPE", ns::VCARD))
                    .map(Element::text)
                    .filter(|t| !t.is_empty())
                    .unwrap_or_else(|| "image/png".to_owned());
                let data = Item {
                    id: Some(hash.to_owned()),
                    payload: Some(Element::new("data", DATA).with_text(BASE64.encode(&image))),
                };
                self.pep
                    .publish(router, user, DATA, data, None)
                    .await
                    .map_err(|e| e.to_string())?;
                Element::new("metadata", METADATA).with_child(
                    Element::new("info", METADATA)
                        .with_attr("id", hash)
                        .with_attr("bytes", image.len().to_string())
                        .with_attr("type", mime),
                )
            }
        };
        let item = Item {
            id: hash.map(str::to_owned),
            payload: Some(metadata),
        };
        self.pep
            .publish(router, user, METADATA, item, None)
            .await
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

#[async_trait]
impl PepObserver for VCardConversion {
    fn watches(&self, node: &str) -> bool {
        node == METADATA
    }

    async fn changed(&self, router: &Router, owner: &BareJid, _node: &str, change: NodeChange<'_>) {
        let NodeChange::Published(item) = change else {
            return;
        };
        let Some(metadata) = item.payload.as_ref().filter(|p| p.is("metadata", METADATA)) else {
            return;
        };
        if let Err(e) = self.to_vcard(router, owner, metadata).await {
            tracing::warn!(%owner, error = %e, "avatar conversion: vCard not updated");
        }
    }
}

#[async_trait]
impl VCardObserver for VCardConversion {
    async fn vcard_changed(&self, router: &Router, user: &BareJid, photo_hash: Option<&str>) {
        if let Err(e) = self.to_pep(router, user, photo_hash).await {
            tracing::warn!(%user, error = %e, "avatar conversion: PEP avatar not updated");
        }
    }
}

impl Module for VCardConversion {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        self.pep_observers.add(self.clone());
        self.vcard_observers.add(self.clone());
        registry.account_feature(FEATURE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xmppd_proto::stanza::parse_stored;

    fn el(xml: &str) -> Element {
        parse_stored(xml.as_bytes()).expect("xml")
    }

    #[test]
    fn the_stored_image_is_the_first_info_without_a_url() {
        let m = el("<metadata xmlns='urn:xmpp:avatar:metadata'>\
             <info id='u1' url='https://x.example/a.png' type='image/png' bytes='3'/>\
             <info id='abc' type='image/jpeg' bytes='3'/></metadata>");
        assert_eq!(
            announced(&m),
            Some(Announced {
                id: "abc".into(),
                mime: Some("image/jpeg".into())
            })
        );
        assert_eq!(
            announced(&el("<metadata xmlns='urn:xmpp:avatar:metadata'/>")),
            None
        );
    }

    #[test]
    fn the_photo_is_replaced_and_the_rest_kept() {
        let vcard = VCard::try_from(&el("<vCard xmlns='vcard-temp'><FN>Al</FN>\
             <PHOTO><TYPE>image/gif</TYPE><BINVAL>AAAA</BINVAL></PHOTO></vCard>"))
        .expect("vcard");
        let new = with_photo(&vcard, Some(("image/png", b"png"))).expect("valid");
        assert_eq!(new.photo().expect("base64"), Some(b"png".to_vec()));
        assert_eq!(new.photo_hash().expect("hash"), Some(sha1_hex(b"png")));
        assert!(new.element().to_string().contains("<FN>Al</FN>"));
        let none = with_photo(&vcard, None).expect("valid");
        assert_eq!(none.photo().expect("none"), None);
    }
}
