//! XEP-0199: XMPP Ping.
//!
//! Answers pings to the server (§4.2, client-to-server) and to an account's bare JID, which
//! the server answers on the user's behalf (RFC 6121 §8.5.2.1.3 hands an iq to a bare JID to
//! the server).

use std::sync::Arc;

use async_trait::async_trait;
use xmppd_core::{IqHandler, IqRequest, IqTarget, IqType, Module, Registry};
use xmppd_proto::{StanzaError, ns};
use xmppd_xml::Element;

/// The ping module.
#[derive(Debug, Default)]
pub struct Ping;

#[async_trait]
impl IqHandler for Ping {
    async fn handle(&self, _request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        // §4.2: the pong is an empty result.
        Ok(None)
    }
}

impl Module for Ping {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        registry.iq(
            IqTarget::Server,
            IqType::Get,
            ns::PING,
            "ping",
            self.clone(),
        );
        registry.iq(IqTarget::Account, IqType::Get, ns::PING, "ping", self);
        registry.server_feature(ns::PING);
    }
}
