//! Which messages a user archive keeps (XEP-0313 §8.1.1, XEP-0334 §4), and the stanza-id
//! rewrite of XEP-0359 §3.

use jid::Jid;
use xmppd_proto::stanza_id::StanzaId;
use xmppd_proto::{Stanza, ns};
use xmppd_xml::Element;

/// Payload namespaces of end-to-end encrypted messages, which carry no readable `<body/>`
/// (or only a fallback) but are conversation: OMEMO (legacy and XEP-0384 v0.8+), OpenPGP for
/// XMPP (XEP-0373), legacy OpenPGP (XEP-0027).
const ENCRYPTED: &[&str] = &[
    "eu.siacs.conversations.axolotl",
    "urn:xmpp:omemo:2",
    "urn:xmpp:openpgp:0",
    "jabber:x:encrypted",
];

/// Whether a message is one a user archive keeps: a conversation message (`normal`, `chat`
/// or an unknown type, RFC 6121 §5.2.2) with a body, an encrypted payload or the `<store/>`
/// hint, and without a hint against storing it.
pub(crate) fn archivable(message: &Element) -> bool {
    if matches!(
        message.attr("type"),
        Some("error" | "groupchat" | "headline")
    ) {
        return false;
    }
    let mut content = false;
    for child in message.children() {
        match (child.ns(), child.name()) {
            (ns::HINTS, "no-store" | "no-permanent-store") => return false,
            (ns::HINTS, "store") => content = true,
            (ns::CLIENT | ns::SERVER, "body") => content = true,
            (n, _) if ENCRYPTED.contains(&n) => content = true,
            _ => {}
        }
    }
    content
}

/// `stanza` without any `<stanza-id/>` claiming to be by `by` (XEP-0359 §3 rule 2): every one
/// of them, so that a sender cannot slip a second forged id past a server that removes only
/// the first. The stanza is rebuilt only when something was removed.
pub(crate) fn without_stanza_ids_by(stanza: Stanza, by: &Jid) -> Stanza {
    let claims = stanza
        .element()
        .children()
        .any(|c| c.is("stanza-id", ns::SID));
    if !claims {
        return stanza;
    }
    let (kind, from, to) = (stanza.kind(), stanza.from().cloned(), stanza.to().cloned());
    let mut el = stanza.into_element();
    StanzaId::remove_by(&mut el, by);
    Stanza::new_unchecked(kind, from, to, el)
}

/// `stanza` with `child` appended.
pub(crate) fn with_child(stanza: Stanza, child: Element) -> Stanza {
    let (kind, from, to) = (stanza.kind(), stanza.from().cloned(), stanza.to().cloned());
    let mut el = stanza.into_element();
    el.push_child(child);
    Stanza::new_unchecked(kind, from, to, el)
}

/// Whether the recipient's side has anything to do with a message: archive it, or remove
/// `<stanza-id/>`s it carries (any of which may be forged). Neither holds for a headline
/// without stanza ids (a PEP notification) or a bare chat state, which then keep the
/// router's direct path.
pub(crate) fn concerns_recipient(message: &Element) -> bool {
    archivable(message) || message.children().any(|c| c.is("stanza-id", ns::SID))
}
