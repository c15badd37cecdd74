//! XEP-0363: HTTP File Upload — the service on `upload.<host>` that hands out slots, and
//! what the HTTP listeners need to accept the PUTs and serve the GETs.
//!
//! A client asks the service for a slot (`<request/>`, §4); the answer is a PUT URL signed
//! for that one file ([`slot`]) and the GET URL it will be fetched from, both on the public
//! base URL (`base_url`, by default `https://<host>:<port>` of the first HTTPS listener).
//! The HTTP side (`xmppd-http`) checks the signature, streams the body to disk ([`files`])
//! and serves it back; this crate holds the rules both sides share ([`Uploads`]).
//!
//! # Records, quota and account removal
//!
//! Every slot is a record in the owner's `upload` Map store (key: the slot id), written when
//! the slot is handed out and marked done when the PUT completes. The quota (bytes and
//! files per user) is the sum of the owner's records: uploaded files, plus slots not yet
//! expired, so that a client cannot reserve beyond its quota with slots it never uses.
//! Expired unused slots are dropped when the owner next asks for one.
//!
//! Removing an account removes its records with everything else it stores
//! (`UserData::delete_user`): a file whose record is gone is no longer served (404) and is
//! deleted at the next GET of it or by the sweep, which also deletes files older than
//! `expire_days`, in bounded rounds ([`sweep`]).

pub mod files;
mod service;
pub mod slot;
mod sweep;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use jid::BareJid;
use serde::{Deserialize, Serialize};
use xmppd_core::storage::{Storage, StorageError};
use xmppd_core::{Fixed, Live, Module, ModuleError, Reconfigure, Registry};

pub use files::{Files, Meta, WriteError};
use service::UploadService;

/// The per-user Map store of slot records.
pub const STORE: &str = "upload";
/// The host-wide KeyVal document holding the host's signing key.
pub const KEY_STORE: &str = "upload_key";
/// The stores the module keeps its data under.
pub const STORES: &[&str] = &[STORE, KEY_STORE];

/// `[modules.upload]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UploadSettings {
    /// The service is at `SUBDOMAIN.<host>` (default `upload`).
    pub subdomain: String,
    /// Public base of the PUT and GET URLs, e.g. `https://upload.example.org` behind a
    /// proxy (default: `https://<host>:<port>` of the first HTTPS listener). The URLs are
    /// `<base_url>/upload/<id>/<name>`.
    pub base_url: Option<String>,
    /// Largest file in bytes (default 10 MiB); larger is `not-acceptable` with
    /// `<file-too-large/>` (§5), and is the `max-file-size` of disco#info (§2).
    pub max_file_size: u64,
    /// Bytes one user may keep uploaded (default 1 GiB; 0: no limit).
    pub quota_bytes: u64,
    /// Files one user may keep uploaded (default 1000).
    pub max_files: u64,
    /// Accepted content types (default empty: any `type/subtype`).
    pub allowed_content_types: Vec<String>,
    /// Whether users of other servers may upload (default false: only local accounts).
    pub allow_remote: bool,
    /// Seconds a PUT URL stays valid (default 300, §8 of the XEP recommends about that).
    pub slot_ttl_secs: u64,
    /// Days an uploaded file is kept (default 30; 0: until its owner's account is removed).
    pub expire_days: u32,
    /// Seconds between two rounds of the sweep (default 3600).
    pub sweep_interval_secs: u64,
    /// Files looked at in one round of the sweep (default 1000).
    pub sweep_batch: usize,
    /// Where the files go (default `<data_dir>/upload`).
    pub path: Option<PathBuf>,
}

impl Default for UploadSettings {
    fn default() -> Self {
        UploadSettings {
            subdomain: "upload".to_owned(),
            base_url: None,
            max_file_size: 10 * 1024 * 1024,
            quota_bytes: 1024 * 1024 * 1024,
            max_files: 1000,
            allowed_content_types: Vec::new(),
            allow_remote: false,
            slot_ttl_secs: 300,
            expire_days: 30,
            sweep_interval_secs: 3600,
            sweep_batch: 1000,
            path: None,
        }
    }
}

/// A slot as stored in its owner's `upload` Map store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The file name.
    pub name: String,
    /// The size in bytes.
    pub size: u64,
    /// The declared content type.
    pub content_type: Option<String>,
    /// Unix seconds of the slot request.
    pub created: u64,
    /// Unix seconds after which the PUT is refused.
    pub expires: u64,
    /// Whether the file was uploaded.
    pub done: bool,
}

/// Unix seconds, now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Why a PUT is refused; each is one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// No valid signature, or an expired one (403).
    #[error("the slot's signature is wrong or expired")]
    Forbidden,
    /// The file of this slot was already uploaded (409).
    #[error("the file of this slot was already uploaded")]
    Conflict,
    /// The announced or sent body is larger than the slot (413).
    #[error("the body is larger than the slot")]
    TooLarge,
    /// The body's length or content type is not the slot's, or the path is malformed (400).
    #[error("{0}")]
    BadRequest(String),
    /// Storage or the file system failed (500).
    #[error("the upload could not be stored: {0}")]
    Internal(String),
}

impl From<StorageError> for PutError {
    fn from(e: StorageError) -> Self {
        PutError::Internal(e.to_string())
    }
}

/// What the HTTP listeners and the XMPP service share: settings, keys, records and files.
pub struct Uploads {
    /// Replaced by a reload (all but `subdomain`, `path` and `sweep_interval_secs`, which
    /// decided the services, the directory and the sweep's timer at startup); one request
    /// reads it once.
    settings: Live<UploadSettings>,
    storage: Storage,
    files: Files,
    /// The hosts served here; a reload may add some.
    hosts: Live<Vec<String>>,
    /// The port of the first HTTPS listener, for the default base URL.
    https_port: RwLock<Option<u16>>,
    /// Serialises quota checks, so that two concurrent requests of one user cannot both pass
    /// a quota that only one of them fits in (within this server process).
    quota: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Uploads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Uploads")
            .field("settings", &self.settings)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

impl Uploads {
    /// The settings in force.
    pub fn settings(&self) -> Arc<UploadSettings> {
        self.settings.get()
    }

    /// The files on disk.
    pub fn files(&self) -> &Files {
        &self.files
    }

    /// Tells the service where the first HTTPS listener is, for the default base URL.
    pub fn set_https_port(&self, port: u16) {
        if let Ok(mut p) = self.https_port.write() {
            p.get_or_insert(port);
        }
    }

    /// The base URL of `host`'s slots, if one is known.
    pub fn base_url(&self, host: &str) -> Option<String> {
        if let Some(base) = &self.settings.get().base_url {
            return Some(base.trim_end_matches('/').to_owned());
        }
        let port = (*self.https_port.read().ok()?)?;
        Some(format!("https://{host}:{port}"))
    }

    /// The signing key of `host`: created once, kept in storage so that slots survive a
    /// restart and every node of a cluster signs alike.
    pub async fn key(&self, host: &str) -> Result<Vec<u8>, StorageError> {
        if let Some(key) = self.storage.keyval.get(host, "", KEY_STORE).await? {
            return Ok(key);
        }
        let mut fresh = [0u8; 32];
        getrandom::fill(&mut fresh).map_err(|e| StorageError::Backend(e.to_string()))?;
        self.storage
            .keyval
            .insert_new(host, "", KEY_STORE, &fresh)
            .await?;
        // Another node may have won the race: its key is the one.
        self.storage
            .keyval
            .get(host, "", KEY_STORE)
            .await?
            .ok_or_else(|| StorageError::Backend("the upload key vanished".to_owned()))
    }

    /// The record of slot `id` of `owner`.
    pub async fn record(&self, owner: &BareJid, id: &str) -> Result<Option<Record>, StorageError> {
        let (host, user) = parts(owner);
        match self.storage.map.get(host, user, STORE, id).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| StorageError::Corrupt(format!("upload record {id}: {e}"))),
        }
    }

    async fn put_record(
        &self,
        owner: &BareJid,
        id: &str,
        record: &Record,
    ) -> Result<(), StorageError> {
        let (host, user) = parts(owner);
        let value = serde_json::to_vec(record).map_err(|e| StorageError::Corrupt(e.to_string()))?;
        self.storage.map.put(host, user, STORE, id, &value).await
    }

    /// Checks a PUT's signed URL (`owner`, `expires`, `signature` from its query) against
    /// the slot's record; the answer is the record to upload to.
    pub async fn authorize_put(
        &self,
        id: &str,
        name: &str,
        owner: &str,
        expires: u64,
        signature: &str,
    ) -> Result<(BareJid, Record), PutError> {
        if !slot::is_id(id) || slot::check_filename(name).is_err() {
            return Err(PutError::BadRequest("not an upload path".to_owned()));
        }
        let owner = BareJid::new(owner).map_err(|_| PutError::Forbidden)?;
        if owner.node().is_none() || expires < now_secs() {
            return Err(PutError::Forbidden);
        }
        let record = self.record(&owner, id).await?.ok_or(PutError::Forbidden)?;
        let key = self.key(owner.domain().as_str()).await?;
        let signed = slot::Signed {
            id,
            name,
            size: record.size,
            content_type: record.content_type.as_deref().unwrap_or(""),
            expires,
            owner: owner.as_str(),
        };
        if record.name != name || record.expires != expires || !signed.verify(&key, signature) {
            return Err(PutError::Forbidden);
        }
        if record.done {
            return Err(PutError::Conflict);
        }
        Ok((owner, record))
    }

    /// Stores an authorised PUT's body and marks the slot done.
    pub async fn store<S, E>(
        &self,
        id: &str,
        owner: &BareJid,
        record: Record,
        body: S,
    ) -> Result<(), PutError>
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>>,
        E: std::fmt::Display,
    {
        let (host, user) = parts(owner);
        let meta = Meta {
            host: host.to_owned(),
            user: user.to_owned(),
            name: record.name.clone(),
            size: record.size,
            content_type: record.content_type.clone(),
            created: record.created,
        };
        self.files
            .write(id, &meta, body)
            .await
            .map_err(|e| match e {
                WriteError::TooLarge => PutError::TooLarge,
                WriteError::TooShort { .. } | WriteError::Body(_) => {
                    PutError::BadRequest(e.to_string())
                }
                WriteError::Exists => PutError::Conflict,
                WriteError::Io(e) => PutError::Internal(e.to_string()),
            })?;
        let done = Record {
            done: true,
            ..record
        };
        if let Err(e) = self.put_record(owner, id, &done).await {
            let _ = self.files.remove(id).await;
            return Err(e.into());
        }
        tracing::debug!(%owner, id, size = done.size, "file uploaded");
        Ok(())
    }

    /// The file to serve for `GET /upload/ID/NAME`: `None` (404) when there is none, it is
    /// expired, or its owner's record is gone (the account was removed: the file goes too).
    pub async fn lookup(&self, id: &str, name: &str) -> Result<Option<(Meta, PathBuf)>, String> {
        let Some((meta, path)) = self.files.find(id).await.map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        if meta.name != name {
            return Ok(None);
        }
        if self.expired(meta.created, now_secs()) {
            return Ok(None);
        }
        let owner = match BareJid::new(&format!("{}@{}", meta.user, meta.host)) {
            Ok(owner) => owner,
            Err(_) => return Ok(None),
        };
        match self.record(&owner, id).await.map_err(|e| e.to_string())? {
            Some(record) if record.done => Ok(Some((meta, path))),
            _ => {
                let _ = self.files.remove(id).await;
                Ok(None)
            }
        }
    }

    /// Whether a file uploaded at `created` is past `expire_days` at `now`.
    fn expired(&self, created: u64, now: u64) -> bool {
        let days = self.settings.get().expire_days;
        days > 0 && now.saturating_sub(created) >= u64::from(days) * 86_400
    }
}

fn parts(owner: &BareJid) -> (&str, &str) {
    (
        owner.domain().as_str(),
        owner.node().map_or("", |n| n.as_str()),
    )
}

/// The upload module: one service per host, and the sweep.
#[derive(Debug)]
pub struct Upload {
    uploads: Arc<Uploads>,
}

impl Upload {
    /// The module for `hosts`, keeping files under `data_dir/upload` unless `path` is set;
    /// starts the sweep, so it must be called inside the tokio runtime.
    pub fn new(
        storage: &Storage,
        settings: UploadSettings,
        hosts: Vec<String>,
        data_dir: &std::path::Path,
    ) -> Result<Self, ModuleError> {
        let invalid = |message: String| ModuleError::Invalid {
            module: "upload".to_owned(),
            message,
        };
        validate(&settings).map_err(invalid)?;
        let root = settings
            .path
            .clone()
            .unwrap_or_else(|| data_dir.join("upload"));
        let files = Files::open(root.clone())
            .map_err(|e| invalid(format!("cannot create {}: {e}", root.display())))?;
        let uploads = Arc::new(Uploads {
            settings: Live::new(settings),
            storage: storage.clone(),
            files,
            hosts: Live::new(hosts),
            https_port: RwLock::new(None),
            quota: tokio::sync::Mutex::new(()),
        });
        sweep::spawn(Arc::downgrade(&uploads));
        Ok(Upload { uploads })
    }

    /// The handle the HTTP listeners serve uploads with.
    pub fn uploads(&self) -> Arc<Uploads> {
        self.uploads.clone()
    }
}

/// What the constructor and a reload refuse, with how to fix it.
fn validate(settings: &UploadSettings) -> Result<(), String> {
    if settings.subdomain.is_empty() || settings.subdomain.contains(['.', '@', '/']) {
        return Err(format!(
            "subdomain '{}' must be one DNS label (\"upload\")",
            settings.subdomain
        ));
    }
    if let Some(base) = &settings.base_url
        && !(base.starts_with("https://") || base.starts_with("http://"))
    {
        return Err(format!("base_url '{base}' must be an http(s) URL"));
    }
    if settings.max_file_size == 0
        || settings.max_files == 0
        || settings.slot_ttl_secs == 0
        || settings.sweep_interval_secs == 0
        || settings.sweep_batch == 0
    {
        return Err(
            "max_file_size, max_files, slot_ttl_secs, sweep_interval_secs and sweep_batch \
             must be at least 1"
                .to_owned(),
        );
    }
    for t in &settings.allowed_content_types {
        slot::check_content_type(t, &[])
            .map_err(|_| format!("allowed_content_types: '{t}' is not type/subtype"))?;
    }
    Ok(())
}

impl Reconfigure for Upload {
    type Settings = UploadSettings;

    fn check(&self, new: &mut UploadSettings) -> Result<Vec<&'static str>, String> {
        validate(new)?;
        let running = self.uploads.settings.get();
        Ok(Fixed::default()
            .key("subdomain", &running.subdomain, &new.subdomain)
            .key("path", &running.path, &new.path)
            .key(
                "sweep_interval_secs",
                &running.sweep_interval_secs,
                &new.sweep_interval_secs,
            )
            .into_keys())
    }

    /// Slots already handed out keep the size and expiry they were signed with; files over
    /// a lowered quota stay.
    fn reconfigure(&self, mut new: UploadSettings) {
        let running = self.uploads.settings.get();
        new.subdomain.clone_from(&running.subdomain);
        new.path.clone_from(&running.path);
        new.sweep_interval_secs = running.sweep_interval_secs;
        self.uploads.settings.set(new);
    }
}

impl Upload {
    /// The service of `host`: its domain and handler.
    fn service_of(&self, host: &str) -> (String, Arc<UploadService>) {
        let domain = format!("{}.{host}", self.uploads.settings.get().subdomain);
        let service = UploadService::new(host.to_owned(), self.uploads.clone());
        (domain, Arc::new(service))
    }
}

impl Module for Upload {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        for host in self.uploads.hosts.get().iter() {
            let (domain, service) = self.service_of(host);
            registry.service(host, &domain, service);
        }
        registry.on_host_added(self);
    }
}

impl xmppd_core::HostServices for Upload {
    fn host_added(&self, host: &str) -> Vec<(String, Arc<dyn xmppd_core::Service>)> {
        let mut hosts = Vec::clone(&self.uploads.hosts.get());
        if !hosts.iter().any(|h| h == host) {
            hosts.push(host.to_owned());
            self.uploads.hosts.set(hosts);
        }
        let (domain, service) = self.service_of(host);
        vec![(domain, service)]
    }
}
