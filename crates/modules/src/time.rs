//! XEP-0202: Entity Time.
//!
//! Answers `urn:xmpp:time` queries to the server (§2) with its clock in UTC. Both children
//! are REQUIRED: `<tzo/>` is a Time Zone Definition of XEP-0082 §2 (`Z` or `±hh:mm`), and
//! `<utc/>` a XEP-0082 DateTime that MUST be in UTC. The server reports its offset as
//! `+00:00` whatever the host's zone: keeping the zone to itself costs clients nothing and
//! leaks nothing about where the machine is (§6).

use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use xmppd_core::{IqHandler, IqRequest, IqTarget, IqType, Module, Registry};
use xmppd_proto::StanzaError;
use xmppd_proto::datetime::format_datetime;
use xmppd_xml::Element;

/// `urn:xmpp:time`.
pub const NS_TIME: &str = "urn:xmpp:time";

/// The offset the server reports: UTC, in the numeric form §2 asks for.
const TZO: &str = "+00:00";

/// The entity time module.
#[derive(Debug, Default)]
pub struct Time;

/// The `<time/>` of a result at `now` (§2).
fn time_element(now: SystemTime) -> Element {
    Element::new("time", NS_TIME)
        .with_child(Element::new("tzo", NS_TIME).with_text(TZO))
        .with_child(Element::new("utc", NS_TIME).with_text(format_datetime(now)))
}

#[async_trait]
impl IqHandler for Time {
    async fn handle(&self, _request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        Ok(Some(time_element(SystemTime::now())))
    }
}

impl Module for Time {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        registry.iq(IqTarget::Server, IqType::Get, NS_TIME, "time", self);
        registry.server_feature(NS_TIME);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use xmppd_proto::datetime::parse_datetime;

    use super::*;

    #[test]
    fn the_answer_is_utc_with_a_numeric_offset() {
        let at = UNIX_EPOCH + Duration::from_millis(1_166_551_115_250);
        let el = time_element(at);
        assert!(el.is("time", NS_TIME));
        assert_eq!(el.children().count(), 2);
        let tzo = el.child("tzo", NS_TIME).map(Element::text);
        assert_eq!(tzo.as_deref(), Some("+00:00"));
        let utc = el.child("utc", NS_TIME).map(Element::text);
        assert_eq!(utc.as_deref(), Some("2006-12-19T17:58:35.250Z"));
        assert_eq!(utc.as_deref().and_then(parse_datetime), Some(at));
    }
}
