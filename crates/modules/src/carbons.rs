//! XEP-0280: Message Carbons (version 1.0.1), with the rules of `urn:xmpp:carbons:rules:0`.
//!
//! A resource that sent `<enable/>` (§4) receives a copy of every instant message its account
//! sends or receives on its other resources: `<sent/>` copies of what they send (§8),
//! `<received/>` copies of what reaches the account but not this resource (§7). The switch is
//! per session, a marker in the session's [`xmppd_core::Extensions`] that nobody else can name;
//! it ends with the session (and moves with it on stream management resumption).
//!
//! # Where the copies are made
//!
//! - **Sent**: an outbound hook sees each message a client session sends, with its `from`
//!   stamped, before it is routed, and copies it to the account's other carbons-enabled
//!   sessions ("irrespective of whether the sending client has carbons enabled", §8). A
//!   message to the user's own account is left to the received side, which sees where it
//!   went, so no resource gets it twice.
//! - **Received**: only the router knows which sessions RFC 6121 §8.5 gave a message (the
//!   highest priority resources for a bare JID, the session of a full JID, the bare JID's
//!   resources when that session is gone), so the copies are made by a delivered hook, which
//!   the router runs with the list of sessions that took the original. Every carbons-enabled
//!   session not in that list gets a `<received/>` copy (§7: "each Carbons-enabled resource …
//!   that did not receive it"), also when the original went to offline storage because no
//!   resource had a non-negative priority. Offline messages delivered later, at a login, are
//!   not routed again and so are never copied: the sessions that had carbons on when the
//!   message came got their copy then.
//!
//! A copy is `<message from='user@domain' to='user@domain/resource' type='…'>` (the original's
//! type, §7/§8) around the original, queued straight onto the session, never routed: it must
//! not meet the hooks again (an archive would store it twice, carbons would copy the copy),
//! and it is dropped rather than rerouted when its session ends before writing it — rerouted,
//! a copy for a vanished resource would fall back to the bare JID and land in offline storage,
//! and §10.3 forbids bouncing it to the sender.
//!
//! # What it costs when unused
//!
//! Both hooks see every message, so the module counts the sessions of this node that enabled
//! carbons (an upper bound: a session replaced by a new one for the same resource is not
//! told it ends, and stays counted) and does nothing while the count is zero, which is where
//! a server whose clients never enable carbons stays.
//!
//! # Which messages (§6.1, all of them, as `carbons:rules:0` promises)
//!
//! [`eligible`] encodes the list and the table test below walks it: `chat`; `normal` with a
//! body, or with a receipt (XEP-0184), a chat state (XEP-0085), a chat marker (XEP-0333), a
//! direct (XEP-0249) or mediated (XEP-0045 §7.8.2) invitation; an `error` received from a bare
//! JID (the bounce of a message sent to an account or a server, the way one-to-one messages
//! are addressed: the RFC 6120 §8.3.1 bounce need not carry the original, so this is how the
//! server can tell it answers an eligible message); a private message to a MUC occupant;
//! never `groupchat`, `headline`, a private message *from* an occupant (the room copies
//! those to all the user's joined clients itself), or a message with `<private/>` (§9) or the
//! XEP-0334 `<no-copy/>` hint. `<private/>` stays in the delivered message: version 1.0.1 lifted
//! the earlier rule to strip it (a sender could otherwise silently change what the
//! recipient's other clients see).
//!
//! # Security (§11)
//!
//! A copy is genuine only if it comes from the user's own bare JID, and clients must ignore
//! any other. The server stamps `from` on everything a client sends with the client's *full*
//! JID, so a client cannot make a stanza appear from its bare JID; a `<sent/>` or `<received/>`
//! wrapper it (or a contact, or another server) puts in a message is delivered as it is, from
//! that sender, for the recipient to reject. What the server must not do is lend such a
//! wrapper its own authority by copying it: a copy of it would arrive from the bare JID with
//! a forged carbon one level down. A message carrying a carbons wrapper is therefore never
//! copied, either way.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use jid::{BareJid, FullJid, Jid};
use xmppd_core::router::client_bytes;
use xmppd_core::session::ResourceInfo;
use xmppd_core::{
    DeliveredHook, Extensions, Flow, IqHandler, IqRequest, IqTarget, IqType, KindMask, Module,
    Outbound, OutboundHook, Registry, Router, SessionEvent, SessionHook, SessionRef,
    SessionStateHook,
};
use xmppd_proto::carbons::{Carbon, CarbonsCommand, Direction, has_carbon, is_private};
use xmppd_proto::{DefinedCondition, Stanza, StanzaError, StanzaKind, ns};
use xmppd_xml::Element;

/// XEP-0045: the `<x/>` of MUC users, in occupants' private messages and in invitations.
const MUC_USER: &str = "http://jabber.org/protocol/muc#user";
/// XEP-0249: direct MUC invitations.
const CONFERENCE: &str = "jabber:x:conference";
/// XEP-0184: message delivery receipts.
const RECEIPTS: &str = "urn:xmpp:receipts";
/// XEP-0085: chat state notifications.
const CHAT_STATES: &str = "http://jabber.org/protocol/chatstates";
/// XEP-0333: chat markers.
const CHAT_MARKERS: &str = "urn:xmpp:chat-markers:0";

/// Hook priority: after every other subscriber, so that the copy is of the message as it is
/// routed or delivered, and nothing is copied that another hook stops.
const PRIORITY: i32 = -100;

/// The message carbons module.
#[derive(Debug, Default)]
pub struct Carbons {
    enabled: Arc<EnabledCount>,
}

/// How many sessions of this node have carbons on (at most; see the module documentation).
#[derive(Debug, Default)]
struct EnabledCount(AtomicUsize);

impl EnabledCount {
    /// Whether some session may have carbons on.
    fn any(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }

    fn up(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// One fewer: only ever called after taking a session's marker, so it never goes below
    /// the sessions that still have one.
    fn down(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Takes the marker off a session's state, counting it.
    fn disable(&self, ext: &Extensions) {
        if ext.remove::<Enabled>().is_some() {
            self.down();
        }
    }
}

/// The marker of a session that enabled carbons.
#[derive(Debug)]
struct Enabled;

/// Whether the session of `ext` enabled carbons.
fn enabled(ext: &Extensions) -> bool {
    ext.get::<Enabled>().is_some()
}

impl Module for Carbons {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        // §4 and §5 send the iq without `to` (the account); some clients address the server.
        for target in [IqTarget::Account, IqTarget::Server] {
            for command in [CarbonsCommand::Enable, CarbonsCommand::Disable] {
                let name = command.name();
                let toggle = Arc::new(Toggle(self.enabled.clone()));
                registry.iq(target, IqType::Set, ns::CARBONS, name, toggle);
                registry.iq(target, IqType::Get, ns::CARBONS, name, Arc::new(NotAGet));
            }
        }
        let copier = Arc::new(Copier(self.enabled.clone()));
        registry.outbound(PRIORITY, KindMask::MESSAGE, copier.clone());
        registry.delivered(PRIORITY, copier);
        registry.session(PRIORITY, Arc::new(Closing(self.enabled.clone())));
        registry.session_state(Arc::new(Saved(self.enabled.clone())));
        registry.server_feature(ns::CARBONS);
        registry.server_feature(ns::CARBONS_RULES);
    }
}

/// Carbons stay enabled for a session saved across a restart (XEP-0198 resumption).
struct Saved(Arc<EnabledCount>);

impl SessionStateHook for Saved {
    fn save(&self, ext: &Extensions) -> Option<serde_json::Value> {
        enabled(ext).then_some(serde_json::Value::Bool(true))
    }

    fn restore(&self, ext: &Extensions, value: &serde_json::Value) {
        if value.as_bool() == Some(true) && ext.insert(Enabled).is_none() {
            self.0.up();
        }
    }
}

/// `<enable/>` and `<disable/>` (§4, §5).
struct Toggle(Arc<EnabledCount>);

#[async_trait]
impl IqHandler for Toggle {
    async fn handle(&self, request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        let command = CarbonsCommand::try_from(request.payload)?;
        let session = requesting_session(&request)?;
        // §10.1: enabling twice, or disabling twice, is no error.
        match command {
            CarbonsCommand::Enable => {
                if session.ext().insert(Enabled).is_none() {
                    self.0.up();
                }
            }
            CarbonsCommand::Disable => self.0.disable(session.ext()),
        }
        Ok(None)
    }
}

/// The session of the client asking to switch its own carbons. §4.1 and §5.1 answer
/// `not-allowed` to a client not hosted here, and §5 to one switching another client's
/// carbons, i.e. a request to another account.
fn requesting_session(request: &IqRequest<'_>) -> Result<ResourceInfo, StanzaError> {
    let not_allowed = |text: &str| StanzaError::new(DefinedCondition::NotAllowed).with_text(text);
    let Ok(from) = request.from.try_as_full() else {
        return Err(not_allowed("carbons are switched by a client session"));
    };
    let own = match request.to.node() {
        Some(_) => from.to_bare() == *request.to,
        None => from.domain() == request.to.domain(),
    };
    if !own {
        return Err(not_allowed("only a client's own carbons can be switched"));
    }
    request
        .router
        .sessions()
        .get(from)
        .ok_or_else(|| not_allowed("the client is not connected to this server"))
}

/// An iq get of `<enable/>` or `<disable/>`: the payload is ours, the request makes no sense.
struct NotAGet;

#[async_trait]
impl IqHandler for NotAGet {
    async fn handle(&self, _request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        Err(StanzaError::bad_request(
            "carbons are enabled and disabled with an iq set (XEP-0280 §4, §5)",
        ))
    }
}

/// Which way a message goes, for the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// Sent by a local client session.
    Sent,
    /// Received by a local account.
    Received,
}

/// §6.1: whether `stanza` (a message) is copied when it goes `way`.
pub fn eligible(stanza: &Stanza, way: Way) -> bool {
    let el = stanza.element();
    if stanza.kind() != StanzaKind::Message || is_private(el) || has_carbon(el) {
        return false;
    }
    let from_full = stanza.from().is_some_and(|f| f.resource().is_some());
    let muc_user = el.child("x", MUC_USER);
    // "A private message from a MUC participant (received from a full JID) … SHOULD NOT".
    if way == Way::Received && from_full && muc_user.is_some() {
        return false;
    }
    match stanza.type_attr().unwrap_or("normal") {
        "chat" => true,
        "groupchat" | "headline" => false,
        // The bounce of a message the user sent to an account or server (see the module
        // documentation).
        "error" => way == Way::Received && !from_full,
        // `normal`, and unknown types, which RFC 6121 §5.2.2 treats as normal.
        _ => {
            el.has_child("body", ns::CLIENT)
                || el
                    .children()
                    .any(|c| matches!(c.ns(), RECEIPTS | CHAT_STATES | CHAT_MARKERS | CONFERENCE))
                || muc_user.is_some_and(|x| x.has_child("invite", MUC_USER))
        }
    }
}

/// A session that ends no longer counts.
struct Closing(Arc<EnabledCount>);

#[async_trait]
impl SessionHook for Closing {
    fn wants(&self, event: &SessionEvent<'_>) -> bool {
        matches!(event, SessionEvent::Closed)
    }

    async fn session_event(
        &self,
        _router: &Router,
        session: SessionRef<'_>,
        _event: &SessionEvent<'_>,
    ) {
        self.0.disable(session.ext);
    }
}

/// Copies messages both ways.
struct Copier(Arc<EnabledCount>);

#[async_trait]
impl OutboundHook for Copier {
    async fn outbound(&self, router: &Router, session: SessionRef<'_>, stanza: Stanza) -> Flow {
        if !self.0.any() || !eligible(&stanza, Way::Sent) {
            return Flow::Continue(stanza);
        }
        let account = session.jid.to_bare();
        // A message without `to` is for the sender's own account (RFC 6120 §10.3).
        let to_own_account = stanza.to().is_none_or(|to| to.to_bare() == account);
        if !to_own_account {
            copy(router, &stanza, Direction::Sent, &account, |jid| {
                jid == session.jid
            });
        }
        Flow::Continue(stanza)
    }
}

#[async_trait]
impl DeliveredHook for Copier {
    fn applies(&self, _router: &Router, stanza: &Stanza) -> bool {
        self.0.any() && eligible(stanza, Way::Received)
    }

    async fn delivered(
        &self,
        router: &Router,
        stanza: &Stanza,
        account: &BareJid,
        recipients: &[FullJid],
    ) {
        // The bounce of a message the user sent to their own account: that message was
        // left to this side and never delivered, so no resource has a copy to match it.
        if stanza.is_error() && stanza.from().is_some_and(|f| f.to_bare() == *account) {
            return;
        }
        // A message between two resources of the account: its sender knows it already.
        let sender = stanza.from().and_then(|f| f.try_as_full().ok());
        copy(router, stanza, Direction::Received, account, |jid| {
            recipients.contains(jid) || sender == Some(jid)
        });
    }
}

/// Queues a copy of `original` wrapped as `direction` for each carbons-enabled session of
/// `account` that `skip` does not exclude.
fn copy(
    router: &Router,
    original: &Stanza,
    direction: Direction,
    account: &BareJid,
    skip: impl Fn(&FullJid) -> bool,
) {
    let targets: Vec<ResourceInfo> = router
        .sessions()
        .resources(account)
        .into_iter()
        .filter(|r| !skip(&r.jid) && enabled(r.ext()))
        .collect();
    if targets.is_empty() {
        return;
    }
    let from = Jid::from(account.clone());
    let carbon = Carbon::new(direction, original.element().clone()).to_element();
    for target in targets {
        let to = Jid::from(target.jid.clone());
        let copy = wrapper(original, &from, &to, carbon.clone());
        let outbound = Outbound {
            bytes: client_bytes(&copy),
            // Dropped, not rerouted, if the session ends first (see the module documentation).
            reroute: None,
        };
        if let Err(e) = target.deliver(outbound) {
            tracing::debug!(to = %target.jid, error = %e, "carbon copy not delivered");
        }
    }
}

/// `<message from='account' to='resource' type='…'>` around `carbon` (§7, §8).
fn wrapper(original: &Stanza, from: &Jid, to: &Jid, carbon: Element) -> Stanza {
    let mut el = Element::new("message", ns::CLIENT)
        .with_attr("from", from.as_str())
        .with_attr("to", to.as_str());
    if let Some(kind) = original.type_attr() {
        el.set_attr("type", kind);
    }
    el.push_child(carbon);
    Stanza::new_unchecked(
        StanzaKind::Message,
        Some(from.clone()),
        Some(to.clone()),
        el,
    )
}

#[cfg(test)]
#[path = "carbons_tests.rs"]
mod tests;
