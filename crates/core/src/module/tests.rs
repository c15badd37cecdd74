//! The registry's rules: ordering, conflicts, per-host enablement, configuration sections.

use std::sync::Arc;

use async_trait::async_trait;
use jid::BareJid;
use serde::Deserialize;
use xmppd_proto::{Stanza, StanzaError};
use xmppd_xml::Element;

use super::*;
use crate::hooks::{Flow, InboundHook, KindMask};
use crate::router::Router;

struct Pong;

#[async_trait]
impl IqHandler for Pong {
    async fn handle(&self, _request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        Ok(None)
    }
}

#[async_trait]
impl InboundHook for Pong {
    async fn inbound(&self, _router: &Router, stanza: Stanza, _account: &BareJid) -> Flow {
        Flow::Continue(stanza)
    }
}

/// A module that registers one inbound hook at a priority, and optionally a ping handler.
struct Probe {
    priority: i32,
    ping: bool,
}

impl Module for Probe {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        registry.inbound(self.priority, KindMask::MESSAGE, Arc::new(Pong));
        if self.ping {
            registry.iq(
                IqTarget::Server,
                IqType::Get,
                "urn:xmpp:ping",
                "ping",
                Arc::new(Pong),
            );
        }
        registry.server_feature("urn:example:probe");
        registry.account_feature("urn:example:account");
    }
}

fn probe(priority: i32, ping: bool) -> Arc<Probe> {
    Arc::new(Probe { priority, ping })
}

#[test]
fn subscribers_run_in_priority_order_then_registration_order() {
    let mut registry = Registry::new();
    registry.add_module("low", probe(-10, false));
    registry.add_module("high", probe(100, false));
    registry.add_module("mid", probe(0, false));
    registry.add_module("mid-later", probe(0, false));
    let registry = registry.finish().unwrap();
    let order = registry.hook_order();
    let inbound = order.iter().find(|(point, _)| *point == "inbound").unwrap();
    assert_eq!(inbound.1, vec!["high", "mid", "mid-later", "low"]);
}

#[test]
fn an_iq_registered_twice_is_a_startup_error() {
    let mut registry = Registry::new();
    registry.add_module("first", probe(0, true));
    registry.add_module("second", probe(0, true));
    let err = registry.finish().unwrap_err().to_string();
    assert!(err.contains("urn:xmpp:ping"), "{err}");
    assert!(err.contains("first") && err.contains("second"), "{err}");
}

#[test]
fn a_module_disabled_on_a_host_is_invisible_there() {
    let mut registry = Registry::new();
    let id = registry.add_module("pinger", probe(0, true));
    registry.set_host_modules("quiet.example", &[]);
    let registry = registry.finish().unwrap();
    let ping = Element::new("ping", "urn:xmpp:ping");
    assert!(registry.enabled("loud.example", id));
    assert!(!registry.enabled("quiet.example", id));
    assert!(
        registry
            .iq_handler("loud.example", IqTarget::Server, IqType::Get, &ping)
            .is_some()
    );
    assert!(
        registry
            .iq_handler("quiet.example", IqTarget::Server, IqType::Get, &ping)
            .is_none()
    );
    assert_eq!(
        registry.server_features("loud.example"),
        vec!["urn:example:probe"]
    );
    assert!(registry.server_features("quiet.example").is_empty());
    // Account features are a list of their own, with the same per-host rule.
    assert_eq!(
        registry.account_features("loud.example"),
        vec!["urn:example:account"]
    );
    assert!(registry.account_features("quiet.example").is_empty());
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct VersionSettings {
    #[serde(default)]
    hide_os: bool,
}

const CONFIG: &str = "[general]\ndata_dir = \"x\"\n\n[modules.other]\nanything = 1\n\n[modules.version]\nhide_os = true\n";

#[test]
fn a_module_reads_only_its_own_section() {
    let source = ConfigSource::new("/etc/xmppd.toml", CONFIG);
    let settings: Option<VersionSettings> = source.section("version").unwrap();
    assert_eq!(settings, Some(VersionSettings { hide_os: true }));
    let absent: Option<VersionSettings> = source.section("time").unwrap();
    assert_eq!(absent, None);
}

#[test]
fn an_unknown_key_in_a_section_names_file_line_and_key() {
    let text = "[general]\n\n[modules.version]\nhide_os = true\nhide_oss = true\n";
    let source = ConfigSource::new("/etc/xmppd.toml", text);
    let err = source.section::<VersionSettings>("version").unwrap_err();
    let message = err.to_string();
    assert!(message.contains("/etc/xmppd.toml"), "{message}");
    assert!(message.contains("[modules.version]"), "{message}");
    assert!(message.contains("line 5"), "{message}");
    assert!(message.contains("hide_oss"), "{message}");
}

#[test]
fn a_wrong_type_in_a_section_names_the_line() {
    let text = "[modules.version]\nhide_os = \"yes\"\n";
    let source = ConfigSource::new("x.toml", text);
    let message = source
        .section::<VersionSettings>("version")
        .unwrap_err()
        .to_string();
    assert!(message.contains("line 2"), "{message}");
}

#[test]
fn the_builder_enables_modules_per_host_and_rejects_unknown_names() {
    let hosts = vec![
        HostModules {
            host: "a.example".into(),
            modules: None,
        },
        HostModules {
            host: "b.example".into(),
            modules: Some(vec!["nonesuch".into()]),
        },
    ];
    let mut builder = RegistryBuilder::validating(hosts);
    builder
        .module("probe", |(): (), _ctx| {
            Ok(Probe {
                priority: 0,
                ping: false,
            })
        })
        .unwrap();
    let err = builder.finish().unwrap_err().to_string();
    assert!(
        err.contains("nonesuch") && err.contains("b.example"),
        "{err}"
    );
}

#[test]
fn a_module_declared_twice_is_refused() {
    let mut builder = RegistryBuilder::validating(Vec::new());
    let build = |(): (), _ctx: &mut ModuleCtx<'_>| {
        Ok(Probe {
            priority: 0,
            ping: false,
        })
    };
    builder.module("probe", build).unwrap();
    assert!(builder.module("probe", build).is_err());
}

struct SignUp;

#[async_trait]
impl InBandRegistration for SignUp {
    async fn handle(
        &self,
        _request: RegistrationRequest<'_>,
    ) -> Result<Option<Element>, StanzaError> {
        Ok(None)
    }
}

/// A module that lets clients register and adds a disco#info form.
struct Signs;

impl Module for Signs {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        registry.in_band_registration(Arc::new(SignUp));
        registry.server_form(
            DataForm::new(xmppd_proto::data_form::FormType::Result)
                .with_field(xmppd_proto::data_form::Field::form_type("urn:example:info")),
        );
    }
}

#[test]
fn registration_and_forms_follow_the_hosts_modules_and_registration_is_claimed_once() {
    let mut registry = Registry::new();
    registry.add_module("signs", Arc::new(Signs));
    registry.set_host_modules("closed.example", &[]);
    let registry = registry.finish().unwrap();
    assert!(registry.registration_on("open.example").is_some());
    assert!(registry.registration_on("closed.example").is_none());
    let forms = registry.server_forms("open.example");
    assert_eq!(forms[0].form_type(), Some("urn:example:info"));
    assert!(registry.server_forms("closed.example").is_empty());

    let mut registry = Registry::new();
    registry.add_module("signs", Arc::new(Signs));
    registry.add_module("again", Arc::new(Signs));
    let err = registry.finish().unwrap_err().to_string();
    assert!(
        err.contains("in-band registration is claimed by both signs and again"),
        "{err}"
    );
}

/// A module with a service per host, `rooms.HOST`.
struct Rooms;

#[async_trait]
impl Service for Rooms {
    async fn handle(&self, _router: &Router, _stanza: Stanza) -> Option<Stanza> {
        None
    }
}

impl HostServices for Rooms {
    fn host_added(&self, host: &str) -> Vec<(String, Arc<dyn Service>)> {
        vec![(format!("rooms.{host}"), Arc::new(Rooms))]
    }
}

impl Module for Rooms {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        registry.service("a.test", "rooms.a.test", Arc::new(Rooms));
        registry.on_host_added(self);
    }
}

#[test]
fn a_host_added_by_a_reload_gets_the_services_of_its_modules() {
    let mut registry = Registry::new();
    registry.add_module("rooms", Arc::new(Rooms));
    let registry = registry.finish().unwrap();
    assert!(registry.service_of("rooms.b.test").is_none());
    // A host whose service domain is taken (here by a.test's) does not take it over.
    let added = registry.add_hosts(&["b.test".to_owned(), "a.test".to_owned()]);
    assert_eq!(added, ["rooms.b.test"]);
    assert!(registry.service_of("rooms.b.test").is_some());
    assert!(registry.service_of("rooms.a.test").is_some());
    assert_eq!(
        registry.service_domains(),
        [
            ("rooms.a.test".to_owned(), "a.test".to_owned()),
            ("rooms.b.test".to_owned(), "b.test".to_owned())
        ]
    );
    assert_eq!(registry.server_items("b.test"), ["rooms.b.test"]);
    assert_eq!(registry.server_items("a.test"), ["rooms.a.test"]);
}
