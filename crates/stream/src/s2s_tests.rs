//! Both sides of s2s negotiation driven against each other in memory, through the real XML
//! reader, with TLS handshakes simulated by the harness.

use std::collections::HashSet;
use std::sync::Arc;

use xmppd_proto::StreamErrorCondition;
use xmppd_xml::{Limits, Reader, StreamEvent};

use super::*;
use crate::dialback::{Dialback, Verdict};

struct Cert(Vec<&'static str>);

impl CertificateCheck for Cert {
    fn is_valid_for(&self, domain: &str) -> bool {
        self.0.contains(&domain)
    }
}

fn policy(domains: &[&str], secret: u8, allow_dialback: bool) -> S2sPolicy {
    S2sPolicy {
        local_domains: Arc::new(
            domains
                .iter()
                .map(|d| (*d).to_owned())
                .collect::<HashSet<_>>(),
        ),
        require_tls: true,
        allow_dialback,
        dialback_secret: Arc::new([secret; 32]),
        limits: StreamLimits {
            max_bytes: Some(512 * 1024),
            idle_seconds: Some(600),
        },
    }
}

/// Feeds `input` to a responder through the XML reader; what it asked for.
fn drive(resp: &mut S2sResponder, input: &[u8]) -> Vec<InboundOutput> {
    let mut reader = Reader::new(Limits::default());
    reader.feed(input);
    let mut out = Vec::new();
    while let Ok(Some(event)) = reader.next_event() {
        resp.handle(event, &mut out);
    }
    out
}

/// One connection: a.example (initiator) to b.example (responder).
struct Pair {
    init: S2sInitiator,
    resp: S2sResponder,
    to_resp: Reader,
    to_init: Reader,
    /// What the initiator's certificate is valid for, as b.example judges it.
    init_cert: Vec<&'static str>,
    /// Whether b.example's certificate is valid, as a.example judges it.
    resp_cert_valid: bool,
    init_events: Vec<OutboundOutput>,
    resp_events: Vec<InboundOutput>,
}

impl Pair {
    fn new(init_policy: &S2sPolicy, resp_policy: S2sPolicy) -> Self {
        Pair {
            init: S2sInitiator::new("a.example", "b.example", init_policy),
            resp: S2sResponder::new(resp_policy, false, None),
            to_resp: Reader::new(Limits::default()),
            to_init: Reader::new(Limits::default()),
            init_cert: vec!["a.example"],
            resp_cert_valid: true,
            init_events: Vec::new(),
            resp_events: Vec::new(),
        }
    }

    /// Runs the exchange until neither side has anything more to say.
    fn run(&mut self) {
        let header = self.init.header();
        self.to_resp.feed(&header);
        for _ in 0..50 {
            let mut progressed = false;
            while let Ok(Some(event)) = self.to_resp.next_event() {
                progressed = true;
                let mut out = Vec::new();
                self.resp.handle(event, &mut out);
                self.carry_resp(out);
            }
            while let Ok(Some(event)) = self.to_init.next_event() {
                progressed = true;
                let mut out = Vec::new();
                self.init.handle(event, &mut out);
                self.carry_init(out);
            }
            if !progressed {
                return;
            }
        }
        panic!("negotiation did not settle");
    }

    fn carry_resp(&mut self, out: Vec<InboundOutput>) {
        for o in out {
            match o {
                InboundOutput::Send(bytes) => self.to_init.feed(&bytes),
                InboundOutput::StartTls => {
                    // Both ends complete the handshake; each reads a fresh stream.
                    self.to_resp = Reader::new(Limits::default());
                    self.to_init = Reader::new(Limits::default());
                    let cert: Arc<dyn CertificateCheck> = Arc::new(Cert(self.init_cert.clone()));
                    self.resp.tls_established(Some(cert));
                    let header = self.init.tls_established(self.resp_cert_valid);
                    self.to_resp.feed(&header);
                }
                InboundOutput::ResetStream => self.to_resp.reset(),
                other => self.resp_events.push(other),
            }
        }
    }

    fn carry_init(&mut self, out: Vec<OutboundOutput>) {
        for o in out {
            match o {
                OutboundOutput::Send(bytes) => self.to_resp.feed(&bytes),
                // The handshake is driven from the responder's StartTls.
                OutboundOutput::StartTls => {}
                OutboundOutput::ResetStream => self.to_init.reset(),
                other => self.init_events.push(other),
            }
        }
    }

    fn send_stanza(&mut self, xml: &str) {
        self.to_resp.feed(xml.as_bytes());
        self.resp_events.clear();
        self.run_resp_only();
    }

    fn run_resp_only(&mut self) {
        while let Ok(Some(event)) = self.to_resp.next_event() {
            let mut out = Vec::new();
            self.resp.handle(event, &mut out);
            self.carry_resp(out);
        }
    }

    fn closed_with(&self) -> Option<StreamErrorCondition> {
        self.resp_events.iter().find_map(|o| match o {
            InboundOutput::Close(e) => Some(e.condition),
            _ => None,
        })
    }
}

#[test]
fn certificates_authenticate_with_sasl_external() {
    let mut pair = Pair::new(
        &policy(&["a.example"], 1, true),
        policy(&["b.example"], 2, true),
    );
    pair.run();
    assert_eq!(
        pair.init_events,
        vec![OutboundOutput::Authenticated(AuthMethod::SaslExternal)]
    );
    assert_eq!(
        pair.resp_events,
        vec![InboundOutput::Authorized {
            from: "a.example".into(),
            to: "b.example".into(),
            method: AuthMethod::SaslExternal
        }]
    );
    // XEP-0478: the responder's limit, from its last features, is known to the initiator.
    assert_eq!(pair.init.peer_max_bytes(), Some(512 * 1024));
    pair.send_stanza("<message from='x@a.example' to='y@b.example'><body>hi</body></message>");
    assert!(matches!(pair.resp_events[..], [InboundOutput::Stanza(_)]));
    // A domain that was not authenticated on this stream.
    pair.send_stanza("<message from='x@c.example' to='y@b.example'/>");
    assert_eq!(pair.closed_with(), Some(StreamErrorCondition::InvalidFrom));
}

#[test]
fn stanzas_to_foreign_domains_and_without_addresses_are_refused() {
    let mut pair = Pair::new(
        &policy(&["a.example"], 1, true),
        policy(&["b.example"], 2, true),
    );
    pair.run();
    pair.send_stanza("<message from='x@a.example' to='y@elsewhere.example'/>");
    assert_eq!(pair.closed_with(), Some(StreamErrorCondition::HostUnknown));

    let mut pair = Pair::new(
        &policy(&["a.example"], 1, true),
        policy(&["b.example"], 2, true),
    );
    pair.run();
    pair.send_stanza("<message to='y@b.example'/>");
    assert_eq!(
        pair.closed_with(),
        Some(StreamErrorCondition::ImproperAddressing)
    );
}

/// The authoritative server's answer, as a.example (secret 1) would give it.
fn authoritative_verdict(req: &InboundOutput) -> Verdict {
    let InboundOutput::VerifyDialback {
        originating,
        receiving,
        stream_id,
        key,
    } = req
    else {
        panic!("not a verification request: {req:?}");
    };
    let mut authoritative = S2sResponder::new(policy(&["a.example"], 1, true), true, None);
    let mut out = Vec::new();
    authoritative.on_dialback(
        Dialback::VerifyRequest {
            from: receiving.clone(),
            to: originating.clone(),
            id: stream_id.clone(),
            key: key.clone(),
        },
        &mut out,
    );
    let [InboundOutput::Send(bytes)] = &out[..] else {
        panic!("no answer: {out:?}");
    };
    let mut reader = Reader::new(Limits::default());
    reader.feed(
        b"<stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' \
          xmlns:stream='http://etherx.jabber.org/streams'>",
    );
    reader.feed(bytes);
    let _ = reader.next_event();
    let Ok(Some(StreamEvent::Stanza(el))) = reader.next_event() else {
        panic!("unreadable answer");
    };
    match Dialback::parse(&el) {
        Ok(Some(Dialback::VerifyAnswer { verdict, .. })) => verdict,
        other => panic!("unexpected answer {other:?}"),
    }
}

#[test]
fn dialback_when_the_certificate_is_not_trusted() {
    let mut pair = Pair::new(
        &policy(&["a.example"], 1, true),
        policy(&["b.example"], 2, true),
    );
    pair.init_cert = vec![];
    pair.resp_cert_valid = false;
    pair.run();
    assert!(pair.init_events.is_empty(), "{:?}", pair.init_events);
    let [request] = &pair.resp_events[..] else {
        panic!("expected one verification request: {:?}", pair.resp_events);
    };
    let verdict = authoritative_verdict(request);
    assert_eq!(verdict, Verdict::Valid);
    let mut out = Vec::new();
    pair.resp
        .dialback_verified("a.example", "b.example", verdict, &mut out);
    pair.resp_events.clear();
    pair.carry_resp(out);
    pair.run_init_only();
    assert_eq!(
        pair.init_events,
        vec![OutboundOutput::Authenticated(AuthMethod::Dialback)]
    );
    assert!(pair.resp.is_authorized());
    // The only features came before dialback, and their limit is the stanzas' limit.
    assert_eq!(pair.init.peer_max_bytes(), Some(512 * 1024));
}

impl Pair {
    fn run_init_only(&mut self) {
        while let Ok(Some(event)) = self.to_init.next_event() {
            let mut out = Vec::new();
            self.init.handle(event, &mut out);
            self.carry_init(out);
        }
    }
}

#[test]
fn a_key_made_with_another_secret_is_invalid() {
    // The initiator is an impostor for a.example: its secret is not a.example's.
    let mut pair = Pair::new(
        &policy(&["a.example"], 9, true),
        policy(&["b.example"], 2, true),
    );
    pair.init_cert = vec![];
    pair.resp_cert_valid = false;
    pair.run();
    let verdict = authoritative_verdict(&pair.resp_events[0]);
    assert_eq!(verdict, Verdict::Invalid);
    let mut out = Vec::new();
    pair.resp
        .dialback_verified("a.example", "b.example", verdict, &mut out);
    pair.resp_events.clear();
    pair.carry_resp(out);
    // XEP-0220 §2.2.1: no other valid pair, so the stream ends after the answer.
    assert_eq!(
        pair.closed_with(),
        Some(StreamErrorCondition::NotAuthorized)
    );
    pair.run_init_only();
    assert!(matches!(
        pair.init_events[..],
        [OutboundOutput::Failed(OutboundFailure::KeyInvalid(_))]
    ));
    assert!(!pair.resp.is_authorized());
}

#[test]
fn a_wrong_key_beside_a_valid_pair_is_forbidden_without_closing() {
    let mut resp = S2sResponder::new(
        policy(&["b.example", "c.example"], 2, true),
        true,
        Some(Arc::new(Cert(vec!["a.example"]))),
    );
    let out = drive(
        &mut resp,
        b"<stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' \
          xmlns:stream='http://etherx.jabber.org/streams' from='a.example' to='b.example' \
          version='1.0'><db:result from='a.example' to='b.example'>k</db:result>\
          <db:result from='x.example' to='c.example'>k</db:result>",
    );
    assert!(out.iter().any(
        |o| matches!(o, InboundOutput::VerifyDialback { originating, .. } if originating == "x.example")
    ));
    assert!(resp.is_authorized());
    let mut out = Vec::new();
    resp.dialback_verified("x.example", "c.example", Verdict::Invalid, &mut out);
    let [InboundOutput::Send(bytes)] = &out[..] else {
        panic!("expected only the answer: {out:?}");
    };
    let text = String::from_utf8_lossy(bytes);
    assert!(
        text.contains("type=\"error\"") && text.contains("<forbidden"),
        "{text}"
    );
}

#[test]
fn secure_auth_refuses_dialback_both_ways() {
    // The receiving side offers no EXTERNAL (bad certificate) and answers dialback with an
    // error; the initiating side, also certificates-only, gives up at once.
    let mut pair = Pair::new(
        &policy(&["a.example"], 1, true),
        policy(&["b.example"], 2, false),
    );
    pair.init_cert = vec!["mallory.example"];
    pair.run();
    assert!(pair.resp_events.is_empty(), "{:?}", pair.resp_events);
    assert!(matches!(
        pair.init_events[..],
        [OutboundOutput::Failed(OutboundFailure::DialbackError(
            _,
            "policy-violation"
        ))]
    ));

    let mut pair = Pair::new(
        &policy(&["a.example"], 1, false),
        policy(&["b.example"], 2, true),
    );
    pair.resp_cert_valid = false;
    pair.run();
    assert!(matches!(
        pair.init_events[..],
        [OutboundOutput::Failed(OutboundFailure::Certificate(_))]
    ));
}

#[test]
fn dialback_is_accepted_at_once_with_a_valid_certificate() {
    // XEP-0344: a peer that does dialback although its certificate is valid.
    let mut resp = S2sResponder::new(
        policy(&["b.example"], 2, false),
        true,
        Some(Arc::new(Cert(vec!["a.example"]))),
    );
    let out = drive(
        &mut resp,
        b"<stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' \
          xmlns:stream='http://etherx.jabber.org/streams' from='a.example' to='b.example' \
          version='1.0'><db:result from='a.example' to='b.example'>key</db:result>",
    );
    assert!(out.contains(&InboundOutput::Authorized {
        from: "a.example".into(),
        to: "b.example".into(),
        method: AuthMethod::Dialback
    }));
}

#[test]
fn tls_is_required_and_unknown_hosts_are_refused() {
    let mut resp = S2sResponder::new(policy(&["b.example"], 2, true), false, None);
    let out = drive(
        &mut resp,
        b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
          from='a.example' to='b.example' version='1.0'>\
          <db:result xmlns:db='jabber:server:dialback' from='a.example' to='b.example'>k</db:result>",
    );
    assert!(out.iter().any(|o| matches!(o, InboundOutput::Close(e) if e.condition == StreamErrorCondition::PolicyViolation)));

    let mut resp = S2sResponder::new(policy(&["b.example"], 2, true), false, None);
    let out = drive(
        &mut resp,
        b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
          from='a.example' to='c.example' version='1.0'>",
    );
    assert!(
        matches!(&out[..], [InboundOutput::Send(_), InboundOutput::Close(e)] if e.condition == StreamErrorCondition::HostUnknown)
    );
}

#[test]
fn verify_requests_wait_for_an_open_stream() {
    let p = policy(&["a.example"], 1, true);
    let mut init = S2sInitiator::new("a.example", "b.example", &p);
    assert_eq!(init.verify_request("a.example", "id", "k"), None);
    let mut out = Vec::new();
    init.handle(
        StreamEvent::Open(StreamHeader {
            attrs: vec![("id".into(), "s1".into()), ("version".into(), "1.0".into())],
            default_ns: Some(ns::SERVER.into()),
            prefixes: vec![],
        }),
        &mut out,
    );
    // Before TLS (which is required), no key goes out in the clear.
    assert_eq!(init.verify_request("a.example", "id", "k"), None);
    let _ = init.tls_established(true);
    init.handle(
        StreamEvent::Open(StreamHeader {
            attrs: vec![("id".into(), "s2".into()), ("version".into(), "1.0".into())],
            default_ns: Some(ns::SERVER.into()),
            prefixes: vec![],
        }),
        &mut out,
    );
    assert!(init.verify_request("a.example", "id", "k").is_some());
    // Once EXTERNAL is sent, the stream restarts on success: nothing may go out meanwhile.
    let mechanisms = Element::new("mechanisms", ns::SASL)
        .with_child(Element::new("mechanism", ns::SASL).with_text("EXTERNAL"));
    let features = Element::new("features", ns::STREAM).with_child(mechanisms);
    init.handle(StreamEvent::Stanza(features), &mut out);
    assert!(matches!(out.last(), Some(OutboundOutput::Send(_))));
    assert_eq!(init.verify_request("a.example", "id", "k"), None);
}

#[test]
fn dialback_requests_are_bounded_and_never_for_our_own_domains() {
    let mut resp = S2sResponder::new(policy(&["b.example"], 2, true), true, None);
    let mut reader = Reader::new(Limits::default());
    reader.feed(
        b"<stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' \
          xmlns:stream='http://etherx.jabber.org/streams' to='b.example' version='1.0'>\
          <db:result from='b.example' to='b.example'>k</db:result>",
    );
    for i in 0..(MAX_PENDING_DIALBACK + 4) {
        reader.feed(
            format!("<db:result from='d{i}.example' to='b.example'>k</db:result>").as_bytes(),
        );
    }
    let mut out = Vec::new();
    while let Ok(Some(event)) = reader.next_event() {
        resp.handle(event, &mut out);
    }
    let requests = out
        .iter()
        .filter(|o| matches!(o, InboundOutput::VerifyDialback { .. }))
        .count();
    assert_eq!(requests, MAX_PENDING_DIALBACK);
    assert!(
        !out.iter().any(|o| matches!(o, InboundOutput::VerifyDialback { originating, .. } if originating == "b.example")),
        "our own domain is never verified through a peer"
    );
    let errors = out
        .iter()
        .filter(|o| matches!(o, InboundOutput::Send(b) if String::from_utf8_lossy(b).contains("type=\"error\"")))
        .count();
    assert_eq!(errors, 5);
}

#[test]
fn failed_external_attempts_are_limited() {
    // RFC 6120 §6.4.5: a peer without a valid certificate may not retry forever.
    let mut resp = S2sResponder::new(
        policy(&["b.example"], 2, true),
        true,
        Some(Arc::new(Cert(vec![]))),
    );
    let mut reader = Reader::new(Limits::default());
    reader.feed(
        b"<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' \
          from='a.example' to='b.example' version='1.0'>",
    );
    let auth = b"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='EXTERNAL'>=</auth>";
    for _ in 0..3 {
        reader.feed(auth);
    }
    let mut out = Vec::new();
    while let Ok(Some(event)) = reader.next_event() {
        resp.handle(event, &mut out);
    }
    let failures = out
        .iter()
        .filter(|o| matches!(o, InboundOutput::Send(b) if String::from_utf8_lossy(b).contains("<not-authorized")))
        .count();
    assert_eq!(failures, 2, "{out:?}");
    assert!(
        matches!(out.last(), Some(InboundOutput::Close(e)) if e.condition == StreamErrorCondition::PolicyViolation)
    );
    assert!(!resp.is_authorized());
}

#[test]
fn nothing_authorised_in_the_clear_survives_tls() {
    // RFC 6120 §5.4.3.3, with TLS optional: a pair accepted before STARTTLS is forgotten.
    let mut p = policy(&["b.example"], 2, true);
    p.require_tls = false;
    let mut resp = S2sResponder::new(p, false, None);
    let out = drive(
        &mut resp,
        b"<stream:stream xmlns='jabber:server' xmlns:db='jabber:server:dialback' \
          xmlns:stream='http://etherx.jabber.org/streams' from='a.example' to='b.example' \
          version='1.0'><db:result from='a.example' to='b.example'>k</db:result>",
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, InboundOutput::VerifyDialback { .. }))
    );
    let mut out = Vec::new();
    resp.dialback_verified("a.example", "b.example", Verdict::Valid, &mut out);
    assert!(resp.is_authorized());
    resp.tls_established(None);
    assert!(!resp.is_authorized());
    // A verification still under way from before TLS is not answered on the new stream.
    let mut out = Vec::new();
    resp.dialback_verified("a.example", "b.example", Verdict::Valid, &mut out);
    assert!(out.is_empty() && !resp.is_authorized());
}
