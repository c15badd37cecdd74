//! One account of a XEP-0227 file: checked whole before anything is written, then written.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use jid::{BareJid, Jid};
use xmppd_core::accounts::ACCOUNTS_STORE;
use xmppd_core::storage::{NewArchiveRecord, Storage};
use xmppd_im::RosterStore;
use xmppd_im::roster::RosterItem;
use xmppd_im::state::Sub;
use xmppd_modules::private::{PrivateSettings, PrivateStore};
use xmppd_modules::vcard::VCardStore;
use xmppd_proto::delay::Delay;
use xmppd_proto::ns;
use xmppd_proto::roster::{RosterQuery, Subscription};
use xmppd_proto::vcard::VCard;
use xmppd_stream::sasl::{DEFAULT_ITERATIONS, ScramCredentials, ScramHash, StoredCredentials};
use xmppd_xml::Element;

use super::pep::ImportedNode;
use super::{ImportSettings, NS_PIE, NS_PIE_MAM, NS_PIE_SCRAM, UserElement, archive, pep};

/// The offline message store's name (the `im` module's).
pub const OFFLINE_STORE: &str = "offline";
const NS_PRIVATE: &str = "jabber:iq:private";
const NS_VCARD: &str = "vcard-temp";

/// An account ready to be written.
#[derive(Debug)]
pub struct ImportedAccount {
    /// The account.
    pub jid: BareJid,
    credentials: StoredCredentials,
    roster: Vec<RosterItem>,
    vcard: Option<VCard>,
    private: Vec<Element>,
    offline: Vec<NewArchiveRecord>,
    pep: Vec<ImportedNode>,
    /// The message archive, oldest first, within the MAM module's limits.
    pub(super) archive: Vec<archive::Archived>,
    /// Children of `<user/>` this server does not import, by name.
    pub skipped: Vec<String>,
    /// What of the account's data was left out, and why (limits, unknown options).
    pub notes: Vec<String>,
}

/// Checks one `<user/>` whole: its name, its credentials and each part it carries. Takes the
/// element, so that its archive entries are freed as they become records.
pub fn validate(
    element: UserElement,
    hosts: &[String],
    settings: &ImportSettings,
) -> Result<ImportedAccount, String> {
    let user = &element.user;
    if !hosts.contains(&element.host) {
        return Err(format!(
            "host {} is not served here; add a [[host]] for it first",
            element.host
        ));
    }
    let name = user.attr("name").ok_or("a <user/> without 'name'")?;
    let jid = BareJid::new(&format!("{name}@{}", element.host))
        .map_err(|e| format!("'{name}' is not a valid user name: {e}"))?;
    if jid.node().is_none() {
        return Err(format!("'{name}' is not a valid user name"));
    }
    let mut credentials = StoredCredentials::default();
    let mut roster = Vec::new();
    let mut vcard = None;
    let mut private = Vec::new();
    let mut offline = Vec::new();
    let mut skipped = Vec::new();
    let mut notes = Vec::new();
    let pep = pep::nodes(user, &settings.pep, &mut notes)?;
    for child in user.children() {
        match (child.name(), child.ns()) {
            ("scram-credentials", NS_PIE_SCRAM) => scram(child, &mut credentials)?,
            ("query", ns::ROSTER) => roster = roster_items(child)?,
            ("vCard", NS_VCARD) => {
                vcard = Some(VCard::try_from(child).map_err(|e| format!("vCard: {e}"))?);
            }
            ("query", NS_PRIVATE) => private.extend(child.children().cloned()),
            ("offline-messages", NS_PIE) => {
                for message in child.children() {
                    offline.push(offline_record(message, &jid)?);
                }
            }
            ("pubsub", xmppd_proto::pubsub::NS_OWNER | xmppd_proto::pubsub::NS_PUBSUB)
            | ("archive", NS_PIE_MAM) => {}
            (other, _) => {
                if !skipped.iter().any(|s| s == other) {
                    skipped.push(other.to_owned());
                }
            }
        }
    }
    if credentials.sha1.is_none() && credentials.sha256.is_none() {
        let Some(password) = user.attr("password").filter(|p| !p.is_empty()) else {
            return Err(
                "no credentials: neither SCRAM-SHA-1/SCRAM-SHA-256 <scram-credentials/> nor a password"
                    .into(),
            );
        };
        credentials = StoredCredentials::derive(password, DEFAULT_ITERATIONS)
            .map_err(|e| format!("password: {e}"))?;
    }
    let mut records = Vec::with_capacity(element.archive.len());
    for (n, entry) in element.archive.into_iter().enumerate() {
        records.push(archive::record(&entry, &jid, n + 1)?);
    }
    let archive = archive::within_limits(records, &settings.mam, &mut notes);
    Ok(ImportedAccount {
        jid,
        credentials,
        roster,
        vcard,
        private,
        offline,
        pep,
        archive,
        skipped,
        notes,
    })
}

/// One `<scram-credentials/>` (XEP-0227 §2.2); mechanisms other than SCRAM-SHA-1 and
/// SCRAM-SHA-256 are left out, since nothing here could use them.
fn scram(el: &Element, into: &mut StoredCredentials) -> Result<(), String> {
    let mechanism = el.attr("mechanism").unwrap_or_default();
    let (hash, slot) = match mechanism {
        "SCRAM-SHA-1" => (ScramHash::Sha1, &mut into.sha1),
        "SCRAM-SHA-256" => (ScramHash::Sha256, &mut into.sha256),
        _ => return Ok(()),
    };
    if slot.is_some() {
        return Err(format!("{mechanism} credentials appear twice"));
    }
    let field = |name: &str| {
        el.child(name, NS_PIE_SCRAM)
            .map(Element::text)
            .ok_or_else(|| format!("{mechanism} credentials without <{name}/>"))
    };
    let decode = |name: &str| {
        BASE64
            .decode(field(name)?.trim())
            .map_err(|e| format!("{mechanism} <{name}/> is not base64: {e}"))
    };
    let iterations: u32 = field("iter-count")?
        .trim()
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("{mechanism} <iter-count/> is not a positive integer"))?;
    let (mut salt, mut stored_key, mut server_key) = (
        decode("salt")?,
        decode("stored-key")?,
        decode("server-key")?,
    );
    let len = hash.output_len();
    // ejabberd (23.01) keeps these values base64-encoded and encodes them again when it
    // exports: keys that decode to base64 text of the hash's length are unwrapped, and the
    // salt of the same element with them.
    if stored_key.len() != len
        && let (Some(stored), Some(server), Some(inner_salt)) = (
            decode_again(&stored_key),
            decode_again(&server_key),
            decode_again(&salt),
        )
        && stored.len() == len
        && server.len() == len
    {
        (salt, stored_key, server_key) = (inner_salt, stored, server);
    }
    if stored_key.len() != len || server_key.len() != len || salt.is_empty() {
        return Err(format!(
            "{mechanism} keys must be {len} bytes and the salt not empty"
        ));
    }
    *slot = Some(ScramCredentials {
        salt,
        iterations,
        stored_key,
        server_key,
    });
    Ok(())
}

/// `bytes` as base64 text, decoded.
fn decode_again(bytes: &[u8]) -> Option<Vec<u8>> {
    BASE64.decode(std::str::from_utf8(bytes).ok()?.trim()).ok()
}

fn roster_items(query: &Element) -> Result<Vec<RosterItem>, String> {
    let parsed = RosterQuery::try_from(query).map_err(|e| format!("roster: {e}"))?;
    let mut items = Vec::new();
    for item in parsed.items {
        let subscription = match item.subscription {
            None | Some(Subscription::None) => Sub::None,
            Some(Subscription::To) => Sub::To,
            Some(Subscription::From) => Sub::From,
            Some(Subscription::Both) => Sub::Both,
            Some(Subscription::Remove) => continue,
        };
        let mut stored = RosterItem::new(&item.jid);
        stored.name = item.name;
        stored.groups = item.groups;
        stored.subscription = subscription;
        stored.ask = item.ask;
        stored.approved = item.approved;
        items.push(stored);
    }
    Ok(items)
}

/// An offline message as the `im` module stores it: with a delay stamp (the exporter's, or
/// now, from the user's domain), dated by that stamp.
fn offline_record(message: &Element, owner: &BareJid) -> Result<NewArchiveRecord, String> {
    if !message.is("message", ns::CLIENT) {
        return Err(format!(
            "<offline-messages/> holds <{}/>; only jabber:client messages",
            message.name()
        ));
    }
    let mut el = message.clone();
    let stamp = el
        .children()
        .find_map(|c| Delay::try_from(c).ok())
        .map(|d| d.stamp);
    let stamp = match stamp {
        Some(s) => s,
        None => {
            let now = SystemTime::now();
            let mut delay = Delay::new(now).with_reason("Offline Storage");
            if let Ok(from) = Jid::new(owner.domain().as_str()) {
                delay = delay.with_from(from);
            }
            el.push_child(delay.to_element());
            now
        }
    };
    let with = el
        .attr("from")
        .and_then(|f| Jid::new(f).ok())
        .map(|f| f.to_bare().to_string())
        .unwrap_or_default();
    let mut payload = Vec::new();
    el.write_to(&mut payload, ns::CLIENT);
    Ok(NewArchiveRecord {
        with,
        timestamp_us: stamp
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        payload,
    })
}

impl ImportedAccount {
    /// The account's domain.
    pub fn host(&self) -> &str {
        self.jid.domain().as_str()
    }

    /// The account's localpart.
    pub fn user(&self) -> &str {
        self.jid.node().map_or("", |n| n.as_str())
    }

    /// Writes the account: `Ok(false)` when it exists already (then nothing is written).
    /// The credentials claim the account first (an atomic insert-if-absent, so an account
    /// made meanwhile is never touched); if any later write fails, everything of the account
    /// is removed again.
    pub async fn write(
        &self,
        storage: &Storage,
        settings: &ImportSettings,
    ) -> Result<bool, String> {
        let (host, user) = (self.host(), self.user());
        let doc = serde_json::to_vec(&self.credentials).map_err(|e| e.to_string())?;
        let created = storage
            .keyval
            .insert_new(host, user, ACCOUNTS_STORE, &doc)
            .await
            .map_err(|e| e.to_string())?;
        if !created {
            return Ok(false);
        }
        if let Err(e) = self.write_data(storage, settings).await {
            if let Err(undo) = storage.users.delete_user(host, user).await {
                return Err(format!(
                    "{e}; removing the partial account failed too: {undo}"
                ));
            }
            return Err(e);
        }
        Ok(true)
    }

    async fn write_data(&self, storage: &Storage, settings: &ImportSettings) -> Result<(), String> {
        let rosters = RosterStore::new(storage.map.clone(), storage.keyval.clone());
        for item in &self.roster {
            rosters
                .put(&self.jid, item)
                .await
                .map_err(|e| format!("roster: {e}"))?;
        }
        if let Some(vcard) = &self.vcard {
            VCardStore::new(storage)
                .put(&self.jid, vcard)
                .await
                .map_err(|e| format!("vCard: {e}"))?;
        }
        if !self.private.is_empty() {
            PrivateStore::new(storage, PrivateSettings::default())
                .put(&self.jid, &self.private)
                .await
                .map_err(|e| format!("private XML: {e}"))?;
        }
        let (host, user) = (self.host(), self.user());
        for record in &self.offline {
            storage
                .archive
                .append_within(
                    host,
                    user,
                    OFFLINE_STORE,
                    record.clone(),
                    settings.offline_quota,
                )
                .await
                .map_err(|e| format!("offline messages: {e}"))?;
        }
        pep::write(storage, &self.jid, &self.pep, &settings.pep).await?;
        archive::write(storage, &self.jid, &self.archive).await
    }
}
