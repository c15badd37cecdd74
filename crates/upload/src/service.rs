//! What is addressed to `upload.<host>`: disco#info (§2: identity `store/file`, the feature,
//! the `max-file-size` form), slot requests (§4, with the errors of §5) and ping.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use jid::{BareJid, Jid};
use tracing::warn;
use xmppd_core::{Router, Service};
use xmppd_proto::datetime::format_datetime;
use xmppd_proto::disco::{DiscoInfoResult, DiscoItemsResult, Identity};
use xmppd_proto::payload::PayloadError;
use xmppd_proto::upload::{self, Request, Slot};
use xmppd_proto::{DefinedCondition, ErrorType, Stanza, StanzaError, StanzaKind, ns};
use xmppd_xml::Element;

use crate::{Record, Uploads, now_secs, parts, slot};

/// The upload service of one host.
pub(crate) struct UploadService {
    host: String,
    uploads: Arc<Uploads>,
}

fn internal(e: &dyn std::fmt::Display) -> StanzaError {
    warn!(error = %e, "upload slot could not be handed out");
    StanzaError::new(DefinedCondition::InternalServerError)
}

fn not_acceptable(text: impl Into<String>) -> StanzaError {
    StanzaError::new(DefinedCondition::NotAcceptable).with_text(text)
}

impl UploadService {
    pub(crate) fn new(host: String, uploads: Arc<Uploads>) -> Self {
        UploadService { host, uploads }
    }

    fn info(&self) -> Element {
        DiscoInfoResult {
            node: None,
            identities: vec![Identity::new("store", "file").with_name("HTTP File Upload")],
            features: vec![
                ns::DISCO_INFO.to_owned(),
                upload::NS.to_owned(),
                ns::PING.to_owned(),
            ],
            extensions: vec![upload::info_form(self.uploads.settings.get().max_file_size)],
        }
        .to_element()
    }

    /// A slot for `from`, or the error §5 names.
    async fn slot(&self, from: &Jid, payload: &Element) -> Result<Element, StanzaError> {
        let settings = self.uploads.settings.get();
        let request = Request::try_from(payload).map_err(|e| match e {
            PayloadError::Invalid(t) | PayloadError::JidMalformed(t) => StanzaError::bad_request(t),
            PayloadError::Mismatch => StanzaError::service_unavailable(),
        })?;
        let owner = from.to_bare();
        if owner.node().is_none() {
            return Err(StanzaError::new(DefinedCondition::Forbidden)
                .with_text("only user accounts may upload"));
        }
        if !settings.allow_remote
            && !self
                .uploads
                .hosts
                .get()
                .iter()
                .any(|h| h == owner.domain().as_str())
        {
            return Err(StanzaError::new(DefinedCondition::Forbidden)
                .with_text("only users of this server may upload"));
        }
        slot::check_filename(&request.filename).map_err(|e| not_acceptable(e.to_string()))?;
        if request.size == 0 {
            return Err(not_acceptable("an empty file cannot be uploaded"));
        }
        if request.size > settings.max_file_size {
            // §5: not-acceptable (type modify) with the limit.
            return Err(not_acceptable(format!(
                "File too large. The maximum file size is {} bytes",
                settings.max_file_size
            ))
            .with_app(upload::file_too_large(settings.max_file_size)));
        }
        let content_type = match &request.content_type {
            Some(t) => Some(
                slot::check_content_type(t, &settings.allowed_content_types)
                    .map_err(|e| not_acceptable(e.to_string()))?,
            ),
            None if !settings.allowed_content_types.is_empty() => {
                return Err(not_acceptable("the service needs a content-type"));
            }
            None => None,
        };
        let Some(base) = self.uploads.base_url(&self.host) else {
            warn!(host = %self.host, "no base_url and no HTTPS listener: no upload slot");
            return Err(StanzaError::service_unavailable().with_text("no HTTPS address is set up"));
        };
        let now = now_secs();
        let id = slot::new_id().map_err(|e| internal(&e))?;
        let record = Record {
            name: request.filename.clone(),
            size: request.size,
            content_type,
            created: now,
            expires: now.saturating_add(settings.slot_ttl_secs),
            done: false,
        };
        self.reserve(&owner, &id, &record, now).await?;
        let key = self
            .uploads
            .key(owner.domain().as_str())
            .await
            .map_err(|e| internal(&e))?;
        let signature = slot::Signed {
            id: &id,
            name: &record.name,
            size: record.size,
            content_type: record.content_type.as_deref().unwrap_or(""),
            expires: record.expires,
            owner: owner.as_str(),
        }
        .sign(&key);
        let get = format!("{base}/upload/{id}/{}", slot::encode(&record.name));
        let put = format!(
            "{get}?o={}&e={}&s={signature}",
            slot::encode(owner.as_str()),
            record.expires
        );
        Ok(Slot {
            put,
            put_headers: Vec::new(),
            get,
        }
        .to_element())
    }

    /// Stores the slot's record if the owner's quota allows it (`resource-constraint` with
    /// `<retry/>` otherwise, §5), dropping the owner's expired unused slots on the way.
    async fn reserve(
        &self,
        owner: &BareJid,
        id: &str,
        record: &Record,
        now: u64,
    ) -> Result<(), StanzaError> {
        let settings = self.uploads.settings.get();
        let (host, user) = parts(owner);
        let map = &self.uploads.storage.map;
        let _quota = self.uploads.quota.lock().await;
        let mut used_bytes = 0u64;
        let mut used_files = 0u64;
        for (key, value) in map
            .list(host, user, crate::STORE)
            .await
            .map_err(|e| internal(&e))?
        {
            let Ok(existing) = serde_json::from_slice::<Record>(&value) else {
                continue;
            };
            if !existing.done && existing.expires < now {
                map.delete(host, user, crate::STORE, &key)
                    .await
                    .map_err(|e| internal(&e))?;
                continue;
            }
            used_bytes = used_bytes.saturating_add(existing.size);
            used_files += 1;
        }
        let over_bytes = settings.quota_bytes > 0
            && used_bytes.saturating_add(record.size) > settings.quota_bytes;
        if over_bytes || used_files >= settings.max_files {
            let retry = UNIX_EPOCH + Duration::from_secs(now + settings.slot_ttl_secs);
            let mut error =
                StanzaError::new(DefinedCondition::ResourceConstraint).with_text(format!(
                    "Quota reached: {used_files} files and {used_bytes} bytes are kept \
                     (at most {} files and {} bytes)",
                    settings.max_files, settings.quota_bytes
                ));
            error.error_type = ErrorType::Wait;
            return Err(error.with_app(upload::retry(&format_datetime(retry))));
        }
        self.uploads
            .put_record(owner, id, record)
            .await
            .map_err(|e| internal(&e))
    }
}

#[async_trait]
impl Service for UploadService {
    async fn handle(&self, _router: &Router, stanza: Stanza) -> Option<Stanza> {
        match stanza.kind() {
            StanzaKind::Presence => return None,
            StanzaKind::Message => return stanza.error_reply(&StanzaError::service_unavailable()),
            StanzaKind::Iq => {}
        }
        let to_service = stanza
            .to()
            .is_some_and(|to| to.node().is_none() && to.resource().is_none());
        let get = stanza.type_attr() == Some("get");
        let payload = stanza.iq_payload()?;
        let from = stanza.from()?.clone();
        let answer = match (to_service, get, payload.ns(), payload.name()) {
            (true, true, ns::DISCO_INFO, "query") if payload.attr("node").is_none() => {
                Ok(self.info())
            }
            (true, true, ns::DISCO_ITEMS, "query") if payload.attr("node").is_none() => {
                Ok(DiscoItemsResult::default().to_element())
            }
            (true, true, ns::PING, "ping") => return Some(stanza.iq_result(None)),
            (true, true, upload::NS, "request") => self.slot(&from, payload).await,
            _ => Err(StanzaError::service_unavailable()),
        };
        match answer {
            Ok(el) => Some(stanza.iq_result(Some(el))),
            Err(e) => stanza.error_reply(&e),
        }
    }
}
