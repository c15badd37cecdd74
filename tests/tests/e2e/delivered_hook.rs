//! The delivered hook point: a module is told, for each message a local account takes, which
//! sessions RFC 6121 §8.5 gave it (none when it went to offline storage), and is not told of
//! messages that bounced.

use crate::common;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use common::*;
use jid::{BareJid, FullJid};
use xmppd::modules::ExtraModules;
use xmppd_core::{DeliveredHook, Module, NoSettings, Registry, Router};
use xmppd_proto::Stanza;
use xmppd_testkit::TestServer;

/// What the hook saw: (body, account, recipients' resources).
type Log = Arc<Mutex<Vec<(String, String, Vec<String>)>>>;

struct Recorder(Log);

#[async_trait]
impl DeliveredHook for Recorder {
    async fn delivered(
        &self,
        _router: &Router,
        stanza: &Stanza,
        account: &BareJid,
        recipients: &[FullJid],
    ) {
        let text = body(stanza.element()).unwrap_or_default();
        let mut resources: Vec<String> = recipients
            .iter()
            .map(|j| j.resource().as_str().to_owned())
            .collect();
        resources.sort();
        if let Ok(mut log) = self.0.lock() {
            log.push((text, account.to_string(), resources));
        }
    }
}

struct RecorderModule(Log);

impl Module for RecorderModule {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        registry.delivered(0, Arc::new(Recorder(self.0.clone())));
    }
}

fn taken(log: &Log) -> Vec<(String, String, Vec<String>)> {
    log.lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default()
}

/// The log once it holds `n` entries (the hook runs just after delivery, so a client may see
/// a message a moment before the hook has recorded it), or as it is after a second.
async fn taken_after(log: &Log, n: usize) -> Vec<(String, String, Vec<String>)> {
    for _ in 0..100 {
        if log.lock().map(|l| l.len() >= n).unwrap_or(true) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    taken(log)
}

fn row(text: &str, resources: &[&str]) -> (String, String, Vec<String>) {
    let resources = resources.iter().map(|r| (*r).to_owned()).collect();
    (text.to_owned(), "alice@localhost".to_owned(), resources)
}

#[tokio::test]
async fn the_hook_learns_which_sessions_took_each_message() -> anyhow::Result<()> {
    let log: Log = Arc::default();
    let hook_log = log.clone();
    let extra: ExtraModules = Box::new(move |b| {
        b.module("recorder", move |_: NoSettings, _| {
            Ok(RecorderModule(hook_log))
        })
    });
    let server = TestServer::start_with_modules(|_| {}, Some(extra)).await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    let send = |to: &str, text: &str| {
        format!("<message to='{to}' type='chat'><body>{text}</body></message>")
    };

    // Nobody available: offline storage, no session.
    bob.send(&send("alice@localhost", "stored")).await?;
    bob.expect_silence(SILENCE).await?;
    assert_eq!(taken_after(&log, 1).await, vec![row("stored", &[])]);

    let mut a = online(&server, "alice", "a", 1).await?;
    // The offline message goes to `a` at login, outside routing: not reported.
    a.expect("the offline message", |e| e.is("message", CLIENT))
        .await?;
    let mut b = online(&server, "alice", "b", 1).await?;
    a.expect("b's presence", |e| e.is("presence", CLIENT))
        .await?;
    b.expect("a's presence", |e| e.is("presence", CLIENT))
        .await?;
    assert!(taken(&log).is_empty());

    // Bare JID, tied priorities: both; a full JID: that one; an unbound one: as the bare JID.
    bob.send(&send("alice@localhost", "tied")).await?;
    bob.send(&send("alice@localhost/b", "full")).await?;
    bob.send(&send("alice@localhost/gone", "unbound")).await?;
    for text in ["tied", "unbound"] {
        expect_message(&mut a, "bob@localhost/desk", &to_of(text), text).await?;
    }
    for text in ["tied", "full", "unbound"] {
        expect_message(&mut b, "bob@localhost/desk", &to_of(text), text).await?;
    }
    assert_eq!(
        taken_after(&log, 3).await,
        vec![
            row("tied", &["a", "b"]),
            row("full", &["b"]),
            row("unbound", &["a", "b"]),
        ]
    );

    // A bounced message (groupchat to an account) is no delivery to alice; the bounce itself
    // is a message bob's session takes.
    bob.send("<message to='alice@localhost' type='groupchat' id='g'><body>no</body></message>")
        .await?;
    expect_error(
        &mut bob,
        "message",
        "g",
        "alice@localhost",
        "service-unavailable",
    )
    .await?;
    let bounce = (
        "no".to_owned(),
        "bob@localhost".to_owned(),
        vec!["desk".to_owned()],
    );
    assert_eq!(taken_after(&log, 1).await, vec![bounce]);
    server.stop().await;
    Ok(())
}

/// The `to` each test message was sent with.
fn to_of(text: &str) -> String {
    match text {
        "full" => "alice@localhost/b",
        "unbound" => "alice@localhost/gone",
        _ => "alice@localhost",
    }
    .to_owned()
}
