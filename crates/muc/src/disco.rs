//! What is addressed to the service's own domain: its disco#info (XEP-0045 §6.1, §6.2) and
//! the directory of public rooms in disco#items (§6.3), paged with RSM (XEP-0059) so that a
//! service with thousands of rooms answers in pages; ping.
//!
//! The directory lists persistent rooms (from storage) and temporary rooms alive in memory,
//! sorted by JID; hidden rooms and rooms still locked are left out. The RSM UIDs are the room
//! JIDs, so paging stays consistent while rooms come and go.

use jid::Jid;
use xmppd_core::Router;
use xmppd_proto::disco::{DiscoInfoResult, DiscoItem, DiscoItemsResult, Identity};
use xmppd_proto::muc;
use xmppd_proto::rsm::{Before, SetQuery, SetResult};
use xmppd_proto::{DefinedCondition, Stanza, StanzaError, StanzaKind, ns};
use xmppd_xml::Element;

use crate::room::Room;
use crate::service::MucService;

impl MucService {
    /// A stanza to the service's domain.
    pub(crate) async fn to_service(&self, _router: &Router, stanza: Stanza) -> Option<Stanza> {
        if stanza.kind() != StanzaKind::Iq {
            if stanza.kind() == StanzaKind::Presence {
                return None;
            }
            return stanza.error_reply(&StanzaError::service_unavailable());
        }
        let get = stanza.type_attr() == Some("get");
        let payload = stanza.iq_payload()?;
        let answer = match (get, payload.ns(), payload.name()) {
            (true, ns::DISCO_INFO, "query") if payload.attr("node").is_none() => Ok(self.info()),
            (true, ns::DISCO_ITEMS, "query") if payload.attr("node").is_none() => {
                self.items(payload).await
            }
            (true, ns::PING, "ping") => return Some(stanza.iq_result(None)),
            _ => Err(StanzaError::service_unavailable()),
        };
        match answer {
            Ok(el) => Some(stanza.iq_result(Some(el))),
            Err(e) => stanza.error_reply(&e),
        }
    }

    fn info(&self) -> Element {
        DiscoInfoResult {
            node: None,
            identities: vec![Identity::new("conference", "text").with_name("Chatrooms")],
            features: vec![
                ns::DISCO_INFO.to_owned(),
                ns::DISCO_ITEMS.to_owned(),
                muc::NS.to_owned(),
                muc::NS_OCCUPANT_ID.to_owned(),
                muc::FEATURE_SELF_PING.to_owned(),
                ns::RSM.to_owned(),
            ],
            extensions: Vec::new(),
        }
        .to_element()
    }

    /// The public rooms, `(JID, name)`, sorted by JID: the stored directory of persistent
    /// rooms, with the rooms in memory as they are now (temporary ones, and any change not
    /// yet stored).
    async fn public_rooms(&self) -> Result<Vec<(String, String)>, StanzaError> {
        let stored = self
            .shared
            .store
            .directory(&self.domain)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "the rooms could not be listed");
                StanzaError::new(DefinedCondition::InternalServerError)
            })?;
        let mut rooms: std::collections::BTreeMap<String, Option<String>> = stored
            .into_iter()
            .map(|(n, display)| (n, Some(display)))
            .collect();
        let live: Vec<(String, crate::service::RoomRef)> = self
            .rooms
            .lock()
            .await
            .iter()
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        for (name, room) in live {
            let room = room.lock().await;
            rooms.insert(name, listed(&room));
        }
        Ok(rooms
            .into_iter()
            .filter_map(|(name, display)| Some((format!("{name}@{}", self.domain), display?)))
            .collect())
    }

    /// disco#items: one page of the public rooms.
    async fn items(&self, query: &Element) -> Result<Element, StanzaError> {
        let set = SetQuery::find_in(query).map_err(StanzaError::from)?;
        let rooms = self.public_rooms().await?;
        let count = rooms.len();
        let max_page = self.shared.settings.get().max_items_page;
        let set = set.unwrap_or_else(|| SetQuery::max(max_page));
        let max = set.max.unwrap_or(max_page).min(max_page);
        let (start, end) = match (&set.index, &set.after, &set.before) {
            (Some(i), _, _) => (*i, i.saturating_add(max)),
            (None, Some(after), _) => {
                let pos = rooms.iter().position(|(j, _)| j == after).ok_or_else(|| {
                    StanzaError::new(DefinedCondition::ItemNotFound)
                        .with_text("no such room to page after")
                })?;
                (pos + 1, pos + 1 + max)
            }
            (None, None, Some(Before::Item(before))) => {
                let pos = rooms.iter().position(|(j, _)| j == before).ok_or_else(|| {
                    StanzaError::new(DefinedCondition::ItemNotFound)
                        .with_text("no such room to page before")
                })?;
                (pos.saturating_sub(max), pos)
            }
            (None, None, Some(Before::LastPage)) => (count.saturating_sub(max), count),
            (None, None, None) => (0, max),
        };
        let start = start.min(count);
        let end = end.min(count);
        let page = &rooms[start..end];
        let mut result = DiscoItemsResult {
            node: None,
            items: page
                .iter()
                .filter_map(|(j, name)| {
                    let mut item = DiscoItem::new(Jid::new(j).ok()?);
                    item.name = Some(name.clone());
                    Some(item)
                })
                .collect(),
        }
        .to_element();
        if set.max.is_some() || count > max {
            let rsm = SetResult {
                first: page.first().map(|(j, _)| j.clone()),
                first_index: page.first().map(|_| start),
                last: page.last().map(|(j, _)| j.clone()),
                count: Some(count),
            };
            result.push_child(rsm.to_element());
        }
        Ok(result)
    }
}

fn display_name(name: &str, localpart: &str) -> String {
    if name.is_empty() {
        localpart.to_owned()
    } else {
        name.to_owned()
    }
}

/// Whether a room in memory is listed, and under which name.
fn listed(room: &Room) -> Option<String> {
    if room.closed || room.locked || !room.config.public {
        return None;
    }
    Some(display_name(
        &room.config.name,
        room.jid.node().map_or("", |n| n.as_str()),
    ))
}
