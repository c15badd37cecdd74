//! XEP-0313 paging over 300 archived messages: every filter of the form (`with` bare and
//! full, `start`, `end`, `before-id`, `after-id`, `ids`), RSM (`max` clamped to the server's
//! page, `after`, `before`, empty `before`, `index`, a count-only `max` of 0), `flip-page`,
//! and the `complete` flag at both ends.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::mam::*;
use common::*;
use xmppd_proto::datetime::format_datetime;
use xmppd_testkit::{TestClient, TestServer};

/// The server's page size in these tests.
const PAGE: usize = 50;

/// `m{i}` for each i.
fn names(range: impl IntoIterator<Item = usize>) -> Vec<String> {
    range.into_iter().map(|i| format!("m{i}")).collect()
}

/// A query that the server has processed everything Alice sent before it.
async fn barrier(alice: &mut TestClient, id: &str) -> anyhow::Result<()> {
    query(alice, id, Q::default().max(0)).await.map(drop)
}

/// Alice sends `m{i}` for i in `range`: every fourth to Carol, the others to Bob, the even
/// ones at Bob's full JID and the odd ones at his bare JID.
async fn send(alice: &mut TestClient, range: std::ops::Range<usize>) -> anyhow::Result<()> {
    for i in range {
        let to = match i {
            i if i % 4 == 3 => "carol@localhost",
            i if i % 2 == 0 => "bob@localhost/phone",
            _ => "bob@localhost",
        };
        alice
            .send(&format!(
                "<message to='{to}' type='chat'><body>m{i}</body></message>"
            ))
            .await?;
    }
    Ok(())
}

/// A server with a page of [`PAGE`], Alice's archive of 300 messages in three batches, and
/// the times between the batches.
async fn archive_of_300() -> anyhow::Result<(TestServer, TestClient, [String; 2])> {
    let server = TestServer::start_with(|c| {
        c.text = Some(Arc::from(format!("[modules.mam]\nmax_page = {PAGE}\n")));
    })
    .await?;
    add_users(&server, &["alice", "bob", "carol"]).await?;
    let mut alice = online(&server, "alice", "laptop", 1).await?;
    let mut times = Vec::new();
    for (batch, range) in [0..100, 100..200, 200..300].into_iter().enumerate() {
        send(&mut alice, range).await?;
        barrier(&mut alice, &format!("barrier{batch}")).await?;
        if batch < 2 {
            tokio::time::sleep(Duration::from_millis(30)).await;
            times.push(format_datetime(SystemTime::now()));
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    let times = [times[0].clone(), times[1].clone()];
    Ok((server, alice, times))
}

#[tokio::test]
async fn paging_through_300_messages_with_every_filter() -> anyhow::Result<()> {
    let (_server, mut alice, [t1, t2]) = archive_of_300().await?;

    // No RSM: the server's page, from the start.
    let first = query(&mut alice, "p0", Q::default()).await?;
    assert_eq!(first.bodies(), names(0..PAGE));
    assert!(!first.complete());
    assert_eq!(first.count(), Some(300));
    assert_eq!(first.first_index(), Some(0));
    assert_eq!(first.first(), first.ids().first().cloned());
    assert_eq!(first.last(), first.ids().last().cloned());

    // A max of a billion is clamped, not honoured.
    let huge = query(&mut alice, "p1", Q::default().max(1_000_000_000)).await?;
    assert_eq!(huge.results.len(), PAGE);

    // Forwards with <after/>: every message once, in order; only the last page complete.
    let mut ids = Vec::new();
    let mut bodies = Vec::new();
    let mut after: Option<String> = None;
    for page in 0.. {
        let mut q = Q::default().max(PAGE);
        if let Some(a) = &after {
            q = q.rsm(format!("<after>{a}</after>"));
        }
        let answer = query(&mut alice, &format!("fw{page}"), q).await?;
        assert_eq!(answer.first_index(), Some(page * PAGE));
        ids.extend(answer.ids());
        bodies.extend(answer.bodies());
        after = answer.last();
        if answer.complete() {
            assert_eq!(page, 5);
            break;
        }
        assert!(page < 5, "page {page} should have been complete");
    }
    assert_eq!(bodies, names(0..300));
    // §3: unpredictable ids, so their order tells nothing.
    let mut sorted = ids.clone();
    sorted.sort();
    assert_ne!(sorted, ids);

    // Backwards from the end with an empty <before/>, then <before/> the first of each page.
    let mut back: Vec<String> = Vec::new();
    let mut before = String::new();
    for page in 0.. {
        let q = Q::default()
            .max(PAGE)
            .rsm(format!("<before>{before}</before>"));
        let answer = query(&mut alice, &format!("bw{page}"), q).await?;
        let mut chunk = answer.ids();
        chunk.extend(back);
        back = chunk;
        before = answer.first().unwrap_or_default();
        if answer.complete() {
            break;
        }
        assert!(page < 5, "page {page} should have been complete");
    }
    assert_eq!(back, ids);

    // <index/>.
    let tail = query(
        &mut alice,
        "ix0",
        Q::default().max(50).rsm("<index>250</index>"),
    )
    .await?;
    assert_eq!(tail.bodies(), names(250..300));
    assert!(tail.complete());
    assert_eq!(tail.first_index(), Some(250));
    let middle = query(
        &mut alice,
        "ix1",
        Q::default().max(5).rsm("<index>10</index>"),
    )
    .await?;
    assert_eq!(middle.bodies(), names(10..15));
    assert!(!middle.complete());

    // `with`: a bare JID matches every resource, a full JID only itself.
    let bob = query(
        &mut alice,
        "w0",
        Q::default().field("with", "bob@localhost"),
    )
    .await?;
    assert_eq!(bob.count(), Some(225));
    let to_bob: Vec<usize> = (0..300).filter(|i| i % 4 != 3).collect();
    assert_eq!(bob.bodies(), names(to_bob[..PAGE].iter().copied()));
    let phone = Q::default().field("with", "bob@localhost/phone");
    let phone = query(&mut alice, "w1", phone).await?;
    assert_eq!(phone.count(), Some(150));
    assert_eq!(phone.bodies(), names((0..2 * PAGE).step_by(2)));
    let carol = Q::default().field("with", "carol@localhost").max(10);
    let carol = query(&mut alice, "w2", carol).await?;
    assert_eq!(carol.count(), Some(75));
    assert_eq!(carol.bodies(), names((3..40).step_by(4)));
    // A filter and RSM together: the next ten of Carol's after the first ten.
    let next = Q::default()
        .field("with", "carol@localhost")
        .max(10)
        .rsm(format!(
            "<after>{}</after>",
            carol.last().unwrap_or_default()
        ));
    let next = query(&mut alice, "w3", next).await?;
    assert_eq!(next.bodies(), names((43..80).step_by(4)));
    assert_eq!(next.first_index(), Some(10));

    // `start` and `end`, the times between the batches.
    let from_t1 = query(&mut alice, "t0", Q::default().field("start", &t1)).await?;
    assert_eq!(from_t1.count(), Some(200));
    assert_eq!(from_t1.bodies(), names(100..100 + PAGE));
    let until_t2 = Q::default().field("end", &t2).rsm("<before/>");
    let until_t2 = query(&mut alice, "t1", until_t2).await?;
    assert_eq!(until_t2.count(), Some(200));
    assert_eq!(until_t2.bodies(), names(200 - PAGE..200));
    let between = |after: Option<String>| {
        let q = Q::default()
            .field("start", t1.clone())
            .field("end", t2.clone());
        match after {
            Some(a) => q.rsm(format!("<after>{a}</after>")),
            None => q.max(100),
        }
    };
    // A max of 100 is clamped to the page of 50; the rest follows.
    let head = query(&mut alice, "t2", between(None)).await?;
    assert_eq!(head.bodies(), names(100..150));
    assert!(!head.complete());
    assert_eq!(head.count(), Some(100));
    let rest = query(&mut alice, "t3", between(head.last())).await?;
    assert_eq!(rest.bodies(), names(150..200));
    assert!(rest.complete());

    // `after-id` and `before-id`: the messages strictly between.
    let range = Q::default()
        .field("after-id", &ids[10])
        .field("before-id", &ids[20]);
    let range = query(&mut alice, "r0", range).await?;
    assert_eq!(range.bodies(), names(11..20));
    assert!(range.complete());
    assert_eq!(range.count(), Some(9));
    // With <before/> inside that window, paging backwards to its start.
    let window = |before: &str| {
        Q::default()
            .field("after-id", ids[80].clone())
            .max(10)
            .rsm(format!("<before>{before}</before>"))
    };
    let late = query(&mut alice, "r1", window(&ids[100])).await?;
    assert_eq!(late.bodies(), names(90..100));
    assert!(!late.complete());
    let early = query(&mut alice, "r2", window(&ids[90])).await?;
    assert_eq!(early.bodies(), names(81..90));
    assert!(early.complete());

    // `ids`: exactly those, in archive order.
    let picked = Q {
        fields: vec![(
            "ids",
            vec![ids[299].clone(), ids[3].clone(), ids[7].clone()],
        )],
        ..Q::default()
    };
    let picked = query(&mut alice, "i0", picked).await?;
    assert_eq!(picked.bodies(), names([3, 7, 299]));
    assert_eq!(picked.count(), Some(3));

    // flip-page: the same page, newest first.
    let last = query(&mut alice, "f0", Q::default().max(10).rsm("<before/>")).await?;
    let mut flipped = Q::default().max(10).rsm("<before/>");
    flipped.flip = true;
    let flipped = query(&mut alice, "f1", flipped).await?;
    assert_eq!(last.bodies(), names(290..300));
    let mut reversed = last.bodies();
    reversed.reverse();
    assert_eq!(flipped.bodies(), reversed);
    assert_eq!(flipped.count(), Some(300));
    assert!(!flipped.complete());

    // A max of 0: only the count.
    let count = query(&mut alice, "c0", Q::default().max(0)).await?;
    assert!(count.results.is_empty());
    assert_eq!(count.count(), Some(300));
    Ok(())
}

#[tokio::test]
async fn the_oldest_messages_give_way_beyond_the_per_user_limit() -> anyhow::Result<()> {
    let server = TestServer::start_with(|c| {
        c.text = Some(Arc::from("[modules.mam]\nmax_messages = 5\n"));
    })
    .await?;
    add_users(&server, &["alice", "bob", "carol"]).await?;
    let mut alice = online(&server, "alice", "laptop", 1).await?;
    send(&mut alice, 0..8).await?;
    let answer = query(&mut alice, "a0", Q::default()).await?;
    assert_eq!(answer.bodies(), names(3..8));
    assert_eq!(answer.count(), Some(5));
    Ok(())
}

#[test]
fn a_zero_page_or_a_misspelt_setting_names_its_line() {
    for (text, needle) in [
        (
            "[modules.mam]\ndefault = \"always\"\nmax_page = 0\n",
            "nonzero",
        ),
        ("[modules.mam]\nretention = 3\n", "retention"),
        ("[modules.mam]\ndefault = \"sometimes\"\n", "sometimes"),
    ] {
        let err = xmppd::config::Config::parse(text, std::path::Path::new("xmppd.toml"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(needle), "{err}");
        assert!(err.contains("[modules.mam]"), "{err}");
        assert!(err.contains("line"), "{err}");
    }
}
