//! XEP-0163 personal eventing, the requests: OMEMO's publishes with publish-options and a
//! stranger fetching them, preconditions, retrieval by id and `max_items`, the access models,
//! the refusals XEP-0060 names, account discovery, and items surviving a restart.
//! Notifications are in `pep_notify.rs`.

use crate::common;

use std::sync::Arc;

use common::pep::*;
use common::*;
use xmppd_testkit::{TestClient, TestServer};

const DEVICELIST: &str = "eu.siacs.conversations.axolotl.devicelist";
const BUNDLE: &str = "eu.siacs.conversations.axolotl.bundles:4223";
const OMEMO2: &str = "urn:xmpp:omemo:2:devices";
const ALICE: &str = "alice@localhost";

fn devicelist(id: u32) -> String {
    format!("<list xmlns='eu.siacs.conversations.axolotl'><device id='{id}'/></list>")
}

async fn server_with(settings: &str) -> anyhow::Result<TestServer> {
    let text: Arc<str> = Arc::from(format!("[modules.pep]\n{settings}\n"));
    let server = TestServer::start_with(move |c| c.text = Some(text)).await?;
    add_users(&server, &["alice", "bob", "carol"]).await?;
    Ok(server)
}

/// Expects an error answer with these conditions.
fn assert_error(answer: &xmppd_xml::Element, defined: &str, pubsub: Option<&str>) {
    assert_eq!(answer.attr("type"), Some("error"), "{answer}");
    assert_eq!(
        conditions(answer),
        (Some(defined.to_owned()), pubsub.map(str::to_owned)),
        "{answer}"
    );
}

/// What Conversations does for OMEMO: device list and bundle published with
/// `pubsub#access_model=open`, the OMEMO 2 device list with `pubsub#max_items=max`; a
/// stranger fetches them. A precondition that differs from the node's configuration fails.
#[tokio::test]
async fn omemo_nodes_are_published_with_options_and_fetched_by_a_stranger() -> anyhow::Result<()> {
    let server = server_with("").await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let mut carol = online(&server, "carol", "pc", 0).await?;
    let open = [("pubsub#access_model", "open")];
    let id = publish(
        &mut alice,
        &[],
        DEVICELIST,
        Some("current"),
        &devicelist(4223),
        &open,
    )
    .await?;
    assert_eq!(id, "current");
    let bundle = "<bundle xmlns='eu.siacs.conversations.axolotl'><signedPreKeyPublic signedPreKeyId='1'>AAAA</signedPreKeyPublic></bundle>";
    publish(&mut alice, &[], BUNDLE, Some("current"), bundle, &open).await?;
    let devices = "<devices xmlns='urn:xmpp:omemo:2'><device id='4223'/></devices>";
    let max = [("pubsub#access_model", "open"), ("pubsub#max_items", "max")];
    publish(&mut alice, &[], OMEMO2, Some("current"), devices, &max).await?;
    // The same options again: the preconditions hold.
    publish(&mut alice, &[], OMEMO2, Some("current"), devices, &max).await?;

    // A publish whose options differ from the node's configuration (§7.1.5).
    let iq = publish_iq(
        "mismatch",
        DEVICELIST,
        Some("current"),
        &devicelist(1),
        &[("pubsub#access_model", "presence")],
    );
    let answer = request(&mut alice, &[], "mismatch", &iq).await?;
    assert_error(&answer, "conflict", Some("precondition-not-met"));

    // A stranger reads the open nodes: the device list is the one published first.
    for node in [DEVICELIST, BUNDLE, OMEMO2] {
        let answer = fetch(&mut carol, &[], ALICE, node, None, &[]).await?;
        assert_eq!(answer.attr("type"), Some("result"), "{answer}");
        assert_eq!(item_ids(&answer), vec!["current".to_owned()], "{answer}");
    }
    let answer = fetch(&mut carol, &[], ALICE, DEVICELIST, None, &[]).await?;
    assert!(
        answer.to_string().contains("device id=\"4223\""),
        "{answer}"
    );
    Ok(())
}

/// Retrieval (§6.5): all items oldest first, the newest `max_items`, by id, and a missing
/// item or node.
#[tokio::test]
async fn items_are_retrieved_whole_by_count_and_by_id() -> anyhow::Result<()> {
    let server = server_with("").await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let keep = [("pubsub#max_items", "3")];
    for id in ["a", "b", "c", "d"] {
        let note = format!("<note xmlns='urn:example:notes'>{id}</note>");
        publish(&mut alice, &[], "notes", Some(id), &note, &keep).await?;
    }
    let all = fetch(&mut alice, &[], ALICE, "notes", None, &[]).await?;
    assert_eq!(item_ids(&all), ["b", "c", "d"], "the oldest went: {all}");
    let newest = fetch(&mut alice, &[], ALICE, "notes", Some(2), &[]).await?;
    assert_eq!(item_ids(&newest), ["c", "d"], "{newest}");
    let one = fetch(&mut alice, &[], ALICE, "notes", None, &["b"]).await?;
    assert_eq!(item_ids(&one), ["b"], "{one}");
    assert!(one.to_string().contains(">b</note>"), "{one}");
    let gone = fetch(&mut alice, &[], ALICE, "notes", None, &["a"]).await?;
    assert_error(&gone, "item-not-found", None);
    let none = fetch(&mut alice, &[], ALICE, "no-such-node", None, &[]).await?;
    assert_error(&none, "item-not-found", None);
    // An item published without an id gets one.
    let id = publish(
        &mut alice,
        &[],
        "notes",
        None,
        "<note xmlns='urn:example:notes'/>",
        &[],
    )
    .await?;
    assert!(!id.is_empty());
    let newest = fetch(&mut alice, &[], ALICE, "notes", Some(1), &[]).await?;
    assert_eq!(item_ids(&newest), [id], "{newest}");
    Ok(())
}

/// §6.5.9: `presence` (the default) refuses strangers, `roster` contacts outside the allowed
/// groups, `whitelist` everyone but the owner; contacts read `presence` nodes.
#[tokio::test]
async fn access_models_are_enforced_on_every_read() -> anyhow::Result<()> {
    let server = server_with("").await?;
    let mut alice = online_with_roster(&server, "alice", "phone", 0).await?;
    let mut bob = online_with_roster(&server, "bob", "desk", 0).await?;
    befriend(&mut alice, "alice", &mut bob, "bob").await?;
    let mut carol = online(&server, "carol", "pc", 0).await?;
    let tune = "<tune xmlns='http://jabber.org/protocol/tune'><title>x</title></tune>";
    publish(&mut alice, &[], "tune", Some("1"), tune, &[]).await?;
    publish(
        &mut alice,
        &[],
        "private",
        Some("1"),
        tune,
        &[("pubsub#access_model", "whitelist")],
    )
    .await?;
    let roster = [
        ("pubsub#access_model", "roster"),
        ("pubsub#roster_groups_allowed", "family"),
    ];
    publish(&mut alice, &[], "family", Some("1"), tune, &roster).await?;

    let answer = fetch(&mut bob, &[], ALICE, "tune", None, &[]).await?;
    assert_eq!(
        item_ids(&answer),
        ["1"],
        "a contact reads a presence node: {answer}"
    );
    let answer = fetch(&mut carol, &[], ALICE, "tune", None, &[]).await?;
    assert_error(
        &answer,
        "not-authorized",
        Some("presence-subscription-required"),
    );
    let answer = fetch(&mut bob, &[], ALICE, "private", None, &[]).await?;
    assert_error(&answer, "not-allowed", Some("closed-node"));
    let answer = fetch(&mut alice, &[], ALICE, "private", None, &[]).await?;
    assert_eq!(
        item_ids(&answer),
        ["1"],
        "the owner reads its whitelist node: {answer}"
    );
    let answer = fetch(&mut bob, &[], ALICE, "family", None, &[]).await?;
    assert_error(&answer, "not-authorized", Some("not-in-roster-group"));

    // Alice puts bob in the group: now he may read it.
    alice
        .send("<iq type='set' id='grp'><query xmlns='jabber:iq:roster'><item jid='bob@localhost'><group>family</group></item></query></iq>")
        .await?;
    next(&mut alice, &[], "the roster push", |e| {
        e.attr("type") == Some("set")
    })
    .await?;
    next(&mut alice, &[], "the roster result", |e| {
        e.attr("id") == Some("grp")
    })
    .await?;
    let answer = fetch(&mut bob, &[], ALICE, "family", None, &[]).await?;
    assert_eq!(item_ids(&answer), ["1"], "{answer}");
    Ok(())
}

/// The refusals: a non-owner publishing, configuring or deleting (`forbidden`), an over-size
/// item (`payload-too-big`), a 10 KB node name, unknown options, a publish without an item,
/// a request without a node, an unimplemented action.
#[tokio::test]
async fn bad_requests_get_the_errors_xep_0060_names() -> anyhow::Result<()> {
    let server = server_with("max_item_bytes = 1000\nmax_nodes = 2").await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let mut bob = online(&server, "bob", "desk", 0).await?;
    publish(
        &mut alice,
        &[],
        "tune",
        Some("1"),
        "<tune xmlns='http://jabber.org/protocol/tune'/>",
        &[],
    )
    .await?;

    let cases: Vec<(&str, String, &str, Option<&str>)> = vec![
        (
            "big",
            publish_iq(
                "big",
                "tune",
                None,
                &format!(
                    "<tune xmlns='http://jabber.org/protocol/tune'><title>{}</title></tune>",
                    "x".repeat(2000)
                ),
                &[],
            ),
            "not-acceptable",
            Some("payload-too-big"),
        ),
        (
            "long",
            publish_iq(
                "long",
                &"n".repeat(10 * 1024),
                None,
                "<x xmlns='urn:x'/>",
                &[],
            ),
            "not-acceptable",
            None,
        ),
        (
            "unknown-option",
            publish_iq(
                "unknown-option",
                "other",
                None,
                "<x xmlns='urn:x'/>",
                &[("pubsub#frobnicate", "1")],
            ),
            "bad-request",
            Some("invalid-options"),
        ),
        (
            "no-item",
            format!(
                "<iq type='set' id='no-item'><pubsub xmlns='{PUBSUB}'><publish node='tune'/></pubsub></iq>"
            ),
            "bad-request",
            Some("item-required"),
        ),
        (
            "two-payloads",
            format!(
                "<iq type='set' id='two-payloads'><pubsub xmlns='{PUBSUB}'><publish node='tune'><item><a xmlns='urn:a'/><b xmlns='urn:b'/></item></publish></pubsub></iq>"
            ),
            "bad-request",
            Some("invalid-payload"),
        ),
        (
            "no-node",
            format!("<iq type='get' id='no-node'><pubsub xmlns='{PUBSUB}'><items/></pubsub></iq>"),
            "bad-request",
            Some("nodeid-required"),
        ),
        (
            "subscribe",
            format!(
                "<iq type='set' id='subscribe'><pubsub xmlns='{PUBSUB}'><subscribe node='tune' jid='alice@localhost'/></pubsub></iq>"
            ),
            "feature-not-implemented",
            Some("unsupported"),
        ),
        (
            "bad-config",
            format!(
                "<iq type='set' id='bad-config'><pubsub xmlns='{OWNER}'><configure node='tune'>\
               <x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#node_config</value></field>\
               <field var='pubsub#colour'><value>red</value></field></x></configure></pubsub></iq>"
            ),
            "bad-request",
            Some("invalid-options"),
        ),
    ];
    for (id, iq, defined, pubsub) in cases {
        let answer = request(&mut alice, &[], id, &iq).await?;
        assert_error(&answer, defined, pubsub);
    }

    // A publish in a get is a bad request; a third node is over `max_nodes`.
    let iq = format!(
        "<iq type='get' id='get-pub'><pubsub xmlns='{PUBSUB}'><publish node='tune'><item><x xmlns='urn:x'/></item></publish></pubsub></iq>"
    );
    let answer = request(&mut alice, &[], "get-pub", &iq).await?;
    assert_error(&answer, "bad-request", None);
    publish(&mut alice, &[], "second", None, "<x xmlns='urn:x'/>", &[]).await?;
    let iq = publish_iq("third", "third", None, "<x xmlns='urn:x'/>", &[]);
    let answer = request(&mut alice, &[], "third", &iq).await?;
    assert_error(&answer, "not-allowed", None);

    // Bob on alice's account: publish, configure, delete and purge are the owner's.
    let owner_only = [
        (
            "b-pub",
            format!(
                "<iq type='set' id='b-pub' to='{ALICE}'><pubsub xmlns='{PUBSUB}'><publish node='tune'><item><x xmlns='urn:x'/></item></publish></pubsub></iq>"
            ),
        ),
        (
            "b-conf",
            format!(
                "<iq type='get' id='b-conf' to='{ALICE}'><pubsub xmlns='{OWNER}'><configure node='tune'/></pubsub></iq>"
            ),
        ),
        (
            "b-del",
            format!(
                "<iq type='set' id='b-del' to='{ALICE}'><pubsub xmlns='{OWNER}'><delete node='tune'/></pubsub></iq>"
            ),
        ),
        (
            "b-purge",
            format!(
                "<iq type='set' id='b-purge' to='{ALICE}'><pubsub xmlns='{OWNER}'><purge node='tune'/></pubsub></iq>"
            ),
        ),
        (
            "b-retract",
            format!(
                "<iq type='set' id='b-retract' to='{ALICE}'><pubsub xmlns='{PUBSUB}'><retract node='tune'><item id='1'/></retract></pubsub></iq>"
            ),
        ),
    ];
    for (id, iq) in owner_only {
        let answer = request(&mut bob, &[], id, &iq).await?;
        assert_error(&answer, "forbidden", None);
    }
    // Nothing changed.
    let answer = fetch(&mut alice, &[], ALICE, "tune", None, &[]).await?;
    assert_eq!(item_ids(&answer), ["1"], "{answer}");
    Ok(())
}

/// The owner reads and changes a node's configuration (§8.2); a lowered `max_items` drops
/// the oldest items.
#[tokio::test]
async fn the_owner_configures_a_node() -> anyhow::Result<()> {
    let server = server_with("").await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    for id in ["1", "2"] {
        publish(
            &mut alice,
            &[],
            "notes",
            Some(id),
            "<n xmlns='urn:n'/>",
            &[("pubsub#max_items", "10")],
        )
        .await?;
    }
    let iq = format!(
        "<iq type='get' id='conf'><pubsub xmlns='{OWNER}'><configure node='notes'/></pubsub></iq>"
    );
    let answer = request(&mut alice, &[], "conf", &iq).await?;
    let text = answer.to_string();
    assert!(
        text.contains("pubsub#access_model") && text.contains(">presence<"),
        "{answer}"
    );
    assert!(text.contains(">10<"), "{answer}");
    let iq = format!(
        "<iq type='set' id='conf2'><pubsub xmlns='{OWNER}'><configure node='notes'>\
           <x xmlns='jabber:x:data' type='submit'>\
             <field var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#node_config</value></field>\
             <field var='pubsub#max_items'><value>1</value></field>\
             <field var='pubsub#access_model'><value>open</value></field></x>\
         </configure></pubsub></iq>"
    );
    let answer = request(&mut alice, &[], "conf2", &iq).await?;
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");
    let answer = fetch(&mut alice, &[], ALICE, "notes", None, &[]).await?;
    assert_eq!(item_ids(&answer), ["2"], "{answer}");
    let mut carol = online(&server, "carol", "pc", 0).await?;
    let answer = fetch(&mut carol, &[], ALICE, "notes", None, &[]).await?;
    assert_eq!(item_ids(&answer), ["2"], "now open: {answer}");
    Ok(())
}

async fn disco(client: &mut TestClient, id: &str, ns: &str) -> anyhow::Result<xmppd_xml::Element> {
    let iq = format!("<iq type='get' id='{id}' to='{ALICE}'><query xmlns='{ns}'/></iq>");
    request(client, &[], id, &iq).await
}

fn nodes(items: &xmppd_xml::Element) -> Vec<String> {
    let mut nodes: Vec<String> = items
        .children()
        .flat_map(|q| q.children())
        .filter(|i| i.attr("jid") == Some(ALICE))
        .filter_map(|i| i.attr("node").map(str::to_owned))
        .collect();
    nodes.sort();
    nodes
}

/// XEP-0163 §6.1: the account is a `pubsub/pep` service with the PEP features; §6.2:
/// disco#items lists the nodes each requester may read.
#[tokio::test]
async fn the_account_is_discovered_as_a_pep_service() -> anyhow::Result<()> {
    let server = server_with("").await?;
    let mut alice = online_with_roster(&server, "alice", "phone", 0).await?;
    let mut bob = online_with_roster(&server, "bob", "desk", 0).await?;
    befriend(&mut alice, "alice", &mut bob, "bob").await?;
    let mut carol = online(&server, "carol", "pc", 0).await?;
    publish(&mut alice, &[], "tune", None, "<t xmlns='urn:t'/>", &[]).await?;
    publish(
        &mut alice,
        &[],
        DEVICELIST,
        None,
        &devicelist(1),
        &[("pubsub#access_model", "open")],
    )
    .await?;
    publish(
        &mut alice,
        &[],
        "private",
        None,
        "<t xmlns='urn:t'/>",
        &[("pubsub#access_model", "whitelist")],
    )
    .await?;

    let info = disco(&mut alice, "info", "http://jabber.org/protocol/disco#info").await?;
    let text = info.to_string();
    assert!(text.contains("category=\"pubsub\" type=\"pep\""), "{info}");
    assert!(
        text.contains("category=\"account\" type=\"registered\""),
        "{info}"
    );
    for feature in [
        "http://jabber.org/protocol/pubsub#publish",
        "http://jabber.org/protocol/pubsub#publish-options",
        "http://jabber.org/protocol/pubsub#auto-create",
        "http://jabber.org/protocol/pubsub#auto-subscribe",
        "http://jabber.org/protocol/pubsub#filtered-notifications",
        "http://jabber.org/protocol/pubsub#access-presence",
    ] {
        assert!(
            text.contains(&format!("var=\"{feature}\"")),
            "{feature}: {info}"
        );
    }
    let items_ns = "http://jabber.org/protocol/disco#items";
    let own = disco(&mut alice, "own", items_ns).await?;
    assert_eq!(nodes(&own), [DEVICELIST, "private", "tune"], "{own}");
    let contact = disco(&mut bob, "contact", items_ns).await?;
    assert_eq!(nodes(&contact), [DEVICELIST, "tune"], "{contact}");
    let stranger = disco(&mut carol, "stranger", items_ns).await?;
    assert_eq!(nodes(&stranger), [DEVICELIST], "{stranger}");
    Ok(())
}

/// Items are stored: they are there after a restart.
#[tokio::test]
async fn items_survive_a_restart() -> anyhow::Result<()> {
    let server = server_with("").await?;
    let mut alice = online(&server, "alice", "phone", 0).await?;
    publish(
        &mut alice,
        &[],
        DEVICELIST,
        Some("current"),
        &devicelist(77),
        &[("pubsub#access_model", "open")],
    )
    .await?;
    drop(alice);
    let server = server.restart().await?;
    let mut carol = online(&server, "carol", "pc", 0).await?;
    let answer = fetch(&mut carol, &[], ALICE, DEVICELIST, None, &[]).await?;
    assert_eq!(item_ids(&answer), ["current"], "{answer}");
    assert!(answer.to_string().contains("device id=\"77\""), "{answer}");
    // The configuration too: the precondition still holds, and a different one does not.
    let mut alice = online(&server, "alice", "phone", 0).await?;
    let iq = publish_iq(
        "again",
        DEVICELIST,
        Some("current"),
        &devicelist(77),
        &[("pubsub#access_model", "presence")],
    );
    let answer = request(&mut alice, &[], "again", &iq).await?;
    assert_error(&answer, "conflict", Some("precondition-not-met"));
    Ok(())
}

/// `[modules.pep]` refuses unknown keys, naming the line and the key.
#[test]
fn a_misspelt_pep_setting_names_its_line_and_key() {
    let text = "[modules.pep]\nmax_nodez = 3\n";
    let err = xmppd::config::Config::parse(text, std::path::Path::new("xmppd.toml"))
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("max_nodez"), "{err}");
    assert!(err.contains("line 2"), "{err}");
}
