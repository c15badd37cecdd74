//! XEP-0402 bookmarks and their XEP-0048 views: a XEP-0048 client writing private XML and a
//! XEP-0402 client publishing to `urn:xmpp:bookmarks:1` see the same rooms (each change
//! notified to the XEP-0402 client, `<extensions/>` kept across XEP-0048 edits, `<url/>`
//! bookmarks kept in private XML); the legacy PEP node `storage:bookmarks` follows the rooms
//! and a publish to it is taken in (XEP-0411); the nodes are the owner's alone; the account
//! advertises the compatibility features.

use crate::common;

use anyhow::Context as _;
use common::pep::*;
use common::*;
use xmppd_testkit::{TestClient, TestServer};
use xmppd_xml::Element;

const NODE: &str = "urn:xmpp:bookmarks:1";
const LEGACY: &str = "storage:bookmarks";
const ALICE: &str = "alice@localhost";
const OPTIONS: &[(&str, &str)] = &[
    ("pubsub#persist_items", "true"),
    ("pubsub#max_items", "max"),
    ("pubsub#send_last_published_item", "never"),
    ("pubsub#access_model", "whitelist"),
];

/// alice's XEP-0402 client: caps with `urn:xmpp:bookmarks:1+notify`, answering the query.
async fn modern(server: &TestServer) -> anyhow::Result<TestClient> {
    let mut client = server.login("alice", &password("alice"), "modern").await?;
    roster_get(&mut client, None).await?;
    show_caps(&mut client, &[NODE], None).await?;
    expect_presence(&mut client, &format!("{ALICE}/modern"), None).await?;
    // The server verifies the caps with a query, answered here, before it notifies.
    quiet(&mut client, &[NODE]).await?;
    Ok(client)
}

/// Publishes from the XEP-0402 client; the result and the notification of `node` it causes
/// may come in either order (the server updates the other view before answering).
async fn publish_noticed(
    client: &mut TestClient,
    node: &str,
    item: &str,
    payload: &str,
    options: &[(&str, &str)],
) -> anyhow::Result<Element> {
    let iq_id = format!("pub-{item}");
    client
        .send(&publish_iq(&iq_id, node, Some(item), payload, options))
        .await?;
    let (mut result, mut event) = (None, None);
    while result.is_none() || event.is_none() {
        let el = next(client, &[NODE], "the result and the event", |e| {
            e.is("iq", CLIENT) || e.is("message", CLIENT)
        })
        .await?;
        if el.is("iq", CLIENT) {
            anyhow::ensure!(el.attr("type") == Some("result"), "{el}");
            result = Some(el);
        } else {
            event = Some(el);
        }
    }
    event.context("an event")
}

async fn private_iq(
    client: &mut TestClient,
    ty: &str,
    id: &str,
    inner: &str,
) -> anyhow::Result<Element> {
    let iq =
        format!("<iq type='{ty}' id='{id}'><query xmlns='jabber:iq:private'>{inner}</query></iq>");
    let answer = request(client, &[], id, &iq).await?;
    anyhow::ensure!(answer.attr("type") == Some("result"), "{answer}");
    Ok(answer)
}

/// The rooms of the XEP-0048 view through private XML: (jid, name, nick) sorted, and the URLs.
async fn legacy_rooms(
    client: &mut TestClient,
    id: &str,
) -> anyhow::Result<(Vec<(String, String, String)>, Vec<String>)> {
    let answer = private_iq(client, "get", id, "<storage xmlns='storage:bookmarks'/>").await?;
    let storage = answer
        .child("query", "jabber:iq:private")
        .and_then(|q| q.child("storage", LEGACY))
        .context("a storage element")?;
    Ok(rooms_of(storage))
}

fn rooms_of(storage: &Element) -> (Vec<(String, String, String)>, Vec<String>) {
    let attr = |e: &Element, a: &str| e.attr(a).unwrap_or_default().to_owned();
    let mut rooms: Vec<_> = storage
        .children()
        .filter(|c| c.is("conference", LEGACY))
        .map(|c| {
            let nick = c
                .child("nick", LEGACY)
                .map(Element::text)
                .unwrap_or_default();
            (attr(c, "jid"), attr(c, "name"), nick)
        })
        .collect();
    rooms.sort();
    let urls = storage
        .children()
        .filter(|c| c.is("url", LEGACY))
        .map(|c| attr(c, "url"))
        .collect();
    (rooms, urls)
}

fn room(jid: &str, name: &str, nick: &str) -> (String, String, String) {
    (jid.to_owned(), name.to_owned(), nick.to_owned())
}

/// The XEP-0402 items of alice's node, by a fetch: (id, payload).
async fn modern_rooms(client: &mut TestClient) -> anyhow::Result<Vec<(String, Element)>> {
    let answer = fetch(client, &[NODE], ALICE, NODE, None, &[]).await?;
    let items = answer
        .child("pubsub", PUBSUB)
        .and_then(|p| p.child("items", PUBSUB))
        .context("items")?;
    let mut out: Vec<(String, Element)> = items
        .children()
        .filter_map(|i| Some((i.attr("id")?.to_owned(), i.children().next()?.clone())))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

#[tokio::test]
async fn private_xml_and_xep_0402_clients_see_the_same_rooms() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut modern = modern(&server).await?;
    let mut legacy = server.login("alice", &password("alice"), "legacy").await?;

    // A XEP-0048 client writes two rooms and a URL through private XML.
    let storage = "<storage xmlns='storage:bookmarks'>\
        <conference jid='council@muc.localhost' name='Council' autojoin='true'>\
          <nick>Puck</nick><password>moon</password></conference>\
        <conference jid='Play@muc.localhost' name='The Play'/>\
        <url name='Home' url='https://example.org/'/></storage>";
    private_iq(&mut legacy, "set", "s1", storage).await?;
    // The XEP-0402 client hears of each room (the JID prepared), and fetches them.
    let mut notified = Vec::new();
    for _ in 0..2 {
        let event = expect_event(&mut modern, &[NODE], ALICE, NODE).await?;
        notified.extend(item_ids(&event));
    }
    notified.sort();
    assert_eq!(notified, ["council@muc.localhost", "play@muc.localhost"]);
    let rooms = modern_rooms(&mut modern).await?;
    let council = &rooms[0].1;
    assert_eq!(council.attr("autojoin"), Some("true"), "{council}");
    assert_eq!(
        council.child("nick", NODE).map(Element::text).as_deref(),
        Some("Puck")
    );
    assert_eq!(
        council
            .child("password", NODE)
            .map(Element::text)
            .as_deref(),
        Some("moon")
    );

    // The XEP-0402 client adds a room with extensions; the XEP-0048 view has three, and the URL.
    let extended = "<conference xmlns='urn:xmpp:bookmarks:1' name='Garden' autojoin='false'>\
        <nick>Titania</nick><extensions><pinned xmlns='urn:example:pin'/></extensions>\
        </conference>";
    publish_noticed(&mut modern, NODE, "garden@muc.localhost", extended, OPTIONS).await?;
    let (rooms, urls) = legacy_rooms(&mut legacy, "g1").await?;
    assert_eq!(
        rooms,
        [
            room("council@muc.localhost", "Council", "Puck"),
            room("garden@muc.localhost", "Garden", "Titania"),
            room("play@muc.localhost", "The Play", ""),
        ]
    );
    assert_eq!(urls, ["https://example.org/"]);

    // The XEP-0048 client renames the garden and drops the play: the garden keeps its
    // extensions, the play is retracted, the council (unchanged) is not published again.
    let storage = "<storage xmlns='storage:bookmarks'>\
        <conference jid='council@muc.localhost' name='Council' autojoin='true'>\
          <nick>Puck</nick><password>moon</password></conference>\
        <conference jid='garden@muc.localhost' name='Summer Garden'><nick>Titania</nick>\
        </conference></storage>";
    private_iq(&mut legacy, "set", "s2", storage).await?;
    let mut changes = Vec::new();
    for _ in 0..2 {
        let event = expect_event(&mut modern, &[NODE], ALICE, NODE).await?;
        let items = event
            .child("event", EVENT)
            .and_then(|e| e.child("items", EVENT));
        for c in items.into_iter().flat_map(|i| i.children()) {
            changes.push(format!("{} {}", c.name(), c.attr("id").unwrap_or_default()));
        }
    }
    changes.sort();
    assert_eq!(
        changes,
        ["item garden@muc.localhost", "retract play@muc.localhost"]
    );
    quiet(&mut modern, &[NODE]).await?;
    let rooms = modern_rooms(&mut modern).await?;
    let ids: Vec<&str> = rooms.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["council@muc.localhost", "garden@muc.localhost"]);
    let garden = &rooms[1].1;
    assert_eq!(garden.attr("name"), Some("Summer Garden"));
    assert!(
        garden
            .child("extensions", NODE)
            .is_some_and(|x| x.child("pinned", "urn:example:pin").is_some()),
        "{garden}"
    );

    // A room without a valid JID is refused, and nothing changes.
    let bad = "<storage xmlns='storage:bookmarks'><conference name='No room'/></storage>";
    let iq = format!("<iq type='set' id='s3'><query xmlns='jabber:iq:private'>{bad}</query></iq>");
    let answer = request(&mut legacy, &[], "s3", &iq).await?;
    assert_eq!(
        conditions(&answer).0.as_deref(),
        Some("bad-request"),
        "{answer}"
    );
    let rooms = modern_rooms(&mut modern).await?;
    assert_eq!(rooms.len(), 2);

    // Bookmarks are alice's alone.
    let mut bob = server.login("bob", &password("bob"), "desk").await?;
    let answer = fetch(&mut bob, &[], ALICE, NODE, None, &[]).await?;
    assert_eq!(answer.attr("type"), Some("error"), "{answer}");
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_legacy_pep_node_follows_and_is_taken_in() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    let mut modern = modern(&server).await?;
    let room_payload =
        "<conference xmlns='urn:xmpp:bookmarks:1' name='Council'><nick>Puck</nick></conference>";
    publish_noticed(
        &mut modern,
        NODE,
        "council@muc.localhost",
        room_payload,
        OPTIONS,
    )
    .await?;
    // The legacy node holds the XEP-0048 view.
    let answer = fetch(&mut modern, &[NODE], ALICE, LEGACY, None, &[]).await?;
    let storage = answer
        .child("pubsub", PUBSUB)
        .and_then(|p| p.child("items", PUBSUB))
        .and_then(|i| i.children().find(|c| c.attr("id") == Some("current")))
        .and_then(|i| i.child("storage", LEGACY))
        .with_context(|| format!("the legacy item in {answer}"))?;
    assert_eq!(
        rooms_of(storage).0,
        [room("council@muc.localhost", "Council", "Puck")]
    );

    // A XEP-0048 client publishing to the legacy node (XEP-0048 §3.2) changes the rooms.
    let legacy_storage = "<storage xmlns='storage:bookmarks'>\
        <conference jid='garden@muc.localhost' name='Garden' autojoin='1'/></storage>";
    let options = [
        ("pubsub#persist_items", "true"),
        ("pubsub#access_model", "whitelist"),
    ];
    // The change it makes to the rooms is notified too.
    let event = publish_noticed(&mut modern, LEGACY, "current", legacy_storage, &options).await?;
    assert_eq!(event.attr("from"), Some(ALICE));
    quiet(&mut modern, &[NODE]).await?;
    let rooms = modern_rooms(&mut modern).await?;
    let ids: Vec<&str> = rooms.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["garden@muc.localhost"]);
    assert_eq!(rooms[0].1.attr("autojoin"), Some("true"));

    // The account says the server keeps the versions together.
    let id = "disco1";
    let iq = format!(
        "<iq type='get' id='{id}' to='{ALICE}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    );
    let info = request(&mut modern, &[NODE], id, &iq).await?;
    let text = info.to_string();
    for feature in [
        "urn:xmpp:bookmarks:1#compat",
        "urn:xmpp:bookmarks:1#compat-pep",
        "urn:xmpp:bookmarks-conversion:0",
    ] {
        assert!(
            text.contains(&format!("var=\"{feature}\"")),
            "{feature} in {text}"
        );
    }
    server.stop().await;
    Ok(())
}

/// The modules built on PEP cannot run without it: the server refuses to start and says why.
#[tokio::test]
async fn bookmarks_without_pep_is_a_configuration_error() -> anyhow::Result<()> {
    for module in ["bookmarks", "vcard_conversion"] {
        let started = TestServer::start_with(|config: &mut xmppd::config::Config| {
            let modules = ["im", "disco", "private", "vcard", module];
            config.modules = Some(modules.iter().map(|m| (*m).to_owned()).collect());
        })
        .await;
        let Err(e) = started else {
            anyhow::bail!("{module} started without pep");
        };
        let text = format!("{e:#}");
        assert!(text.contains(module) && text.contains("\"pep\""), "{text}");
    }
    Ok(())
}
