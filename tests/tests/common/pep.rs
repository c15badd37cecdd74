//! PEP test helpers: clients that show XEP-0115 caps and answer the server's disco#info
//! query for them as a real client does, publishing and fetching, and reading notifications.

use anyhow::{Context, bail};
use xmppd_proto::caps::Caps;
use xmppd_proto::disco::{DiscoInfoResult, Identity};
use xmppd_testkit::{TestClient, stanza_error_condition};
use xmppd_xml::Element;

use super::{CLIENT, SILENCE};

/// The caps node of the test clients.
pub const CAPS_NODE: &str = "https://xmppd.example/test-client";
/// `http://jabber.org/protocol/pubsub`.
pub const PUBSUB: &str = "http://jabber.org/protocol/pubsub";
/// `http://jabber.org/protocol/pubsub#owner`.
pub const OWNER: &str = "http://jabber.org/protocol/pubsub#owner";
/// `http://jabber.org/protocol/pubsub#event`.
pub const EVENT: &str = "http://jabber.org/protocol/pubsub#event";
/// `http://jabber.org/protocol/pubsub#errors`.
pub const ERRORS: &str = "http://jabber.org/protocol/pubsub#errors";
const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";

/// What a client with interest in `notify` (node names) answers to disco#info.
pub fn client_info(notify: &[&str]) -> DiscoInfoResult {
    let mut info = DiscoInfoResult::default();
    info.identities
        .push(Identity::new("client", "phone").with_name("test"));
    info.features = vec![
        DISCO_INFO.to_owned(),
        "http://jabber.org/protocol/caps".to_owned(),
    ];
    info.features
        .extend(notify.iter().map(|n| format!("{n}+notify")));
    info
}

/// Sends available presence carrying the caps of `notify` (no `to`: broadcast; or directed
/// to `to`).
pub async fn show_caps(
    client: &mut TestClient,
    notify: &[&str],
    to: Option<&str>,
) -> anyhow::Result<()> {
    let caps = Caps::sha1(CAPS_NODE, &client_info(notify));
    let to = to.map(|t| format!(" to='{t}'")).unwrap_or_default();
    client
        .send(&format!("<presence{to}>{}</presence>", caps.to_element()))
        .await
}

/// Whether `el` is the server's disco#info query for a caps node.
fn is_caps_query(el: &Element) -> bool {
    el.is("iq", CLIENT)
        && el.attr("type") == Some("get")
        && el
            .child("query", DISCO_INFO)
            .and_then(|q| q.attr("node"))
            .is_some_and(|n| n.starts_with(CAPS_NODE))
}

/// Answers a caps query as a client with interest in `notify`.
async fn answer_caps(
    client: &mut TestClient,
    query: &Element,
    notify: &[&str],
) -> anyhow::Result<()> {
    let mut info = client_info(notify);
    info.node = query
        .child("query", DISCO_INFO)
        .and_then(|q| q.attr("node"))
        .map(str::to_owned);
    let id = query.attr("id").unwrap_or_default();
    let to = query.attr("from").unwrap_or_default();
    client
        .send(&format!(
            "<iq type='result' id='{id}' to='{to}'>{}</iq>",
            info.to_element()
        ))
        .await
}

/// The next stanza that is not presence, answering caps queries (as a client with interest
/// in `notify`) on the way; it must satisfy `check`. Presence is skipped: its order against
/// notifications depends on the contacts' timing, not on PEP.
pub async fn next(
    client: &mut TestClient,
    notify: &[&str],
    what: &str,
    check: impl Fn(&Element) -> bool,
) -> anyhow::Result<Element> {
    for _ in 0..100 {
        let el = client
            .recv()
            .await
            .with_context(|| format!("waiting for {what}"))?;
        if is_caps_query(&el) {
            answer_caps(client, &el, notify).await?;
            continue;
        }
        if el.is("presence", CLIENT) {
            continue;
        }
        if !check(&el) {
            bail!("expected {what}, got {el}");
        }
        return Ok(el);
    }
    bail!("only presence while waiting for {what}")
}

/// Asserts that nothing but presence arrives for a while, answering caps queries meanwhile.
pub async fn quiet(client: &mut TestClient, notify: &[&str]) -> anyhow::Result<()> {
    loop {
        match client.next_event_within(SILENCE).await? {
            None => return Ok(()),
            Some(xmppd_xml::StreamEvent::Stanza(el)) => {
                if is_caps_query(&el) {
                    answer_caps(client, &el, notify).await?;
                } else if !el.is("presence", CLIENT) {
                    bail!("expected nothing but presence, got {el}");
                }
            }
            Some(other) => bail!("expected nothing, got {other:?}"),
        }
    }
}

/// `<iq type='set'>` publishing `payload` as item `id` (none: the server picks) to `node` of
/// the sender's account, with publish-options `options` (`var`, `value`).
pub fn publish_iq(
    iq_id: &str,
    node: &str,
    item_id: Option<&str>,
    payload: &str,
    options: &[(&str, &str)],
) -> String {
    let id = item_id.map(|i| format!(" id='{i}'")).unwrap_or_default();
    let options = if options.is_empty() {
        String::new()
    } else {
        let fields: String = options
            .iter()
            .map(|(var, value)| format!("<field var='{var}'><value>{value}</value></field>"))
            .collect();
        format!(
            "<publish-options><x xmlns='jabber:x:data' type='submit'>\
               <field var='FORM_TYPE' type='hidden'>\
                 <value>http://jabber.org/protocol/pubsub#publish-options</value></field>\
               {fields}</x></publish-options>"
        )
    };
    format!(
        "<iq type='set' id='{iq_id}'><pubsub xmlns='{PUBSUB}'>\
           <publish node='{node}'><item{id}>{payload}</item></publish>{options}\
         </pubsub></iq>"
    )
}

/// Publishes and expects success; returns the item id the server reports.
pub async fn publish(
    client: &mut TestClient,
    notify: &[&str],
    node: &str,
    item_id: Option<&str>,
    payload: &str,
    options: &[(&str, &str)],
) -> anyhow::Result<String> {
    let iq_id = format!("pub-{node}-{}", item_id.unwrap_or("auto"));
    client
        .send(&publish_iq(&iq_id, node, item_id, payload, options))
        .await?;
    let result = next(client, notify, "the publish result", |e| {
        e.is("iq", CLIENT) && e.attr("id") == Some(iq_id.as_str())
    })
    .await?;
    if result.attr("type") != Some("result") {
        bail!("publish failed: {result}");
    }
    result
        .child("pubsub", PUBSUB)
        .and_then(|p| p.child("publish", PUBSUB))
        .and_then(|p| p.child("item", PUBSUB))
        .and_then(|i| i.attr("id"))
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("no item id in {result}"))
}

/// Sends `iq` (with id `id`) and returns the answer, whatever its type.
pub async fn request(
    client: &mut TestClient,
    notify: &[&str],
    id: &str,
    iq: &str,
) -> anyhow::Result<Element> {
    client.send(iq).await?;
    next(client, notify, &format!("the answer to {id}"), |e| {
        e.is("iq", CLIENT) && e.attr("id") == Some(id)
    })
    .await
}

/// The defined condition and the pubsub condition of an error answer.
pub fn conditions(el: &Element) -> (Option<String>, Option<String>) {
    let pubsub = el
        .child("error", CLIENT)
        .and_then(|e| e.children().find(|c| c.ns() == ERRORS))
        .map(|c| c.name().to_owned());
    (stanza_error_condition(el), pubsub)
}

/// Fetches items of `node` at `owner` (all, or the newest `max`, or `ids`); returns the
/// answer.
pub async fn fetch(
    client: &mut TestClient,
    notify: &[&str],
    owner: &str,
    node: &str,
    max: Option<u32>,
    ids: &[&str],
) -> anyhow::Result<Element> {
    let max_attr = max.map(|m| format!(" max_items='{m}'")).unwrap_or_default();
    let items: String = ids.iter().map(|i| format!("<item id='{i}'/>")).collect();
    let id = format!("fetch-{node}");
    let iq = format!(
        "<iq type='get' id='{id}' to='{owner}'><pubsub xmlns='{PUBSUB}'>\
           <items node='{node}'{max_attr}>{items}</items></pubsub></iq>"
    );
    request(client, notify, &id, &iq).await
}

/// The ids of the items of an items result or an event.
pub fn item_ids(el: &Element) -> Vec<String> {
    let items = el
        .child("pubsub", PUBSUB)
        .and_then(|p| p.child("items", PUBSUB))
        .or_else(|| {
            el.child("event", EVENT)
                .and_then(|e| e.child("items", EVENT))
        });
    items
        .map(|i| {
            i.children()
                .filter(|c| c.name() == "item")
                .filter_map(|c| c.attr("id").map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Expects a PEP notification from `owner` about `node`; returns it.
pub async fn expect_event(
    client: &mut TestClient,
    notify: &[&str],
    owner: &str,
    node: &str,
) -> anyhow::Result<Element> {
    next(
        client,
        notify,
        &format!("an event of {node} from {owner}"),
        |e| {
            e.is("message", CLIENT)
                && e.attr("type") == Some("headline")
                && e.attr("from") == Some(owner)
                && e.child("event", EVENT)
                    .is_some_and(|ev| ev.children().any(|c| c.attr("node") == Some(node)))
        },
    )
    .await
}
