//! Writing every account of the configured hosts as a XEP-0227 file.
//!
//! An account is written one part at a time: its `<user/>` with everything but the message
//! archive is built in memory (those parts are bounded by the modules' limits), and the
//! archive, which can be large, follows page by page inside it (`archive::export`).

use std::io::Write as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jid::BareJid;
use xmppd_core::accounts::ACCOUNTS_STORE;
use xmppd_core::storage::{ArchiveQuery, Storage};
use xmppd_im::RosterStore;
use xmppd_modules::vcard::VCardStore;
use xmppd_proto::ns;
use xmppd_proto::stanza::parse_stored;
use xmppd_stream::sasl::{ScramCredentials, StoredCredentials};
use xmppd_xml::Element;

use super::account::OFFLINE_STORE;
use super::{ImportError, NS_PIE, NS_PIE_MAM, NS_PIE_SCRAM, archive, pep};

const PRIVATE_STORE: &str = "private";

fn storage_err(e: impl std::fmt::Display) -> ImportError {
    ImportError::Storage(e.to_string())
}

/// Writes every account of `hosts` to `path` (mode 0600: the file holds credentials, §5),
/// through a file beside it renamed at the end, so an interrupted export leaves no partial
/// file under the name asked for. Returns the number of accounts written.
pub async fn export(
    path: &Path,
    storage: &Storage,
    hosts: &[String],
) -> Result<usize, ImportError> {
    let io = |source| ImportError::Io {
        path: path.to_owned(),
        source,
    };
    let partial = path.with_extension("partial");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let file = options.open(&partial).map_err(io)?;
    let mut out = std::io::BufWriter::new(file);
    out.write_all(
        b"<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='urn:xmpp:pie:0'>\n",
    )
    .map_err(io)?;
    let mut accounts = 0;
    for host in hosts {
        let users = storage
            .keyval
            .users(host, ACCOUNTS_STORE)
            .await
            .map_err(storage_err)?;
        let mut host_el = Vec::new();
        Element::new("host", NS_PIE)
            .with_attr("jid", host.as_str())
            .write_to(&mut host_el, NS_PIE);
        // `<host jid='…'/>` opened by hand: its users are written one at a time.
        let open = String::from_utf8_lossy(&host_el).replace("/>", ">");
        writeln!(out, "  {open}").map_err(io)?;
        for user in users {
            let Ok(jid) = BareJid::new(&format!("{user}@{host}")) else {
                continue;
            };
            let element = user_element(storage, &jid, &user).await?;
            let mut bytes = Vec::new();
            element.write_to(&mut bytes, NS_PIE);
            // Opened by hand, like <host/>, for the archive to follow inside it.
            let open = match bytes.strip_suffix(b"/>") {
                Some(start) => [start, b">"].concat(),
                None => bytes
                    .strip_suffix(b"</user>")
                    .map(<[u8]>::to_vec)
                    .ok_or_else(|| storage_err("a <user/> serialised without its end tag"))?,
            };
            out.write_all(b"    ").map_err(io)?;
            out.write_all(&open).map_err(io)?;
            let mut opened = false;
            archive::export(storage, &jid, NS_PIE_MAM, |result| {
                if !opened {
                    out.write_all(b"<archive xmlns='urn:xmpp:pie:0#mam'>")
                        .map_err(io)?;
                    opened = true;
                }
                out.write_all(result).map_err(io)
            })
            .await?;
            if opened {
                out.write_all(b"</archive>").map_err(io)?;
            }
            out.write_all(b"</user>\n").map_err(io)?;
            accounts += 1;
        }
        out.write_all(b"  </host>\n").map_err(io)?;
    }
    out.write_all(b"</server-data>\n").map_err(io)?;
    let file = out.into_inner().map_err(|e| io(e.into_error()))?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&partial, path).map_err(io)?;
    Ok(accounts)
}

async fn user_element(
    storage: &Storage,
    jid: &BareJid,
    user: &str,
) -> Result<Element, ImportError> {
    let host = jid.domain().as_str();
    let mut el = Element::new("user", NS_PIE).with_attr("name", user);
    if let Some(doc) = storage
        .keyval
        .get(host, user, ACCOUNTS_STORE)
        .await
        .map_err(storage_err)?
    {
        let creds: StoredCredentials = serde_json::from_slice(&doc)
            .map_err(|e| storage_err(format!("credentials of {jid}: {e}")))?;
        for (mechanism, c) in [
            ("SCRAM-SHA-1", &creds.sha1),
            ("SCRAM-SHA-256", &creds.sha256),
        ] {
            if let Some(c) = c {
                el.push_child(scram_element(mechanism, c));
            }
        }
    }
    let roster = RosterStore::new(storage.map.clone(), storage.keyval.clone())
        .items(jid)
        .await
        .map_err(storage_err)?;
    if !roster.is_empty() {
        let mut query = Element::new("query", ns::ROSTER);
        for item in &roster {
            query.push_child(item.to_element());
        }
        el.push_child(query);
    }
    if let Some(vcard) = VCardStore::new(storage)
        .get(jid)
        .await
        .map_err(storage_err)?
    {
        el.push_child(vcard.vcard.element().clone());
    }
    let private = storage
        .map
        .list(host, user, PRIVATE_STORE)
        .await
        .map_err(storage_err)?;
    if !private.is_empty() {
        let mut query = Element::new("query", "jabber:iq:private");
        for (_, bytes) in private {
            if let Some(fragment) = parse_stored(&bytes) {
                query.push_child(fragment);
            }
        }
        el.push_child(query);
    }
    let offline = storage
        .archive
        .query(host, user, OFFLINE_STORE, &ArchiveQuery::default())
        .await
        .map_err(storage_err)?;
    if !offline.is_empty() {
        let mut messages = Element::new("offline-messages", NS_PIE);
        for record in offline {
            if let Some(message) = parse_stored(&record.payload) {
                messages.push_child(message);
            }
        }
        el.push_child(messages);
    }
    for pubsub in pep::export(storage, jid).await? {
        el.push_child(pubsub);
    }
    Ok(el)
}

fn scram_element(mechanism: &str, c: &ScramCredentials) -> Element {
    let field = |name: &str, text: String| Element::new(name, NS_PIE_SCRAM).with_text(text);
    Element::new("scram-credentials", NS_PIE_SCRAM)
        .with_attr("mechanism", mechanism)
        .with_child(field("iter-count", c.iterations.to_string()))
        .with_child(field("salt", BASE64.encode(&c.salt)))
        .with_child(field("server-key", BASE64.encode(&c.server_key)))
        .with_child(field("stored-key", BASE64.encode(&c.stored_key)))
}
