//! Attack catalogue (`tests/SECURITY.md`), the XML rows: what RFC 6120 §11 forbids (DTDs,
//! entity declarations and references — "billion laughs" — comments, processing instructions,
//! encodings other than UTF-8), characters XML 1.0 does not allow (invalid UTF-8, surrogates,
//! U+FFFE/U+FFFF, `&#0;`), and floods of attributes, namespace declarations and depth — each
//! tried on every entry path: client streams before TLS, after STARTTLS, on direct TLS and
//! after login; federation streams before TLS, after TLS and authenticated; the component
//! listener before and after its handshake; and WebSocket frames before and after login.
//!
//! Pass criterion for each row and path: the exact stream error condition, then the
//! connection closed, each within the test timeout; nothing of the stanza reaches bob.

use crate::common;

use common::attack::{Path, Target, before_header, expect_refused, fill, reach};
use common::federation::online;
use common::ws::{self, FRAMING, Received, Wss, raw_frame};
use common::{SILENCE, password};
use futures::SinkExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio_tungstenite::tungstenite::Message;
use xmppd::config::HttpListenConfig;
use xmppd_http::HttpKind;

/// One attack: what it is, its bytes (`{m}` is the start tag of a message to bob on the
/// path at hand), and the stream error it must get.
struct Case {
    what: &'static str,
    bytes: Vec<u8>,
    condition: &'static str,
}

fn case(what: &'static str, bytes: impl Into<Vec<u8>>, condition: &'static str) -> Case {
    Case {
        what,
        bytes: bytes.into(),
        condition,
    }
}

/// RFC 6120 §11.1: no DTD, no entity, no comment, no processing instruction in a stream.
fn restricted() -> Vec<Case> {
    let r = "restricted-xml";
    vec![
        case("an entity declaration", "<!ENTITY lol 'lol'>", r),
        case(
            "a DOCTYPE inside the stream",
            "<!DOCTYPE message [<!ENTITY lol 'lol'>]>",
            r,
        ),
        case(
            "an entity reference in text (billion laughs)",
            "{m}<body>&lol9;</body></message>",
            r,
        ),
        case(
            "an entity reference in an attribute",
            "{m}<body xml:lang='&lol;'>x</body></message>",
            r,
        ),
        case("a comment between stanzas", "<!-- hello -->", r),
        case(
            "a comment inside a stanza",
            "{m}<!-- hello --><body>x</body></message>",
            r,
        ),
        case("a processing instruction", "<?evil x?>", r),
        case(
            "an XML declaration inside the stream",
            "<?xml version='1.0' encoding='ISO-8859-1'?>",
            r,
        ),
    ]
}

/// XML 1.0 §2.2 `Char` and RFC 3629 UTF-8; a broken name or an undeclared prefix.
fn malformed() -> Vec<Case> {
    let nwf = "not-well-formed";
    let text = |what, bad: &[u8]| {
        let mut bytes = b"{m}<body>a".to_vec();
        bytes.extend_from_slice(bad);
        bytes.extend_from_slice(b"b</body></message>");
        case(what, bytes, nwf)
    };
    vec![
        text("invalid UTF-8 in text", b"\xC3\x28"),
        text("overlong UTF-8 for '/'", b"\xC0\xAF"),
        text("a UTF-16 surrogate encoded in UTF-8", b"\xED\xA0\x80"),
        text("U+FFFE in text", "\u{FFFE}".as_bytes()),
        text("U+0001 in text", b"\x01"),
        text("&#0; in text", b"&#0;"),
        text("&#xFFFF; in text", b"&#xFFFF;"),
        case(
            "U+FFFF in an attribute",
            "{m}<body xml:lang='\u{FFFF}'>x</body></message>",
            nwf,
        ),
        case(
            "&#xFFFE; in an attribute",
            "{m}<body xml:lang='&#xFFFE;'>x</body></message>",
            nwf,
        ),
        case(
            "invalid UTF-8 in an element name",
            b"{m}<b\xFFdy>x</b\xFFdy></message>".to_vec(),
            nwf,
        ),
        case(
            "a duplicate attribute",
            "{m}<body xml:lang='en' xml:lang='de'>x</body></message>",
            nwf,
        ),
        case(
            "an undeclared prefix",
            "{m}<evil:body>x</evil:body></message>",
            "bad-namespace-prefix",
        ),
    ]
}

/// Limits checked while parsing (`[limits] max_attrs = 256` attributes per element and
/// namespace declarations in scope, `max_depth = 64`): more is refused at the tag that
/// crosses them.
fn floods() -> Vec<Case> {
    let pv = "policy-violation";
    let attrs: String = (0..300).map(|i| format!(" a{i}=''")).collect();
    let namespaces: String = (0..300)
        .map(|i| format!(" xmlns:p{i}='urn:p{i}'"))
        .collect();
    let deep = format!("{{m}}{}", "<x>".repeat(100));
    // Twenty per element, each element well within the attribute limit.
    let nested: String = (0..20)
        .map(|level| {
            let decls: String = (0..20)
                .map(|i| format!(" xmlns:p{level}x{i}='urn:p'"))
                .collect();
            format!("<x{decls}>")
        })
        .collect();
    vec![
        case(
            "300 attributes on one element",
            format!("{{m}}<body{attrs}/></message>"),
            pv,
        ),
        case(
            "300 namespace declarations on one element",
            format!("{{m}}<body{namespaces}/></message>"),
            pv,
        ),
        case(
            "400 namespace declarations over 20 nested elements",
            format!("{{m}}{nested}"),
            pv,
        ),
        case("100 nested elements", deep, pv),
    ]
}

/// Tries every case on every path, each on a new connection.
async fn on_every_path(cases: &[Case]) -> anyhow::Result<()> {
    let t = Target::start().await?;
    let mut bob = online(&t.server, "bob").await?;
    for path in Path::ALL {
        for c in cases {
            let mut client = reach(&t, path).await?;
            let bytes = fill(&c.bytes, path.message_start());
            let what = format!("{} on {path:?}", c.what);
            expect_refused(&mut client, &bytes, c.condition, &what).await?;
        }
    }
    bob.expect_silence(SILENCE).await?;
    Ok(())
}

#[tokio::test]
async fn restricted_xml_is_refused_on_every_path() -> anyhow::Result<()> {
    on_every_path(&restricted()).await
}

#[tokio::test]
async fn characters_xml_forbids_are_not_well_formed_on_every_path() -> anyhow::Result<()> {
    on_every_path(&malformed()).await
}

#[tokio::test]
async fn floods_of_attributes_namespaces_and_depth_are_refused_on_every_path() -> anyhow::Result<()>
{
    on_every_path(&floods()).await
}

/// What may come before (or in) a stream header: each stream start, `{h}` the header.
fn prologs() -> Vec<Case> {
    let r = "restricted-xml";
    let enc = "unsupported-encoding";
    vec![
        case(
            "a DOCTYPE with nested entities (billion laughs)",
            "<?xml version='1.0'?><!DOCTYPE stream:stream [<!ENTITY lol 'lol'>\
             <!ENTITY lol2 '&lol;&lol;&lol;&lol;'>]>{h}",
            r,
        ),
        case("a comment before the header", "<!-- hello -->{h}", r),
        case(
            "a processing instruction before the header",
            "<?xml-stylesheet href='evil.xsl'?>{h}",
            r,
        ),
        case(
            "a processing instruction after the declaration",
            "<?xml version='1.0'?><?evil x?>{h}",
            r,
        ),
        case(
            "an ISO-8859-1 declaration",
            "<?xml version='1.0' encoding='ISO-8859-1'?>{h}",
            enc,
        ),
        case(
            "a UTF-16 declaration",
            "<?xml version='1.0' encoding='UTF-16'?>{h}",
            enc,
        ),
        case("an entity reference in the header", "{H}", r),
    ]
}

#[tokio::test]
async fn what_comes_before_a_stream_header_is_checked_at_every_stream_start() -> anyhow::Result<()>
{
    let t = Target::start().await?;
    for path in Path::ALL.into_iter().filter(|p| p.starts_a_stream()) {
        let header = path.header();
        // The header's `to` as an entity reference.
        let with_entity = header
            .replace("to='b.test'", "to='&host;'")
            .replace("to='irc.b.test'", "to='&host;'");
        for c in prologs() {
            let mut client = before_header(&t, path).await?;
            let text = String::from_utf8(c.bytes)?
                .replace("{h}", &header)
                .replace("{H}", &with_entity);
            let what = format!("{} on {path:?}", c.what);
            expect_refused(&mut client, text.as_bytes(), c.condition, &what).await?;
        }
    }
    Ok(())
}

// --- WebSocket (RFC 7395) -----------------------------------------------------------------

/// The target with an HTTPS listener; its address.
async fn with_websocket() -> anyhow::Result<(Target, std::net::SocketAddr)> {
    let t = Target::start_with(|c| {
        c.http_listen = vec![HttpListenConfig {
            kind: HttpKind::Tls,
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            read_rate: None,
        }];
    })
    .await?;
    let addr = t
        .server
        .server
        .http_addr(HttpKind::Tls)
        .ok_or_else(|| anyhow::anyhow!("no HTTPS listener"))?;
    Ok((t, addr))
}

/// A WebSocket after `<open/>`, logged in as alice when `authenticated`.
async fn websocket(
    t: &Target,
    addr: std::net::SocketAddr,
    authenticated: bool,
) -> anyhow::Result<Wss> {
    if authenticated {
        return Ok(
            ws::login(&t.server, addr, "alice", &password("alice"), "attack")
                .await?
                .0,
        );
    }
    let mut socket = ws::connect(&t.server, addr).await?;
    ws::open(&mut socket, "b.test").await?;
    Ok(socket)
}

/// Every XML row whose bytes are UTF-8 goes in one text frame, before and after login, and
/// gets its stream error, `<close/>` and the close frame. Invalid UTF-8 cannot be a text
/// frame at all: RFC 6455 §8.1 closes the connection with 1007.
#[tokio::test]
async fn websocket_frames_get_the_same_answers() -> anyhow::Result<()> {
    let (t, addr) = with_websocket().await?;
    let mut bob = online(&t.server, "bob").await?;
    let start = "<message xmlns='jabber:client' to='bob@b.test'>";
    let mut invalid_utf8 = Vec::new();
    for authenticated in [false, true] {
        for c in restricted().into_iter().chain(malformed()).chain(floods()) {
            let bytes = fill(&c.bytes, start);
            let Ok(text) = String::from_utf8(bytes.clone()) else {
                if authenticated {
                    invalid_utf8.push(bytes);
                }
                continue;
            };
            let mut socket = websocket(&t, addr, authenticated).await?;
            socket.send(Message::text(text)).await?;
            let got = ws::expect_stream_error(&mut socket).await?;
            assert_eq!(
                got, c.condition,
                "{} (authenticated: {authenticated})",
                c.what
            );
        }
    }
    assert_eq!(invalid_utf8.len(), 4, "the rows that are not UTF-8");
    for bytes in invalid_utf8 {
        let mut socket = websocket(&t, addr, true).await?;
        socket
            .get_mut()
            .write_all(&raw_frame(true, 0x1, &bytes, None))
            .await?;
        socket.get_mut().flush().await?;
        let got = ws::recv(&mut socket).await?;
        assert!(
            matches!(got, Received::Closed(Some(1007))),
            "{:?}: {got:?}",
            String::from_utf8_lossy(&bytes)
        );
    }
    // A DOCTYPE before `<open/>` in the first frame.
    let mut socket = ws::connect(&t.server, addr).await?;
    socket
        .send(Message::text(format!(
            "<!DOCTYPE open [<!ENTITY lol 'lol'>]><open xmlns='{FRAMING}' to='b.test' version='1.0'/>"
        )))
        .await?;
    assert_eq!(
        ws::expect_stream_error(&mut socket).await?,
        "restricted-xml"
    );
    bob.expect_silence(SILENCE).await?;
    Ok(())
}

/// What may precede `<open/>` is refused case by case, in the first frame and in the frame
/// that restarts the stream after SASL, as on TCP — except that every XML declaration is
/// `restricted-xml`: each message is an element of the one stream (RFC 7395 "XMPP Framing"),
/// so a declaration is always mid-stream, and a text frame is UTF-8 whatever it declares
/// (RFC 6455 §5.6).
#[tokio::test]
async fn websocket_prologs_before_open_get_the_same_answers() -> anyhow::Result<()> {
    let (t, addr) = with_websocket().await?;
    let open = format!("<open xmlns='{FRAMING}' to='b.test' version='1.0'/>");
    let with_entity = open.replace("to='b.test'", "to='&host;'");
    for restart in [false, true] {
        for c in prologs() {
            let mut socket = ws::connect(&t.server, addr).await?;
            if restart {
                ws::open(&mut socket, "b.test").await?;
                ws::authenticate(&mut socket, "SCRAM-SHA-256", "alice", &password("alice")).await?;
            }
            let text = String::from_utf8(c.bytes)?
                .replace("{h}", &open)
                .replace("{H}", &with_entity);
            socket.send(Message::text(text)).await?;
            let expected = match c.condition {
                "unsupported-encoding" => "restricted-xml",
                other => other,
            };
            let got = ws::expect_stream_error(&mut socket).await?;
            assert_eq!(got, expected, "{} (after SASL: {restart})", c.what);
        }
    }
    Ok(())
}
