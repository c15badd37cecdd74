//! XEP-0313: Message Archive Management, for one-to-one messages (`urn:xmpp:mam:2` and
//! `urn:xmpp:mam:2#extended`), with the preferences of XEP-0441.
//!
//! # What is archived, where
//!
//! Every account has one archive, the Archive store `mam` under its own name. A message is
//! archived twice when both ends are local, once per account (§3: "outgoing" for the sender,
//! "incoming" for the recipient):
//!
//! - **the sender's copy** by an [`OutboundHook`], when a client session sends it, before it
//!   is routed;
//! - **the recipient's copy** by an [`InboundHook`], when it reaches an existing local
//!   account (from a local session, another server or a component), before delivery or
//!   offline storage.
//!
//! Which messages (§8.1.1, `rules.rs`): type `normal` or `chat` (or an unknown type, which
//! RFC 6121 §5.2.2 treats as `normal`) that carry a `<body/>`, an end-to-end encrypted
//! payload, or the XEP-0334 `<store/>` hint; never errors, headlines or groupchat messages
//! (a MUC room keeps its own archive; the `include-groupchat` field is therefore not
//! supported), never a message with `<no-store/>` or `<no-permanent-store/>` (XEP-0334 §4).
//! A message to the user's own account is archived once, on its inbound side. The user's
//! preferences decide last (XEP-0441 §2: the `never` list wins over `always`, then the
//! default; `roster` reads the IM module's roster).
//!
//! # Stanza IDs (XEP-0359, §3.3 of XEP-0313)
//!
//! The inbound hook first removes **every** `<stanza-id/>` whose `by` is the recipient's bare
//! JID, whatever else it carries, from every message to the account (XEP-0359 §3 rule 2: a
//! sender could forge one to make the recipient believe a message is archived, or to point at
//! another one). When it archives the message it adds its own `<stanza-id by='user@host'
//! id='ARCHIVE-ID'/>`, the public id of the recipient's copy (`ids.rs`: unpredictable, §3);
//! the sender's `<origin-id/>` and other entities' stanza-ids stay. The sender's copy gets no
//! stanza-id on the wire: it goes to a contact who may not query the sender's archive (§3.3).
//! A message the router hands to the hook a second time (its session died before writing
//! it) still carries that stanza-id, which names a record holding this very message: it
//! passes unchanged and is not archived again (§8.1.1: once per archive).
//!
//! # Acknowledged means committed
//!
//! Nothing counts a message as handled (stream management's `h`) before its archive copies
//! are committed. Writes go through one writer task per module (`writer.rs`) that collects
//! the appends of concurrent hooks and commits them in one transaction
//! ([`xmppd_core::storage::ArchiveStore::append_batch`]): a group commit, one sync for many
//! messages.
//!
//! A message a client sends does not wait for that commit: its record gets an id reserved
//! ahead ([`xmppd_core::storage::ArchiveStore::reserve_ids`]), so its stanza-id is known at
//! once, the message goes on, and only the sender's acknowledgement waits
//! ([`xmppd_core::completion::defer`]). Waiting at each hook put a group commit (a sync,
//! 1–8 ms) into every message's latency. Should the commit fail, the sender gets
//! `internal-server-error` naming its message ("sent but could not be archived"): the
//! message was delivered, and the sender learns that the archives miss it. A query waits
//! for the commits pending before it (`Writer::flush`), so it finds every message that went
//! out before it was asked.
//!
//! A message from anywhere else (another server, a component, a module) is archived before
//! it goes on, as there is no acknowledgement to hold back: when that commit fails the
//! message is **not routed** and its sender gets `internal-server-error`.
//!
//! Messages imported from another server (`xmppd import`, XEP-0227) keep the ids they had
//! there, which their owner's clients page from (`imported_ids.rs`).
//!
//! # Queries (`query.rs`)
//!
//! Only the account itself may query its archive (iq to its bare JID or without `to`;
//! anyone else: `forbidden`, §9.1). Results are queued straight to the requesting session,
//! then the iq result with `<fin/>` follows on the same queue, so the order holds. A page is
//! at most `max_page` results (a larger RSM `max` is clamped, §4.2), and no more than the
//! session's queue has room for: a page that would overflow the queue is shortened and
//! reported incomplete, rather than ending the session as a slow consumer.
//!
//! # Limits
//!
//! Per user, at most `max_messages` are kept and, with `retention_days`, only that many days;
//! both trim the oldest end of the archive in the transaction that appends (§3.2: no holes).
//!
//! `max_bytes` bounds the bytes an archive holds the same way: past it, the oldest messages
//! give way (§3.2 allows a server to "discard old messages once the archive reaches a
//! certain size", oldest first), down to a sixteenth below the limit so that the deletion
//! runs once in many appends. A full archive never refuses a message: refusing would bounce
//! a message its recipient could otherwise receive, or lose the newest history to keep the
//! oldest, and a user cannot clear an archive over XEP-0313 anyway. The newest message is
//! always kept, even one larger than the limit. The check reads the archives' running totals
//! (`archive_usage`): one read per committed batch, for all the archives it appends to.
//! An idle archive is swept hourly (`sweep.rs`); until then queries skip what is expired.
//! The archive is removed with the account (the storage's `delete_user` covers every store).

mod hooks;
mod ids;
mod imported_ids;
mod prefs;
mod query;
mod rules;
mod sweep;
mod writer;

#[cfg(test)]
mod test_store;
#[cfg(test)]
mod tests;

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jid::{BareJid, Jid};
use serde::Deserialize;
use xmppd_core::storage::Storage;
use xmppd_core::{
    Fixed, IqTarget, IqType, KindMask, Live, Module, ModuleError, Reconfigure, Registry,
    RouterHandle,
};
use xmppd_proto::mam::{DefaultPolicy, EXTENDED, GROUPCHAT_FIELD};
use xmppd_proto::{DefinedCondition, Stanza, StanzaError, StanzaKind, ns};
use xmppd_xml::Element;

use hooks::Unstamp;
pub use ids::{IdCipher, IdKeys, KEY_STORE};
pub use imported_ids::{MAX_IMPORTED_ID, imported_id, keep_imported_ids};
use prefs::PrefsStore;
pub use query::{ArchiveView, Page, QueryError};
pub use writer::{Pending, Writer};

/// Whether an append to an archive capped at `max` records also trims it (see [`trim_now`]).
pub fn keep_last(max: u64) -> Option<u64> {
    (max > 0 && trim_now(max)).then_some(max)
}

/// The Archive store of the messages.
pub const STORE: &str = "mam";
/// The KeyVal store of the preferences.
pub const PREFS_STORE: &str = "mam_prefs";

/// The disco#info features of an account's bare JID (§7), registered as account features
/// (the disco module lists them).
pub const FEATURES: &[&str] = &[ns::MAM, EXTENDED, GROUPCHAT_FIELD];

/// Hook priority: after blocking (100; a blocked message is not archived, §8.1) and before
/// the modules that copy or deliver a message (carbons, IM at 0), so that copies carry the
/// stanza-id and nothing is copied that could not be archived.
const PRIORITY: i32 = 50;

/// Where the sender's own stanza-id comes off an outgoing message: after carbons (-100),
/// whose `sent` copies carry it to the sender's other resources, and before it leaves.
const UNSTAMP_PRIORITY: i32 = -150;

/// `[modules.mam]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MamSettings {
    /// The preference of a user who set none: `always`, `never` or `roster` (default
    /// `always`).
    pub default: DefaultSetting,
    /// Most results in one page (default 100); a larger RSM `max` is clamped to it. Zero is
    /// refused while the configuration is read, with its line.
    pub max_page: NonZeroUsize,
    /// Most messages kept per user, the oldest removed first (default 100000; 0: no limit).
    pub max_messages: u64,
    /// Most bytes of messages (as stored) kept per user, the oldest removed first (default
    /// 256 MiB; 0: no limit). See "Limits" in the module docs.
    pub max_bytes: u64,
    /// Days a message is kept (default 0: no limit).
    pub retention_days: u32,
    /// Most appends committed in one transaction (default 256).
    pub max_batch: NonZeroUsize,
}

impl Default for MamSettings {
    fn default() -> Self {
        MamSettings {
            default: DefaultSetting::Always,
            max_page: NonZeroUsize::new(100).unwrap_or(NonZeroUsize::MIN),
            max_messages: 100_000,
            max_bytes: 256 * 1024 * 1024,
            retention_days: 0,
            max_batch: NonZeroUsize::new(256).unwrap_or(NonZeroUsize::MIN),
        }
    }
}

/// The `default` setting, as written in the configuration.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DefaultSetting {
    /// Archive every message.
    Always,
    /// Archive nothing until the user asks.
    Never,
    /// Archive messages with roster contacts.
    Roster,
}

impl From<DefaultSetting> for DefaultPolicy {
    fn from(s: DefaultSetting) -> Self {
        match s {
            DefaultSetting::Always => DefaultPolicy::Always,
            DefaultSetting::Never => DefaultPolicy::Never,
            DefaultSetting::Roster => DefaultPolicy::Roster,
        }
    }
}

impl MamSettings {
    /// Records appended before this (µs since the epoch) are expired, if retention is on.
    fn expire_before_us(&self, now_us: i64) -> Option<i64> {
        (self.retention_days > 0)
            .then(|| now_us.saturating_sub(i64::from(self.retention_days) * 86_400_000_000))
    }
}

/// Why a message could not be archived.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// The store refused or failed the commit.
    #[error(transparent)]
    Storage(#[from] xmppd_core::storage::StorageError),
    /// The writer task is gone (shutdown).
    #[error("the archive writer has stopped")]
    WriterGone,
}

/// The archive module.
pub struct Mam {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Mam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mam")
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

/// What the hooks and handlers share.
pub(crate) struct Inner {
    /// Replaced by a reload (all but `max_batch`, the writer's); one append or query reads
    /// it once.
    settings: Live<MamSettings>,
    storage: Storage,
    prefs: PrefsStore,
    writer: Writer,
    /// The hosts' keys for the public archive ids.
    ids: IdKeys,
    /// For the error to a sender whose message went on but whose commit failed.
    router: RouterHandle,
}

impl Mam {
    /// The module over `storage` (claimed as [`STORE`], [`PREFS_STORE`] and [`KEY_STORE`]).
    /// Starts the
    /// writer task, so it must be called inside the tokio runtime.
    pub fn new(
        storage: &Storage,
        settings: MamSettings,
        router: RouterHandle,
    ) -> Result<Self, ModuleError> {
        let writer = Writer::spawn_lingering(
            storage.archive.clone(),
            settings.max_batch.get(),
            COMMIT_LINGER,
        )
        .map_err(|e| ModuleError::Invalid {
            module: "mam".into(),
            message: e,
        })?;
        let inner = Arc::new(Inner {
            prefs: PrefsStore::new(storage, settings.default.into()),
            settings: Live::new(settings),
            storage: storage.clone(),
            writer,
            ids: IdKeys::new(storage.keyval.clone()),
            router,
        });
        // Also without a retention period: a reload may set one.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            sweep::spawn(Arc::downgrade(&inner), &runtime);
        }
        Ok(Mam { inner })
    }
}

impl Reconfigure for Mam {
    type Settings = MamSettings;

    /// `max_batch` sized the writer task started with the module.
    fn check(&self, new: &mut MamSettings) -> Result<Vec<&'static str>, String> {
        let running = self.inner.settings.get();
        Ok(Fixed::default()
            .key("max_batch", &running.max_batch, &new.max_batch)
            .into_keys())
    }

    /// Archives over lowered limits are trimmed as their owners archive new messages, as
    /// at startup; cached preferences are dropped so that users who set none get the new
    /// `default` with their next message.
    fn reconfigure(&self, mut new: MamSettings) {
        new.max_batch = self.inner.settings.get().max_batch;
        self.inner.prefs.set_default(new.default.into());
        self.inner.settings.set(new);
    }
}

impl Module for Mam {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        let inner = &self.inner;
        for feature in FEATURES {
            registry.account_feature(feature);
        }
        registry.outbound(PRIORITY, KindMask::MESSAGE, inner.clone());
        registry.outbound(UNSTAMP_PRIORITY, KindMask::MESSAGE, Arc::new(Unstamp));
        registry.inbound(PRIORITY, KindMask::MESSAGE, inner.clone());
        let query = Arc::new(query::QueryHandler(inner.clone()));
        registry.iq(
            IqTarget::Account,
            IqType::Set,
            ns::MAM,
            "query",
            query.clone(),
        );
        registry.iq(
            IqTarget::Account,
            IqType::Get,
            ns::MAM,
            "query",
            query.clone(),
        );
        registry.iq(IqTarget::Account, IqType::Get, ns::MAM, "metadata", query);
        let prefs = Arc::new(prefs::PrefsHandler(inner.clone()));
        registry.iq(
            IqTarget::Account,
            IqType::Get,
            ns::MAM,
            "prefs",
            prefs.clone(),
        );
        registry.iq(IqTarget::Account, IqType::Set, ns::MAM, "prefs", prefs);
    }
}

/// Microseconds since the Unix epoch, now.
fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The time of a record.
fn time_of(us: i64) -> SystemTime {
    match u64::try_from(us) {
        Ok(us) => UNIX_EPOCH + Duration::from_micros(us),
        Err(_) => UNIX_EPOCH,
    }
}

/// `(host, user)` of an account.
fn owner(account: &BareJid) -> (&str, &str) {
    (
        account.domain().as_str(),
        account.node().map_or("", |n| n.as_str()),
    )
}

/// How long a batch of appends that only acknowledgements wait for may wait for more before
/// it commits. A client's messages go on while their commits run, so this delays only the
/// sender's `h`; without it a writer that keeps up commits a message or two at a time, and
/// each commit costs its sync and its pages of the log (at 2,000 messages/s that was half of
/// the server's CPU). A message held for its commit (from another server) or a query ends
/// the wait at once.
const COMMIT_LINGER: Duration = Duration::from_millis(5);

/// The error a sender gets for a message that went on but whose archive commit failed: the
/// message's `id`, from where it was sent (RFC 6120 §8.3), `internal-server-error` with
/// `text`. The payload is not echoed: the recipients have it.
pub fn sent_but_not_archived(
    sender: Jid,
    sent_to: Option<Jid>,
    id: Option<String>,
    text: &str,
) -> Stanza {
    let error = StanzaError::new(DefinedCondition::InternalServerError).with_text(text);
    let mut el = Element::new("message", ns::CLIENT).with_attr("type", "error");
    if let Some(id) = id {
        el.set_attr("id", id);
    }
    el.push_child(error.to_element(ns::CLIENT));
    Stanza::new_unchecked(StanzaKind::Message, sent_to, Some(sender), el)
}

/// Whether this append also trims its archive to `max` messages. Finding the `max`-th newest
/// record walks up to `max` index entries, so doing it on every append made each message cost
/// as much as the archive was long (300 µs of server CPU per message in the bench with
/// archives of a few thousand). One append in `max / 10` (at random, at least every one for
/// small limits) does it: the walk costs about ten entries per message, and an archive
/// exceeds its limit by about a tenth at most before it is trimmed back.
pub fn trim_now(max: u64) -> bool {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut seed = [0u8; 8];
            let _ = getrandom::fill(&mut seed);
            u64::from_le_bytes(seed) | 1
        });
    }
    let every = (max / 10).max(1);
    if every == 1 {
        return true;
    }
    // xorshift64: no need for more than an even spread here.
    let draw = STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    });
    draw.is_multiple_of(every)
}
