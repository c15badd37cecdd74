//! The router's side of the hook points: each point is run from exactly one function here.

use std::sync::Arc;

use jid::{BareJid, FullJid, Jid};
use xmppd_proto::{Stanza, StanzaKind};

use super::{Router, client_bytes, readdress};
use crate::completion::Completion;
use crate::hooks::{Flow, SessionEvent, SessionRef, Subscription};
use crate::module::ModuleId;
use crate::outbound::Outbound;
use crate::session::ResourceInfo;

impl Router {
    /// Whether `module` runs for a stanza between `from` and `to`: on the host of either end
    /// that is served here (a block list belongs to whichever end is ours).
    fn runs_between(&self, module: ModuleId, stanza: &Stanza) -> bool {
        if !self.registry.restricts_hosts() {
            return true;
        }
        let on = |jid: Option<&Jid>| {
            jid.is_some_and(|j| {
                let domain = j.domain().as_str();
                self.is_local_domain(domain) && self.registry.enabled(domain, module)
            })
        };
        on(stanza.from()) || on(stanza.to())
    }

    /// Whether any pre-route filter applies to `stanza` (checked without waiting).
    pub(super) fn pre_route_applies(&self, stanza: &Stanza) -> bool {
        self.registry
            .hooks
            .pre_route
            .iter()
            .any(|sub| self.runs_between(sub.module, stanza) && sub.hook.applies(self, stanza))
    }

    /// The pre-route filters, in priority order.
    pub(super) async fn run_pre_route(&self, mut stanza: Stanza) -> Flow {
        for sub in self.registry.hooks.pre_route.iter() {
            if !self.runs_between(sub.module, &stanza) || !sub.hook.applies(self, &stanza) {
                continue;
            }
            stanza = match sub.hook.pre_route(self, stanza).await {
                Flow::Continue(stanza) => stanza,
                stop => return stop,
            };
        }
        Flow::Continue(stanza)
    }

    /// The inbound hooks for a message or presence to the existing local account `account`.
    pub(super) async fn run_inbound(&self, mut stanza: Stanza, account: &BareJid) -> Flow {
        let host = account.domain().as_str();
        let kind = stanza.kind();
        for sub in self.registry.hooks.inbound.iter() {
            if !sub.kinds.contains(kind)
                || !self.registry.enabled(host, sub.module)
                || !sub.hook.applies(self, &stanza)
            {
                continue;
            }
            stanza = match sub.hook.inbound(self, stanza, account).await {
                Flow::Continue(stanza) => stanza,
                stop => return stop,
            };
        }
        Flow::Continue(stanza)
    }

    /// The delivered hooks for a message the local account `account` has taken: queued for
    /// `recipients`, or stored offline (`recipients` empty).
    pub(super) async fn run_delivered(
        &self,
        stanza: &Stanza,
        account: &BareJid,
        recipients: &[FullJid],
    ) {
        let hooks = &self.registry.hooks.delivered;
        if !hooks.wants(stanza.kind()) {
            return;
        }
        let host = account.domain().as_str();
        for sub in hooks.iter() {
            if self.registry.enabled(host, sub.module) && sub.hook.applies(self, stanza) {
                sub.hook.delivered(self, stanza, account, recipients).await;
            }
        }
    }

    /// [`Router::run_delivered`] for the sessions a message was queued for (none: nothing
    /// is run, the message reached nobody).
    pub(super) async fn delivered_to_sessions(
        &self,
        stanza: &Stanza,
        account: &BareJid,
        sessions: &[ResourceInfo],
    ) {
        if sessions.is_empty() || !self.registry.hooks.delivered.wants(stanza.kind()) {
            return;
        }
        let recipients: Vec<FullJid> = sessions.iter().map(|r| r.jid.clone()).collect();
        self.run_delivered(stanza, account, &recipients).await;
    }

    /// An iq result or error to the server or to the account `to`: the first iq response
    /// hook (enabled on `to`'s host) that claims it gets it.
    pub(super) async fn run_iq_response(&self, stanza: &Stanza, to: &BareJid) {
        let host = to.domain().as_str();
        let claimed = self
            .registry
            .hooks
            .iq_response
            .iter()
            .find(|sub| self.registry.enabled(host, sub.module) && sub.hook.claims(stanza));
        if let Some(sub) = claimed {
            sub.hook.iq_response(self, stanza, to).await;
        }
    }

    /// The subscription between the local account `user` and `contact` changed from `old` to
    /// `new` and is stored: the subscription hooks enabled on `user`'s host run in priority
    /// order. The roster's owner (the IM module) calls it; nothing happens when the state is
    /// the same.
    pub async fn subscription_changed(
        &self,
        user: &BareJid,
        contact: &BareJid,
        old: Subscription,
        new: Subscription,
    ) {
        if old == new {
            return;
        }
        let host = user.domain().as_str();
        for sub in self.registry.hooks.subscription.iter() {
            if self.registry.enabled(host, sub.module) {
                sub.hook
                    .subscription_changed(self, user, contact, old, new)
                    .await;
            }
        }
    }

    /// A stanza a client session sent, its `from` stamped: the outbound hooks, then routing.
    /// Presence without `to` is not for this: see [`Router::session_event`]. A completion
    /// comes back when a service finishes the stanza later: the session counts it as
    /// handled once that is done.
    pub async fn route_from_session(
        &self,
        session: SessionRef<'_>,
        stanza: Stanza,
    ) -> Option<Completion> {
        // Hooks may defer the acknowledgement to commits still running (completion::defer).
        let routing = self.hooks_then_route(session, stanza);
        match crate::completion::collecting_deferred(routing).await {
            (Some(handled), Some(deferred)) => Some(handled.and(deferred)),
            (handled, deferred) => handled.or(deferred),
        }
    }

    async fn hooks_then_route(
        &self,
        session: SessionRef<'_>,
        stanza: Stanza,
    ) -> Option<Completion> {
        let hooks = &self.registry.hooks.outbound;
        if !hooks.wants(stanza.kind()) {
            return self.route_with(stanza, true).await;
        }
        let host = session.jid.domain().as_str();
        let kind = stanza.kind();
        let mut stanza = stanza;
        for sub in hooks.iter() {
            if !sub.kinds.contains(kind) || !self.registry.enabled(host, sub.module) {
                continue;
            }
            stanza = match sub.hook.outbound(self, session, stanza).await {
                Flow::Continue(stanza) => stanza,
                Flow::Stop(Some(next)) => {
                    self.route(next).await;
                    return None;
                }
                Flow::Stop(None) => return None,
            };
        }
        self.route_with(stanza, true).await
    }

    /// The broadcast presence hooks (enabled on the session's host), in priority order: the
    /// presence to record and broadcast for the session.
    pub async fn run_broadcast_presence(&self, session: SessionRef<'_>, stanza: Stanza) -> Stanza {
        let hooks = &self.registry.hooks.broadcast_presence;
        if hooks.is_empty() {
            return stanza;
        }
        let host = session.jid.domain().as_str();
        let mut stanza = stanza;
        for sub in hooks.iter() {
            if self.registry.enabled(host, sub.module) {
                stanza = sub.hook.broadcast_presence(self, session, stanza).await;
            }
        }
        stanza
    }

    /// Broadcasts again, for each available session of `user` on this node, its current
    /// presence as the broadcast presence hooks make it now: for a module whose addition to
    /// the presence changed without the client sending anything (a new avatar hash after a
    /// vCard update, XEP-0153 §4.2). It takes the path of a presence update the client sent
    /// (RFC 6121 §4.4: own resources, then the session hooks, which tell the contacts), but
    /// entities that got directed presence are not told again.
    ///
    /// A session whose presence changes meanwhile keeps the new one: the registry replaces
    /// only the presence the rewrite started from, and the client's own presence passed the
    /// hooks anyway.
    pub async fn rebroadcast_presence(&self, user: &BareJid) {
        for r in self.sessions.resources(user) {
            let (Some(priority), Some(last)) = (r.priority, r.last_presence.clone()) else {
                continue;
            };
            let session = SessionRef {
                jid: &r.jid,
                ext: r.ext(),
            };
            let stanza = self
                .run_broadcast_presence(session, Stanza::clone(&last))
                .await;
            let stanza = Arc::new(stanza);
            if !self
                .sessions
                .replace_presence(&r.jid, &last, stanza.clone())
            {
                continue;
            }
            let event = SessionEvent::Available {
                stanza: &stanza,
                initial: false,
                priority,
            };
            self.session_event(session, event).await;
        }
    }

    /// A moment in a client session's life. For a change of broadcast presence (the registry
    /// already records it), the account's own resources are told first (RFC 6121 §4.2.2,
    /// §4.5.2) and, when it becomes unavailable, the entities it sent directed presence to
    /// (§4.6.3); then the session hooks run in priority order (contacts, probes, offline
    /// messages, last activity).
    pub async fn session_event(&self, session: SessionRef<'_>, event: SessionEvent<'_>) {
        match &event {
            SessionEvent::Available {
                stanza, initial, ..
            } => self.broadcast_own_presence(session.jid, stanza, *initial),
            SessionEvent::Unavailable { stanza, directed } => {
                self.broadcast_own_presence(session.jid, stanza, false);
                for to in directed.iter() {
                    self.route(readdress(stanza, to)).await;
                }
            }
            SessionEvent::Bound
            | SessionEvent::Detached
            | SessionEvent::Resumed
            | SessionEvent::Closed => {}
        }
        let host = session.jid.domain().as_str();
        for sub in self.registry.hooks.session.iter() {
            if sub.hook.wants(&event) && self.registry.enabled(host, sub.module) {
                sub.hook.session_event(self, session, &event).await;
            }
        }
    }

    /// A session's broadcast presence (no `to`), for the user's own resources (RFC 6121
    /// §4.2.2, §4.5.2). Available presence goes to every available resource of the account,
    /// including the sender; on its initial presence the sender also receives the current
    /// presence of the account's other available resources. Unavailable presence goes to the
    /// other available resources. The caller has already recorded the new state with
    /// [`crate::SessionRegistry::set_presence`].
    pub fn broadcast_own_presence(&self, from: &FullJid, stanza: &Stanza, initial: bool) {
        debug_assert_eq!(stanza.kind(), StanzaKind::Presence);
        let resources = self.sessions.resources(&from.to_bare());
        let unavailable = stanza.type_attr() == Some("unavailable");
        let targets: Vec<_> = resources
            .iter()
            .filter(|r| r.priority.is_some() && !(unavailable && &r.jid == from))
            .cloned()
            .collect();
        self.deliver_all(stanza, &targets);
        if initial
            && !unavailable
            && let Some(me) = resources.iter().find(|r| &r.jid == from)
        {
            for other in resources.iter().filter(|r| &r.jid != from) {
                if let Some(presence) = &other.last_presence {
                    let _ = me.deliver(Outbound {
                        bytes: client_bytes(presence),
                        reroute: None,
                    });
                }
            }
        }
    }
}
