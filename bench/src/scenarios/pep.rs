//! PEP fan-out: "a user with 200 contacts with `+notify` publishes; notifications delivered per
//! second and CPU per notification".
//!
//! **Setup (untimed).** One star: the hub (the publisher) has every other member as a contact
//! with subscription `both`, each member has only the hub. The rosters are built over the
//! protocol by the presence fan-out's setup ([`super::fanout::setup`]), so the same bytes build
//! them on xmppd, Prosody and ejabberd.
//!
//! **Interest.** Every member logs in with initial presence carrying XEP-0115 capabilities
//! whose features include `http://jabber.org/protocol/tune+notify` (XEP-0163 §4 "filtered
//! notifications"), and answers the disco#info query a server sends to verify an unknown hash
//! (XEP-0115 §6.2). The members all run the same client, so a server queries one hash once.
//! Then the hub logs in with the same capabilities.
//!
//! **Warm-up.** The hub publishes one item; the scenario waits (bounded) until every member
//! has its notification, so the server has verified the hash and knows everyone's interest
//! before the clock starts. A server that never notifies shows here (`warm_fraction`).
//!
//! **Measured.** The hub publishes `publishes` User Tune items (XEP-0118) to its PEP node,
//! `window` publish requests unanswered at a time. Each member counts each item's
//! notification once ([`Tally`]); the clock runs from the first publish to the last distinct
//! notification, and the figures are notifications per second and the server's CPU per
//! notification. The hub's own resource gets the notifications too (it has `+notify`); they
//! are not counted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use memchr::memmem;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;
use xmppd_proto::caps::Caps;
use xmppd_proto::disco::{DiscoInfoResult, Identity};
use xmppd_xml::Element;

use super::fanout::{Conn, close, setup};
use super::{Ctx, per, usage};
use crate::client::Protocol;
use crate::clique::{Groups, Shape};
use crate::scan::{Seen, attr};

/// The node published to: User Tune, a node every client library knows.
pub const NODE: &str = "http://jabber.org/protocol/tune";

/// The capabilities node of the members' client (XEP-0115 §4: a URI naming the software).
const CAPS_NODE: &str = "https://xmppd.im/bench";

/// The scenario's settings.
#[derive(Clone, Copy, Debug)]
pub struct PepSettings {
    /// The star: its first account publishes, the others are its contacts.
    pub groups: Groups,
    /// Items published in the measured phase.
    pub publishes: usize,
    /// Publish requests unanswered at a time.
    pub window: usize,
    /// Bound on building the rosters.
    pub setup_timeout: Duration,
    /// Bound on the measured phase (and on the warm-up).
    pub timeout: Duration,
}

/// What the members' client says about itself, and the stanzas that say it.
struct Capabilities {
    /// The initial presence, with `<c/>`.
    presence: Vec<u8>,
    /// The disco#info answer without its `node`.
    info: DiscoInfoResult,
}

impl Capabilities {
    /// The one set of capabilities (logins take their presence as `'static` bytes).
    fn get() -> &'static Self {
        static CAPS: OnceLock<Capabilities> = OnceLock::new();
        CAPS.get_or_init(Capabilities::new)
    }

    fn new() -> Self {
        let mut info = DiscoInfoResult::default();
        info.identities
            .push(Identity::new("client", "pc").with_name("bench"));
        info.features = [
            "http://jabber.org/protocol/caps",
            "http://jabber.org/protocol/disco#info",
            "http://jabber.org/protocol/tune",
            "http://jabber.org/protocol/tune+notify",
        ]
        .map(str::to_owned)
        .to_vec();
        let caps = Caps::sha1(CAPS_NODE, &info).to_element();
        let presence = Element::new("presence", "jabber:client")
            .with_child(Element::new("priority", "jabber:client").with_text("0"))
            .with_child(caps);
        Capabilities {
            presence: presence.to_string().into_bytes(),
            info,
        }
    }

    /// Answers an iq request: disco#info with our features (for whatever node was asked,
    /// mirrored as XEP-0115 §6.2 asks), anything else `service-unavailable`.
    fn answer(&self, from: Option<&[u8]>, id: &[u8], inner: &[u8], out: &mut Vec<u8>) {
        let to = String::from_utf8_lossy(from.unwrap_or_default());
        let id = String::from_utf8_lossy(id);
        let head = &inner[..memchr::memchr(b'>', inner).unwrap_or(inner.len())];
        if memmem::find(head, b"http://jabber.org/protocol/disco#info").is_some() {
            let mut info = self.info.clone();
            // The attributes follow the element's name.
            let attrs = &head[memchr::memchr3(b' ', b'\t', b'\n', head).unwrap_or(head.len())..];
            info.node = attr(attrs, b"node").map(|n| String::from_utf8_lossy(n).into_owned());
            let query = Element::from(info);
            out.extend_from_slice(
                format!("<iq type='result' to='{to}' id='{id}'>{query}</iq>").as_bytes(),
            );
        } else {
            out.extend_from_slice(
                format!(
                    "<iq type='error' to='{to}' id='{id}'><error type='cancel'>\
                     <service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>\
                     </error></iq>"
                )
                .as_bytes(),
            );
        }
    }
}

/// What one member received.
#[derive(Debug)]
struct Tally {
    /// Per measured item: its notification arrived.
    seen: Vec<bool>,
    warm: bool,
    distinct: u64,
    repeats: u64,
    disco_answered: u64,
}

/// Counts of all members, as they arrive.
#[derive(Debug, Default)]
struct Progress {
    warm: AtomicU64,
    distinct: AtomicU64,
    /// When the last distinct notification arrived, in ns since the context's epoch.
    last_ns: AtomicU64,
}

/// The item ids of the `<item/>` elements in a message's body: its notifications.
fn item_ids(inner: &[u8]) -> impl Iterator<Item = &[u8]> {
    let event = memmem::find(inner, b"http://jabber.org/protocol/pubsub#event").is_some();
    let mut pos = if event { 0 } else { inner.len() };
    std::iter::from_fn(move || {
        while let Some(at) = memmem::find(&inner[pos..], b"<item").map(|i| pos + i) {
            let rest = &inner[at + 5..];
            pos = at + 5;
            // `<items` is the wrapper, not an item.
            if !rest
                .first()
                .is_some_and(|b| matches!(b, b' ' | b'/' | b'>'))
            {
                continue;
            }
            let end = memchr::memchr(b'>', rest).unwrap_or(rest.len());
            if let Some(id) = attr(&rest[..end], b"id") {
                return Some(id);
            }
        }
        None
    })
}

/// The measured item number in an id `m<n>`.
fn measured(id: &[u8]) -> Option<usize> {
    let digits = id.strip_prefix(b"m")?;
    if digits.is_empty() || digits.len() > 9 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + usize::from(d - b'0')))
}

/// One member's receive side: answers disco#info, counts notifications until `stop`.
async fn member(
    mut conn: Conn,
    caps: &'static Capabilities,
    mut tally: Tally,
    progress: Arc<Progress>,
    epoch: Instant,
    mut stop: watch::Receiver<bool>,
) -> (Conn, Tally, bool) {
    loop {
        if !conn.flush().await {
            return (conn, tally, true);
        }
        let Conn {
            session,
            scanner,
            buf,
            out,
        } = &mut conn;
        let n = tokio::select! {
            r = tokio::io::AsyncReadExt::read(&mut session.io, buf) => match r {
                Ok(n) if n > 0 => n,
                _ => return (conn, tally, true),
            },
            _ = stop.wait_for(|s| *s) => return (conn, tally, false),
        };
        let now = u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        scanner.feed(&buf[..n], |seen| match seen {
            Seen::Iq {
                from,
                id: Some(id),
                kind: Some(b"get" | b"set"),
                inner,
            } => {
                caps.answer(from, id, inner, out);
                tally.disco_answered += 1;
            }
            Seen::Message { inner, .. } => {
                for id in item_ids(inner) {
                    if id == b"w0" && !tally.warm {
                        tally.warm = true;
                        progress.warm.fetch_add(1, Ordering::Relaxed);
                    }
                    let Some(i) = measured(id) else { continue };
                    match tally.seen.get_mut(i) {
                        Some(seen) if !*seen => {
                            *seen = true;
                            tally.distinct += 1;
                            progress.distinct.fetch_add(1, Ordering::Relaxed);
                            progress.last_ns.fetch_max(now, Ordering::Relaxed);
                        }
                        Some(_) => tally.repeats += 1,
                        None => {}
                    }
                }
            }
            _ => {}
        });
        if conn.scanner.closed() {
            return (conn, tally, true);
        }
    }
}

/// How the hub's publish requests went.
#[derive(Debug, Default)]
struct Published {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    /// The hub's session ended or the deadline passed with requests unanswered.
    unfinished: bool,
}

/// Publishes `ids` from the hub, `window` unanswered at a time, until every request is
/// answered or `deadline`; answers the server's disco#info queries meanwhile.
async fn publish(
    conn: &mut Conn,
    caps: &Capabilities,
    ids: &[String],
    window: usize,
    deadline: Instant,
) -> Published {
    let mut done = Published::default();
    let (mut next, mut outstanding) = (0, 0usize);
    loop {
        while outstanding < window.max(1) && next < ids.len() {
            let id = &ids[next];
            conn.out.extend_from_slice(
                format!(
                    "<iq type='set' id='pub-{id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'>\
                     <publish node='{NODE}'><item id='{id}'><tune xmlns='{NODE}'>\
                     <artist>xmppd bench</artist><title>{id}</title><length>{next}</length>\
                     </tune></item></publish></pubsub></iq>"
                )
                .as_bytes(),
            );
            next += 1;
            outstanding += 1;
        }
        if !conn.flush().await {
            done.unfinished = true;
            return done;
        }
        if outstanding == 0 {
            return done;
        }
        let Conn {
            session,
            scanner,
            buf,
            out,
        } = &mut *conn;
        let read = tokio::time::timeout_at(
            deadline.into(),
            tokio::io::AsyncReadExt::read(&mut session.io, buf),
        );
        let n = match read.await {
            Ok(Ok(n)) if n > 0 => n,
            _ => {
                done.unfinished = true;
                return done;
            }
        };
        scanner.feed(&buf[..n], |seen| {
            if let Seen::Iq {
                from,
                id: Some(id),
                kind,
                inner,
            } = seen
            {
                match kind {
                    Some(b"get" | b"set") => caps.answer(from, id, inner, out),
                    _ if id.starts_with(b"pub-") => {
                        outstanding = outstanding.saturating_sub(1);
                        if kind == Some(b"result") {
                            done.ok += 1;
                        } else {
                            done.errors += 1;
                            done.first_error.get_or_insert_with(|| {
                                String::from_utf8_lossy(&inner[..inner.len().min(300)]).into_owned()
                            });
                        }
                    }
                    _ => {}
                }
            }
        });
        if conn.scanner.closed() {
            done.unfinished = true;
            return done;
        }
    }
}

/// Waits until `count()` reaches `target` or `deadline`.
async fn wait_for(count: impl Fn() -> u64, target: u64, deadline: Instant) -> bool {
    loop {
        if count() >= target {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Builds the star (unless present), then warms up and measures as the module docs say.
pub async fn pep(ctx: &Ctx, settings: &PepSettings) -> Value {
    let groups = Groups {
        count: 1,
        shape: Shape::Star,
        ..settings.groups
    };
    if ctx.target.protocol == Protocol::Relay {
        return json!({"scenario": "pep", "skipped": "the raw relay has no PEP"});
    }
    if groups.size < 2 || settings.publishes == 0 {
        return json!({"scenario": "pep", "error": "need a hub, a contact and a publish"});
    }
    let started = Instant::now();
    let plan = match setup(ctx, groups, settings.setup_timeout).await {
        Ok(plan) => plan,
        Err(e) => return json!({"scenario": "pep", "error": format!("setup: {e}")}),
    };
    let setup_secs = started.elapsed().as_secs_f64();
    ctx.settled_cpu(Duration::from_secs(15)).await;

    let caps = Capabilities::get();
    let hub = groups.first;
    let members = hub + 1..hub + groups.size;
    let contacts = members.len() as u64;
    let (sessions, failed) = ctx.login_many_with(members.clone(), &caps.presence).await;
    let hub_session = if failed == 0 {
        ctx.login_many_with(hub..hub + 1, &caps.presence)
            .await
            .0
            .pop()
    } else {
        None
    };
    let Some(hub_session) = hub_session else {
        ctx.close_all(sessions).await;
        return json!({"scenario": "pep", "error": format!("{failed} member logins failed, or the hub's")});
    };
    let mut hub_conn = Conn::new(hub_session);
    let progress = Arc::new(Progress::default());
    let (stop, stopped) = watch::channel(false);
    let mut receivers = JoinSet::new();
    for session in sessions {
        let tally = Tally {
            seen: vec![false; settings.publishes],
            warm: false,
            distinct: 0,
            repeats: 0,
            disco_answered: 0,
        };
        receivers.spawn(member(
            Conn::new(session),
            caps,
            tally,
            progress.clone(),
            ctx.epoch,
            stopped.clone(),
        ));
    }

    // Warm-up: one item, until every member has its notification.
    let warm_deadline = Instant::now() + settings.timeout;
    let warm = publish(&mut hub_conn, caps, &["w0".to_owned()], 1, warm_deadline).await;
    let warm_count = || progress.warm.load(Ordering::Relaxed);
    if warm.ok == 1 {
        wait_for(warm_count, contacts, warm_deadline).await;
    }
    let warm_fraction = warm_count() as f64 / contacts as f64;
    ctx.settled_cpu(Duration::from_secs(5)).await;

    let ids: Vec<String> = (0..settings.publishes).map(|i| format!("m{i}")).collect();
    let expected = contacts * settings.publishes as u64;
    let before = ctx.cpu();
    let start_ns = u64::try_from(ctx.epoch.elapsed().as_nanos()).unwrap_or(0);
    let deadline = before.at + settings.timeout;
    let published = if warm.ok == 1 && warm_fraction > 0.0 {
        publish(&mut hub_conn, caps, &ids, settings.window, deadline).await
    } else {
        Published::default()
    };
    wait_for(
        || progress.distinct.load(Ordering::Relaxed),
        expected,
        deadline,
    )
    .await;
    let after = ctx.cpu();
    stop.send_replace(true);

    let (mut repeats, mut disco, mut closed, mut conns) = (0, 0, 0, vec![hub_conn]);
    while let Some(r) = receivers.join_next().await {
        if let Ok((conn, tally, was_closed)) = r {
            repeats += tally.repeats;
            disco += tally.disco_answered;
            closed += u64::from(was_closed);
            conns.push(conn);
        }
    }
    close(ctx, conns).await;

    let delivered = progress.distinct.load(Ordering::Relaxed);
    let last_ns = progress.last_ns.load(Ordering::Relaxed);
    let (window, server, generator) = usage(before, after);
    let secs = if delivered > 0 {
        last_ns.saturating_sub(start_ns) as f64 / 1e9
    } else {
        window
    };
    json!({
        "scenario": "pep", "n": contacts, "contacts": contacts, "publishes": settings.publishes,
        "window": settings.window, "setup": format!("{plan:?}").to_lowercase(),
        "setup_secs": setup_secs,
        "warm_fraction": warm_fraction, "warm_error": warm.first_error,
        "expected": expected, "delivered": delivered,
        "fraction": delivered as f64 / expected as f64,
        "repeats": repeats, "disco_queries_answered": disco, "closed_by_server": closed,
        "publish_ok": published.ok, "publish_errors": published.errors,
        "publish_first_error": published.first_error, "publish_unfinished": published.unfinished,
        "secs": secs, "timed_out": delivered < expected,
        "notifications_per_s": (secs > 0.0).then(|| delivered as f64 / secs),
        "publishes_per_s": (secs > 0.0).then(|| published.ok as f64 / secs),
        "server_cpu_s": server,
        "server_us_per_notification": per(server, delivered as f64, 1e6),
        "gen_cpu_s": generator,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_are_found_by_their_item_ids() {
        let event = b"<event xmlns='http://jabber.org/protocol/pubsub#event'><items \
            node='http://jabber.org/protocol/tune'><item id='m12' publisher='u0@localhost'>\
            <tune xmlns='http://jabber.org/protocol/tune'/></item><item id=\"w0\"/></items>\
            </event>";
        let ids: Vec<&[u8]> = item_ids(event).collect();
        assert_eq!(ids, vec![&b"m12"[..], &b"w0"[..]]);
        assert_eq!(measured(ids[0]), Some(12));
        assert_eq!(measured(ids[1]), None);
        // Not an event: a chat message quoting an item is not a notification.
        assert_eq!(item_ids(b"<body><item id='m1'/></body>").count(), 0);
        assert_eq!(measured(b"m"), None);
        assert_eq!(measured(b"m12x"), None);
    }

    #[test]
    fn the_members_answer_disco_info_for_the_node_asked() {
        let caps = Capabilities::new();
        let presence = String::from_utf8(caps.presence.clone()).expect("utf-8");
        assert!(presence.contains("hash=\"sha-1\"") || presence.contains("hash='sha-1'"));
        let mut out = Vec::new();
        caps.answer(
            Some(b"u0@localhost"),
            b"q1",
            b"<query xmlns='http://jabber.org/protocol/disco#info' node='n#v'/>",
            &mut out,
        );
        let out = String::from_utf8(out).expect("utf-8");
        assert!(
            out.starts_with("<iq type='result' to='u0@localhost' id='q1'>"),
            "{out}"
        );
        assert!(out.contains("tune+notify") && out.contains("n#v"), "{out}");
        let mut out = Vec::new();
        caps.answer(
            Some(b"x"),
            b"q2",
            b"<ping xmlns='urn:xmpp:ping'/>",
            &mut out,
        );
        assert!(String::from_utf8_lossy(&out).contains("service-unavailable"));
    }
}
