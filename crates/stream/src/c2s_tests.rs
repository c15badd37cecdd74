//! The responder driven in memory by a scripted client.

use std::collections::HashSet;
use std::sync::Arc;

use xmppd_proto::{DefinedCondition, StanzaError, StreamErrorCondition, ns};
use xmppd_xml::{Element, Limits, Reader, StreamEvent, StreamHeader};

use super::*;
use crate::sasl::{
    ClientChannelBinding, ScramClient, ScramHash, StoredCredentials, decode_b64, encode_b64,
};

fn policy(require_tls: bool) -> C2sPolicy {
    C2sPolicy {
        hosts: Arc::new(HashSet::from(["example.org".to_owned()])),
        require_tls,
        max_auth_failures: 2,
        fake_salt_secret: [7; 32],
        bound_features: Arc::default(),
        registration: Arc::default(),
        invites: Arc::default(),
        disabled_mechanisms: Arc::from([]),
        limits_before_auth: StreamLimits {
            max_bytes: Some(16 * 1024),
            idle_seconds: None,
        },
        limits_after_auth: StreamLimits {
            max_bytes: Some(256 * 1024),
            idle_seconds: Some(120),
        },
    }
}

/// A policy with in-band registration open on example.org.
fn open_policy(require_tls: bool) -> C2sPolicy {
    C2sPolicy {
        registration: Arc::new(HashSet::from(["example.org".to_owned()])),
        ..policy(require_tls)
    }
}

fn register_iq(kind: &str, id: &str) -> StreamEvent {
    let query = Element::new("query", xmppd_proto::register::NS_REGISTER)
        .with_child(Element::new("username", xmppd_proto::register::NS_REGISTER).with_text("bill"));
    StreamEvent::Stanza(
        Element::new("iq", ns::CLIENT)
            .with_attr("type", kind)
            .with_attr("id", id)
            .with_child(query),
    )
}

fn stanza_error(reply: &Element) -> Option<&str> {
    reply
        .child("error", ns::CLIENT)?
        .children()
        .find(|c| c.ns() == ns::STANZAS)
        .map(Element::name)
}

fn header(to: &str) -> StreamEvent {
    StreamEvent::Open(StreamHeader {
        attrs: vec![("to".into(), to.into()), ("version".into(), "1.0".into())],
        default_ns: Some(ns::CLIENT.into()),
        prefixes: vec![("stream".into(), ns::STREAM.into())],
    })
}

/// Parses what the responder sent. Fragments are read inside a synthetic stream; a response
/// header the responder sent starts a new document.
fn sent(outputs: &[C2sOutput]) -> Vec<Element> {
    let mut reader = Reader::new(Limits::default());
    reader.feed(
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>",
    );
    assert!(matches!(
        reader.next_event(),
        Ok(Some(StreamEvent::Open(_)))
    ));
    let mut out = Vec::new();
    for o in outputs {
        if let C2sOutput::Send(bytes) = o {
            if bytes.starts_with(b"<?xml") {
                reader.reset();
            }
            reader.feed(bytes);
            loop {
                match reader.next_event() {
                    Ok(Some(StreamEvent::Stanza(el))) => out.push(el),
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(e) => panic!(
                        "responder sent bad XML: {e}: {}",
                        String::from_utf8_lossy(bytes)
                    ),
                }
            }
        }
    }
    out
}

fn closed_with(outputs: &[C2sOutput]) -> Option<StreamErrorCondition> {
    outputs.iter().find_map(|o| match o {
        C2sOutput::Close(e) => Some(e.condition),
        _ => None,
    })
}

fn el(xml_name: &str, ns: &str) -> StreamEvent {
    StreamEvent::Stanza(Element::new(xml_name, ns))
}

#[test]
fn before_tls_only_starttls_is_offered_and_accepted() {
    let mut r = C2sResponder::new(policy(true), false, ChannelBindingData::none());
    let mut out = Vec::new();
    r.handle(header("example.org"), &mut out);
    let features = sent(&out).pop().unwrap();
    let starttls = features.child("starttls", ns::TLS).unwrap();
    assert!(starttls.has_child("required", ns::TLS));
    assert!(!features.has_child("mechanisms", ns::SASL));

    let mut out = Vec::new();
    r.handle(el("auth", ns::SASL), &mut out);
    assert_eq!(
        closed_with(&out),
        Some(StreamErrorCondition::PolicyViolation)
    );

    let mut r = C2sResponder::new(policy(true), false, ChannelBindingData::none());
    r.handle(header("example.org"), &mut Vec::new());
    let mut out = Vec::new();
    r.handle(el("message", ns::CLIENT), &mut out);
    assert_eq!(closed_with(&out), Some(StreamErrorCondition::NotAuthorized));

    let mut r = C2sResponder::new(policy(true), false, ChannelBindingData::none());
    r.handle(header("example.org"), &mut Vec::new());
    let mut out = Vec::new();
    r.handle(el("starttls", ns::TLS), &mut out);
    assert!(sent(&out)[0].is("proceed", ns::TLS));
    assert_eq!(out.last(), Some(&C2sOutput::StartTls));
}

#[test]
fn header_errors() {
    let mut r = C2sResponder::new(policy(true), false, ChannelBindingData::none());
    let mut out = Vec::new();
    r.handle(header("other.org"), &mut out);
    assert!(
        matches!(out[0], C2sOutput::Send(_)),
        "our header goes first"
    );
    assert_eq!(closed_with(&out), Some(StreamErrorCondition::HostUnknown));

    let mut r = C2sResponder::new(policy(true), false, ChannelBindingData::none());
    let mut out = Vec::new();
    let StreamEvent::Open(mut h) = header("example.org") else {
        unreachable!()
    };
    h.default_ns = Some(ns::SERVER.into());
    r.handle(StreamEvent::Open(h), &mut out);
    assert_eq!(
        closed_with(&out),
        Some(StreamErrorCondition::InvalidNamespace)
    );

    let mut r = C2sResponder::new(policy(true), false, ChannelBindingData::none());
    let mut out = Vec::new();
    let StreamEvent::Open(mut h) = header("example.org") else {
        unreachable!()
    };
    h.attrs.retain(|(k, _)| k != "version");
    r.handle(StreamEvent::Open(h), &mut out);
    assert_eq!(
        closed_with(&out),
        Some(StreamErrorCondition::UnsupportedVersion)
    );
}

fn auth_el(mechanism: &str, data: &[u8]) -> StreamEvent {
    StreamEvent::Stanza(
        Element::new("auth", ns::SASL)
            .with_attr("mechanism", mechanism)
            .with_text(encode_b64(data)),
    )
}

/// Runs a SCRAM exchange with the client; returns the outputs of the last step.
fn scram_login(r: &mut C2sResponder, password: &str, creds: &StoredCredentials) -> Vec<C2sOutput> {
    let mut client = ScramClient::new(
        ScramHash::Sha256,
        "juliet",
        password,
        ClientChannelBinding::None,
        None,
    )
    .unwrap();
    let mut out = Vec::new();
    r.handle(auth_el("SCRAM-SHA-256", &client.first_message()), &mut out);
    assert_eq!(
        out.last(),
        Some(&C2sOutput::LookupCredentials {
            host: "example.org".into(),
            username: "juliet".into()
        })
    );
    let mut out = Vec::new();
    r.credentials(Some(creds), &mut out);
    let challenge = sent(&out).pop().unwrap();
    let final_msg = client
        .handle_challenge(&decode_b64(&challenge.text()).unwrap())
        .unwrap();
    let mut out = Vec::new();
    r.handle(
        StreamEvent::Stanza(Element::new("response", ns::SASL).with_text(encode_b64(&final_msg))),
        &mut out,
    );
    out
}

/// The mechanisms of the features in `out`.
fn offered(out: &[C2sOutput]) -> Vec<String> {
    sent(out)[0]
        .child("mechanisms", ns::SASL)
        .unwrap()
        .children()
        .map(Element::text)
        .collect()
}

#[test]
fn sasl_then_bind() {
    let creds = StoredCredentials::derive("secret", 4096).unwrap();
    let mut r = C2sResponder::new(policy(true), true, ChannelBindingData::none());
    let mut out = Vec::new();
    r.handle(header("example.org"), &mut out);
    let mechanisms = offered(&out);
    assert_eq!(
        mechanisms,
        ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"],
        "no -PLUS without binding data"
    );
    // XEP-0478: what is accepted before authentication.
    let limits = |out: &[C2sOutput]| StreamLimits::from_features(&sent(out)[0]);
    assert_eq!(
        limits(&out),
        StreamLimits {
            max_bytes: Some(16 * 1024),
            idle_seconds: None,
        }
    );

    let out = scram_login(&mut r, "secret", &creds);
    // The answer is announced first, so that the caller can hold it back.
    assert_eq!(out[0], C2sOutput::SaslAnswer { success: true });
    assert!(sent(&out)[0].is("success", ns::SASL));
    assert!(out.contains(&C2sOutput::ResetStream));
    let user = BareJid::new("juliet@example.org").unwrap();
    assert!(out.contains(&C2sOutput::Authenticated {
        jid: user,
        mechanism: Mechanism::ScramSha256,
        channel_binding: None,
    }));

    let mut out = Vec::new();
    r.handle(header("example.org"), &mut out);
    assert!(sent(&out)[0].has_child("bind", ns::BIND));
    // ...and after it, with the keepalive's idle time.
    assert_eq!(
        limits(&out),
        StreamLimits {
            max_bytes: Some(256 * 1024),
            idle_seconds: Some(120),
        }
    );
    let bind = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", "b")
        .with_child(
            Element::new("bind", ns::BIND)
                .with_child(Element::new("resource", ns::BIND).with_text("balcony")),
        );
    let mut out = Vec::new();
    r.handle(StreamEvent::Stanza(bind), &mut out);
    let C2sOutput::Bind { iq_id, jid } = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(jid.as_str(), "juliet@example.org/balcony");
    let result = r.bound(iq_id, jid);
    assert!(
        String::from_utf8(result)
            .unwrap()
            .contains("<jid>juliet@example.org/balcony</jid>")
    );
    assert_eq!(r.phase(), Phase::Bound);

    let mut out = Vec::new();
    r.handle(el("message", ns::CLIENT), &mut out);
    assert!(matches!(out[0], C2sOutput::Stanza(_)));
}

#[test]
fn an_error_on_the_header_after_sasl_opens_the_new_stream_first() {
    let creds = StoredCredentials::derive("secret", 4096).unwrap();
    let mut r = C2sResponder::new(policy(true), true, ChannelBindingData::none());
    r.handle(header("example.org"), &mut Vec::new());
    let out = scram_login(&mut r, "secret", &creds);
    assert!(out.contains(&C2sOutput::ResetStream));
    // The client's restarted stream starts with something forbidden (a DOCTYPE, say).
    let bytes = r.error_bytes(&StreamError::new(StreamErrorCondition::RestrictedXml));
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.starts_with("<?xml version='1.0'?><stream:stream "),
        "{text}"
    );
    assert!(text.contains("<restricted-xml "), "{text}");
    assert!(text.ends_with("</stream:stream>"), "{text}");
}

#[test]
fn failures_are_limited() {
    let creds = StoredCredentials::derive("secret", 4096).unwrap();
    let mut r = C2sResponder::new(policy(true), true, ChannelBindingData::none());
    r.handle(header("example.org"), &mut Vec::new());
    let out = scram_login(&mut r, "wrong", &creds);
    assert_eq!(out[0], C2sOutput::SaslAnswer { success: false });
    assert!(sent(&out)[0].has_child("not-authorized", ns::SASL));
    assert!(out.contains(&C2sOutput::AuthFailed {
        mechanism: Some(Mechanism::ScramSha256),
        condition: FailureCondition::NotAuthorized,
    }));
    assert_eq!(closed_with(&out), None, "one failure is allowed to retry");
    let out = scram_login(&mut r, "wrong again", &creds);
    assert_eq!(
        closed_with(&out),
        Some(StreamErrorCondition::PolicyViolation)
    );
}

#[test]
fn disabled_mechanisms_are_neither_offered_nor_accepted() {
    let policy = C2sPolicy {
        disabled_mechanisms: Arc::from([Mechanism::Plain, Mechanism::ScramSha1]),
        ..policy(true)
    };
    let mut r = C2sResponder::new(policy, true, ChannelBindingData::none());
    let mut out = Vec::new();
    r.handle(header("example.org"), &mut out);
    let mechanisms = offered(&out);
    assert_eq!(mechanisms, ["SCRAM-SHA-256"]);

    let mut out = Vec::new();
    r.handle(auth_el("PLAIN", b"\0juliet\0secret"), &mut out);
    assert!(sent(&out)[0].has_child("invalid-mechanism", ns::SASL));
    assert!(out.contains(&C2sOutput::AuthFailed {
        mechanism: None,
        condition: FailureCondition::InvalidMechanism,
    }));
    let creds = StoredCredentials::derive("secret", 4096).unwrap();
    let out = scram_login(&mut r, "secret", &creds);
    assert!(sent(&out)[0].is("success", ns::SASL));
}

#[test]
fn unknown_mechanism_and_bad_resource() {
    let mut r = C2sResponder::new(policy(true), true, ChannelBindingData::none());
    r.handle(header("example.org"), &mut Vec::new());
    let mut out = Vec::new();
    r.handle(
        auth_el("SCRAM-SHA-256-PLUS", b"p=tls-exporter,,n=juliet,r=abc"),
        &mut out,
    );
    assert!(sent(&out)[0].has_child("invalid-mechanism", ns::SASL));

    let creds = StoredCredentials::derive("secret", 4096).unwrap();
    scram_login(&mut r, "secret", &creds);
    r.handle(header("example.org"), &mut Vec::new());
    let bind = Element::new("iq", ns::CLIENT)
        .with_attr("type", "set")
        .with_attr("id", "b")
        .with_child(
            Element::new("bind", ns::BIND)
                .with_child(Element::new("resource", ns::BIND).with_text("a\u{7}b")),
        );
    let mut out = Vec::new();
    r.handle(StreamEvent::Stanza(bind), &mut out);
    let reply = sent(&out).pop().unwrap();
    assert_eq!(reply.attr("type"), Some("error"));
    assert!(
        reply
            .child("error", ns::CLIENT)
            .unwrap()
            .has_child("bad-request", ns::STANZAS)
    );
}

#[test]
fn registration_is_offered_only_where_open_and_only_after_required_tls() {
    let register = |f: &Element| f.has_child("register", xmppd_proto::register::NS_FEATURE);
    let mut r = C2sResponder::new(policy(false), true, ChannelBindingData::none());
    let mut out = Vec::new();
    r.handle(header("example.org"), &mut out);
    assert!(!register(&sent(&out)[0]));

    let mut r = C2sResponder::new(open_policy(true), false, ChannelBindingData::none());
    let mut out = Vec::new();
    r.handle(header("example.org"), &mut out);
    assert!(!register(&sent(&out)[0]), "not before the required TLS");
    let mut out = Vec::new();
    r.handle(register_iq("get", "r1"), &mut out);
    assert_eq!(closed_with(&out), Some(StreamErrorCondition::NotAuthorized));

    let mut r = C2sResponder::new(open_policy(true), true, ChannelBindingData::none());
    let mut out = Vec::new();
    r.handle(header("example.org"), &mut out);
    assert!(register(&sent(&out)[0]));

    // TLS not required: still only under TLS, and an attempt in the clear is refused.
    let mut r = C2sResponder::new(open_policy(false), false, ChannelBindingData::none());
    let mut out = Vec::new();
    r.handle(header("example.org"), &mut out);
    assert!(!register(&sent(&out)[0]), "not in the clear");
    let mut out = Vec::new();
    r.handle(register_iq("set", "r1"), &mut out);
    assert_eq!(stanza_error(&sent(&out)[0]), Some("not-authorized"));
}

#[test]
fn a_closed_host_answers_service_unavailable_and_keeps_the_stream() {
    let mut r = C2sResponder::new(policy(true), true, ChannelBindingData::none());
    r.handle(header("example.org"), &mut Vec::new());
    for _ in 0..3 {
        let mut out = Vec::new();
        r.handle(register_iq("get", "r1"), &mut out);
        let reply = sent(&out).pop().unwrap();
        assert_eq!(reply.attr("id"), Some("r1"));
        assert_eq!(stanza_error(&reply), Some("service-unavailable"));
        assert_eq!(closed_with(&out), None, "gets are not failed attempts");
    }
    let mut out = Vec::new();
    r.handle(register_iq("set", "r2"), &mut out);
    assert_eq!(stanza_error(&sent(&out)[0]), Some("service-unavailable"));
}

#[test]
fn an_open_host_hands_the_query_over_and_sends_the_answer() {
    let mut r = C2sResponder::new(open_policy(true), true, ChannelBindingData::none());
    r.handle(header("example.org"), &mut Vec::new());
    let mut out = Vec::new();
    r.handle(register_iq("set", "r1"), &mut out);
    let [
        C2sOutput::Register {
            host,
            iq_id,
            set,
            query,
        },
    ] = &out[..]
    else {
        panic!("{out:?}")
    };
    assert_eq!(
        (host.as_str(), iq_id.as_str(), *set),
        ("example.org", "r1", true)
    );
    assert!(query.has_child("username", xmppd_proto::register::NS_REGISTER));
    let mut out = Vec::new();
    r.registered("r1", true, Ok(None), &mut out);
    let reply = sent(&out).pop().unwrap();
    assert_eq!(
        (reply.attr("type"), reply.attr("id")),
        (Some("result"), Some("r1"))
    );
    assert_eq!(r.phase(), Phase::Features, "authentication follows");

    // A malformed iq is a bad request, and anything but register still ends the stream.
    let mut two = Element::new("iq", ns::CLIENT)
        .with_attr("type", "get")
        .with_attr("id", "r3")
        .with_child(Element::new("query", xmppd_proto::register::NS_REGISTER));
    two.push_child(Element::new("ping", ns::PING));
    let mut out = Vec::new();
    r.handle(StreamEvent::Stanza(two), &mut out);
    assert_eq!(stanza_error(&sent(&out)[0]), Some("bad-request"));
    let mut out = Vec::new();
    r.handle(el("message", ns::CLIENT), &mut out);
    assert_eq!(closed_with(&out), Some(StreamErrorCondition::NotAuthorized));
}

#[test]
fn failed_registrations_count_as_failed_attempts() {
    let mut r = C2sResponder::new(open_policy(true), true, ChannelBindingData::none());
    r.handle(header("example.org"), &mut Vec::new());
    let conflict = || StanzaError::new(DefinedCondition::Conflict);
    let mut out = Vec::new();
    r.registered("r1", true, Err(conflict()), &mut out);
    assert_eq!(stanza_error(&sent(&out)[0]), Some("conflict"));
    assert_eq!(closed_with(&out), None);
    let mut out = Vec::new();
    r.registered("r2", true, Err(conflict()), &mut out);
    assert_eq!(
        closed_with(&out),
        Some(StreamErrorCondition::PolicyViolation)
    );
}

#[path = "c2s_transport_tests.rs"]
mod transport;
