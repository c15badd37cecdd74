//! `xmppd import` and `xmppd export` (XEP-0227): accounts come over with their SCRAM
//! credentials and log in with their old passwords, with their rosters, vCards, private XML,
//! offline messages, PEP nodes (with their access models) and message archives (queried over
//! XEP-0313, under the ids they had); an existing account is never changed; an export
//! imports again.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context as _, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use xmppd_stream::sasl::{ScramCredentials, ScramHash};
use xmppd_testkit::{TestClient, TestPki};

fn write_config(dir: &Path, pki: &TestPki) -> anyhow::Result<std::path::PathBuf> {
    let (cert, key) = pki.cert_paths("localhost").context("no pair")?;
    let path = dir.join("xmppd.toml");
    std::fs::write(
        &path,
        format!(
            "[general]\ndata_dir = \"data\"\nlog = \"info\"\n\n[[host]]\nname = \"localhost\"\n\
             cert = \"{}\"\nkey = \"{}\"\n\n[[listen]]\nkind = \"c2s\"\naddress = \"127.0.0.1\"\n\
             port = 0\n",
            cert.display(),
            key.display()
        ),
    )?;
    Ok(path)
}

/// SCRAM credentials for `password` as an exporting server writes them (XEP-0227 §2.2).
fn scram_xml(mechanism: &str, hash: ScramHash, password: &str) -> anyhow::Result<String> {
    let c = ScramCredentials::derive(hash, password, b"salt-of-the-old-server", 5000)?;
    Ok(format!(
        "<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='{mechanism}'>\
         <iter-count>5000</iter-count><salt>{}</salt><server-key>{}</server-key>\
         <stored-key>{}</stored-key></scram-credentials>",
        BASE64.encode(&c.salt),
        BASE64.encode(&c.server_key),
        BASE64.encode(&c.stored_key)
    ))
}

fn export_file() -> anyhow::Result<String> {
    Ok(format!(
        "<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='urn:xmpp:pie:0'>\n\
         <host jid='localhost'>\n\
         <user name='alice'>{}{}\n\
           <query xmlns='jabber:iq:roster'><item jid='bob@localhost' name='Bob' subscription='both'>\
             <group>Friends</group></item></query>\n\
           <vCard xmlns='vcard-temp'><FN>Alice Liddell</FN></vCard>\n\
           <query xmlns='jabber:iq:private'><notes xmlns='http://example.org/notes'>tea at 5</notes></query>\n\
           <offline-messages><message xmlns='jabber:client' from='bob@localhost/phone' \
             to='alice@localhost' type='chat'><body>while you were away</body>\
             <delay xmlns='urn:xmpp:delay' stamp='2026-01-02T03:04:05Z'/></message></offline-messages>\n\
           <query xmlns='jabber:iq:privacy'><list name='quiet'/></query>\n\
           <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>\
             <configure node='urn:xmpp:bookmarks:1'><x xmlns='jabber:x:data' type='submit'>\
               <field var='pubsub#access_model'><value>whitelist</value></field>\
               <field var='pubsub#max_items'><value>max</value></field>\
               <field var='pubsub#title'><value>rooms</value></field></x></configure>\
             <configure node='http://jabber.org/protocol/nick'><x xmlns='jabber:x:data' type='submit'>\
               <field var='pubsub#access_model'><value>open</value></field></x></configure>\
           </pubsub>\n\
           <pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <items node='urn:xmpp:bookmarks:1'><item id='tea@rooms.localhost'>\
               <conference xmlns='urn:xmpp:bookmarks:1' name='Tea party' autojoin='true'>\
               <nick>alice</nick></conference></item></items>\
             <items node='http://jabber.org/protocol/nick'><item id='current'>\
               <nick xmlns='http://jabber.org/protocol/nick'>Alice in Wonderland</nick></item></items>\
           </pubsub>\n\
           <archive xmlns='urn:xmpp:pie:0#mam'>\
             <result xmlns='urn:xmpp:mam:2' id='old-1'><forwarded xmlns='urn:xmpp:forward:0'>\
               <delay xmlns='urn:xmpp:delay' stamp='2025-05-01T10:00:00Z'/>\
               <message xmlns='jabber:client' from='bob@localhost/phone' to='alice@localhost/tea' \
                 type='chat' id='m1'><body>the first archived line</body></message></forwarded></result>\
             <result xmlns='urn:xmpp:mam:2' id='old-2'><forwarded xmlns='urn:xmpp:forward:0'>\
               <delay xmlns='urn:xmpp:delay' stamp='2025-05-01T10:01:00Z'/>\
               <message xmlns='jabber:client' from='alice@localhost/tea' to='bob@localhost' \
                 type='chat' id='m2'><body>and the answer</body></message></forwarded></result>\
           </archive>\n\
         </user>\n\
         <user name='bob' password='bob-old-password'><query xmlns='jabber:iq:roster'>\
           <item jid='alice@localhost' subscription='both'/></query></user>\n\
         <user name='carol' password='from-the-file'/>\n\
         <user name='alice' password='again'/>\n\
         </host>\n\
         <host jid='elsewhere.test'><user name='dave' password='x'/></host>\n\
         </server-data>\n",
        scram_xml("SCRAM-SHA-1", ScramHash::Sha1, "alice-old-password")?,
        scram_xml("SCRAM-SHA-256", ScramHash::Sha256, "alice-old-password")?,
    ))
}

async fn iq_result(client: &mut TestClient, id: &str, payload: &str) -> anyhow::Result<String> {
    client
        .send(&format!("<iq type='get' id='{id}'>{payload}</iq>"))
        .await?;
    let el = client
        .expect(id, |e| e.name() == "iq" && e.attr("id") == Some(id))
        .await?;
    if el.attr("type") != Some("result") {
        bail!("{id}: {el}");
    }
    Ok(el.to_string())
}

/// The results and the final iq of a MAM query (`inner` is the query's content).
async fn mam_query(
    client: &mut TestClient,
    id: &str,
    inner: &str,
) -> anyhow::Result<(Vec<xmppd_xml::Element>, String)> {
    client
        .send(&format!(
            "<iq type='set' id='{id}'><query xmlns='urn:xmpp:mam:2'>{inner}</query></iq>"
        ))
        .await?;
    let mut results = Vec::new();
    loop {
        let el = client.recv().await?;
        if el.name() == "iq" && el.attr("id") == Some(id) {
            if el.attr("type") != Some("result") {
                bail!("{id}: {el}");
            }
            return Ok((results, el.to_string()));
        }
        if let Some(result) = el.child("result", "urn:xmpp:mam:2") {
            results.push(result.clone());
        }
    }
}

/// Alice's archive over XEP-0313: both messages, oldest first, with their times and the ids
/// they had on the old server, which a client pages from.
async fn check_archive(alice: &mut TestClient) -> anyhow::Result<()> {
    let (results, fin) = mam_query(alice, "mam1", "").await?;
    let text: Vec<String> = results.iter().map(ToString::to_string).collect();
    let ids: Vec<&str> = results.iter().filter_map(|r| r.attr("id")).collect();
    if ids != ["old-1", "old-2"] || !fin.contains("old-1") || !fin.contains("old-2") {
        bail!("archive ids {ids:?}, fin {fin}: {text:?}");
    }
    for (i, (body, stamp)) in [
        ("the first archived line", "2025-05-01T10:00:00"),
        ("and the answer", "2025-05-01T10:01:00"),
    ]
    .into_iter()
    .enumerate()
    {
        if !text[i].contains(body) || !text[i].contains(stamp) {
            bail!("archived message {i}: {}", text[i]);
        }
    }
    let after = "<set xmlns='http://jabber.org/protocol/rsm'><after>old-1</after></set>";
    let (results, _) = mam_query(alice, "mam2", after).await?;
    let ids: Vec<&str> = results.iter().filter_map(|r| r.attr("id")).collect();
    if ids != ["old-2"] {
        bail!("after old-1: {ids:?}");
    }
    Ok(())
}

/// Alice's PEP nodes: her bookmarks (whitelist: hers alone) and her nick (open: bob reads it).
async fn check_pep(alice: &mut TestClient, bob: &mut TestClient) -> anyhow::Result<()> {
    let bookmarks = iq_result(
        alice,
        "b1",
        "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:bookmarks:1'/></pubsub>",
    )
    .await?;
    if !bookmarks.contains("tea@rooms.localhost") || !bookmarks.contains("Tea party") {
        bail!("bookmarks: {bookmarks}");
    }
    let nick_query = "<iq type='get' id='n1' to='alice@localhost'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
                      <items node='http://jabber.org/protocol/nick'/></pubsub></iq>";
    bob.send(nick_query).await?;
    let nick = bob
        .expect("n1", |e| e.name() == "iq" && e.attr("id") == Some("n1"))
        .await?
        .to_string();
    if !nick.contains("type=\"result\"") || !nick.contains("Alice in Wonderland") {
        bail!("bob reading alice's nick: {nick}");
    }
    bob.send(
        &nick_query
            .replace("n1", "n2")
            .replace("http://jabber.org/protocol/nick", "urn:xmpp:bookmarks:1"),
    )
    .await?;
    let denied = bob
        .expect("n2", |e| e.name() == "iq" && e.attr("id") == Some("n2"))
        .await?
        .to_string();
    if !denied.contains("type=\"error\"") {
        bail!("bob read alice's whitelisted bookmarks: {denied}");
    }
    Ok(())
}

/// Alice's imported data, as a client sees it after logging in with her old password.
async fn check_alice(pki: &TestPki, addr: SocketAddr, mechanism: &str) -> anyhow::Result<()> {
    let mut alice = common::log_in(pki, addr, mechanism, "alice", "alice-old-password").await?;
    let roster = iq_result(&mut alice, "r1", "<query xmlns='jabber:iq:roster'/>").await?;
    for wanted in [
        "bob@localhost",
        "subscription=\"both\"",
        "Friends",
        "name=\"Bob\"",
    ] {
        if !roster.contains(wanted) {
            bail!("roster without {wanted}: {roster}");
        }
    }
    let vcard = iq_result(&mut alice, "v1", "<vCard xmlns='vcard-temp'/>").await?;
    if !vcard.contains("Alice Liddell") {
        bail!("vCard: {vcard}");
    }
    let private = iq_result(
        &mut alice,
        "p1",
        "<query xmlns='jabber:iq:private'><notes xmlns='http://example.org/notes'/></query>",
    )
    .await?;
    if !private.contains("tea at 5") {
        bail!("private XML: {private}");
    }
    check_archive(&mut alice).await?;
    let mut bob = common::log_in(pki, addr, "SCRAM-SHA-256", "bob", "bob-old-password").await?;
    check_pep(&mut alice, &mut bob).await?;
    alice.available(0).await?;
    // Her own presence comes back first; then the stored message.
    let mut offline = None;
    for _ in 0..10 {
        let el = alice.recv().await?;
        if el.name() == "message" {
            offline = Some(el);
            break;
        }
    }
    let offline = offline.context("no offline message")?;
    if !offline.to_string().contains("while you were away") {
        bail!("another message: {offline}");
    }
    if !offline.to_string().contains("2026-01-02T03:04:05Z") {
        bail!("the offline message lost its stamp: {offline}");
    }
    Ok(())
}

#[tokio::test]
async fn accounts_come_over_with_their_credentials_and_data_and_go_out_again() -> anyhow::Result<()>
{
    let pki = TestPki::new(&["localhost"])?;
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path(), &pki)?;
    common::add_user(&config, "carol@localhost", "carol-own-password")
        .map_err(anyhow::Error::msg)?;
    let file = dir.path().join("export.xml");
    std::fs::write(&file, export_file()?)?;

    let out = common::run(&config, &["import", &file.to_string_lossy()])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // Refused accounts make the import a failure, the others stand.
    assert!(!out.status.success(), "{text}");
    for wanted in [
        "imported alice@localhost",
        "imported bob@localhost",
        "carol@localhost exists already: left unchanged",
        "alice@localhost not imported: line 16: the account appears twice",
        "dave@elsewhere.test not imported: line 18: host elsewhere.test is not served here",
        "not imported (not kept by this server's import): <query/>",
        "alice@localhost: PEP node options not kept: pubsub#title",
        "2 imported, 1 already there, 2 refused",
    ] {
        assert!(text.contains(wanted), "{wanted}\n{text}");
    }

    // Export (before anyone logs in and takes the offline message), to import it into an
    // empty server below: the same accounts, with the credentials as they were stored
    // (alice's old password still works; no password is in the file).
    let exported = dir.path().join("out.xml");
    let out = common::run(&config, &["export", &exported.to_string_lossy()])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&exported)?;
    assert!(
        !text.contains("alice-old-password") && !text.contains("password="),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&exported)?.permissions().mode() & 0o777,
        0o600
    );

    common::while_serving(&config, async |addr| {
        check_alice(&pki, addr, "SCRAM-SHA-256").await?;
        common::log_in(&pki, addr, "SCRAM-SHA-1", "alice", "alice-old-password").await?;
        common::log_in(&pki, addr, "SCRAM-SHA-256", "bob", "bob-old-password").await?;
        common::log_in(&pki, addr, "SCRAM-SHA-256", "carol", "carol-own-password").await?;
        if common::log_in(&pki, addr, "SCRAM-SHA-256", "carol", "from-the-file")
            .await
            .is_ok()
        {
            bail!("the file changed carol's password");
        }
        Ok::<_, anyhow::Error>(())
    })
    .await?;

    let second = tempfile::tempdir()?;
    let config2 = write_config(second.path(), &pki)?;
    let out = common::run(&config2, &["import", &exported.to_string_lossy()])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("3 imported, 0 already there, 0 refused"),
        "{text}"
    );
    common::while_serving(&config2, async |addr| {
        check_alice(&pki, addr, "SCRAM-SHA-1").await?;
        common::log_in(&pki, addr, "SCRAM-SHA-256", "carol", "carol-own-password").await?;
        Ok::<_, anyhow::Error>(())
    })
    .await
}

#[test]
fn a_hostile_file_changes_nothing_and_says_where() -> anyhow::Result<()> {
    let pki = TestPki::new(&["localhost"])?;
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path(), &pki)?;
    let file = dir.path().join("evil.xml");
    std::fs::write(
        &file,
        "<?xml version='1.0'?>\n<!DOCTYPE x [<!ENTITY a \"aaaaaaaa\"><!ENTITY b \"&a;&a;&a;\">]>\n\
         <server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>\
         <user name='eve' password='p'>&b;</user></host></server-data>\n",
    )?;
    let out = common::run(&config, &["import", &file.to_string_lossy()])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("{}:2: a DOCTYPE is not allowed", file.display())),
        "{stderr}"
    );
    // Nothing was created.
    let out = common::run(
        &config,
        &["export", &dir.path().join("x.xml").to_string_lossy()],
    )?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("exported 0 accounts"));
    Ok(())
}

/// What ejabberd 23.01's `export_piefxis` wrote for two accounts (passwords `ed-pw` and
/// `eve-pw`): a main file including one per host, SCRAM values encoded twice.
#[tokio::test]
async fn an_ejabberd_export_is_taken_as_ejabberd_writes_it() -> anyhow::Result<()> {
    let pki = TestPki::new(&["localhost"])?;
    let dir = tempfile::tempdir()?;
    let config = write_config(dir.path(), &pki)?;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let out = common::run(
        &config,
        &[
            "import",
            &fixtures.join("ejabberd-23.01.xml").to_string_lossy(),
        ],
    )?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("2 imported, 0 already there, 0 refused"),
        "{text}"
    );

    common::while_serving(&config, async |addr| {
        let mut ed = common::log_in(&pki, addr, "SCRAM-SHA-1", "ed", "ed-pw").await?;
        let roster = iq_result(&mut ed, "r1", "<query xmlns='jabber:iq:roster'/>").await?;
        if !roster.contains("eve@localhost") || !roster.contains("Friends") {
            bail!("roster: {roster}");
        }
        let vcard = iq_result(&mut ed, "v1", "<vCard xmlns='vcard-temp'/>").await?;
        if !vcard.contains("Ed Wood") {
            bail!("vCard: {vcard}");
        }
        common::log_in(&pki, addr, "SCRAM-SHA-1", "eve", "eve-pw").await?;
        if common::log_in(&pki, addr, "SCRAM-SHA-1", "eve", "ed-pw")
            .await
            .is_ok()
        {
            bail!("a wrong password was accepted");
        }
        Ok::<_, anyhow::Error>(())
    })
    .await
}
