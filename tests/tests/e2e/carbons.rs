//! XEP-0280 Message Carbons: switching them per resource (§4, §5), `received` copies for the
//! enabled resources that did not get a message (§7), `sent` copies of what a resource sends
//! (§8), the messages never copied (§6.1, §9), offline messages, and forged wrappers (§11).

use crate::common;

use common::*;
use xmppd_testkit::{TestClient, TestServer, stanza_error_condition};
use xmppd_xml::Element;

const CARBONS: &str = "urn:xmpp:carbons:2";
const FORWARD: &str = "urn:xmpp:forward:0";

/// Switches carbons (`enable` or `disable`) for this resource and takes the result.
async fn switch(client: &mut TestClient, command: &str) -> anyhow::Result<()> {
    client
        .send(&format!(
            "<iq type='set' id='{command}1'><{command} xmlns='{CARBONS}'/></iq>"
        ))
        .await?;
    client
        .expect(&format!("result of {command}"), |e| {
            e.is("iq", CLIENT)
                && e.attr("type") == Some("result")
                && e.attr("id") == Some(&format!("{command}1"))
        })
        .await?;
    Ok(())
}

/// Logs in alice's resources in order, each `(resource, priority, carbons)`, taking every
/// presence the logins cause, and enables carbons where asked.
async fn alice_on(
    server: &TestServer,
    resources: &[(&str, i8, bool)],
) -> anyhow::Result<Vec<TestClient>> {
    let mut clients: Vec<TestClient> = Vec::new();
    for (resource, priority, _) in resources {
        let mut client = online(server, "alice", resource, *priority).await?;
        let me = format!("alice@localhost/{resource}");
        for _ in 0..clients.len() {
            client
                .expect("presence of another resource", |e| e.is("presence", CLIENT))
                .await?;
        }
        for other in &mut clients {
            expect_presence(other, &me, None).await?;
        }
        clients.push(client);
    }
    for (client, (_, _, carbons)) in clients.iter_mut().zip(resources) {
        if *carbons {
            switch(client, "enable").await?;
        }
    }
    Ok(clients)
}

/// Alice's laptop (priority 5) and phone (1) with carbons, her tablet (1) without.
const THREE: [(&str, i8, bool); 3] = [
    ("laptop", 5, true),
    ("phone", 1, true),
    ("tablet", 1, false),
];

/// A server with bob online (`desk`) and alice's resources as [`alice_on`] makes them.
async fn alice_and_bob(
    resources: &[(&str, i8, bool)],
) -> anyhow::Result<(TestServer, TestClient, Vec<TestClient>)> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let bob = online(&server, "bob", "desk", 0).await?;
    let alice = alice_on(&server, resources).await?;
    Ok((server, bob, alice))
}

/// The message a carbon copy forwards, checking the wrapper: from the bare JID, to this
/// resource, of the original's type, with `direction` around `<forwarded/>`.
fn forwarded<'a>(copy: &'a Element, direction: &str) -> Option<&'a Element> {
    copy.child(direction, CARBONS)?
        .child("forwarded", FORWARD)?
        .child("message", CLIENT)
}

/// Expects a `direction` copy of the message from `from` to `to` with body `text`.
async fn expect_carbon(
    client: &mut TestClient,
    direction: &str,
    from: &str,
    to: &str,
    text: &str,
) -> anyhow::Result<Element> {
    let me = client.jid.as_ref().map(|j| j.as_str().to_owned());
    let what = format!("{direction} carbon of {text:?} from {from} to {to}");
    client
        .expect(&what, |e| {
            let Some(original) = forwarded(e, direction) else {
                return false;
            };
            e.is("message", CLIENT)
                && e.attr("from") == Some("alice@localhost")
                && e.attr("to") == me.as_deref()
                && e.attr("type") == original.attr("type")
                && original.attr("from") == Some(from)
                && original.attr("to") == Some(to)
                && body(original).as_deref() == Some(text)
        })
        .await
}

/// Reads a copy with xmpp-parsers (xmpp-rs), as tokio-xmpp clients do: the `direction`
/// wrapper and the forwarded message's body.
fn xmpp_rs_reads(copy: &Element, direction: &str) -> anyhow::Result<Option<String>> {
    use tokio_xmpp::minidom;
    use tokio_xmpp::parsers::{carbons, message::Message};
    let el: minidom::Element = copy.to_string().parse()?;
    let message = Message::try_from(el)?;
    let wrapper = message
        .payloads
        .iter()
        .find(|p| p.is(direction, CARBONS))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no {direction} in {copy}"))?;
    let forwarded = match direction {
        "sent" => carbons::Sent::try_from(wrapper)?.forwarded,
        _ => carbons::Received::try_from(wrapper)?.forwarded,
    };
    let body = forwarded.message.bodies.values().next().cloned();
    Ok(body)
}

/// Sends a chat message with `text` to `to`, with more children if any.
async fn chat(client: &mut TestClient, to: &str, text: &str, extra: &str) -> anyhow::Result<()> {
    client
        .send(&format!(
            "<message to='{to}' type='chat'><body>{text}</body>{extra}</message>"
        ))
        .await
}

async fn silent(clients: &mut [&mut TestClient]) -> anyhow::Result<()> {
    for client in clients {
        client.expect_silence(SILENCE).await?;
    }
    Ok(())
}

#[tokio::test]
async fn switching_carbons_and_requests_that_are_refused() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online(&server, "alice", "laptop", 0).await?;
    // §10.1: twice is no error, either way; the server itself may be addressed too.
    switch(&mut alice, "enable").await?;
    switch(&mut alice, "enable").await?;
    switch(&mut alice, "disable").await?;
    switch(&mut alice, "disable").await?;
    alice
        .send(&format!(
            "<iq type='set' id='srv' to='localhost'><enable xmlns='{CARBONS}'/></iq>"
        ))
        .await?;
    expect_result(&mut alice, "srv", "localhost").await?;
    // A get makes no sense.
    alice
        .send(&format!(
            "<iq type='get' id='g'><enable xmlns='{CARBONS}'/></iq>"
        ))
        .await?;
    alice
        .expect("bad-request for a get", |e| {
            e.attr("id") == Some("g")
                && e.attr("type") == Some("error")
                && stanza_error_condition(e).as_deref() == Some("bad-request")
        })
        .await?;
    // §5: not another user's carbons (a request to bob's account, answered by the server).
    alice
        .send(&format!(
            "<iq type='set' id='b' to='bob@localhost'><disable xmlns='{CARBONS}'/></iq>"
        ))
        .await?;
    expect_error(&mut alice, "iq", "b", "bob@localhost", "not-allowed").await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn received_copies_go_to_enabled_resources_that_did_not_get_the_message() -> anyhow::Result<()>
{
    let (server, mut bob, mut alice) = alice_and_bob(&THREE).await?;
    let [laptop, phone, tablet] = &mut alice[..] else {
        anyhow::bail!("three resources");
    };
    let (bare, from) = ("alice@localhost", "bob@localhost/desk");

    // To the bare JID: the highest priority resource gets it, the other enabled one a copy.
    chat(&mut bob, bare, "one", "").await?;
    expect_message(laptop, from, bare, "one").await?;
    let copy = expect_carbon(phone, "received", from, bare, "one").await?;
    assert_eq!(xmpp_rs_reads(&copy, "received")?.as_deref(), Some("one"));
    // To a full JID: that resource, and a copy to each enabled one.
    let to_tablet = "alice@localhost/tablet";
    chat(&mut bob, to_tablet, "two", "").await?;
    expect_message(tablet, from, to_tablet, "two").await?;
    expect_carbon(laptop, "received", from, to_tablet, "two").await?;
    expect_carbon(phone, "received", from, to_tablet, "two").await?;
    let to_phone = "alice@localhost/phone";
    chat(&mut bob, to_phone, "three", "").await?;
    expect_message(phone, from, to_phone, "three").await?;
    expect_carbon(laptop, "received", from, to_phone, "three").await?;
    // To a resource that is not bound: delivered as to the bare JID (RFC 6121 §8.5.3.2.1).
    let gone = "alice@localhost/gone";
    chat(&mut bob, gone, "four", "").await?;
    expect_message(laptop, from, gone, "four").await?;
    expect_carbon(phone, "received", from, gone, "four").await?;
    silent(&mut [laptop, phone, tablet, &mut bob]).await?;

    // Disabled: no more copies for the phone.
    switch(phone, "disable").await?;
    chat(&mut bob, bare, "five", "").await?;
    expect_message(laptop, from, bare, "five").await?;
    silent(&mut [laptop, phone, tablet]).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn sent_copies_go_to_the_other_enabled_resources() -> anyhow::Result<()> {
    let (server, mut bob, mut alice) = alice_and_bob(&THREE).await?;
    let [laptop, phone, tablet] = &mut alice[..] else {
        anyhow::bail!("three resources");
    };
    let bob_jid = "bob@localhost";

    // §8: whether or not the sender enabled carbons.
    chat(tablet, bob_jid, "from the tablet", "").await?;
    expect_message(
        &mut bob,
        "alice@localhost/tablet",
        bob_jid,
        "from the tablet",
    )
    .await?;
    let from = "alice@localhost/tablet";
    expect_carbon(laptop, "sent", from, bob_jid, "from the tablet").await?;
    let copy = expect_carbon(phone, "sent", from, bob_jid, "from the tablet").await?;
    assert_eq!(
        xmpp_rs_reads(&copy, "sent")?.as_deref(),
        Some("from the tablet")
    );
    // The sender gets no copy of its own message.
    chat(laptop, bob_jid, "from the laptop", "").await?;
    expect_message(
        &mut bob,
        "alice@localhost/laptop",
        bob_jid,
        "from the laptop",
    )
    .await?;
    let from = "alice@localhost/laptop";
    expect_carbon(phone, "sent", from, bob_jid, "from the laptop").await?;
    silent(&mut [laptop, phone, tablet]).await?;

    // Between two of alice's resources: the received side copies, once.
    let to_phone = "alice@localhost/phone";
    chat(tablet, to_phone, "note to self", "").await?;
    expect_message(phone, "alice@localhost/tablet", to_phone, "note to self").await?;
    let from = "alice@localhost/tablet";
    expect_carbon(laptop, "received", from, to_phone, "note to self").await?;
    silent(&mut [laptop, phone, tablet, &mut bob]).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn private_no_copy_groupchat_and_bodiless_messages_are_not_copied() -> anyhow::Result<()> {
    let (server, mut bob, mut alice) =
        alice_and_bob(&[("laptop", 5, true), ("phone", 1, true)]).await?;
    let [laptop, phone] = &mut alice[..] else {
        anyhow::bail!("two resources");
    };
    let (bare, bob_jid) = ("alice@localhost", "bob@localhost");
    let private = format!("<private xmlns='{CARBONS}'/><no-copy xmlns='urn:xmpp:hints'/>");

    // §9, sent: no copy; the recipient gets the message with <private/> kept (1.0.1).
    chat(laptop, bob_jid, "secret", &private).await?;
    let got = expect_message(&mut bob, "alice@localhost/laptop", bob_jid, "secret").await?;
    assert!(got.child("private", CARBONS).is_some(), "{got}");
    // §9, received.
    chat(&mut bob, bare, "secret back", &private).await?;
    expect_message(laptop, "bob@localhost/desk", bare, "secret back").await?;
    // The hint alone is enough (XEP-0334 §4.3).
    chat(
        &mut bob,
        bare,
        "hinted",
        "<no-copy xmlns='urn:xmpp:hints'/>",
    )
    .await?;
    expect_message(laptop, "bob@localhost/desk", bare, "hinted").await?;
    // A normal message without a body or IM payload, and a headline.
    bob.send("<message to='alice@localhost/laptop'><subject>no body</subject></message>")
        .await?;
    laptop
        .expect("the bodiless message", |e| e.is("message", CLIENT))
        .await?;
    bob.send("<message to='alice@localhost/laptop' type='headline'><body>news</body></message>")
        .await?;
    expect_message(
        laptop,
        "bob@localhost/desk",
        "alice@localhost/laptop",
        "news",
    )
    .await?;
    silent(&mut [laptop, phone, &mut bob]).await?;
    server.stop().await;
    Ok(())
}

/// §11: a wrapper from anyone but the server is delivered as it is, from its sender, and
/// never copied, so the server never vouches for it with the bare JID.
#[tokio::test]
async fn forged_carbons_are_not_copied_and_never_come_from_the_bare_jid() -> anyhow::Result<()> {
    let (server, mut bob, mut alice) = alice_and_bob(&THREE).await?;
    let [laptop, phone, tablet] = &mut alice[..] else {
        anyhow::bail!("three resources");
    };
    let forged = |direction: &str| {
        format!(
            "<message to='alice@localhost' type='chat'><{direction} xmlns='{CARBONS}'>\
             <forwarded xmlns='{FORWARD}'><message xmlns='jabber:client' type='chat' \
             from='eve@localhost/x' to='alice@localhost'><body>forged</body></message>\
             </forwarded></{direction}></message>"
        )
    };
    let is_wrapper_from = |from: &'static str| {
        move |e: &Element| {
            e.is("message", CLIENT)
                && e.attr("from") == Some(from)
                && forwarded(e, "received").is_some()
        }
    };
    // A client sending to its own account.
    tablet.send(&forged("received")).await?;
    laptop
        .expect(
            "the tablet's message as it was sent",
            is_wrapper_from("alice@localhost/tablet"),
        )
        .await?;
    // A contact.
    bob.send(&forged("received")).await?;
    laptop
        .expect(
            "bob's message as it was sent",
            is_wrapper_from("bob@localhost/desk"),
        )
        .await?;
    // A client sending a <sent/> wrapper to a contact: delivered, not copied.
    tablet
        .send(&forged("sent").replace("to='alice@localhost' type", "to='bob@localhost' type"))
        .await?;
    bob.expect("the tablet's message", |e| {
        e.attr("from") == Some("alice@localhost/tablet") && forwarded(e, "sent").is_some()
    })
    .await?;
    // A message to its own account that bounces comes back from the bare JID: without the
    // wrapper, which would otherwise pass for a carbon from the server.
    tablet
        .send(&forged("received").replace("type='chat'>", "type='groupchat' id='g'>"))
        .await?;
    let bounce = expect_error(
        tablet,
        "message",
        "g",
        "alice@localhost",
        "service-unavailable",
    )
    .await?;
    assert!(forwarded(&bounce, "received").is_none(), "{bounce}");
    silent(&mut [laptop, phone, tablet, &mut bob]).await?;
    server.stop().await;
    Ok(())
}

/// A message that goes to offline storage is copied to enabled resources with a negative
/// priority at once; delivered later at a login, it is not copied again.
#[tokio::test]
async fn offline_messages_are_copied_when_they_come_not_when_delivered() -> anyhow::Result<()> {
    let (server, mut bob, mut alice) = alice_and_bob(&[("watch", -1, true)]).await?;
    let [watch] = &mut alice[..] else {
        anyhow::bail!("one resource");
    };
    let bare = "alice@localhost";
    chat(&mut bob, bare, "while away", "").await?;
    expect_carbon(watch, "received", "bob@localhost/desk", bare, "while away").await?;

    let mut laptop = online(&server, "alice", "laptop", 1).await?;
    laptop
        .expect("the watch's presence", |e| e.is("presence", CLIENT))
        .await?;
    expect_presence(watch, "alice@localhost/laptop", None).await?;
    laptop
        .expect("the offline message", |e| {
            e.is("message", CLIENT) && body(e).as_deref() == Some("while away")
        })
        .await?;
    silent(&mut [watch, &mut laptop, &mut bob]).await?;
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn the_server_advertises_carbons_and_its_rules() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    let mut alice = online(&server, "alice", "laptop", 0).await?;
    alice
        .send("<iq type='get' id='d' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>")
        .await?;
    let info = expect_result(&mut alice, "d", "localhost").await?;
    let features: Vec<&str> = info
        .children()
        .flat_map(Element::children)
        .filter_map(|f| f.attr("var"))
        .collect();
    for var in [CARBONS, "urn:xmpp:carbons:rules:0"] {
        assert!(features.contains(&var), "{var} missing from {features:?}");
    }
    server.stop().await;
    Ok(())
}
