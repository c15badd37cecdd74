//! XEP-0045: Multi-User Chat — the rooms of `conference.<host>`, an in-process service on its
//! own domain (reached from local sessions and, over federation, from other servers alike).
//!
//! # Rooms
//!
//! A room is created by the first presence that enters it (XEP-0045 §10.1), owned by its
//! creator and **locked** until configured: an instant room by an empty form, or a reserved
//! one by the form (§10.1.2, §10.1.3); anyone else is refused with `item-not-found`
//! meanwhile (§7.2.11). A **temporary** room is gone when its last occupant leaves; a
//! **persistent** one keeps its configuration, affiliations and subject in storage
//! ([`store`]) and is loaded again on the first stanza after a restart.
//!
//! Each room's state is behind one lock: everything addressed to the room is handled in turn,
//! by the task of whoever sent it, so that a sender learns the outcome (an archived message
//! is committed before its sender's stream counts it as handled). A room is reached only by
//! its address through the router, which is what lets the cluster place it on one node.
//!
//! # What goes out
//!
//! - **Groupchat** is reflected to every occupant, the sender included, with the sender's `id`
//!   kept, the room's XEP-0359 `<stanza-id/>` and the sender's XEP-0421 `<occupant-id/>`
//!   (both first stripped from what the sender wrote: forged ones never pass). It is
//!   serialised once per room message; each occupant's copy differs only in `to`
//!   ([`xmppd_core::Router::route_copies`]).
//! - **Occupant presence** goes in two versions, with and without the real JID (§7.2.3:
//!   moderators of a semi-anonymous room and everyone in a non-anonymous one see it).
//! - **History** (§7.2.15) is kept in memory (the room's `historylength`), and loaded from the
//!   archive when a persistent room comes back.
//!
//! Room archives (XEP-0313 on the room JID) use the user archive's query engine, so the same
//! filters, paging and unpredictable ids apply.

pub mod config;
mod disco;
mod service;
pub mod store;

mod room;

use std::sync::Arc;

use serde::Deserialize;
use xmppd_core::storage::Storage;
use xmppd_core::{Fixed, Live, Module, ModuleError, Reconfigure, Registry};
use xmppd_modules::mam::{IdKeys, Writer};

use service::MucService;
use store::RoomStore;

/// The stores the module keeps its data under.
pub const STORES: &[&str] = &[
    store::ROOMS,
    store::ARCHIVE,
    store::OWNED,
    store::SECRET,
    store::DIRECTORY,
];

/// Who may create rooms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CreateRooms {
    /// Any user, from any server.
    Anyone,
    /// Accounts of this server.
    Local,
    /// Only the service's admins.
    Admins,
}

/// `[modules.muc]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MucSettings {
    /// The service is at `SUBDOMAIN.<host>` (default `conference`).
    pub subdomain: String,
    /// Who may create rooms (default `local`); others get `not-allowed` (§7.2.? table).
    pub create_rooms: CreateRooms,
    /// Bare JIDs that own every room of the service and may always create rooms.
    pub admins: Vec<String>,
    /// Most occupants in one room, whatever its configuration says (default 2000).
    pub max_occupants: usize,
    /// `muc#roomconfig_maxusers` of a new room (default 200).
    pub default_max_users: usize,
    /// Most rooms one user may own, the service's admins excepted (default 100).
    pub max_rooms_per_user: u64,
    /// The longest discussion history a room may keep (default 100 messages).
    pub max_history: usize,
    /// History length of a new room (default 20).
    pub default_history: usize,
    /// Largest groupchat or private message, serialised (default 65536 bytes); larger is
    /// `policy-violation` (§16? the limits).
    pub max_message_bytes: usize,
    /// Longest nickname in bytes (default 256; a JID resource may be 1023).
    pub max_nick_bytes: usize,
    /// Messages per second one occupant may send on average (default 10); presence updates
    /// and nickname changes, which the room broadcasts too, count against the same budget.
    pub messages_per_second: f64,
    /// How many messages (and presence updates) an occupant may send at once before the rate
    /// applies (default 30).
    pub message_burst: u32,
    /// Whether a new room archives its messages (default true).
    pub archive_by_default: bool,
    /// Most messages a room archive keeps, the oldest removed first (default 100000; 0: no
    /// limit).
    pub archive_max_messages: u64,
    /// Days a room archive keeps a message (default 0: no limit); older ones are removed as
    /// the room archives new ones, and no query sees them meanwhile.
    pub archive_retention_days: u32,
    /// Most results in one archive page (default 100).
    pub archive_max_page: usize,
    /// Rooms listed in one disco#items page without RSM (default 100).
    pub max_items_page: usize,
}

impl Default for MucSettings {
    fn default() -> Self {
        MucSettings {
            subdomain: "conference".to_owned(),
            create_rooms: CreateRooms::Local,
            admins: Vec::new(),
            max_occupants: 2000,
            default_max_users: 200,
            max_rooms_per_user: 100,
            max_history: 100,
            default_history: 20,
            max_message_bytes: 65_536,
            max_nick_bytes: 256,
            messages_per_second: 10.0,
            message_burst: 30,
            archive_by_default: true,
            archive_max_messages: 100_000,
            archive_retention_days: 0,
            archive_max_page: 100,
            max_items_page: 100,
        }
    }
}

impl MucSettings {
    /// Archived messages older than this (µs since the epoch) are expired, if retention is on.
    pub(crate) fn expire_before_us(&self, now_us: i64) -> Option<i64> {
        (self.archive_retention_days > 0)
            .then(|| now_us.saturating_sub(i64::from(self.archive_retention_days) * 86_400_000_000))
    }
}

/// Microseconds since the Unix epoch, now.
pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// What the rooms of every service share.
pub(crate) struct Shared {
    /// Replaced by a reload (all but `subdomain` and `admins`, see [`Muc::check`]); one
    /// stanza reads it once. Rooms keep their occupants and configuration.
    pub(crate) settings: Live<MucSettings>,
    pub(crate) admins: Vec<jid::BareJid>,
    pub(crate) store: RoomStore,
    pub(crate) writer: Writer,
    pub(crate) ids: IdKeys,
    /// The hosts served here (for `create_rooms = "local"`); a reload may add some.
    pub(crate) hosts: xmppd_core::Live<Vec<String>>,
    /// The router, for the rooms' outboxes.
    pub(crate) router: xmppd_core::RouterHandle,
}

/// The MUC module: one service per host.
pub struct Muc {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Muc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Muc")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

impl Muc {
    /// The module for `hosts` over `storage` (claimed as [`STORES`]); starts the archive
    /// writer, so it must be called inside the tokio runtime.
    pub fn new(
        storage: &Storage,
        settings: MucSettings,
        hosts: Vec<String>,
        router: xmppd_core::RouterHandle,
    ) -> Result<Self, ModuleError> {
        let invalid = |message: String| ModuleError::Invalid {
            module: "muc".to_owned(),
            message,
        };
        let admins = validate(&settings).map_err(invalid)?;
        // Rooms send their messages while the commits run (room::outbox): only the senders'
        // acknowledgements wait for them, so a commit may wait 5 ms to gather more.
        let writer = Writer::spawn_lingering(
            storage.archive.clone(),
            512,
            std::time::Duration::from_millis(5),
        )
        .map_err(invalid)?;
        Ok(Muc {
            shared: Arc::new(Shared {
                admins,
                store: RoomStore::new(storage),
                writer,
                ids: IdKeys::new(storage.keyval.clone()),
                settings: Live::new(settings),
                hosts: xmppd_core::Live::new(hosts),
                router,
            }),
        })
    }
}

/// The service's admins, parsed; or what the constructor and a reload refuse, with how to fix
/// it.
fn validate(settings: &MucSettings) -> Result<Vec<jid::BareJid>, String> {
    let mut admins = Vec::with_capacity(settings.admins.len());
    for a in &settings.admins {
        let jid =
            jid::BareJid::new(a).map_err(|e| format!("admins: '{a}' is not a bare JID: {e}"))?;
        admins.push(jid);
    }
    if settings.subdomain.is_empty() || settings.subdomain.contains(['.', '@', '/']) {
        return Err(format!(
            "subdomain '{}' must be one DNS label (\"conference\")",
            settings.subdomain
        ));
    }
    if settings.max_occupants == 0 || settings.archive_max_page == 0 {
        return Err("max_occupants and archive_max_page must be at least 1".to_owned());
    }
    if settings.messages_per_second.is_nan()
        || settings.messages_per_second <= 0.0
        || settings.message_burst == 0
    {
        return Err("messages_per_second and message_burst must be above 0".to_owned());
    }
    Ok(admins)
}

impl Reconfigure for Muc {
    type Settings = MucSettings;

    /// `subdomain` named the services registered at startup; `admins` became owners of the
    /// rooms already loaded, so a change would apply to some rooms and not others.
    fn check(&self, new: &mut MucSettings) -> Result<Vec<&'static str>, String> {
        validate(new)?;
        let running = self.shared.settings.get();
        Ok(Fixed::default()
            .key("subdomain", &running.subdomain, &new.subdomain)
            .key("admins", &running.admins, &new.admins)
            .into_keys())
    }

    /// Rooms over a lowered `max_occupants` keep their occupants and only refuse new ones;
    /// a loaded room's history length changes when its owner configures it again.
    fn reconfigure(&self, mut new: MucSettings) {
        let running = self.shared.settings.get();
        new.subdomain.clone_from(&running.subdomain);
        new.admins.clone_from(&running.admins);
        self.shared.settings.set(new);
    }
}

impl Muc {
    /// The service of `host`: its domain and handler.
    fn service_of(&self, host: &str) -> (String, Arc<MucService>) {
        let domain = format!("{}.{host}", self.shared.settings.get().subdomain);
        let service = MucService::new(domain.clone(), self.shared.clone());
        (domain, Arc::new(service))
    }
}

impl Module for Muc {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        for host in self.shared.hosts.get().iter() {
            let (domain, service) = self.service_of(host);
            registry.service(host, &domain, service);
        }
        registry.on_host_added(self);
    }
}

impl xmppd_core::HostServices for Muc {
    fn host_added(&self, host: &str) -> Vec<(String, Arc<dyn xmppd_core::Service>)> {
        let mut hosts = Vec::clone(&self.shared.hosts.get());
        if !hosts.iter().any(|h| h == host) {
            hosts.push(host.to_owned());
            self.shared.hosts.set(hosts);
        }
        let (domain, service) = self.service_of(host);
        vec![(domain, service)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_expires_what_is_older_than_the_days_kept() {
        let mut s = MucSettings::default();
        assert_eq!(s.expire_before_us(1_000_000_000_000), None);
        s.archive_retention_days = 2;
        assert_eq!(
            s.expire_before_us(1_000_000_000_000),
            Some(1_000_000_000_000 - 2 * 86_400_000_000)
        );
    }

    #[tokio::test]
    async fn bad_settings_are_refused_with_their_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = xmppd_storage::StorageConfig::Sqlite {
            path: dir.path().join("muc.db"),
        };
        let storage = xmppd_storage::open(&config).await.expect("storage");
        let hosts = vec!["localhost".to_owned()];
        for (settings, named) in [
            (
                MucSettings {
                    subdomain: "a.b".into(),
                    ..MucSettings::default()
                },
                "subdomain",
            ),
            (
                MucSettings {
                    admins: vec!["@@".into()],
                    ..MucSettings::default()
                },
                "admins",
            ),
            (
                MucSettings {
                    max_occupants: 0,
                    ..MucSettings::default()
                },
                "max_occupants",
            ),
            (
                MucSettings {
                    messages_per_second: f64::NAN,
                    ..MucSettings::default()
                },
                "messages_per_second",
            ),
        ] {
            let e =
                Muc::new(&storage, settings, hosts.clone(), Default::default()).expect_err(named);
            assert!(e.to_string().contains(named), "{e}");
        }
        let muc = Muc::new(&storage, MucSettings::default(), hosts, Default::default())
            .expect("the defaults are valid");
        // A reload is held to the same rules, and keeps the service's domain and admins.
        let mut bad = MucSettings {
            max_occupants: 0,
            ..MucSettings::default()
        };
        assert!(
            muc.check(&mut bad)
                .is_err_and(|e| e.contains("max_occupants"))
        );
        let mut new = MucSettings {
            subdomain: "rooms".into(),
            admins: vec!["admin@example.org".into()],
            max_message_bytes: 10,
            ..MucSettings::default()
        };
        assert_eq!(muc.check(&mut new), Ok(vec!["subdomain", "admins"]));
        muc.reconfigure(new);
        let now = muc.shared.settings.get();
        assert_eq!(now.subdomain, "conference");
        assert!(now.admins.is_empty());
        assert_eq!(now.max_message_bytes, 10);
    }
}
