//! The hooks that archive each message: the sender's copy before routing
//! ([`OutboundHook`]), the recipient's before delivery ([`InboundHook`]), and the removal of
//! the sender's archive id once carbons copied it ([`Unstamp`]). The module docs say what is
//! archived and when a message counts as handled.

use async_trait::async_trait;
use jid::{BareJid, Jid};
use tracing::warn;
use xmppd_core::completion;
use xmppd_core::router::client_bytes;
use xmppd_core::storage::{ArchiveAppend, NewArchiveRecord};
use xmppd_core::{Flow, InboundHook, OutboundHook, Router, SessionRef};
use xmppd_proto::stanza_id::StanzaId;
use xmppd_proto::{DefinedCondition, Stanza, StanzaError, StanzaKind, ns};

use super::{
    ArchiveError, DefaultSetting, Inner, STORE, keep_last, now_us, owner, rules,
    sent_but_not_archived,
};

/// The error a sender sees when its message could not be archived.
fn not_archived() -> StanzaError {
    StanzaError::new(DefinedCondition::InternalServerError)
        .with_text("the message could not be archived; it was not sent")
}

impl Inner {
    /// Archives `stanza` in `account`'s archive as exchanged with `peer`; the archive id.
    ///
    /// While a client's stanza is routed ([`completion::deferring`]) the record gets an id
    /// reserved ahead and the message goes on at once: only the sender's acknowledgement
    /// waits for the commit ([`completion::defer`]), and should the commit fail the sender
    /// gets an error naming the message ([`sent_but_not_archived`]). Otherwise the commit is awaited here.
    async fn archive(
        &self,
        account: &BareJid,
        peer: &Jid,
        stanza: &Stanza,
    ) -> Result<String, ArchiveError> {
        let (host, user) = owner(account);
        let now = now_us();
        let settings = self.settings.get();
        let max = settings.max_messages;
        let mut append = ArchiveAppend {
            host: host.to_owned(),
            user: user.to_owned(),
            store: STORE.to_owned(),
            record: NewArchiveRecord {
                with: peer.as_str().to_owned(),
                timestamp_us: now,
                payload: client_bytes(stanza).to_vec(),
            },
            id: None,
            keep_last: keep_last(max),
            expire_before_us: settings.expire_before_us(now),
            keep_bytes: (settings.max_bytes > 0).then_some(settings.max_bytes),
        };
        if !completion::deferring() {
            return self.writer.append(append).await;
        }
        let id = self.writer.reserve_id().await?;
        append.id = Some(id.clone());
        let (completer, deferred) = completion::completion();
        // What the error needs, not the error: it is built only should the commit fail.
        let sender = stanza.from().cloned();
        let sent_to = stanza.to().cloned();
        let message_id = stanza.id().map(str::to_owned);
        let router = self.router.clone();
        let account = account.clone();
        self.writer
            .submit_then(append, move |result| {
                if let Err(e) = result {
                    warn!(%account, error = %e, "a message went on but could not be archived");
                    if let (Some(sender), Some(router)) = (sender, router.get()) {
                        let failed = sent_but_not_archived(
                            sender,
                            sent_to,
                            message_id,
                            "the message was sent but could not be archived",
                        );
                        tokio::spawn(async move { router.route(failed).await });
                    }
                }
                completer.complete();
            })
            .await?;
        // Collected: deferring() said a client stanza is being routed.
        let _ = completion::defer(deferred);
        Ok(id)
    }

    /// Whether the user's preferences let a message with `peer` be archived.
    async fn wanted(&self, account: &BareJid, peer: &Jid) -> bool {
        match self.prefs.allows(account, peer).await {
            Ok(allowed) => allowed,
            Err(e) => {
                // Unreadable preferences fall back to the server's default: failing closed
                // would lose history the user expects, failing open could archive what the
                // user excluded; the server's configured default is the operator's choice.
                warn!(%account, error = %e, "archive preferences unreadable; using the default");
                self.settings.get().default != DefaultSetting::Never
            }
        }
    }
}

#[async_trait]
impl OutboundHook for Inner {
    async fn outbound(&self, _router: &Router, session: SessionRef<'_>, stanza: Stanza) -> Flow {
        if stanza.kind() != StanzaKind::Message || !rules::archivable(stanza.element()) {
            return Flow::Continue(stanza);
        }
        let account = session.jid.to_bare();
        let Some(peer) = stanza.to() else {
            // To the user's own account: archived once, by the inbound hook.
            return Flow::Continue(stanza);
        };
        if peer.to_bare() == account || !self.wanted(&account, peer).await {
            return Flow::Continue(stanza);
        }
        // A claim of the sender's own archive's id is the client's forgery: neither archived
        // nor copied (XEP-0359 §3 rule 2).
        let archive_jid = Jid::from(account.clone());
        let peer = peer.clone();
        let stanza = rules::without_stanza_ids_by(stanza, &archive_jid);
        let archived = match self.ids.cipher(account.domain().as_str()).await {
            Ok(cipher) => self
                .archive(&account, &peer, &stanza)
                .await
                .map(|id| cipher.encode(&id)),
            Err(e) => Err(e.into()),
        };
        match archived {
            // The archive's id rides along to the `sent` carbons of the sender's other
            // resources, which can then match the message with what a MAM query returns;
            // [`Unstamp`] takes it off before the message leaves.
            Ok(id) => Flow::Continue(rules::with_child(
                stanza,
                StanzaId::new(id, archive_jid).to_element(),
            )),
            Err(e) => {
                warn!(%account, error = %e, "outgoing message not archived; bounced");
                Flow::bounce(&stanza, &not_archived())
            }
        }
    }
}

/// Takes the sender's archive's stanza-id off an outgoing message once carbons copied it:
/// it names a record of the sender's archive, which is nobody else's business.
pub(super) struct Unstamp;

#[async_trait]
impl OutboundHook for Unstamp {
    async fn outbound(&self, _router: &Router, session: SessionRef<'_>, stanza: Stanza) -> Flow {
        Flow::Continue(rules::without_stanza_ids_by(
            stanza,
            &Jid::from(session.jid.to_bare()),
        ))
    }
}

#[async_trait]
impl InboundHook for Inner {
    fn applies(&self, _router: &Router, stanza: &Stanza) -> bool {
        stanza.kind() == StanzaKind::Message && rules::concerns_recipient(stanza.element())
    }

    async fn inbound(&self, _router: &Router, stanza: Stanza, account: &BareJid) -> Flow {
        if stanza.kind() != StanzaKind::Message {
            return Flow::Continue(stanza);
        }
        self.receive(stanza, account).await
    }
}

impl Inner {
    /// The recipient's side of a message to `account`: forged stanza-ids out, the archive
    /// copy committed, the archive's stanza-id in.
    pub(crate) async fn receive(&self, stanza: Stanza, account: &BareJid) -> Flow {
        let archive_jid = Jid::from(account.clone());
        if self.already_archived(account, &archive_jid, &stanza).await {
            return Flow::Continue(stanza);
        }
        let mut stanza = rules::without_stanza_ids_by(stanza, &archive_jid);
        if !rules::archivable(stanza.element()) {
            return Flow::Continue(stanza);
        }
        let Some(peer) = stanza.from().cloned() else {
            return Flow::Continue(stanza);
        };
        if !self.wanted(account, &peer).await {
            return Flow::Continue(stanza);
        }
        // The key first: a message archived under an id nobody can be told would be lost.
        let archived = match self.ids.cipher(account.domain().as_str()).await {
            Ok(cipher) => self
                .archive(account, &peer, &stanza)
                .await
                .map(|id| cipher.encode(&id)),
            Err(e) => Err(e.into()),
        };
        match archived {
            Ok(id) => {
                stanza = rules::with_child(stanza, StanzaId::new(id, archive_jid).to_element());
                Flow::Continue(stanza)
            }
            Err(e) => {
                warn!(%account, error = %e, "incoming message not archived; bounced");
                Flow::bounce(&stanza, &not_archived())
            }
        }
    }

    /// Whether `stanza` is a message this hook already archived and stamped, routed again
    /// (a session that ended with it unwritten hands it back to the router): it carries
    /// exactly one stanza-id by the account, naming a record of the account's archive whose
    /// stored message is this one without that stanza-id. §8.1.1 stores a message once per
    /// archive. A sender cannot pass a forgery through here: it would need the id of its own
    /// message in the recipient's archive, and then it would only keep it from being stored
    /// twice.
    async fn already_archived(&self, account: &BareJid, by: &Jid, stanza: &Stanza) -> bool {
        let mut claimed = stanza
            .element()
            .children()
            .filter(|c| c.is("stanza-id", ns::SID))
            .filter_map(|c| StanzaId::try_from(c).ok())
            .filter(|s| s.by == *by);
        let (Some(claim), None) = (claimed.next(), claimed.next()) else {
            return false;
        };
        let Ok(cipher) = self.ids.cipher(account.domain().as_str()).await else {
            return false;
        };
        let Some(store_id) = cipher.decode(&claim.id) else {
            return false;
        };
        // Its record may still be on its way to a commit.
        self.writer.flush().await;
        let (host, user) = owner(account);
        let probe = xmppd_core::storage::ArchiveQuery {
            ids: Some(vec![store_id]),
            ..Default::default()
        };
        let Ok(records) = self.storage.archive.query(host, user, STORE, &probe).await else {
            return false;
        };
        let Some(record) = records.first() else {
            return false;
        };
        let without = rules::without_stanza_ids_by(stanza.clone(), by);
        record.payload == client_bytes(&without).as_ref()
    }
}
