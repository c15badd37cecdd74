//! The end of a link: queued stanzas are bounced to their senders or routed again, and
//! every verification still waiting gets an error verdict.

use xmppd_proto::{DefinedCondition, Stanza, StanzaError};
use xmppd_stream::dialback::Verdict;

use super::LinkEnd;
use super::link::Link;

impl Link {
    pub(super) async fn bounce(
        &self,
        stanzas: Vec<Stanza>,
        condition: DefinedCondition,
        text: &str,
    ) {
        let Some(router) = self.pool.router() else {
            return;
        };
        let err = StanzaError::new(condition).with_text(format!("{}: {text}", self.remote));
        for stanza in stanzas {
            if let Some(bounce) = stanza.error_reply(&err) {
                router.route_owed(bounce).await;
            }
        }
    }

    /// Leaves the pool, then deals with everything still queued: bounced after a failure,
    /// routed again (through a new link) after a deliberate close. Waiting verifications
    /// get an error verdict.
    pub(super) async fn finish(mut self, end: LinkEnd) {
        self.pool.forget(&self.local, &self.remote, self.id);
        self.stanzas.close();
        self.verifies.close();
        for request in std::mem::take(&mut self.waiting) {
            let _ = request
                .reply
                .send(Verdict::Error(DefinedCondition::RemoteServerNotFound));
        }
        while let Ok(request) = self.verifies.try_recv() {
            let _ = request
                .reply
                .send(Verdict::Error(DefinedCondition::RemoteServerNotFound));
        }
        for reply in std::mem::take(&mut self.sent).into_values().flatten() {
            let _ = reply.send(Verdict::Error(DefinedCondition::RemoteServerNotFound));
        }
        let mut queued = Vec::new();
        while let Ok(stanza) = self.stanzas.try_recv() {
            queued.push(stanza);
        }
        if queued.is_empty() {
            return;
        }
        match end {
            LinkEnd::Failed(condition, text) => self.bounce(queued, condition, &text).await,
            // The peer accepted the stream and closed it before taking anything: routing
            // the queue again would only repeat that, so it goes back to the senders.
            LinkEnd::Closed if !self.deliberate && self.written == 0 => {
                let text = "the stream was closed before anything could be sent";
                self.bounce(queued, DefinedCondition::RemoteServerTimeout, text)
                    .await;
            }
            LinkEnd::Closed => {
                let Some(router) = self.pool.router() else {
                    return;
                };
                for stanza in queued {
                    router.route(stanza).await;
                }
            }
        }
    }
}
