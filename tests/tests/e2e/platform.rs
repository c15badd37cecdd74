//! The extension platform, proved with modules of the tests' own: hooks run in priority order
//! on the router's direct path too, a pre-route filter can drop or bounce, a module keeps
//! per-session state, an in-process service owns its domain, and modules can be enabled per
//! host and configured in their own sections.

use crate::common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::echo::echo_modules;
use common::{CLIENT, SILENCE, add_users, body, online};
use jid::{BareJid, Jid};
use xmppd::config::Config;
use xmppd::modules::ExtraModules;
use xmppd_core::{
    Flow, InboundHook, KindMask, Module, NoSettings, OutboundHook, PreRouteFilter, Registry,
    Router, SessionEvent, SessionHook, SessionRef,
};
use xmppd_proto::{DefinedCondition, Stanza, StanzaError, StanzaKind};
use xmppd_testkit::{TestServer, stanza_error_condition};
use xmppd_xml::Element;

const TEST_NS: &str = "urn:xmppd:test";

/// Marks every message it sees with `<seen by='NAME'/>` and records that it ran.
struct Marker {
    name: &'static str,
    priority: i32,
    log: Arc<Mutex<Vec<&'static str>>>,
}

#[async_trait]
impl InboundHook for Marker {
    async fn inbound(&self, _router: &Router, stanza: Stanza, _account: &BareJid) -> Flow {
        if let Ok(mut log) = self.log.lock() {
            log.push(self.name);
        }
        let mut el = stanza.element().clone();
        el.push_child(Element::new("seen", TEST_NS).with_attr("by", self.name));
        let (from, to) = (stanza.from().cloned(), stanza.to().cloned());
        Flow::Continue(Stanza::new_unchecked(StanzaKind::Message, from, to, el))
    }
}

impl Module for Marker {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        registry.inbound(self.priority, KindMask::MESSAGE, self.clone());
    }
}

async fn server_with(extra: ExtraModules) -> anyhow::Result<TestServer> {
    let server = TestServer::start_with_modules(|_| {}, Some(extra)).await?;
    add_users(&server, &["alice", "bob"]).await?;
    Ok(server)
}

#[tokio::test]
async fn two_modules_on_one_hook_run_in_priority_order() -> anyhow::Result<()> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (l1, l2) = (log.clone(), log.clone());
    // Registered low first: the order comes from the priorities, not the registration.
    let server = server_with(Box::new(move |b| {
        b.module("low", move |_: NoSettings, _| {
            Ok(Marker {
                name: "low",
                priority: -5,
                log: l1,
            })
        })?;
        b.module("high", move |_: NoSettings, _| {
            Ok(Marker {
                name: "high",
                priority: 50,
                log: l2,
            })
        })
    }))
    .await?;
    let mut alice = online(&server, "alice", "a", 0).await?;
    let mut bob = online(&server, "bob", "b", 0).await?;
    // To a bound full JID: the router's direct path, which must run the hooks too.
    alice
        .send("<message to='bob@localhost/b' type='chat'><body>hi</body></message>")
        .await?;
    let msg = bob
        .expect("the message", |e| e.is("message", CLIENT))
        .await?;
    let seen: Vec<_> = msg
        .children()
        .filter(|c| c.is("seen", TEST_NS))
        .filter_map(|c| c.attr("by").map(str::to_owned))
        .collect();
    assert_eq!(seen, vec!["high", "low"], "{msg}");
    assert_eq!(
        *log.lock().map_err(|e| anyhow::anyhow!("{e}"))?,
        vec!["high", "low"]
    );
    server.stop().await;
    Ok(())
}

/// Drops messages saying "drop me", bounces "bounce me" with policy-violation (its own
/// bounce, which carries the text back, passes).
struct Censor;

#[async_trait]
impl PreRouteFilter for Censor {
    async fn pre_route(&self, _router: &Router, stanza: Stanza) -> Flow {
        if stanza.type_attr() == Some("error") {
            return Flow::Continue(stanza);
        }
        let text = stanza
            .element()
            .child("body", CLIENT)
            .map(Element::text)
            .unwrap_or_default();
        match text.as_str() {
            "drop me" => Flow::drop_silently(),
            "bounce me" => Flow::bounce(
                &stanza,
                &StanzaError::new(DefinedCondition::PolicyViolation).with_text("no"),
            ),
            _ => Flow::Continue(stanza),
        }
    }
}

impl Module for Censor {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        registry.pre_route(0, self);
    }
}

#[tokio::test]
async fn a_pre_route_filter_drops_and_bounces_on_the_direct_path() -> anyhow::Result<()> {
    let server = server_with(Box::new(|b| {
        b.module("censor", |_: NoSettings, _| Ok(Censor))
    }))
    .await?;
    let mut alice = online(&server, "alice", "a", 0).await?;
    let mut bob = online(&server, "bob", "b", 0).await?;
    for (id, text) in [("m1", "drop me"), ("m2", "bounce me"), ("m3", "fine")] {
        alice
            .send(&format!(
                "<message id='{id}' to='bob@localhost/b' type='chat'><body>{text}</body></message>"
            ))
            .await?;
    }
    let bounce = alice
        .expect("the bounce", |e| {
            e.is("message", CLIENT) && e.attr("id") == Some("m2")
        })
        .await?;
    assert_eq!(bounce.attr("type"), Some("error"));
    assert_eq!(
        stanza_error_condition(&bounce).as_deref(),
        Some("policy-violation")
    );
    let msg = bob.expect("a message", |e| e.is("message", CLIENT)).await?;
    assert_eq!(
        body(&msg).as_deref(),
        Some("fine"),
        "only the fine one: {msg}"
    );
    bob.expect_silence(SILENCE).await?;
    alice.expect_silence(SILENCE).await?;
    server.stop().await;
    Ok(())
}

/// Counts the messages each session sent, in the session's own slot, and stamps the count.
struct Counter;

#[derive(Default)]
struct Sent(std::sync::atomic::AtomicU32);

#[async_trait]
impl SessionHook for Counter {
    async fn session_event(
        &self,
        _router: &Router,
        session: SessionRef<'_>,
        event: &SessionEvent<'_>,
    ) {
        if matches!(event, SessionEvent::Bound) {
            session.ext.insert(Sent::default());
        }
    }
}

#[async_trait]
impl OutboundHook for Counter {
    async fn outbound(&self, _router: &Router, session: SessionRef<'_>, stanza: Stanza) -> Flow {
        let Some(sent) = session.ext.get::<Sent>() else {
            return Flow::Continue(stanza);
        };
        let n = sent.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut el = stanza.element().clone();
        el.push_child(Element::new("count", TEST_NS).with_attr("n", n.to_string()));
        let (from, to) = (stanza.from().cloned(), stanza.to().cloned());
        Flow::Continue(Stanza::new_unchecked(stanza.kind(), from, to, el))
    }
}

impl Module for Counter {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        registry.session(0, self.clone());
        registry.outbound(0, KindMask::MESSAGE, self);
    }
}

#[tokio::test]
async fn a_module_keeps_state_per_session() -> anyhow::Result<()> {
    let server = server_with(Box::new(|b| {
        b.module("counter", |_: NoSettings, _| Ok(Counter))
    }))
    .await?;
    let mut phone = online(&server, "alice", "phone", 0).await?;
    let mut laptop = online(&server, "alice", "laptop", 0).await?;
    let mut bob = online(&server, "bob", "b", 0).await?;
    let send = "<message to='bob@localhost/b'><body>x</body></message>";
    phone.send(send).await?;
    phone.send(send).await?;
    laptop.send(send).await?;
    let mut counts = Vec::new();
    for _ in 0..3 {
        let msg = bob.expect("a message", |e| e.is("message", CLIENT)).await?;
        let from = msg.attr("from").unwrap_or_default().to_owned();
        let n = msg
            .child("count", TEST_NS)
            .and_then(|c| c.attr("n"))
            .unwrap_or_default()
            .to_owned();
        counts.push((from, n));
    }
    counts.sort();
    assert_eq!(
        counts,
        vec![
            ("alice@localhost/laptop".to_owned(), "1".to_owned()),
            ("alice@localhost/phone".to_owned(), "1".to_owned()),
            ("alice@localhost/phone".to_owned(), "2".to_owned()),
        ]
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn an_in_process_service_owns_its_domain_and_is_discoverable() -> anyhow::Result<()> {
    let server = server_with(echo_modules()).await?;
    assert!(server.server.router.is_served_domain("echo.localhost"));
    let mut alice = online(&server, "alice", "a", 0).await?;
    alice
        .send("<iq type='get' id='items' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        .await?;
    let items = alice
        .expect("disco items", |e| {
            e.is("iq", CLIENT) && e.attr("id") == Some("items")
        })
        .await?;
    assert!(items.to_string().contains("echo.localhost"), "{items}");
    alice
        .send("<message to='room@echo.localhost'><body>hello</body></message>")
        .await?;
    let echo = alice
        .expect("the echo", |e| e.is("message", CLIENT))
        .await?;
    assert_eq!(echo.attr("from"), Some("room@echo.localhost"));
    assert_eq!(body(&echo).as_deref(), Some("echo: hello"));
    alice
        .send("<iq type='get' id='q' to='echo.localhost'><query xmlns='urn:x'/></iq>")
        .await?;
    let err = alice
        .expect("the service's error", |e| {
            e.is("iq", CLIENT) && e.attr("id") == Some("q")
        })
        .await?;
    assert_eq!(
        stanza_error_condition(&err).as_deref(),
        Some("service-unavailable")
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_module_left_out_of_a_hosts_list_is_absent_there() -> anyhow::Result<()> {
    let server = TestServer::start_with(|config: &mut Config| {
        config.modules = Some(vec!["im".into(), "disco".into()]);
    })
    .await?;
    add_users(&server, &["alice"]).await?;
    let mut alice = online(&server, "alice", "a", 0).await?;
    alice
        .send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        .await?;
    let err = alice
        .expect("no ping", |e| {
            e.is("iq", CLIENT) && e.attr("id") == Some("p")
        })
        .await?;
    assert_eq!(
        stanza_error_condition(&err).as_deref(),
        Some("service-unavailable")
    );
    alice
        .send("<iq type='get' id='i' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await?;
    let info = alice
        .expect("disco info", |e| {
            e.is("iq", CLIENT) && e.attr("id") == Some("i")
        })
        .await?;
    assert!(!info.to_string().contains("urn:xmpp:ping"), "{info}");
    assert!(info.to_string().contains("msgoffline"), "{info}");
    server.stop().await;
    Ok(())
}

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(text, std::path::Path::new("/etc/xmppd/xmppd.toml")).map_err(|e| e.to_string())
}

#[test]
fn module_configuration_errors_name_file_line_and_key() {
    let err = parse("[general]\nlog = 'info'\n\n[modules.ping]\ninterval = 5\n").unwrap_err();
    assert!(err.contains("/etc/xmppd/xmppd.toml"), "{err}");
    assert!(err.contains("[modules.ping]"), "{err}");
    assert!(err.contains("line 5"), "{err}");
    assert!(err.contains("interval"), "{err}");

    let err = parse("[modules.pong]\n").unwrap_err();
    assert!(err.contains(":1:") && err.contains("modules.pong"), "{err}");
    assert!(err.contains("there is no module 'pong'"), "{err}");

    let err = parse("[general]\nmodules = ['im', 'pnig']\n").unwrap_err();
    assert!(
        err.contains(":2:") && err.contains("general.modules[1]"),
        "{err}"
    );

    let text = "[[host]]\nname = 'a.example'\nmodules = ['disco', 'nope']\n";
    let err = parse(text).unwrap_err();
    assert!(
        err.contains(":3:") && err.contains("host[0].modules[1]"),
        "{err}"
    );

    let config = parse("[general]\nmodules = ['im']\n[[host]]\nname = 'a.example'\n[[host]]\nname = 'b.example'\nmodules = ['ping']\n").unwrap();
    assert_eq!(
        config.host_modules(&config.hosts[0]),
        Some(vec!["im".to_owned()])
    );
    assert_eq!(
        config.host_modules(&config.hosts[1]),
        Some(vec!["ping".to_owned()])
    );
}

#[tokio::test]
async fn registering_one_iq_twice_stops_the_server_from_starting() -> anyhow::Result<()> {
    struct SecondPing;
    #[async_trait]
    impl xmppd_core::IqHandler for SecondPing {
        async fn handle(
            &self,
            _request: xmppd_core::IqRequest<'_>,
        ) -> Result<Option<Element>, StanzaError> {
            Ok(None)
        }
    }
    impl Module for SecondPing {
        fn register(self: Arc<Self>, registry: &mut Registry) {
            registry.iq(
                xmppd_core::IqTarget::Server,
                xmppd_core::IqType::Get,
                "urn:xmpp:ping",
                "ping",
                self,
            );
        }
    }
    let extra: ExtraModules = Box::new(|b| b.module("ping2", |_: NoSettings, _| Ok(SecondPing)));
    let err = TestServer::start_with_modules(|_| {}, Some(extra))
        .await
        .map(|_| ())
        .unwrap_err();
    let text = format!("{err:#}");
    assert!(
        text.contains("urn:xmpp:ping") && text.contains("ping2"),
        "{text}"
    );
    let _ = Jid::new("x@y")?;
    Ok(())
}

/// The features after authentication come from the modules the host runs: roster versioning
/// and pre-approval are the IM module's.
#[tokio::test]
async fn stream_features_follow_the_hosts_modules() -> anyhow::Result<()> {
    const ROSTER_VER: &str = "urn:xmpp:features:rosterver";
    for (modules, expected) in [(None, true), (Some(vec!["ping".to_owned()]), false)] {
        let server = TestServer::start_with(|config: &mut Config| {
            config.modules = modules.clone();
        })
        .await?;
        add_users(&server, &["alice"]).await?;
        let alice = server
            .login("alice", &common::password("alice"), "a")
            .await?;
        let features = alice
            .features
            .clone()
            .ok_or_else(|| anyhow::anyhow!("no features after authentication"))?;
        assert_eq!(
            features.has_child("ver", ROSTER_VER),
            expected,
            "modules {modules:?}: {features}"
        );
        server.stop().await;
    }
    Ok(())
}
