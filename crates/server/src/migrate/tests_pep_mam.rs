//! PEP nodes (XEP-0227 §pep) and message archives (§archive): read, checked, written to the
//! stores the PEP and MAM modules read, and exported so that an import reproduces them.

use super::*;
use jid::BareJid;
use xmppd_core::accounts::ACCOUNTS_STORE;
use xmppd_core::storage::ArchiveQuery;
use xmppd_pep::AccessModel;
use xmppd_pep::store::PepStore;

const HEAD: &str = "<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='urn:xmpp:pie:0'>\n";

/// Romeo's PEP data, as in the XEP's example (§pep), with a configuration field this server
/// does not know.
const ROMEO_PEP: &str = "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>\
  <configure node='urn:xmpp:bookmarks:1'><x xmlns='jabber:x:data' type='form'>\
    <field var='FORM_TYPE' type='hidden'><value>http://jabber.org/protocol/pubsub#node_config</value></field>\
    <field var='pubsub#access_model'><value>whitelist</value></field>\
    <field var='pubsub#max_items'><value>max</value></field>\
    <field var='pubsub#title'><value>Bookmarks</value></field></x></configure>\
  <affiliations node='urn:xmpp:bookmarks:1'><affiliation jid='mercutio@example.net' affiliation='member'/></affiliations>\
  <configure node='http://jabber.org/protocol/nick'><x xmlns='jabber:x:data' type='form'>\
    <field var='pubsub#access_model'><value>open</value></field></x></configure>\
</pubsub>\
<pubsub xmlns='http://jabber.org/protocol/pubsub'>\
  <items node='urn:xmpp:bookmarks:1'>\
    <item id='theplay@conference.shakespeare.lit'><conference xmlns='urn:xmpp:bookmarks:1' name='The Play' autojoin='true'><nick>Romeo</nick></conference></item>\
    <item id='orchard@conference.shakespeare.lit'><conference xmlns='urn:xmpp:bookmarks:1' name='The Orchard' autojoin='1'><nick>Romeo</nick></conference></item>\
  </items>\
  <items node='http://jabber.org/protocol/nick'>\
    <item id='old'><nick xmlns='http://jabber.org/protocol/nick'>Romeo</nick></item>\
    <item id='current'><nick xmlns='http://jabber.org/protocol/nick'>Romy</nick></item>\
  </items>\
</pubsub>";

/// Juliet's archive, as in the XEP's example (§archive), with a forged stanza-id.
fn archive_xml(user: &str) -> String {
    format!(
        "<archive xmlns='urn:xmpp:pie:0#mam'>\
         <result xmlns='urn:xmpp:mam:2' id='28482-98726-73623'><forwarded xmlns='urn:xmpp:forward:0'>\
           <delay xmlns='urn:xmpp:delay' stamp='2010-07-10T23:08:25Z'/>\
           <message xmlns='jabber:client' to='{user}@a.test/balcony' from='romeo@montague.lit/orchard' type='chat'>\
             <body>Call me but love</body><stanza-id xmlns='urn:xmpp:sid:0' by='{user}@a.test' id='forged'/>\
           </message></forwarded></result>\
         <result xmlns='urn:xmpp:mam:2' id='5d398-28273-f7382'><forwarded xmlns='urn:xmpp:forward:0'>\
           <delay xmlns='urn:xmpp:delay' stamp='2010-07-10T23:09:32Z'/>\
           <message xmlns='jabber:client' to='romeo@montague.lit/orchard' from='{user}@a.test/balcony' type='chat' id='8a54s'>\
             <body>What man art thou</body></message></forwarded></result>\
         </archive>"
    )
}

fn file(users: &str) -> String {
    format!("{HEAD}<host jid='a.test'>{users}</host></server-data>\n")
}

fn read_one(text: &str) -> UserElement {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.xml");
    std::fs::write(&path, text).unwrap();
    let mut users = Vec::new();
    read_users(&path, ReadLimits::default(), |u| {
        users.push(u);
        Ok(())
    })
    .unwrap();
    assert_eq!(users.len(), 1);
    users.remove(0)
}

fn hosts() -> Vec<String> {
    vec!["a.test".to_owned()]
}

#[test]
fn archive_results_are_kept_serialised_beside_the_user() {
    let user = read_one(&file(&format!(
        "<user name='juliet' password='p'>{}</user>",
        archive_xml("juliet")
    )));
    assert_eq!(user.archive.len(), 2);
    let archive = user.user.child("archive", NS_PIE_MAM).unwrap();
    assert_eq!(archive.children().count(), 0);
    let first = String::from_utf8(user.archive[0].clone()).unwrap();
    assert!(
        first.starts_with("<result xmlns=\"urn:xmpp:mam:2\"") && first.contains("Call me"),
        "{first}"
    );
}

#[test]
fn pep_nodes_come_with_the_configuration_this_server_keeps() {
    let user = read_one(&file(&format!(
        "<user name='romeo' password='p'>{ROMEO_PEP}</user>"
    )));
    let account = validate(user, &hosts(), &ImportSettings::default()).unwrap();
    assert!(account.skipped.is_empty(), "{:?}", account.skipped);
    let notes = account.notes.join("; ");
    assert!(
        notes.contains("PEP node options not kept: pubsub#title"),
        "{notes}"
    );
    assert!(
        notes.contains("affiliations and subscriptions not kept"),
        "{notes}"
    );
    // The nick node keeps one item (the default max_items), the newest.
    assert!(notes.contains("1 older PEP items"), "{notes}");
}

#[test]
fn pep_limits_refuse_the_account_with_the_node_named() {
    let big = format!(
        "<user name='r' password='p'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
         <items node='urn:xmpp:avatar:data'><item id='a'><data xmlns='urn:xmpp:avatar:data'>{}</data>\
         </item></items></pubsub></user>",
        "A".repeat(2000)
    );
    let mut settings = ImportSettings::default();
    settings.pep.max_item_bytes = 1000;
    let e = validate(read_one(&file(&big)), &hosts(), &settings).unwrap_err();
    assert!(
        e.contains("urn:xmpp:avatar:data") && e.contains("max_item_bytes"),
        "{e}"
    );
    settings.pep.max_nodes = 1;
    let e = validate(
        read_one(&file(&format!(
            "<user name='romeo' password='p'>{ROMEO_PEP}</user>"
        ))),
        &hosts(),
        &settings,
    )
    .unwrap_err();
    assert!(
        e.contains("more than 1 PEP nodes ([modules.pep] max_nodes)"),
        "{e}"
    );
    let e = validate(
        read_one(&file(
            "<user name='r' password='p'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
             <items node='n'><item><x xmlns='urn:x'/></item></items></pubsub></user>",
        )),
        &hosts(),
        &ImportSettings::default(),
    )
    .unwrap_err();
    assert!(e.contains("PEP node n: an <item/> without 'id'"), "{e}");
}

#[test]
fn an_archive_result_without_a_time_or_a_message_refuses_the_account() {
    for (result, wanted) in [
        (
            "<result xmlns='urn:xmpp:mam:2' id='1'><forwarded xmlns='urn:xmpp:forward:0'>\
             <message xmlns='jabber:client' from='x@b.test'><body>b</body></message></forwarded></result>",
            "archived message 1: no <delay/> stamp",
        ),
        (
            "<result xmlns='urn:xmpp:mam:2' id='1'/>",
            "archived message 1: a <result/> without <forwarded/>",
        ),
        (
            "<message xmlns='jabber:client'/>",
            "archived message 1: <message xmlns='jabber:client'> in <archive/>",
        ),
    ] {
        let user = read_one(&file(&format!(
            "<user name='j' password='p'><archive xmlns='urn:xmpp:pie:0#mam'>{result}</archive></user>"
        )));
        let e = validate(user, &hosts(), &ImportSettings::default()).unwrap_err();
        assert!(e.contains(wanted), "{e}");
    }
}

#[test]
fn an_archive_past_the_module_limits_keeps_its_newest_messages_and_says_so() {
    let mut settings = ImportSettings::default();
    settings.mam.max_messages = 1;
    let user = read_one(&file(&format!(
        "<user name='juliet' password='p'>{}</user>",
        archive_xml("juliet")
    )));
    let account = validate(user, &hosts(), &settings).unwrap();
    assert_eq!(account.archive.len(), 1);
    assert!(
        String::from_utf8_lossy(&account.archive[0].record.payload).contains("What man art thou")
    );
    assert!(
        account
            .notes
            .join(";")
            .contains("1 oldest archived messages past"),
        "{:?}",
        account.notes
    );
    // Retention: messages of 2010 are long expired.
    settings.mam.max_messages = 0;
    settings.mam.retention_days = 30;
    let user = read_one(&file(&format!(
        "<user name='juliet' password='p'>{}</user>",
        archive_xml("juliet")
    )));
    let account = validate(user, &hosts(), &settings).unwrap();
    assert!(account.archive.is_empty());
    assert!(
        account
            .notes
            .join(";")
            .contains("2 archived messages older than retention_days")
    );
}

async fn storage(dir: &std::path::Path) -> Storage {
    let config = xmppd_storage::StorageConfig::Sqlite {
        path: dir.join("x.db"),
    };
    xmppd_storage::open(&config).await.unwrap()
}

/// Imports `text` (written to a file in `dir`) into `storage`; the file must read through.
async fn import_text(
    storage: &Storage,
    dir: &std::path::Path,
    text: &str,
    hosts: &[String],
    settings: &ImportSettings,
) -> ImportReport {
    let path = dir.join("in.xml");
    std::fs::write(&path, text).unwrap();
    let (report, read) = import(&path, storage, hosts, settings).await;
    read.unwrap();
    report
}

/// `(node, access model, item ids, payload text)` of every PEP node of `jid`.
async fn pep_state(storage: &Storage, jid: &BareJid) -> Vec<(String, AccessModel, String)> {
    let store = PepStore::new(storage.map.clone());
    let mut out = Vec::new();
    for (name, record) in store.nodes(jid).await.unwrap() {
        let items = store.items(jid, &name, &record.items).await.unwrap();
        let text: Vec<String> = items
            .iter()
            .map(|i| format!("{}={}", i.id.clone().unwrap(), i.payload.as_ref().unwrap()))
            .collect();
        out.push((name, record.config.access_model, text.join(",")));
    }
    out
}

/// `(kept id, with, time, payload)` of every archived message of `jid`.
async fn archive_state(storage: &Storage, jid: &BareJid) -> Vec<(String, String, i64, String)> {
    let (host, user) = (jid.domain().as_str(), jid.node().unwrap().as_str());
    let store = xmppd_modules::mam::STORE;
    let records = storage
        .archive
        .query(host, user, store, &ArchiveQuery::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    for r in records {
        let kept = xmppd_modules::mam::imported_id(&*storage.map, host, user, &r.id)
            .await
            .unwrap()
            .unwrap_or_default();
        out.push((
            kept,
            r.with,
            r.timestamp_us,
            String::from_utf8(r.payload).unwrap(),
        ));
    }
    out
}

#[tokio::test]
async fn pep_and_archive_are_written_and_an_export_imports_to_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let first = storage(&dir.path().join("1").tap_mkdir()).await;
    let path = dir.path().join("in.xml");
    std::fs::write(
        &path,
        file(&format!(
            "<user name='juliet' password='p'>{ROMEO_PEP}{}</user>",
            archive_xml("juliet")
        )),
    )
    .unwrap();
    let settings = ImportSettings::default();
    let (report, read) = import(&path, &first, &hosts(), &settings).await;
    read.unwrap();
    assert_eq!(report.imported, ["juliet@a.test"], "{report:?}");
    let juliet = BareJid::new("juliet@a.test").unwrap();

    let pep = pep_state(&first, &juliet).await;
    assert_eq!(pep.len(), 2, "{pep:?}");
    let (nick, bookmarks) = (&pep[0], &pep[1]);
    assert_eq!(nick.0, "http://jabber.org/protocol/nick");
    assert_eq!(nick.1, AccessModel::Open);
    assert!(
        nick.2.starts_with("current=") && nick.2.contains("Romy"),
        "{nick:?}"
    );
    assert_eq!(bookmarks.1, AccessModel::Whitelist);
    assert!(
        bookmarks
            .2
            .starts_with("theplay@conference.shakespeare.lit=")
            && bookmarks.2.contains(",orchard@conference.shakespeare.lit="),
        "{bookmarks:?}"
    );

    let archive = archive_state(&first, &juliet).await;
    assert_eq!(archive.len(), 2);
    // Incoming: with the sender; outgoing: with the recipient; the forged stanza-id gone.
    assert_eq!(archive[0].0, "28482-98726-73623");
    assert_eq!(archive[0].1, "romeo@montague.lit/orchard");
    assert_eq!(archive[0].2, 1_278_803_305_000_000);
    assert!(!archive[0].3.contains("forged"), "{}", archive[0].3);
    assert_eq!(archive[1].0, "5d398-28273-f7382");
    assert_eq!(archive[1].1, "romeo@montague.lit/orchard");
    assert!(archive[1].3.contains("What man art thou"));

    let exported = dir.path().join("out.xml");
    assert_eq!(export(&exported, &first, &hosts()).await.unwrap(), 1);
    let second = storage(&dir.path().join("2").tap_mkdir()).await;
    let (report, read) = import(&exported, &second, &hosts(), &settings).await;
    read.unwrap();
    assert_eq!(report.imported, ["juliet@a.test"], "{report:?}");
    assert!(report.refused.is_empty(), "{report:?}");
    assert_eq!(pep_state(&second, &juliet).await, pep);
    assert_eq!(archive_state(&second, &juliet).await, archive);
}

#[tokio::test]
async fn an_account_past_its_pep_quota_is_not_left_half_made() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(dir.path()).await;
    let mut settings = ImportSettings::default();
    settings.pep.max_bytes = 300;
    let text = file(&format!(
        "<user name='juliet' password='p'>{}{ROMEO_PEP}</user>",
        archive_xml("juliet")
    ));
    let report = import_text(&storage, dir.path(), &text, &hosts(), &settings).await;
    assert!(report.imported.is_empty(), "{report:?}");
    assert!(report.refused[0].1.contains("quota"), "{report:?}");
    let juliet = BareJid::new("juliet@a.test").unwrap();
    assert!(
        storage
            .keyval
            .get("a.test", "juliet", ACCOUNTS_STORE)
            .await
            .unwrap()
            .is_none()
    );
    assert!(pep_state(&storage, &juliet).await.is_empty());
    assert!(archive_state(&storage, &juliet).await.is_empty());
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

#[tokio::test]
async fn an_item_id_listed_twice_keeps_its_last_payload_in_its_last_place() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(dir.path()).await;
    let text = file(
        "<user name='r' password='p'>\
             <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='n'>\
             <x xmlns='jabber:x:data' type='submit'><field var='pubsub#max_items'><value>10</value>\
             </field></x></configure></pubsub>\
             <pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'>\
             <item id='a'><v xmlns='urn:v'>1</v></item><item id='b'><v xmlns='urn:v'>2</v></item>\
             <item id='a'><v xmlns='urn:v'>3</v></item></items></pubsub></user>",
    );
    let report = import_text(
        &storage,
        dir.path(),
        &text,
        &hosts(),
        &ImportSettings::default(),
    )
    .await;
    assert_eq!(report.imported, ["r@a.test"], "{report:?}");
    let state = pep_state(&storage, &BareJid::new("r@a.test").unwrap()).await;
    assert_eq!(
        state[0].2, "b=<v xmlns=\"urn:v\">2</v>,a=<v xmlns=\"urn:v\">3</v>",
        "{state:?}"
    );
}

/// The PEP and archive parts of what Prosody 0.12.3's `prosody-migrator` wrote for pamela
/// (interop/migrate.sh): every node option exported, empty where the node has its default,
/// and the archive's message without a `<stanza-id/>`.
const PROSODY_PAMELA: &str = "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='http://jabber.org/protocol/nick'><x type='submit' xmlns='jabber:x:data'><field type='hidden' var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#node_config</value></field><field type='text-single' var='pubsub#title'/><field type='text-single' var='pubsub#description'/><field type='text-single' var='pubsub#type'/><field type='text-single' var='pubsub#max_items'/><field type='boolean' var='pubsub#persist_items'/><field type='list-single' var='pubsub#access_model'/><field type='list-single' var='pubsub#publish_model'/><field type='list-single' var='pubsub#send_last_published_item'/><field type='boolean' var='pubsub#deliver_notifications'><value>1</value></field><field type='boolean' var='pubsub#deliver_payloads'><value>1</value></field><field type='list-single' var='pubsub#notification_type'/><field type='boolean' var='pubsub#notify_delete'><value>1</value></field><field type='boolean' var='pubsub#notify_retract'><value>1</value></field></x></configure></pubsub><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='http://jabber.org/protocol/nick'><item id='4d9c951e-bdbc-40b4-bbdb-8586c6fa4c27'><nick xmlns='http://jabber.org/protocol/nick'>Pamela of localhost</nick></item></items></pubsub><archive xmlns='urn:xmpp:pie:0#mam'><result id='mpV5YEFUofzR1CnJMf8EGpqL' xmlns='urn:xmpp:mam:2'><forwarded xmlns='urn:xmpp:forward:0'><delay stamp='2026-12-07T17:51:34Z' xmlns='urn:xmpp:delay'/><message to='peter@localhost' xmlns='jabber:client' from='pamela@localhost/migrated' type='chat' id='75f28d86388a416e8b3a6f62f21fbd7f' xml:lang='en'><body>archived on Prosody bcd01595</body></message></forwarded></result></archive>";

#[tokio::test]
async fn a_prosody_export_keeps_its_nodes_defaults_and_its_archive() {
    let dir = tempfile::tempdir().unwrap();
    let storage = storage(dir.path()).await;
    let text = format!(
        "{HEAD}<host jid='localhost'><user name='pamela' password='p'>{PROSODY_PAMELA}</user>\
             </host></server-data>"
    );
    let hosts = vec!["localhost".to_owned()];
    let report = import_text(
        &storage,
        dir.path(),
        &text,
        &hosts,
        &ImportSettings::default(),
    )
    .await;
    assert_eq!(report.imported, ["pamela@localhost"], "{report:?}");
    // Only the options with a value this server lacks are reported.
    assert_eq!(
        report.notes,
        [(
            "pamela@localhost".to_owned(),
            "PEP node options not kept: pubsub#notify_delete".to_owned()
        )]
    );
    let pamela = BareJid::new("pamela@localhost").unwrap();
    let pep = pep_state(&storage, &pamela).await;
    assert_eq!(pep.len(), 1);
    // No access model in the file: PEP's default (presence), not the owner alone.
    assert_eq!(pep[0].1, AccessModel::Presence);
    assert!(pep[0].2.contains("Pamela of localhost"), "{pep:?}");
    let archive = archive_state(&storage, &pamela).await;
    assert_eq!(archive.len(), 1);
    assert_eq!(archive[0].0, "mpV5YEFUofzR1CnJMf8EGpqL");
    assert_eq!(archive[0].1, "peter@localhost");
    assert!(archive[0].3.contains("archived on Prosody"), "{archive:?}");
}
