//! XEP-0227 §pep: an account's PEP nodes (XEP-0163), in two `<pubsub/>` children of
//! `<user/>` — `http://jabber.org/protocol/pubsub#owner` with one `<configure node='…'/>`
//! (a XEP-0004 node configuration form) per node (§pep-config), and
//! `http://jabber.org/protocol/pubsub` with one `<items node='…'/>` per node (§pep-items).
//!
//! What comes over: each node's name, the configuration this server's PEP acts on (access
//! model, roster groups, `max_items`, `persist_items`, `send_last_published_item`,
//! notification options; see [`NodeConfig::import`] for the rest), and its items with their
//! ids and payloads, in the order the file lists them, taken as oldest first: that is the
//! order Prosody 0.12's exporter appends them in and the order our export writes (the XEP
//! does not say). A node's `max_items` is applied as a publish would apply it, keeping the
//! newest; an id listed twice keeps its last payload, as republishing would.
//!
//! Not kept: `<affiliations/>` and `<subscriptions/>` (§pep-config allows them; PEP here has
//! neither: subscriptions follow presence, and a whitelist holds the owner alone, which is
//! never more open than the node was), and configuration fields the service does not know.
//! Both are named in the import report. The operator's PEP limits hold for imported data as
//! for published data: more nodes than `max_nodes`, an item larger than `max_item_bytes`, a
//! name or id longer than `max_name_bytes`, or items past the account's `max_bytes` refuse
//! the account, with the node named.

use jid::BareJid;
use xmppd_core::storage::Storage;
use xmppd_pep::store::PepStore;
use xmppd_pep::{MaxItems, NodeConfig, PepSettings};
use xmppd_proto::data_form::{DataForm, FormType};
use xmppd_proto::pubsub::{Item, NS_OWNER, NS_PUBSUB};
use xmppd_xml::Element;

use super::ImportError;

/// One node ready to be written.
#[derive(Debug)]
pub struct ImportedNode {
    name: String,
    config: NodeConfig,
    /// Oldest first, at most the node's `max_items`.
    items: Vec<Item>,
}

/// The nodes of one `<user/>`, checked; `notes` gets what is not kept.
pub fn nodes(
    user: &Element,
    settings: &PepSettings,
    notes: &mut Vec<String>,
) -> Result<Vec<ImportedNode>, String> {
    let mut nodes: Vec<ImportedNode> = Vec::new();
    let mut ignored: Vec<String> = Vec::new();
    let mut dropped_parts = false;
    for owner in user.children().filter(|c| c.is("pubsub", NS_OWNER)) {
        for child in owner.children() {
            match child.name() {
                "configure" => {
                    let name = node_name(child, settings)?;
                    let node = node_mut(&mut nodes, name, settings)?;
                    if let Some(form) = child.child("x", xmppd_proto::ns::DATA_FORMS) {
                        let form = DataForm::try_from(form)
                            .map_err(|e| format!("PEP node {name}: {e}"))?;
                        for var in node.config.import(&form) {
                            if !ignored.contains(&var) {
                                ignored.push(var);
                            }
                        }
                    }
                }
                _ => dropped_parts = true,
            }
        }
    }
    for pubsub in user.children().filter(|c| c.is("pubsub", NS_PUBSUB)) {
        for items in pubsub.children().filter(|c| c.is("items", NS_PUBSUB)) {
            let name = node_name(items, settings)?;
            // §pep-items: a node with items MUST have a configuration; a file without one
            // still gets the node, with the defaults a first publish would give it.
            let node = node_mut(&mut nodes, name, settings)?;
            for item in items.children().filter(|c| c.is("item", NS_PUBSUB)) {
                node.push(item, settings)?;
            }
        }
    }
    let mut trimmed = 0;
    for node in &mut nodes {
        // An id listed twice keeps its last payload, in the place of its last listing, as
        // publishing it again would.
        let mut seen = std::collections::HashSet::new();
        let mut newest_first: Vec<Item> = std::mem::take(&mut node.items)
            .into_iter()
            .rev()
            .filter(|i| seen.insert(i.id.clone()))
            .collect();
        newest_first.reverse();
        node.items = newest_first;
        let keep = if node.config.persist_items {
            node.config.max_items.limit(settings.max_items)
        } else {
            1
        } as usize;
        if node.items.len() > keep {
            trimmed += node.items.len() - keep;
            node.items.drain(..node.items.len() - keep);
        }
    }
    if trimmed > 0 {
        notes.push(format!(
            "{trimmed} older PEP items beyond their nodes' max_items not kept"
        ));
    }
    if !ignored.is_empty() {
        notes.push(format!("PEP node options not kept: {}", ignored.join(", ")));
    }
    if dropped_parts {
        notes.push("PEP affiliations and subscriptions not kept".into());
    }
    Ok(nodes)
}

fn node_name<'a>(el: &'a Element, settings: &PepSettings) -> Result<&'a str, String> {
    let name = el
        .attr("node")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("a PEP <{}/> without 'node'", el.name()))?;
    if name.len() > settings.max_name_bytes {
        return Err(format!(
            "PEP node name longer than {} bytes",
            settings.max_name_bytes
        ));
    }
    Ok(name)
}

/// The node named `name`, added with the defaults of a new node if not there yet; a node past
/// `max_nodes` is refused here, which also keeps this search short.
fn node_mut<'a>(
    nodes: &'a mut Vec<ImportedNode>,
    name: &str,
    settings: &PepSettings,
) -> Result<&'a mut ImportedNode, String> {
    let at = match nodes.iter().position(|n| n.name == name) {
        Some(at) => at,
        None if nodes.len() as u64 >= settings.max_nodes => {
            return Err(format!(
                "more than {} PEP nodes ([modules.pep] max_nodes)",
                settings.max_nodes
            ));
        }
        None => {
            nodes.push(ImportedNode {
                name: name.to_owned(),
                config: NodeConfig::default_with(
                    settings.default_access_model,
                    MaxItems::Count(settings.default_max_items),
                ),
                items: Vec::new(),
            });
            nodes.len() - 1
        }
    };
    Ok(&mut nodes[at])
}

impl ImportedNode {
    fn push(&mut self, item: &Element, settings: &PepSettings) -> Result<(), String> {
        let name = &self.name;
        let Some(id) = item.attr("id").filter(|id| !id.is_empty()) else {
            return Err(format!("PEP node {name}: an <item/> without 'id'"));
        };
        if id.len() > settings.max_name_bytes {
            return Err(format!(
                "PEP node {name}: item id longer than {} bytes",
                settings.max_name_bytes
            ));
        }
        let mut payloads = item.children();
        let payload = payloads.next().cloned();
        if payloads.next().is_some() {
            return Err(format!(
                "PEP node {name}: item {id} has more than one payload"
            ));
        }
        let item = Item {
            id: Some(id.to_owned()),
            payload,
        };
        let size = item.to_element_in(NS_PUBSUB).to_bytes().len();
        if size > settings.max_item_bytes {
            return Err(format!(
                "PEP node {name}: item {id} is {size} bytes, more than the {} allowed \
                 ([modules.pep] max_item_bytes)",
                settings.max_item_bytes
            ));
        }
        self.items.push(item);
        Ok(())
    }
}

/// Writes the nodes of a new account, within its PEP byte quota.
pub async fn write(
    storage: &Storage,
    jid: &BareJid,
    nodes: &[ImportedNode],
    settings: &PepSettings,
) -> Result<(), String> {
    let store = PepStore::new(storage.map.clone());
    let max_bytes = (settings.max_bytes > 0).then_some(settings.max_bytes);
    for node in nodes {
        store
            .import_node(jid, &node.name, node.config.clone(), &node.items, max_bytes)
            .await
            .map_err(|e| format!("PEP node {}: {e}", node.name))?;
    }
    Ok(())
}

/// The account's PEP nodes as the two `<pubsub/>` elements of §pep, or none without nodes.
pub async fn export(storage: &Storage, jid: &BareJid) -> Result<Vec<Element>, ImportError> {
    let store = PepStore::new(storage.map.clone());
    let nodes = store
        .nodes(jid)
        .await
        .map_err(|e| ImportError::Storage(format!("PEP nodes of {jid}: {e}")))?;
    if nodes.is_empty() {
        return Ok(Vec::new());
    }
    let mut owner = Element::new("pubsub", NS_OWNER);
    let mut pubsub = Element::new("pubsub", NS_PUBSUB);
    for (name, record) in nodes {
        owner.push_child(
            Element::new("configure", NS_OWNER)
                .with_attr("node", name.as_str())
                .with_child(record.config.to_form(FormType::Submit).to_element()),
        );
        let items = store
            .items(jid, &name, &record.items)
            .await
            .map_err(|e| ImportError::Storage(format!("PEP node {name} of {jid}: {e}")))?;
        let mut items_el = Element::new("items", NS_PUBSUB).with_attr("node", name.as_str());
        for item in items {
            items_el.push_child(item.to_element_in(NS_PUBSUB));
        }
        pubsub.push_child(items_el);
    }
    Ok(vec![owner, pubsub])
}
