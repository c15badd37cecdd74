//! XEP-0092: Software Version.
//!
//! Answers `jabber:iq:version` queries to the server (§2) with the software's name, its
//! version and, unless `[modules.version] hide_os = true`, the operating system: §5 requires
//! that an administrator can stop sharing it, since it helps attacks aimed at that system.
//! `<name/>` and `<version/>` are REQUIRED in a result (§2), so only `<os/>` can be hidden.
//!
//! Only the server answers here: a query to a user's bare JID is the user's own client's
//! business (§1 prefers XEP-0115 for contacts), and one to a full JID is routed to the client.
//! The answer is built once, and again when a reload changes `hide_os`.

use std::sync::Arc;

use async_trait::async_trait;
use xmppd_core::{IqHandler, IqRequest, IqTarget, IqType, Live, Module, Reconfigure, Registry};
use xmppd_proto::StanzaError;
use xmppd_xml::Element;

/// `jabber:iq:version`.
pub const NS_VERSION: &str = "jabber:iq:version";

/// The software's name in answers.
const NAME: &str = "xmppd";

/// `[modules.version]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionSettings {
    /// Leave `<os/>` out of answers (§5). Default: false.
    #[serde(default)]
    pub hide_os: bool,
}

/// The software version module.
#[derive(Debug)]
pub struct Version {
    /// The `<query/>` of every answer, replaced whole by a reload.
    answer: Live<Element>,
}

impl Version {
    /// The module with these settings; the operating system is read now, if it is shown.
    pub fn new(settings: VersionSettings) -> Self {
        Version {
            answer: Live::new(answer(settings)),
        }
    }
}

/// The answer under `settings`; the operating system is read now, if it is shown.
fn answer(settings: VersionSettings) -> Element {
    let os = (!settings.hide_os).then(|| {
        os_description(
            read_proc("/proc/sys/kernel/ostype"),
            read_proc("/proc/sys/kernel/osrelease"),
        )
    });
    query(NAME, env!("CARGO_PKG_VERSION"), os.as_deref())
}

/// One line of a `/proc` file, trimmed; `None` when unreadable or empty.
fn read_proc(path: &str) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// What `uname -sr` says (`Linux 6.1.0`), from the kernel's type and release; the compile
/// target's OS name when the kernel's type is unknown.
fn os_description(ostype: Option<String>, osrelease: Option<String>) -> String {
    match (ostype, osrelease) {
        (Some(t), Some(r)) => format!("{t} {r}"),
        (Some(t), None) => t,
        (None, _) => std::env::consts::OS.to_owned(),
    }
}

/// The `<query/>` of a result (§2).
fn query(name: &str, version: &str, os: Option<&str>) -> Element {
    let mut q = Element::new("query", NS_VERSION)
        .with_child(Element::new("name", NS_VERSION).with_text(name))
        .with_child(Element::new("version", NS_VERSION).with_text(version));
    if let Some(os) = os {
        q.push_child(Element::new("os", NS_VERSION).with_text(os));
    }
    q
}

#[async_trait]
impl IqHandler for Version {
    async fn handle(&self, _request: IqRequest<'_>) -> Result<Option<Element>, StanzaError> {
        Ok(Some(Element::clone(&self.answer.get())))
    }
}

impl Reconfigure for Version {
    type Settings = VersionSettings;

    fn reconfigure(&self, new: VersionSettings) {
        self.answer.set(answer(new));
    }
}

impl Module for Version {
    fn register(self: Arc<Self>, registry: &mut Registry) {
        registry.iq(IqTarget::Server, IqType::Get, NS_VERSION, "query", self);
        registry.server_feature(NS_VERSION);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn child_text(q: &Element, name: &str) -> Option<String> {
        q.child(name, NS_VERSION).map(Element::text)
    }

    #[test]
    fn the_answer_names_the_software_and_its_version() {
        let q = Version::new(VersionSettings::default()).answer.get();
        assert!(q.is("query", NS_VERSION));
        assert_eq!(child_text(&q, "name").as_deref(), Some("xmppd"));
        assert_eq!(
            child_text(&q, "version").as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
        assert!(child_text(&q, "os").is_some_and(|os| !os.is_empty()));
    }

    #[test]
    fn hide_os_leaves_os_out() {
        let q = Version::new(VersionSettings { hide_os: true }).answer.get();
        assert!(q.child("os", NS_VERSION).is_none());
        assert!(q.child("name", NS_VERSION).is_some());
        assert!(q.child("version", NS_VERSION).is_some());
    }

    #[test]
    fn os_description_is_uname_like_with_a_fallback() {
        let s = |v: &str| Some(v.to_owned());
        let cases = [
            (
                s("Linux"),
                s("6.1.0-18-amd64"),
                "Linux 6.1.0-18-amd64".to_owned(),
            ),
            (s("Linux"), None, "Linux".to_owned()),
            (None, s("6.1.0"), std::env::consts::OS.to_owned()),
            (None, None, std::env::consts::OS.to_owned()),
        ];
        for (ostype, release, expected) in cases {
            assert_eq!(os_description(ostype, release), expected);
        }
    }

    #[test]
    fn settings_parse_and_refuse_unknown_keys() {
        let parsed: VersionSettings = toml::from_str("hide_os = true").expect("valid settings");
        assert_eq!(parsed, VersionSettings { hide_os: true });
        let empty: VersionSettings = toml::from_str("").expect("empty settings");
        assert_eq!(empty, VersionSettings::default());
        let err = toml::from_str::<VersionSettings>("hide_oss = true")
            .expect_err("unknown key")
            .to_string();
        assert!(err.contains("hide_oss"), "{err}");
    }
}
