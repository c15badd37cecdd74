//! An in-process service for the tests: `echo.HOST` answers every message to a JID at it
//! with "echo: BODY" from that JID.

use std::sync::Arc;

use async_trait::async_trait;
use xmppd::modules::ExtraModules;
use xmppd_core::{Module, NoSettings, Registry, Router, Service};
use xmppd_proto::{Stanza, StanzaError, StanzaKind};
use xmppd_xml::Element;

use super::CLIENT;

/// The modules to give a test server for `echo.HOST` on each of its hosts.
pub fn echo_modules() -> ExtraModules {
    Box::new(|b| {
        b.module("echo", |_: NoSettings, ctx| {
            Ok(EchoModule {
                hosts: ctx.hosts().to_vec(),
            })
        })
    })
}

/// A service that answers messages to any JID at its domain with an echo from that JID.
pub struct Echo;

#[async_trait]
impl Service for Echo {
    async fn handle(&self, router: &Router, stanza: Stanza) -> Option<Stanza> {
        if stanza.kind() != StanzaKind::Message {
            return stanza.error_reply(&StanzaError::service_unavailable());
        }
        let (Some(from), Some(to)) = (stanza.from().cloned(), stanza.to().cloned()) else {
            return None;
        };
        let text = stanza
            .element()
            .child("body", CLIENT)
            .map(Element::text)
            .unwrap_or_default();
        let el = Element::new("message", CLIENT)
            .with_attr("from", to.as_str())
            .with_attr("to", from.as_str())
            .with_child(Element::new("body", CLIENT).with_text(format!("echo: {text}")));
        router
            .route(Stanza::new_unchecked(
                StanzaKind::Message,
                Some(to),
                Some(from),
                el,
            ))
            .await;
        None
    }
}

pub struct EchoModule {
    /// The hosts it serves `echo.HOST` for.
    pub hosts: Vec<String>,
}

/// Registers `echo.HOST` for each host.
impl Module for EchoModule {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        for host in &self.hosts {
            registry.service(host, &format!("echo.{host}"), Arc::new(Echo));
        }
    }
}
