//! The keepalive of a bound client connection: when to ask a quiet client for an ack or a
//! ping, and when to count a silent link as dead (XEP-0198 §4, XEP-0199).

use tokio::io::AsyncWrite;
use tokio::time::Instant;
use tracing::debug;
use xmppd_proto::ns;
use xmppd_xml::Element;

use super::{Conn, Flow};

impl Conn {
    /// When the keepalive must look again: when a probe goes unanswered too long, when a
    /// quiet client is due a probe, or when stanzas sent are due an `<r/>`.
    fn next_keepalive(&self) -> Instant {
        let limits = &self.timer.settings.limits;
        let base = match self.timer.probe_at {
            Some(at) => at + limits.dead_after,
            None => self.timer.last_read + limits.ping_after,
        };
        let after = self.ctx.router.stream_management().config().request_after;
        match self
            .stream
            .session()
            .and_then(|s| s.ack_request_deadline(after))
        {
            Some(due) => base.min(due),
            None => base,
        }
    }

    pub(super) fn arm_keepalive(&mut self) {
        let next = self.next_keepalive();
        self.timer.as_mut().project().sleep.reset(next);
    }

    /// After a write: stanzas just sent may call for an `<r/>` before the timer's time.
    pub(super) fn keepalive_sooner(&mut self) {
        let after = self.ctx.router.stream_management().config().request_after;
        let due = self
            .stream
            .session()
            .and_then(|s| s.ack_request_deadline(after));
        if let Some(due) = due
            && due < self.timer.sleep.deadline()
        {
            self.timer.as_mut().project().sleep.reset(due);
        }
    }

    /// The keepalive's time came. A client silent for `ping_after` is asked to answer (an
    /// `<r/>` under stream management, else a XEP-0199 ping); one that stays silent for
    /// `dead_after` more is gone, and its session waits to be resumed if it can. Stanzas
    /// sent and not yet requested for `request_after` get their `<r/>` (XEP-0198 §4).
    pub(super) async fn keepalive<S: AsyncWrite + Unpin>(&mut self, io: &mut S) -> Option<Flow> {
        let now = Instant::now();
        let limits = self.timer.settings.limits;
        if self
            .timer
            .probe_at
            .is_some_and(|at| now >= at + limits.dead_after)
        {
            debug!("the client stopped answering");
            return Some(Flow::Lost);
        }
        let after = self.ctx.router.stream_management().config().request_after;
        let host = self
            .stream
            .responder_mut()
            .host()
            .unwrap_or_default()
            .to_owned();
        let session = self.stream.session_mut()?;
        let mut out: Vec<u8> = Vec::new();
        let request_due = session
            .ack_request_deadline(after)
            .is_some_and(|due| due <= now);
        let ping_due =
            self.timer.probe_at.is_none() && now >= self.timer.last_read + limits.ping_after;
        if session.sm_enabled() && (request_due || ping_due) {
            out.extend_from_slice(xmppd_proto::sm::REQUEST_BYTES);
            session.ack_requested();
        } else if ping_due {
            let ping = Element::new("iq", ns::CLIENT)
                .with_attr("type", "get")
                .with_attr("id", "keepalive")
                .with_attr("from", host)
                .with_attr("to", session.jid().as_str())
                .with_child(Element::new("ping", ns::PING));
            ping.write_to(&mut out, ns::CLIENT);
        }
        if !out.is_empty() {
            self.timer.as_mut().project().probe_at.get_or_insert(now);
            if !self.write(io, &out).await {
                return Some(Flow::Lost);
            }
        }
        self.arm_keepalive();
        None
    }
}
