//! XEP-0363 HTTP File Upload end to end: the service on `upload.localhost` (disco, slots and
//! the §5 errors over XMPP) and its files over HTTPS (PUT with the signed URL, GET/HEAD with
//! their headers, CORS, and every refusal: 403, 413, 400, 409, 404).

use crate::common;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use common::ws;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use xmppd::config::HttpListenConfig;
use xmppd_http::HttpKind;
use xmppd_proto::upload::{self, Slot};
use xmppd_testkit::{TestClient, TestServer, stanza_error_condition};
use xmppd_xml::Element;

const ANY: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);
const SERVICE: &str = "upload.localhost";

/// `localhost` with an HTTPS listener and these `[modules.upload]` settings.
async fn server(settings: &str) -> anyhow::Result<TestServer> {
    let text = format!("[modules.upload]\n{settings}\n");
    let server = TestServer::start_with(|c| {
        c.http_listen = vec![HttpListenConfig {
            kind: HttpKind::Tls,
            addr: ANY,
            read_rate: None,
        }];
        c.text = Some(Arc::from(text.as_str()));
    })
    .await?;
    server.add_user("alice", "pw").await?;
    Ok(server)
}

async fn alice(server: &TestServer) -> anyhow::Result<TestClient> {
    server.login("alice", "pw", "phone").await
}

/// Asks for a slot; the answer is the whole iq.
async fn request(
    client: &mut TestClient,
    filename: &str,
    size: &str,
    content_type: Option<&str>,
) -> anyhow::Result<Element> {
    let ct = content_type
        .map(|t| format!(" content-type='{t}'"))
        .unwrap_or_default();
    client
        .send(&format!(
            "<iq type='get' id='slot' to='{SERVICE}'><request xmlns='{}' \
             filename='{filename}' size='{size}'{ct}/></iq>",
            upload::NS
        ))
        .await?;
    client
        .expect("the slot answer", |el| el.attr("id") == Some("slot"))
        .await
}

async fn slot(
    client: &mut TestClient,
    filename: &str,
    size: usize,
    content_type: Option<&str>,
) -> anyhow::Result<Slot> {
    let iq = request(client, filename, &size.to_string(), content_type).await?;
    let el = iq
        .child("slot", upload::NS)
        .ok_or_else(|| anyhow!("no slot: {iq}"))?;
    Slot::try_from(el).map_err(|e| anyhow!("{e:?}"))
}

fn error_of(iq: &Element) -> anyhow::Result<(String, String)> {
    let error = iq.child("error", "jabber:client").context("no error")?;
    let condition = stanza_error_condition(iq).context("no condition")?;
    Ok((error.attr("type").unwrap_or("").to_owned(), condition))
}

/// The path and query of a slot URL, after its scheme and authority.
fn path_of(url: &str) -> anyhow::Result<&str> {
    let rest = url.strip_prefix("https://").context("not https")?;
    Ok(&rest[rest.find('/').context("no path")?..])
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        ws::header(&self.headers, name)
    }
}

/// One HTTPS request on its own connection.
async fn http(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<Answer> {
    let addr = server
        .server
        .http_addr(HttpKind::Tls)
        .context("no HTTPS listener")?;
    let mut io = ws::tls(server, addr, "localhost").await?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n",
        addr.port()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    io.write_all(head.as_bytes()).await?;
    // The server may answer (413, 403) before reading the body and close.
    let _ = io.write_all(body).await;
    let _ = io.flush().await;
    let mut response = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        io.read_to_end(&mut response),
    )
    .await;
    match read {
        Ok(Ok(_)) => {}
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Ok(Err(e)) if !response.is_empty() => drop(e),
        Ok(Err(e)) => return Err(e.into()),
        Err(_) => bail!("no response to {method} {path}"),
    }
    let (status, headers, body) = ws::parse_response(&response)?;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

async fn put(
    server: &TestServer,
    slot: &Slot,
    content_type: &str,
    body: &[u8],
) -> anyhow::Result<Answer> {
    let len = body.len().to_string();
    let headers = [
        ("Content-Type", content_type),
        ("Content-Length", len.as_str()),
    ];
    http(server, "PUT", path_of(&slot.put)?, &headers, body).await
}

async fn get(server: &TestServer, url: &str) -> anyhow::Result<Answer> {
    http(server, "GET", path_of(url)?, &[], b"").await
}

#[tokio::test]
async fn the_service_is_discovered_with_its_max_file_size() -> anyhow::Result<()> {
    let server = server("max_file_size = 5242880").await?;
    let mut client = alice(&server).await?;
    client
        .send("<iq type='get' id='items' to='localhost'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>")
        .await?;
    let items = client
        .expect("items", |el| el.attr("id") == Some("items"))
        .await?;
    assert!(
        items.to_string().contains(&format!("jid=\"{SERVICE}\""))
            || items.to_string().contains(&format!("jid='{SERVICE}'")),
        "{items}"
    );
    client
        .send(&format!("<iq type='get' id='info' to='{SERVICE}'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"))
        .await?;
    let info = client
        .expect("info", |el| el.attr("id") == Some("info"))
        .await?;
    let query = info
        .child("query", "http://jabber.org/protocol/disco#info")
        .context("no query")?;
    let parsed =
        xmppd_proto::disco::DiscoInfoResult::try_from(query).map_err(|e| anyhow!("{e:?}"))?;
    assert!(
        parsed
            .identities
            .iter()
            .any(|i| i.category == "store" && i.kind == "file"),
        "{info}"
    );
    assert!(parsed.has_feature(upload::NS), "{info}");
    let form = parsed
        .extensions
        .iter()
        .find(|f| f.form_type() == Some(upload::NS))
        .context("no upload form")?;
    assert_eq!(form.value("max-file-size"), Some("5242880"));
    Ok(())
}

#[tokio::test]
async fn a_file_is_put_and_fetched_with_its_headers() -> anyhow::Result<()> {
    let server = server("").await?;
    let mut client = alice(&server).await?;
    let bytes: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
    let slot = slot(&mut client, "très cool.png", bytes.len(), Some("image/png")).await?;
    let port = server
        .server
        .http_addr(HttpKind::Tls)
        .context("https")?
        .port();
    assert!(
        slot.get
            .starts_with(&format!("https://localhost:{port}/upload/"))
            && slot.get.ends_with("/tr%C3%A8s%20cool.png"),
        "{}",
        slot.get
    );
    assert!(slot.put.starts_with(&slot.get) && slot.put_headers.is_empty());
    // Not there before the PUT.
    assert_eq!(get(&server, &slot.get).await?.status, 404);
    let answer = put(&server, &slot, "image/png", &bytes).await?;
    assert_eq!(
        answer.status,
        201,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert_eq!(answer.header("access-control-allow-origin"), Some("*"));
    let got = get(&server, &slot.get).await?;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, bytes);
    assert_eq!(got.header("content-type"), Some("image/png"));
    assert_eq!(got.header("content-length"), Some("50000"));
    assert_eq!(
        got.header("content-disposition"),
        Some("inline; filename*=UTF-8''tr%C3%A8s%20cool.png")
    );
    let cache = got.header("cache-control").unwrap_or("");
    assert!(
        cache.contains("immutable") && cache.contains("max-age="),
        "{cache}"
    );
    assert_eq!(got.header("access-control-allow-origin"), Some("*"));
    assert_eq!(got.header("x-content-type-options"), Some("nosniff"));
    let head = http(&server, "HEAD", path_of(&slot.get)?, &[], b"").await?;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("50000"));
    assert!(head.body.is_empty());
    let preflight = http(
        &server,
        "OPTIONS",
        path_of(&slot.put)?,
        &[
            ("Origin", "https://web.example"),
            ("Access-Control-Request-Method", "PUT"),
        ],
        b"",
    )
    .await?;
    assert_eq!(preflight.status, 204);
    let methods = preflight
        .header("access-control-allow-methods")
        .unwrap_or("");
    assert!(
        methods.contains("PUT") && methods.contains("GET"),
        "{methods}"
    );
    assert!(
        preflight
            .header("access-control-allow-headers")
            .unwrap_or("")
            .contains("Content-Type")
    );
    // The slot is used up.
    assert_eq!(put(&server, &slot, "image/png", &bytes).await?.status, 409);
    // A document type is an attachment, never rendered in our origin; no type is binary.
    let html = slot_and_put(&server, &mut client, "page.html", Some("text/html")).await?;
    assert_eq!(
        html.header("content-disposition"),
        Some("attachment; filename*=UTF-8''page.html")
    );
    let untyped = slot_and_put(&server, &mut client, "blob", None).await?;
    assert_eq!(
        untyped.header("content-type"),
        Some("application/octet-stream")
    );
    Ok(())
}

/// Uploads `x` under `name` and fetches it back.
async fn slot_and_put(
    server: &TestServer,
    client: &mut TestClient,
    name: &str,
    content_type: Option<&str>,
) -> anyhow::Result<Answer> {
    let slot = slot(client, name, 1, content_type).await?;
    let put = put(
        server,
        &slot,
        content_type.unwrap_or("application/octet-stream"),
        b"x",
    )
    .await?;
    assert_eq!(put.status, 201);
    let got = get(server, &slot.get).await?;
    assert_eq!(got.status, 200);
    Ok(got)
}

#[tokio::test]
async fn bad_slot_requests_get_the_errors_of_the_xep() -> anyhow::Result<()> {
    let server = server(
        "max_file_size = 1000\nquota_bytes = 1500\nallowed_content_types = [\"image/png\", \"text/plain\"]",
    )
    .await?;
    let mut client = alice(&server).await?;
    // §5: too large, with the limit.
    let iq = request(&mut client, "a.png", "1001", Some("image/png")).await?;
    assert_eq!(error_of(&iq)?, ("modify".into(), "not-acceptable".into()));
    let error = iq.child("error", "jabber:client").context("error")?;
    let app = error
        .child("file-too-large", upload::NS)
        .context("no file-too-large")?;
    assert_eq!(upload::max_file_size_of(app), Some(1000));
    for (name, size, ct) in [
        ("empty.png", "0", Some("image/png")),
        ("../etc.png", "10", Some("image/png")),
        ("..", "10", Some("image/png")),
        ("a.gif", "10", Some("image/gif")),
        ("a.png", "10", Some("image png")),
        ("a.png", "10", None),
    ] {
        let iq = request(&mut client, name, size, ct).await?;
        assert_eq!(
            error_of(&iq)?.1,
            "not-acceptable",
            "{name} {size} {ct:?}: {iq}"
        );
    }
    let iq = request(&mut client, "a.png", "many", Some("image/png")).await?;
    assert_eq!(error_of(&iq)?.1, "bad-request");
    // The quota counts reserved slots too.
    slot(&mut client, "one.png", 1000, Some("image/png")).await?;
    let iq = request(&mut client, "two.png", "600", Some("image/png")).await?;
    assert_eq!(
        error_of(&iq)?,
        ("wait".into(), "resource-constraint".into())
    );
    let error = iq.child("error", "jabber:client").context("error")?;
    assert!(
        error
            .child("retry", upload::NS)
            .and_then(|r| r.attr("stamp"))
            .is_some(),
        "{iq}"
    );
    slot(&mut client, "small.txt", 500, Some("text/plain")).await?;
    // Nothing but slot requests is served.
    client
        .send(&format!("<iq type='set' id='set' to='{SERVICE}'><request xmlns='{}' filename='a' size='1'/></iq>", upload::NS))
        .await?;
    let iq = client
        .expect("set", |el| el.attr("id") == Some("set"))
        .await?;
    assert_eq!(error_of(&iq)?.1, "service-unavailable");
    Ok(())
}

/// What a bad PUT sends (what it tests, path, headers, body) and the status it gets.
type PutCase<'a> = (&'a str, &'a str, [(&'a str, &'a str); 2], &'a [u8], u16);

#[tokio::test]
async fn bad_puts_are_refused_and_leave_nothing_behind() -> anyhow::Result<()> {
    let server = server("").await?;
    let mut client = alice(&server).await?;
    let slot = slot(&mut client, "a.txt", 10, Some("text/plain")).await?;
    let path = path_of(&slot.put)?.to_owned();
    let unsigned = path.split_once('?').context("query")?.0.to_owned();
    let forged = match path.rfind("&s=") {
        Some(i) => format!("{}&s={}", &path[..i], "00".repeat(32)),
        None => bail!("no signature in {path}"),
    };
    let later = path.replace("&e=", "&e=9");
    let other_name = path.replace("/a.txt?", "/b.txt?");
    const TEXT: (&str, &str) = ("Content-Type", "text/plain");
    const CHUNKED: (&str, &str) = ("Transfer-Encoding", "chunked");
    let cases: [PutCase; 9] = [
        (
            "unsigned",
            &unsigned,
            [TEXT, ("Content-Length", "10")],
            b"0123456789",
            403,
        ),
        (
            "forged",
            &forged,
            [TEXT, ("Content-Length", "10")],
            b"0123456789",
            403,
        ),
        (
            "expiry changed",
            &later,
            [TEXT, ("Content-Length", "10")],
            b"0123456789",
            403,
        ),
        (
            "name changed",
            &other_name,
            [TEXT, ("Content-Length", "10")],
            b"0123456789",
            403,
        ),
        (
            "announced larger",
            &path,
            [TEXT, ("Content-Length", "11")],
            b"01234567890",
            413,
        ),
        (
            "announced shorter",
            &path,
            [TEXT, ("Content-Length", "9")],
            b"012345678",
            400,
        ),
        (
            "another type",
            &path,
            [("Content-Type", "text/html"), ("Content-Length", "10")],
            b"0123456789",
            400,
        ),
        (
            "chunked, larger",
            &path,
            [TEXT, CHUNKED],
            b"b\r\n01234567890\r\n0\r\n\r\n",
            413,
        ),
        (
            "chunked, shorter",
            &path,
            [TEXT, CHUNKED],
            b"3\r\n012\r\n0\r\n\r\n",
            400,
        ),
    ];
    for (what, p, headers, body, status) in cases {
        let a = http(&server, "PUT", p, &headers, body).await?;
        assert_eq!(a.status, status, "{what}: {p}");
    }
    assert_eq!(get(&server, &slot.get).await?.status, 404);
    let tmp = server.config.data_dir.join("upload").join("tmp");
    assert_eq!(
        std::fs::read_dir(&tmp)?.count(),
        0,
        "a partial upload was left"
    );
    // The slot still works after all that (a charset parameter is no other type).
    let headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", "10"),
    ];
    let a = http(&server, "PUT", &path, &headers, b"0123456789").await?;
    assert_eq!(a.status, 201);
    assert_eq!(get(&server, &slot.get).await?.body, b"0123456789");
    Ok(())
}

/// The files under `dir`, however deep (none when it does not exist).
fn files_under(dir: &std::path::Path) -> std::collections::BTreeSet<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Default::default();
    };
    entries
        .flatten()
        .flat_map(|e| {
            let path = e.path();
            if path.is_dir() {
                files_under(&path)
            } else {
                [path].into()
            }
        })
        .collect()
}

/// Path traversal on PUT: a slot's signed query on paths that leave its directory (`..`
/// plain and percent-encoded, an encoded slash, `..` around the id) is refused and writes
/// nothing anywhere; the slot itself still works afterwards.
#[tokio::test]
async fn a_put_that_climbs_out_of_its_slot_writes_nothing() -> anyhow::Result<()> {
    let server = server("").await?;
    let mut client = alice(&server).await?;
    let slot = slot(&mut client, "a.txt", 10, Some("text/plain")).await?;
    let path = path_of(&slot.put)?.to_owned();
    let (file, query) = path.split_once('?').context("no query")?;
    let (dir, _) = file.rsplit_once('/').context("no file name")?;
    let id = dir.rsplit('/').next().context("no id")?;
    let headers = [("Content-Type", "text/plain"), ("Content-Length", "10")];
    let data = &server.config.data_dir;
    let before = files_under(data);
    for climb in [
        format!("{dir}/..?{query}"),
        format!("{dir}/%2e%2e?{query}"),
        format!("{dir}/..%2Fa.txt?{query}"),
        format!("{dir}/../../a.txt?{query}"),
        format!("/upload/../{id}/a.txt?{query}"),
        format!("/upload/{id}/../a.txt?{query}"),
        format!("/upload/%2e%2e/{id}/a.txt?{query}"),
    ] {
        let a = http(&server, "PUT", &climb, &headers, b"0123456789").await?;
        assert!(matches!(a.status, 400 | 403 | 404), "{climb}: {}", a.status);
    }
    let written: Vec<_> = files_under(data).difference(&before).cloned().collect();
    assert!(written.is_empty(), "written: {written:?}");
    assert_eq!(get(&server, &slot.get).await?.status, 404);
    let a = put(&server, &slot, "text/plain", b"0123456789").await?;
    assert_eq!(a.status, 201);
    assert_eq!(get(&server, &slot.get).await?.body, b"0123456789");
    Ok(())
}

#[tokio::test]
async fn an_expired_slot_is_refused() -> anyhow::Result<()> {
    let server = server("slot_ttl_secs = 1").await?;
    let mut client = alice(&server).await?;
    let slot = slot(&mut client, "late.txt", 4, None).await?;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let a = put(&server, &slot, "application/octet-stream", b"late").await?;
    assert_eq!(a.status, 403);
    Ok(())
}

#[tokio::test]
async fn unknown_and_malformed_paths_are_not_found() -> anyhow::Result<()> {
    let server = server("").await?;
    let id = "0123456789abcdef0123456789abcdef";
    for (path, status) in [
        (format!("/upload/{id}/a.txt"), 404),
        ("/upload/nothex/a.txt".to_owned(), 404),
        (format!("/upload/{id}/.."), 400),
        (format!("/upload/{id}/%2e%2e"), 400),
        (format!("/upload/{id}/a%2Fb"), 400),
        ("/upload/../../etc/passwd".to_owned(), 404),
        (format!("/upload/{id}"), 404),
        (format!("/upload/{id}/a/b"), 404),
    ] {
        let a = http(&server, "GET", &path, &[], b"").await?;
        assert_eq!(a.status, status, "{path}");
    }
    Ok(())
}

#[tokio::test]
async fn removing_the_account_removes_its_files() -> anyhow::Result<()> {
    let server = server("").await?;
    let mut client = alice(&server).await?;
    let slot = slot(&mut client, "mine.txt", 3, None).await?;
    assert_eq!(
        put(&server, &slot, "application/octet-stream", b"abc")
            .await?
            .status,
        201
    );
    assert_eq!(get(&server, &slot.get).await?.status, 200);
    drop(client);
    let jid = jid::BareJid::new("alice@localhost")?;
    server.server.router.accounts().delete(&jid).await?;
    assert_eq!(get(&server, &slot.get).await?.status, 404);
    let files = server.config.data_dir.join("upload").join("files");
    assert_eq!(
        std::fs::read_dir(&files)?.count(),
        0,
        "the file is still on disk"
    );
    Ok(())
}
