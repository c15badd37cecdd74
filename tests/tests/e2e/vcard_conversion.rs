//! XEP-0398: a XEP-0084 avatar published through PEP becomes the vCard's photo and the
//! XEP-0153 hash in the user's presence; a vCard photo set by a XEP-0054 client is published
//! as the PEP avatar (data and metadata), and a vCard without one as the empty metadata.

use crate::common;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::pep::*;
use common::*;
use sha1::Digest as _;
use xmppd_testkit::{TestClient, TestServer};
use xmppd_xml::Element;

const DATA: &str = "urn:xmpp:avatar:data";
const METADATA: &str = "urn:xmpp:avatar:metadata";
const UPDATE: &str = "vcard-temp:x:update";
const ALICE: &str = "alice@localhost";

fn sha1_hex(data: &[u8]) -> String {
    sha1::Sha1::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn vcard_of(client: &mut TestClient, id: &str, of: &str) -> anyhow::Result<Element> {
    let iq = format!("<iq type='get' id='{id}' to='{of}'><vCard xmlns='vcard-temp'/></iq>");
    let answer = request(client, &[], id, &iq).await?;
    answer
        .child("vCard", "vcard-temp")
        .cloned()
        .with_context(|| format!("a vCard in {answer}"))
}

/// The photo hash of the next presence from `from` that carries one.
async fn next_photo_hash(client: &mut TestClient, from: &str) -> anyhow::Result<String> {
    for _ in 0..20 {
        let el = client.recv().await?;
        let photo = el.child("x", UPDATE).and_then(|x| x.child("photo", UPDATE));
        if el.is("presence", CLIENT)
            && el.attr("from") == Some(from)
            && let Some(photo) = photo
        {
            return Ok(photo.text());
        }
    }
    anyhow::bail!("no presence of {from} with a photo hash")
}

#[tokio::test]
async fn a_pep_avatar_becomes_the_vcard_photo_and_the_presence_hash() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice", "bob"]).await?;
    let mut alice = online_with_roster(&server, "alice", "phone", 0).await?;
    let mut bob = online_with_roster(&server, "bob", "desk", 0).await?;
    befriend(&mut alice, "alice", &mut bob, "bob").await?;

    let image = b"\x89PNG pretend image bytes".to_vec();
    let id = sha1_hex(&image);
    let data = format!("<data xmlns='{DATA}'>{}</data>", BASE64.encode(&image));
    publish(&mut alice, &[], DATA, Some(&id), &data, &[]).await?;
    let metadata = format!(
        "<metadata xmlns='{METADATA}'><info id='{id}' type='image/png' bytes='{}'/></metadata>",
        image.len()
    );
    publish(&mut alice, &[], METADATA, Some(&id), &metadata, &[]).await?;

    // Bob sees the new hash in alice's presence, and her vCard holds the image.
    assert_eq!(
        next_photo_hash(&mut bob, &format!("{ALICE}/phone")).await?,
        id
    );
    let vcard = vcard_of(&mut bob, "v1", ALICE).await?;
    let photo = vcard.child("PHOTO", "vcard-temp").context("a photo")?;
    assert_eq!(
        photo
            .child("TYPE", "vcard-temp")
            .map(Element::text)
            .as_deref(),
        Some("image/png")
    );
    let binval = photo
        .child("BINVAL", "vcard-temp")
        .map(Element::text)
        .unwrap_or_default();
    assert_eq!(BASE64.decode(binval.trim())?, image);

    // A metadata item whose data does not hash to its id is not taken.
    let wrong = "0000000000000000000000000000000000000000";
    let bad = format!("<data xmlns='{DATA}'>{}</data>", BASE64.encode(b"other"));
    publish(&mut alice, &[], DATA, Some(wrong), &bad, &[]).await?;
    let metadata = format!(
        "<metadata xmlns='{METADATA}'><info id='{wrong}' type='image/png' bytes='5'/></metadata>"
    );
    publish(&mut alice, &[], METADATA, Some(wrong), &metadata, &[]).await?;
    let vcard = vcard_of(&mut bob, "v2", ALICE).await?;
    let binval = vcard
        .child("PHOTO", "vcard-temp")
        .and_then(|p| p.child("BINVAL", "vcard-temp"))
        .map(Element::text)
        .unwrap_or_default();
    assert_eq!(
        BASE64.decode(binval.trim())?,
        image,
        "the earlier photo stays"
    );
    server.stop().await;
    Ok(())
}

#[tokio::test]
async fn a_vcard_photo_is_published_as_the_pep_avatar() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    add_users(&server, &["alice"]).await?;
    let mut alice = server.login("alice", &password("alice"), "pc").await?;
    let image = b"GIF89a pretend".to_vec();
    let id = sha1_hex(&image);
    let set = format!(
        "<iq type='set' id='set1'><vCard xmlns='vcard-temp'><FN>Alice</FN><PHOTO>\
           <TYPE>image/gif</TYPE><BINVAL>{}</BINVAL></PHOTO></vCard></iq>",
        BASE64.encode(&image)
    );
    let answer = request(&mut alice, &[], "set1", &set).await?;
    assert_eq!(answer.attr("type"), Some("result"), "{answer}");

    let meta = fetch(&mut alice, &[], ALICE, METADATA, Some(1), &[]).await?;
    assert_eq!(item_ids(&meta), std::slice::from_ref(&id));
    let info = meta.to_string();
    assert!(
        info.contains("type=\"image/gif\"") && info.contains(&format!("bytes=\"{}\"", image.len())),
        "{info}"
    );
    let data = fetch(&mut alice, &[], ALICE, DATA, None, &[id.as_str()]).await?;
    let text = data
        .child("pubsub", PUBSUB)
        .and_then(|p| p.child("items", PUBSUB))
        .and_then(|i| i.children().next())
        .and_then(|i| i.child("data", DATA))
        .map(Element::text)
        .context("the data item")?;
    assert_eq!(BASE64.decode(text.trim())?, image);

    // A vCard without a photo: the avatar is disabled (empty metadata, XEP-0084 §4.5).
    let set = "<iq type='set' id='set2'><vCard xmlns='vcard-temp'><FN>Alice</FN></vCard></iq>";
    request(&mut alice, &[], "set2", set).await?;
    let meta = fetch(&mut alice, &[], ALICE, METADATA, Some(1), &[]).await?;
    let latest = meta
        .child("pubsub", PUBSUB)
        .and_then(|p| p.child("items", PUBSUB))
        .and_then(|i| i.children().last())
        .and_then(|i| i.child("metadata", METADATA))
        .context("a metadata item")?;
    assert!(latest.children().next().is_none(), "{latest}");

    let info = request(
        &mut alice,
        &[],
        "d1",
        &format!("<iq type='get' id='d1' to='{ALICE}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"),
    )
    .await?;
    assert!(
        info.to_string().contains("urn:xmpp:pep-vcard-conversion:0"),
        "{info}"
    );
    server.stop().await;
    Ok(())
}
