//! Micro-benchmarks of the pieces on xmppd's hot paths: the XML stream reader (against a bare
//! quick-xml event loop over the same bytes), the serializer, SCRAM-SHA-1 verification, and
//! routing a message between two local sessions.
// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use xmppd_proto::Stanza;
use xmppd_stream::sasl::{
    ChannelBindingData, ClientChannelBinding, Mechanism, ScramClient, ScramHash, ServerSession,
    Step, StoredCredentials,
};
use xmppd_xml::{Limits, Reader, StreamEvent};

/// A stream header followed by `n` chat messages with 100-byte bodies.
fn chat_stream(n: usize) -> Vec<u8> {
    let mut out = b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' \
        xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
        .to_vec();
    for i in 0..n {
        xmppd_bench::scan::write_message(&mut out, "bob@localhost/b", i as u64, 1_234_567);
    }
    out
}

fn reader(c: &mut Criterion) {
    let input = chat_stream(1000);
    let mut g = c.benchmark_group("xml_reader");
    g.throughput(Throughput::Bytes(input.len() as u64));
    g.bench_function("xmppd_reader_4k_chunks", |b| {
        b.iter(|| {
            let mut r = Reader::new(Limits::default());
            let mut stanzas = 0;
            for chunk in input.chunks(4096) {
                r.feed(chunk);
                while let Ok(Some(ev)) = r.next_event() {
                    if matches!(ev, StreamEvent::Stanza(_)) {
                        stanzas += 1;
                    }
                }
            }
            black_box(stanzas)
        });
    });
    g.bench_function("bare_quick_xml_events", |b| {
        b.iter(|| {
            let mut r = quick_xml::Reader::from_reader(input.as_slice());
            let mut buf = Vec::new();
            let mut events = 0usize;
            loop {
                match r.read_event_into(&mut buf) {
                    Ok(quick_xml::events::Event::Eof) | Err(_) => break,
                    Ok(_) => events += 1,
                }
                buf.clear();
            }
            black_box(events)
        });
    });
    g.finish();
}

fn serializer(c: &mut Criterion) {
    let input = chat_stream(1);
    let mut r = Reader::new(Limits::default());
    r.feed(&input);
    let mut element = None;
    while let Ok(Some(ev)) = r.next_event() {
        if let StreamEvent::Stanza(el) = ev {
            element = Some(el);
        }
    }
    let Some(el) = element else { return };
    let mut g = c.benchmark_group("serializer");
    g.bench_function("chat_message", |b| {
        let mut out = Vec::with_capacity(512);
        b.iter(|| {
            out.clear();
            el.write_to(&mut out, "jabber:client");
            black_box(out.len())
        });
    });
    g.finish();
}

fn scram(c: &mut Criterion) {
    let Ok(creds) = StoredCredentials::derive("benchpass", 4096) else {
        return;
    };
    // One client derivation, then cached keys: what is measured is the server's work.
    let Ok(mut first) = ScramClient::new(
        ScramHash::Sha1,
        "u1",
        "benchpass",
        ClientChannelBinding::None,
        None,
    ) else {
        return;
    };
    let exchange = |client: &mut ScramClient| -> bool {
        let mut server = ServerSession::new(
            Mechanism::ScramSha1,
            ChannelBindingData::none(),
            [7; 32],
            true,
        );
        let Step::NeedCredentials { .. } = server.start(Some(&client.first_message())) else {
            return false;
        };
        let Step::Challenge(server_first) = server.provide_credentials(Some(&creds)) else {
            return false;
        };
        let Ok(client_final) = client.handle_challenge(&server_first) else {
            return false;
        };
        matches!(server.step(&client_final), Step::Success { .. })
    };
    if !exchange(&mut first) {
        return;
    }
    let Some(keys) = first.keys().cloned() else {
        return;
    };
    c.bench_function("scram_sha1_exchange_cached_client_keys", |b| {
        b.iter(|| {
            let Ok(client) = ScramClient::new(
                ScramHash::Sha1,
                "u1",
                "benchpass",
                ClientChannelBinding::None,
                None,
            ) else {
                return false;
            };
            let mut client = client.with_keys(keys.clone());
            black_box(exchange(&mut client))
        });
    });
}

/// A current-thread runtime and a real in-process server (test store, every module) on it.
fn in_process_server() -> Option<(tokio::runtime::Runtime, xmppd_testkit::TestServer)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let server = rt.block_on(xmppd_testkit::TestServer::start()).ok()?;
    Some((rt, server))
}

/// The router of a real in-process server (test store, every module), delivering a chat
/// message from one local user to another's session queue: envelope dispatch, session
/// lookup, serialisation, queueing. The queue is drained after each message.
fn routing(c: &mut Criterion) {
    let Some((rt, server)) = in_process_server() else {
        return;
    };
    if rt.block_on(server.add_user("bob", "benchpass")).is_err() {
        return;
    }
    let router = server.server.router.clone();
    let Ok(bob) = jid::FullJid::new("bob@localhost/b") else {
        return;
    };
    let (tx, mut rx) = xmppd_core::session_queue(16);
    router
        .sessions()
        .bind(&bob, u64::MAX, tx, std::sync::Arc::default());
    let Ok(presence) = Stanza::parse(
        xmppd_xml::Element::new("presence", "jabber:client"),
        "jabber:client",
    ) else {
        return;
    };
    router
        .sessions()
        .set_presence(&bob, u64::MAX, Some((0, std::sync::Arc::new(presence))));
    let message = |to: &str| {
        let mut r = Reader::new(Limits::default());
        r.feed(&chat_stream(1));
        let mut found = None;
        while let Ok(Some(ev)) = r.next_event() {
            if let StreamEvent::Stanza(mut el) = ev {
                el.set_attr("to", to);
                el.set_attr("from", "alice@localhost/a");
                found = Stanza::parse(el, "jabber:client").ok();
            }
        }
        found
    };
    let (Some(to_full), Some(to_bare)) = (message("bob@localhost/b"), message("bob@localhost"))
    else {
        return;
    };
    let mut g = c.benchmark_group("routing");
    for (name, stanza) in [
        ("message_to_full_jid", to_full),
        ("message_to_bare_jid", to_bare),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || stanza.clone(),
                |s| {
                    rt.block_on(router.route(s));
                    black_box(rx.try_recv().is_some())
                },
                BatchSize::SmallInput,
            );
        });
    }
    g.finish();
    rt.block_on(server.stop());
}

/// A PEP notification to 200 contacts' sessions (XEP-0163 §4.3, the fan-out of the PEP
/// benchmark): `Router::route_copies` (serialised once, `to` spliced in per copy) against
/// routing a readdressed copy per recipient, on the router of a real in-process server with
/// every module. The queues are drained after each round.
fn pep_fanout(c: &mut Criterion) {
    const CONTACTS: usize = 200;
    let Some((rt, server)) = in_process_server() else {
        return;
    };
    let router = server.server.router.clone();
    let mut queues = Vec::new();
    let mut recipients = Vec::new();
    for i in 0..CONTACTS {
        let Ok(jid) = jid::FullJid::new(&format!("contact{i}@localhost/phone")) else {
            return;
        };
        let (tx, rx) = xmppd_core::session_queue(16);
        router
            .sessions()
            .bind(&jid, i as u64, tx, std::sync::Arc::default());
        queues.push(rx);
        recipients.push(jid::Jid::from(jid));
    }
    let event = xmppd_proto::pubsub::Event {
        node: "eu.siacs.conversations.axolotl.devicelist".into(),
        kind: xmppd_proto::pubsub::EventKind::Items(vec![xmppd_proto::pubsub::Item {
            id: Some("current".into()),
            payload: Some(
                xmppd_xml::Element::new("list", "eu.siacs.conversations.axolotl")
                    .with_child(
                        xmppd_xml::Element::new("device", "eu.siacs.conversations.axolotl")
                            .with_attr("id", "1234567890"),
                    )
                    .with_child(
                        xmppd_xml::Element::new("device", "eu.siacs.conversations.axolotl")
                            .with_attr("id", "987654321"),
                    ),
            ),
        }]),
    };
    let Ok(from) = jid::Jid::new("alice@localhost") else {
        return;
    };
    let headline = xmppd_xml::Element::new("message", "jabber:client")
        .with_attr("from", "alice@localhost")
        .with_attr("type", "headline")
        .with_attr("id", "n1")
        .with_child(event.to_element());
    let stanza =
        Stanza::new_unchecked(xmppd_proto::StanzaKind::Message, Some(from), None, headline);
    let drain = |queues: &mut Vec<xmppd_core::QueueReceiver>| {
        let mut n = 0;
        for q in queues.iter_mut() {
            while q.try_recv().is_some() {
                n += 1;
            }
        }
        n
    };
    let mut g = c.benchmark_group("pep_fanout");
    g.throughput(Throughput::Elements(CONTACTS as u64));
    g.bench_function("route_copies_200", |b| {
        b.iter(|| {
            rt.block_on(router.route_copies(stanza.clone(), &recipients));
            black_box(drain(&mut queues))
        });
    });
    g.bench_function("route_each_200", |b| {
        b.iter(|| {
            for to in &recipients {
                rt.block_on(router.route(xmppd_core::router::readdress(&stanza, to)));
            }
            black_box(drain(&mut queues))
        });
    });
    g.finish();
    rt.block_on(server.stop());
}

criterion_group!(benches, reader, serializer, scram, routing, pep_fanout);
criterion_main!(benches);
