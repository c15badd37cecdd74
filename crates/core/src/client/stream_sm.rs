//! The stream management requests of a client stream (XEP-0198): `<enable/>`, `<resume/>`,
//! `<r/>` and `<a/>`.
//!
//! Misuse that the client can recover from gets `<failed/>` with the stanza error condition
//! §6 asks for (`unexpected-request` out of order, `item-not-found` for an id that cannot be
//! resumed, `bad-request` for a malformed request); what breaks the stream's accounting ends
//! it: a second `<enable/>` (§3), an `h` beyond what was sent (§6, `undefined-condition` with
//! `<handled-count-too-high/>`), an unknown element or a malformed ack.

use tracing::info;
use xmppd_proto::sm::{self, SmParseError, SmRequest};
use xmppd_proto::{DefinedCondition, StanzaError, StreamError, StreamErrorCondition as Cond};
use xmppd_xml::Element;

use super::sm::{HandledCountTooHigh, ResumeError};
use super::{ClientStream, StreamAction};
use crate::hooks::SessionEvent;

fn bytes_of(el: &Element) -> Vec<u8> {
    let mut out = Vec::new();
    el.write_to(&mut out, xmppd_proto::ns::CLIENT);
    out
}

fn too_high(e: HandledCountTooHigh) -> StreamError {
    StreamError::with_text(
        Cond::UndefinedCondition,
        format!(
            "You acknowledged {} stanzas, but I only sent you {} so far.",
            e.h, e.sent
        ),
    )
    .with_app(sm::handled_count_too_high(e.h, e.sent))
}

impl ClientStream {
    /// Handles one stream management element; `false` when the stream closes.
    pub(super) async fn stream_management(
        &mut self,
        el: &Element,
        actions: &mut Vec<StreamAction>,
    ) -> bool {
        let request = match SmRequest::parse(el) {
            Ok(request) => request,
            Err(SmParseError::Invalid(text)) if matches!(el.name(), "enable" | "resume") => {
                let failed = sm::failed(&StanzaError::bad_request(text), None);
                actions.push(StreamAction::Send(bytes_of(&failed)));
                return true;
            }
            Err(SmParseError::Invalid(text)) => {
                return self.close(actions, StreamError::with_text(Cond::InvalidXml, text));
            }
            Err(e @ SmParseError::Unknown(_)) => {
                let e = StreamError::with_text(Cond::UnsupportedStanzaType, e.to_string());
                return self.close(actions, e);
            }
        };
        if !self.router.stream_management().config().enabled {
            let error = StanzaError::new(DefinedCondition::FeatureNotImplemented)
                .with_text("stream management is not enabled on this server");
            actions.push(StreamAction::Send(bytes_of(&sm::failed(&error, None))));
            return true;
        }
        match request {
            SmRequest::Enable { resume, max } => self.enable(resume, max, actions),
            SmRequest::Resume { previd, h } => self.resume(&previd, h, actions).await,
            SmRequest::Request => {
                match self.session.as_mut().and_then(|s| s.handled()) {
                    Some(h) => actions.push(StreamAction::Send(bytes_of(&sm::ack(h)))),
                    None => self.unexpected("stream management is not enabled", actions),
                }
                true
            }
            SmRequest::Ack { h } => match self.session.as_mut() {
                Some(session) if session.sm_enabled() => match session.sm_ack(h) {
                    Ok(()) => true,
                    Err(e) => self.close(actions, too_high(e)),
                },
                _ => {
                    self.unexpected("stream management is not enabled", actions);
                    true
                }
            },
        }
    }

    fn close(&mut self, actions: &mut Vec<StreamAction>, error: StreamError) -> bool {
        actions.push(StreamAction::Close(self.error_bytes(&error)));
        false
    }

    fn unexpected(&self, text: &str, actions: &mut Vec<StreamAction>) {
        actions.push(StreamAction::Send(bytes_of(&sm::unexpected(text))));
    }

    /// `<enable/>`: only after binding (§3), and only once.
    fn enable(&mut self, resume: bool, max: Option<u32>, actions: &mut Vec<StreamAction>) -> bool {
        let Some(session) = self.session.as_mut() else {
            self.unexpected("bind a resource before enabling stream management", actions);
            return true;
        };
        if session.sm_enabled() {
            self.unexpected("stream management is already enabled", actions);
            let e = StreamError::with_text(
                Cond::PolicyViolation,
                "stream management can be enabled only once",
            );
            return self.close(actions, e);
        }
        let enabled = session.enable_sm(&self.router, resume, max);
        actions.push(StreamAction::Send(bytes_of(&enabled)));
        true
    }

    /// `<resume/>` (§5): instead of binding, the session `previd` of the same account moves
    /// to this stream; what the client did not acknowledge is sent again, in order.
    async fn resume(&mut self, previd: &str, h: u32, actions: &mut Vec<StreamAction>) -> bool {
        if self.session.is_some() {
            self.unexpected("a session is already bound on this stream", actions);
            return true;
        }
        let Some(user) = self.responder.user().cloned() else {
            self.unexpected("authenticate before resuming", actions);
            return true;
        };
        let claim = self
            .router
            .stream_management()
            .claim(previd, &user, self.router.sessions());
        let mut session = match claim.await {
            Ok(session) => session,
            Err(ResumeError::NotFound { h: handled }) => {
                let error = StanzaError::new(DefinedCondition::ItemNotFound)
                    .with_text("no session to resume under that id");
                actions.push(StreamAction::Send(bytes_of(&sm::failed(&error, handled))));
                return true;
            }
        };
        if let Err(e) = session.sm_ack(h) {
            // The session cannot be trusted to resume; it ends with this stream.
            let error = StanzaError::new(DefinedCondition::UndefinedCondition).with_text(format!(
                "You acknowledged {} stanzas, but I only sent you {} so far.",
                e.h, e.sent
            ));
            let mut failed = sm::failed(&error, session.handled());
            failed.push_child(sm::handled_count_too_high(e.h, e.sent));
            actions.push(StreamAction::Send(bytes_of(&failed)));
            self.responder.attached();
            self.session = Some(session);
            return self.close(actions, too_high(e));
        }
        self.responder.attached();
        self.router
            .session_event(session.as_ref(), SessionEvent::Resumed)
            .await;
        info!(jid = %session.jid(), "session resumed");
        tracing::Span::current().record("jid", tracing::field::display(session.jid()));
        let handled = session.handled().unwrap_or_default();
        let mut bytes = bytes_of(&sm::resumed(previd, handled));
        bytes.extend_from_slice(&session.unacked_bytes());
        // A resumed stream starts active (XEP-0352 §6): what was held goes out now.
        bytes.extend_from_slice(&session.set_active());
        self.session = Some(session);
        actions.push(StreamAction::Bound);
        actions.push(StreamAction::Send(bytes));
        true
    }
}
