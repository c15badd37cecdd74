//! Namespace names used across crates.

/// Content namespace of client streams (RFC 6120 §4.8.3).
pub const CLIENT: &str = "jabber:client";
/// Content namespace of server-to-server streams.
pub const SERVER: &str = "jabber:server";
/// `<stream:stream>` and `<stream:features>`, `<stream:error>`.
pub const STREAM: &str = "http://etherx.jabber.org/streams";
/// Defined conditions of stream errors (RFC 6120 §4.9.3).
pub const STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
/// Defined conditions of stanza errors (RFC 6120 §8.3.3).
pub const STANZAS: &str = "urn:ietf:params:xml:ns:xmpp-stanzas";
/// STARTTLS (RFC 6120 §5).
pub const TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
/// SASL (RFC 6120 §6).
pub const SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// Resource binding (RFC 6120 §7).
pub const BIND: &str = "urn:ietf:params:xml:ns:xmpp-bind";
/// The obsolete session establishment (RFC 3921 §3), advertised as optional for old clients.
pub const SESSION: &str = "urn:ietf:params:xml:ns:xmpp-session";
/// XEP-0440: SASL channel-binding type capability.
pub const SASL_CB: &str = "urn:xmpp:sasl-cb:0";
/// XEP-0114: content namespace of external component streams ("accept" method).
pub const COMPONENT_ACCEPT: &str = "jabber:component:accept";
/// XEP-0199: XMPP Ping.
pub const PING: &str = "urn:xmpp:ping";
/// XEP-0030: service discovery, info.
pub const DISCO_INFO: &str = "http://jabber.org/protocol/disco#info";
/// XEP-0030: service discovery, items.
pub const DISCO_ITEMS: &str = "http://jabber.org/protocol/disco#items";
/// XEP-0004: data forms.
pub const DATA_FORMS: &str = "jabber:x:data";
/// XEP-0059: result set management.
pub const RSM: &str = "http://jabber.org/protocol/rsm";
/// XEP-0203: delayed delivery.
pub const DELAY: &str = "urn:xmpp:delay";
/// XEP-0297: stanza forwarding.
pub const FORWARD: &str = "urn:xmpp:forward:0";
/// XEP-0280: Message Carbons.
pub const CARBONS: &str = "urn:xmpp:carbons:2";
/// XEP-0280 §6.2: the server applies exactly the rules of §6.1.
pub const CARBONS_RULES: &str = "urn:xmpp:carbons:rules:0";
/// XEP-0334: message processing hints.
pub const HINTS: &str = "urn:xmpp:hints";
/// XEP-0115: entity capabilities.
pub const CAPS: &str = "http://jabber.org/protocol/caps";
/// XEP-0359: unique and stable stanza IDs.
pub const SID: &str = "urn:xmpp:sid:0";
/// RFC 6121 §2: the roster.
pub const ROSTER: &str = "jabber:iq:roster";
/// XEP-0191: Blocking Command.
pub const BLOCKING: &str = "urn:xmpp:blocking";
/// XEP-0191: the `<blocked/>` application error condition.
pub const BLOCKING_ERRORS: &str = "urn:xmpp:blocking:errors";
/// XEP-0198: Stream Management.
pub const SM: &str = "urn:xmpp:sm:3";
/// `urn:xmpp:errors`: application conditions such as `<stanza-too-big/>` (XEP-0478 §3).
pub const XMPP_ERRORS: &str = "urn:xmpp:errors";
/// `urn:xmpp:stream-limits:0` (XEP-0478).
pub const STREAM_LIMITS: &str = "urn:xmpp:stream-limits:0";
/// XEP-0352: Client State Indication.
pub const CSI: &str = "urn:xmpp:csi:0";
/// `urn:xmpp:mam:2` (XEP-0313).
pub const MAM: &str = "urn:xmpp:mam:2";
/// XEP-0054: vcard-temp.
pub const VCARD: &str = "vcard-temp";
/// XEP-0153: vCard-Based Avatars, the presence extension.
pub const VCARD_UPDATE: &str = "vcard-temp:x:update";
/// XEP-0049: Private XML Storage.
pub const PRIVATE: &str = "jabber:iq:private";
/// RFC 7395: the framing of XMPP over WebSocket (`<open/>`, `<close/>`).
pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
