//! The responder under the framings of other transports (WebSocket, BOSH) and with
//! invitations, driven in memory as in the parent module.

use super::*;

#[test]
fn websocket_framing_opens_with_open_and_never_offers_starttls() {
    // RFC 7395 "Stream Initiation": <open/> answers <open/>; TLS belongs to the WebSocket.
    let mut r = C2sResponder::websocket(policy(false), false, ChannelBindingData::none());
    let mut out = Vec::new();
    r.handle(header("example.org"), &mut out);
    let C2sOutput::Send(open) = &out[0] else {
        panic!("expected the header first: {out:?}");
    };
    let open = String::from_utf8(open.clone()).unwrap();
    assert!(
        open.starts_with("<open xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\""),
        "{open}"
    );
    assert!(
        open.ends_with("/>") && open.contains("version=\"1.0\""),
        "{open}"
    );
    let features = sent(&out[1..]);
    assert!(!features[0].has_child("starttls", ns::TLS));
    assert!(features[0].has_child("mechanisms", ns::SASL));

    let mut out = Vec::new();
    r.handle(el("starttls", ns::TLS), &mut out);
    assert_eq!(
        closed_with(&out),
        Some(StreamErrorCondition::PolicyViolation)
    );
}

#[test]
fn websocket_stream_errors_declare_their_prefix_and_close() {
    // RFC 7395 "Stream Errors": the error (with a header first if none was sent), then <close/>.
    let mut r = C2sResponder::websocket(policy(false), true, ChannelBindingData::none());
    let bytes = r.error_bytes(&StreamError::new(StreamErrorCondition::NotWellFormed));
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.starts_with("<open xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\""));
    assert!(text.contains(
        "<stream:error xmlns:stream=\"http://etherx.jabber.org/streams\">\
         <not-well-formed xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/></stream:error>"
    ));
    assert!(text.ends_with("<close xmlns=\"urn:ietf:params:xml:ns:xmpp-framing\"/>"));
    assert!(!text.contains("</stream:stream>"));
}

#[test]
fn bosh_framing_sends_no_header_no_plus_and_bare_stream_errors() {
    // XEP-0206 "Session Creation Response": the features come inside the <body/>, with no
    // stream header; TLS is the HTTP connection's, and no TLS connection is the session's,
    // so nothing is bound to one.
    let mut r = C2sResponder::bosh(policy(false), true);
    let mut out = Vec::new();
    r.handle(header("example.org"), &mut out);
    assert_eq!(out[0], C2sOutput::Send(Vec::new()));
    let features = sent(&out[1..]);
    assert!(!features[0].has_child("starttls", ns::TLS));
    let mechanisms = offered(&out);
    assert!(mechanisms.iter().any(|m| m == "PLAIN"), "{mechanisms:?}");
    assert!(
        !mechanisms.iter().any(|m| m.ends_with("-PLUS")),
        "{mechanisms:?}"
    );
    assert!(!r.stream_id().is_empty());
    // "remote-stream-error": the error alone, its prefix declared; the body is the
    // transport's.
    let bytes = r.error_bytes(&StreamError::new(StreamErrorCondition::NotWellFormed));
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        "<stream:error xmlns:stream=\"http://etherx.jabber.org/streams\">\
         <not-well-formed xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/></stream:error>"
    );
}

fn preauth_iq(kind: &str, id: &str) -> StreamEvent {
    let preauth =
        Element::new("preauth", xmppd_proto::pars::NS_PARS).with_attr("token", "00ff00ff");
    StreamEvent::Stanza(
        Element::new("iq", ns::CLIENT)
            .with_attr("type", kind)
            .with_attr("id", id)
            .with_child(preauth),
    )
}

#[test]
fn invitations_are_offered_and_their_tokens_handed_over_where_accepted() {
    use xmppd_proto::pars::{NS_IBR_TOKEN, NS_INVITE_LEGACY};
    let ibr_token = |f: &Element| {
        f.has_child("register", NS_IBR_TOKEN) && f.has_child("register", NS_INVITE_LEGACY)
    };
    // Open registration without invitations: no token feature, and a token is not taken.
    let mut r = C2sResponder::new(open_policy(true), true, ChannelBindingData::none());
    let mut out = Vec::new();
    r.handle(header("example.org"), &mut out);
    assert!(!ibr_token(&sent(&out)[0]));
    let mut out = Vec::new();
    r.handle(preauth_iq("set", "p1"), &mut out);
    assert_eq!(stanza_error(&sent(&out)[0]), Some("service-unavailable"));

    let inviting = C2sPolicy {
        invites: Arc::new(HashSet::from(["example.org".to_owned()])),
        ..open_policy(true)
    };
    let mut r = C2sResponder::new(inviting.clone(), true, ChannelBindingData::none());
    let mut out = Vec::new();
    r.handle(header("example.org"), &mut out);
    assert!(ibr_token(&sent(&out)[0]));
    let mut out = Vec::new();
    r.handle(preauth_iq("set", "p2"), &mut out);
    let [C2sOutput::Register { set, query, .. }] = &out[..] else {
        panic!("{out:?}")
    };
    assert!(*set && query.is("preauth", xmppd_proto::pars::NS_PARS));
    // A refused token is a failed attempt; a get of a token is no request at all.
    let mut out = Vec::new();
    r.registered(
        "p2",
        true,
        Err(StanzaError::new(DefinedCondition::ItemNotFound)),
        &mut out,
    );
    assert_eq!(stanza_error(&sent(&out)[0]), Some("item-not-found"));
    let mut out = Vec::new();
    r.handle(preauth_iq("get", "p3"), &mut out);
    assert!(closed_with(&out).is_some(), "{out:?}");

    // Never in the clear.
    let mut r = C2sResponder::new(inviting, false, ChannelBindingData::none());
    let mut out = Vec::new();
    r.handle(header("example.org"), &mut out);
    assert!(!ibr_token(&sent(&out)[0]));
}
