//! Archive queries (§4), the form of supported fields (§4.1.1.1) and metadata (§5).
//!
//! # Paging
//!
//! The filters of the form (`with`, `start`, `end`, `before-id`, `after-id`, `ids`) select
//! the result set; RSM pages through it in chronological (append) order. `<after/>` and
//! `after-id` bound it from below (the later of the two wins), `<before/>` and `before-id`
//! from above. `<before/>` (with an id or empty) pages backwards from the end: the page is the
//! *last* `max` records before the bound. `<index/>` skips that many records from the start.
//! One more record than the page holds is read: if it exists the page is not `complete`
//! (§4.2.2: complete means the results were not limited by the page size, in the direction
//! paged). `<count/>` counts the whole set, `first@index` the records before the page.
//!
//! # Errors
//!
//! A field this server does not know is `feature-not-implemented` (§4.1.1.1); a `start` or
//! `end` that is not an XEP-0082 DateTime, or a `with` that is not a JID, is `bad-request`;
//! an id in `before-id`, `after-id`, `ids`, `<after/>` or `<before/>` that is not in the
//! archive is `item-not-found` (§4.1.2, §4.3.1).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use jid::{BareJid, FullJid, Jid};
use tracing::warn;
use xmppd_core::router::client_bytes;
use xmppd_core::storage::{ArchiveQuery, ArchiveRecord, ArchiveStore, MapStore, StorageError};
use xmppd_core::{IqHandler, IqRequest, Outbound};
use xmppd_im::parse_stored;
use xmppd_proto::data_form::{DataForm, FORM_TYPE};
use xmppd_proto::datetime::parse_datetime;
use xmppd_proto::delay::Delay;
use xmppd_proto::forwarded::Forwarded;
use xmppd_proto::mam::{ArchivedResult, Bound, Fin, Metadata, Query, fields_form};
use xmppd_proto::rsm::{Before, SetResult};
use xmppd_proto::{DefinedCondition, ErrorType, Stanza, StanzaError, StanzaKind, ns};
use xmppd_xml::Element;

use super::ids::IdCipher;
use super::{Inner, STORE, now_us, owner, time_of};

/// Most ids one `ids` field may name.
const MAX_IDS: usize = 1000;

/// Why a query is refused.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// Someone else's archive (§9.1).
    #[error("only the account itself may use its archive")]
    Forbidden,
    /// A form field this server does not support (§4.1.1.1).
    #[error("the field '{0}' is not supported")]
    UnknownField(String),
    /// A malformed value.
    #[error("{0}")]
    BadRequest(String),
    /// A referenced archive id does not exist (§4.1.2, §4.3.1).
    #[error("no message {0} in the archive")]
    NotFound(String),
    /// The requesting session cannot take results now.
    #[error("the session's queue is full; try again later")]
    Busy,
    /// The requester is not a bound session of the account.
    #[error("results can only go to a connected resource")]
    NoSession,
    /// Storage failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<QueryError> for StanzaError {
    fn from(e: QueryError) -> Self {
        let text = e.to_string();
        let condition = match e {
            QueryError::Forbidden => DefinedCondition::Forbidden,
            QueryError::UnknownField(_) => DefinedCondition::FeatureNotImplemented,
            QueryError::BadRequest(_) => DefinedCondition::BadRequest,
            QueryError::NotFound(_) => DefinedCondition::ItemNotFound,
            QueryError::Busy => DefinedCondition::ResourceConstraint,
            QueryError::NoSession => DefinedCondition::NotAcceptable,
            QueryError::Storage(ref s) => {
                warn!(error = %s, "archive query failed");
                return StanzaError::new(DefinedCondition::InternalServerError);
            }
        };
        let mut error = StanzaError::new(condition).with_text(text);
        if condition == DefinedCondition::ResourceConstraint {
            error.error_type = ErrorType::Wait;
        }
        error
    }
}

/// The filters of a query form.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    pub(crate) with: Option<Jid>,
    pub(crate) start_us: Option<i64>,
    pub(crate) end_us: Option<i64>,
    pub(crate) before_id: Option<String>,
    pub(crate) after_id: Option<String>,
    pub(crate) ids: Option<Vec<String>>,
}

/// Microseconds since the epoch of an XEP-0082 DateTime.
fn parse_time(var: &str, value: &str) -> Result<i64, QueryError> {
    let time = parse_datetime(value.trim()).ok_or_else(|| {
        QueryError::BadRequest(format!("'{var}' is not an XEP-0082 DateTime: '{value}'"))
    })?;
    Ok(match time.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(before) => -i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX),
    })
}

/// Reads the form's fields (§4.1.1). An empty field is no filter.
pub(crate) fn parse_form(form: Option<&DataForm>) -> Result<Filter, QueryError> {
    let mut filter = Filter::default();
    let Some(form) = form else {
        return Ok(filter);
    };
    for field in &form.fields {
        let var = field.var.as_deref().unwrap_or_default();
        let value = field.value().map(str::trim).filter(|v| !v.is_empty());
        match var {
            FORM_TYPE => {
                if value != Some(ns::MAM) {
                    return Err(QueryError::BadRequest(format!(
                        "FORM_TYPE must be {}",
                        ns::MAM
                    )));
                }
            }
            "with" => {
                filter.with = value
                    .map(|v| {
                        Jid::new(v).map_err(|e| QueryError::BadRequest(format!("'with' {v}: {e}")))
                    })
                    .transpose()?;
            }
            "start" => filter.start_us = value.map(|v| parse_time(var, v)).transpose()?,
            "end" => filter.end_us = value.map(|v| parse_time(var, v)).transpose()?,
            "before-id" => filter.before_id = value.map(str::to_owned),
            "after-id" => filter.after_id = value.map(str::to_owned),
            "ids" => {
                let ids: Vec<String> = field
                    .values
                    .iter()
                    .map(|v| v.trim().to_owned())
                    .filter(|v| !v.is_empty())
                    .collect();
                if ids.len() > MAX_IDS {
                    return Err(QueryError::BadRequest(format!(
                        "at most {MAX_IDS} ids in one query"
                    )));
                }
                filter.ids = Some(ids);
            }
            // §4.1.2: a user's archive here keeps no groupchat messages (rooms keep their
            // own), so `true` and `false` ask for the same results; the value must still be
            // a boolean (XEP-0004 §3.3).
            "include-groupchat" => {
                if !matches!(value, None | Some("true" | "false" | "1" | "0")) {
                    return Err(QueryError::BadRequest(
                        "'include-groupchat' must be a boolean".to_owned(),
                    ));
                }
            }
            other => return Err(QueryError::UnknownField(other.to_owned())),
        }
    }
    Ok(filter)
}

/// Numeric order of store ids (increasing decimals by the storage contract); others sort
/// first, which cannot happen once an id is known to exist.
fn id_key(id: &str) -> (u64, &str) {
    (id.parse().unwrap_or(0), id)
}

fn later(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if id_key(&a) >= id_key(&b) { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn earlier(a: Option<String>, b: Option<String>) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if id_key(&a) <= id_key(&b) { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// Answers `<query/>` (get: the form; set: a query) and `<metadata/>`.
pub(crate) struct QueryHandler(pub(crate) Arc<Inner>);

#[async_trait]
impl IqHandler for QueryHandler {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        let user = request.to;
        if request.from.to_bare() != *user {
            return Err(QueryError::Forbidden.into());
        }
        if request.payload.name() == "metadata" {
            return Ok(Some(self.0.metadata(user).await?.to_element()));
        }
        if request.stanza.type_attr() != Some("set") {
            return Ok(Some(fields_form(true, true)));
        }
        let query = Query::try_from(request.payload).map_err(StanzaError::from)?;
        let session = match request.from.try_as_full() {
            Ok(full) => request
                .router
                .sessions()
                .get(full)
                .ok_or(QueryError::NoSession)?,
            Err(_) => return Err(QueryError::NoSession.into()),
        };
        // Leave room for live traffic that arrives while the results are queued.
        let free = session.free_slots();
        let room = free.saturating_sub(free / 8 + 1);
        let page = self.0.page(user, &query, room).await?;
        for r in page.results {
            let message = result_message(user, &session.jid, r);
            if session.deliver(message).is_err() {
                break;
            }
        }
        Ok(Some(page.fin.to_element()))
    }
}

/// A selected page: the results in the order they are sent, and the `<fin/>`.
pub struct Page {
    /// The results, in the order they are sent.
    pub results: Vec<ArchivedResult>,
    /// The `<fin/>`.
    pub fin: Fin,
}

/// The `<message/>` carrying one result, from the archive (the user's bare JID) to the
/// requesting resource.
fn result_message(user: &BareJid, to: &FullJid, result: ArchivedResult) -> Outbound {
    let el = Element::new("message", ns::CLIENT)
        .with_attr("from", user.as_str())
        .with_attr("to", to.as_str())
        .with_child(result.to_element());
    let stanza = Stanza::new_unchecked(
        StanzaKind::Message,
        Some(Jid::from(user.clone())),
        Some(Jid::from(to.clone())),
        el,
    );
    Outbound {
        bytes: client_bytes(&stanza),
        reroute: None,
    }
}

/// One stored record as a result. A record that no longer parses keeps its place, id and
/// time with an empty placeholder message (§3.2 allows placeholders), so paging stays
/// consistent.
fn to_result(archive: &str, queryid: Option<&str>, record: ArchiveRecord) -> ArchivedResult {
    let message = parse_stored(&record.payload).unwrap_or_else(|| {
        warn!(
            archive,
            id = record.id,
            "an archived message is corrupt; sent as a placeholder"
        );
        Element::new("message", ns::CLIENT)
    });
    ArchivedResult {
        queryid: queryid.map(str::to_owned),
        id: record.id,
        forwarded: Forwarded::new(message).with_delay(Delay::new(time_of(record.timestamp_us))),
    }
}

/// One archive as a query reads it: the user archive of an account, or a MUC room's.
pub struct ArchiveView<'a> {
    /// The archive shape.
    pub archive: &'a dyn ArchiveStore,
    /// Its `(host, user, store)`.
    pub host: &'a str,
    /// See `host`.
    pub node: &'a str,
    /// See `host`.
    pub store: &'a str,
    /// The public ids of this archive's host.
    pub cipher: &'a IdCipher,
    /// Where ids kept from an import are (`imported_ids.rs`); `None` for archives that are
    /// never imported (rooms).
    pub imported: Option<&'a dyn MapStore>,
    /// Most results in a page.
    pub max_page: usize,
    /// The oldest time a query may see (retention not yet swept).
    pub visible_from: Option<i64>,
    /// The archive's name in logs.
    pub label: &'a str,
}

impl ArchiveView<'_> {
    /// Fails with `item-not-found` unless every id is in `user`'s archive.
    async fn check_ids_exist(&self, ids: BTreeSet<&str>) -> Result<(), QueryError> {
        if ids.is_empty() {
            return Ok(());
        }
        let probe = ArchiveQuery {
            ids: Some(ids.iter().map(|s| (*s).to_owned()).collect()),
            ..ArchiveQuery::default()
        };
        let found: BTreeSet<String> = self
            .archive
            .query(self.host, self.node, self.store, &probe)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect();
        match ids.into_iter().find(|id| !found.contains(*id)) {
            Some(missing) => Err(QueryError::NotFound(missing.to_owned())),
            None => Ok(()),
        }
    }

    /// Selects the page `query` asks for, at most `room` results.
    pub async fn page(&self, query: &Query, room: usize) -> Result<Page, QueryError> {
        let mut filter = parse_form(query.form.as_ref())?;
        let mut set = query.set.clone().unwrap_or_default();
        // Public ids to store ids; one this server never handed out (nor kept from an
        // import) is not in the archive.
        let kept = self.kept_ids().await?;
        filter.before_id = self.decode_opt(kept, filter.before_id.as_ref()).await?;
        filter.after_id = self.decode_opt(kept, filter.after_id.as_ref()).await?;
        if let Some(ids) = &mut filter.ids {
            for id in ids.iter_mut() {
                *id = self.decode_id(kept, id).await?;
            }
        }
        set.after = self.decode_opt(kept, set.after.as_ref()).await?;
        let rsm_before = match &set.before {
            Some(Before::Item(id)) => Some(self.decode_id(kept, id).await?),
            _ => None,
        };
        let mut referenced: BTreeSet<&str> = BTreeSet::new();
        for id in [&filter.before_id, &filter.after_id, &set.after, &rsm_before]
            .into_iter()
            .flatten()
        {
            referenced.insert(id);
        }
        referenced.extend(filter.ids.iter().flatten().map(String::as_str));
        self.check_ids_exist(referenced).await?;

        let start_us = match (filter.start_us, self.visible_from) {
            (Some(s), Some(v)) => Some(s.max(v)),
            (s, v) => s.or(v),
        };
        let base = ArchiveQuery {
            with_resources: filter.with.as_ref().is_some_and(|w| w.resource().is_none()),
            with: filter.with.map(|w| w.as_str().to_owned()),
            start_us,
            end_us: filter.end_us,
            after_id: filter.after_id,
            before_id: filter.before_id,
            ids: filter.ids,
            ..ArchiveQuery::default()
        };
        let (host, node, store) = (self.host, self.node, self.store);
        let archive = self.archive;
        let count = archive.count_matching(host, node, store, &base).await?;
        let max_page = self.max_page;
        let max = set.max.unwrap_or(max_page).min(max_page);
        if max == 0 {
            // RSM §2.6: only the count.
            let fin = Fin {
                complete: count == 0,
                set: SetResult::empty(count_usize(count)),
            };
            return Ok(Page {
                results: Vec::new(),
                fin,
            });
        }
        let max = max.min(room);
        if max == 0 {
            return Err(QueryError::Busy);
        }

        let backwards = set.index.is_none() && set.before.is_some();
        let mut q = ArchiveQuery {
            limit: Some(u32::try_from(max + 1).unwrap_or(u32::MAX)),
            reverse: backwards,
            ..base.clone()
        };
        if let Some(index) = set.index {
            q.offset = Some(u32::try_from(index).unwrap_or(u32::MAX));
        } else {
            q.after_id = later(q.after_id, set.after.clone());
            q.before_id = earlier(q.before_id, rsm_before);
        }
        let mut records = archive.query(host, node, store, &q).await?;
        let complete = records.len() <= max;
        if !complete {
            if backwards {
                records.remove(0);
            } else {
                records.truncate(max);
            }
        }
        let first_index = match (set.index, records.first()) {
            (_, None) => None,
            (Some(index), Some(_)) => Some(index),
            (None, Some(first)) => {
                let before_first = ArchiveQuery {
                    before_id: Some(first.id.clone()),
                    ..base
                };
                let n = archive
                    .count_matching(host, node, store, &before_first)
                    .await?;
                Some(count_usize(n))
            }
        };
        for r in &mut records {
            r.id = self.encode_id(kept, &r.id).await?;
        }
        let set = SetResult {
            first: records.first().map(|r| r.id.clone()),
            first_index,
            last: records.last().map(|r| r.id.clone()),
            count: Some(count_usize(count)),
        };
        if query.flip_page {
            records.reverse();
        }
        let queryid = query.queryid.as_deref();
        let results = records
            .into_iter()
            .map(|r| to_result(self.label, queryid, r))
            .collect();
        Ok(Page {
            results,
            fin: Fin { complete, set },
        })
    }
}

impl Inner {
    /// The oldest time a query may see: records past retention may not be trimmed yet.
    fn visible_from(&self) -> Option<i64> {
        self.settings.get().expire_before_us(now_us())
    }

    /// Runs `f` on the view of `user`'s archive.
    async fn with_view<T>(
        &self,
        user: &BareJid,
        f: impl AsyncFnOnce(ArchiveView<'_>) -> Result<T, QueryError>,
    ) -> Result<T, QueryError> {
        // Messages go on while their commits run (`Inner::archive`): a query finds every one
        // that went out before it was asked.
        self.writer.flush().await;
        let (host, node) = owner(user);
        let cipher = self.ids.cipher(user.domain().as_str()).await?;
        let label = user.to_string();
        f(ArchiveView {
            archive: &*self.storage.archive,
            host,
            node,
            store: STORE,
            cipher: &cipher,
            imported: Some(&*self.storage.map),
            max_page: self.settings.get().max_page.get(),
            visible_from: self.visible_from(),
            label: &label,
        })
        .await
    }

    /// Selects the page `query` asks for in `user`'s archive, at most `room` results.
    pub(crate) async fn page(
        &self,
        user: &BareJid,
        query: &Query,
        room: usize,
    ) -> Result<Page, QueryError> {
        self.with_view(user, async |view| view.page(query, room).await)
            .await
    }

    /// The archive's first and last messages (§5).
    pub(crate) async fn metadata(&self, user: &BareJid) -> Result<Metadata, QueryError> {
        self.with_view(user, async |view| view.metadata().await)
            .await
    }
}

impl ArchiveView<'_> {
    /// The archive's first and last messages (§5).
    pub async fn metadata(&self) -> Result<Metadata, QueryError> {
        let end = |reverse| ArchiveQuery {
            start_us: self.visible_from,
            limit: Some(1),
            reverse,
            ..ArchiveQuery::default()
        };
        let (host, node, store) = (self.host, self.node, self.store);
        let first = self.archive.query(host, node, store, &end(false)).await?;
        let last = self.archive.query(host, node, store, &end(true)).await?;
        let (Some(first), Some(last)) = (first.first(), last.first()) else {
            return Ok(Metadata { bounds: None });
        };
        let kept = self.kept_ids().await?;
        let bound = async |r: &ArchiveRecord| {
            Ok::<_, QueryError>(Bound {
                id: self.encode_id(kept, &r.id).await?,
                timestamp: time_of(r.timestamp_us),
            })
        };
        Ok(Metadata {
            bounds: Some((bound(first).await?, bound(last).await?)),
        })
    }
}

fn count_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}
