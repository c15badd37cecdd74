//! What a bound client session does with its stanzas (RFC 6120 §8.1.2, RFC 6121 §4).

use std::sync::Arc;

use bytes::Bytes;
use jid::{FullJid, Jid};
use tokio::sync::mpsc;
use xmppd_core::router::client_bytes;
use xmppd_core::{Outbound, Router, SessionControl};
use xmppd_proto::{
    Stanza, StanzaError, StanzaKind, StanzaParseError, StreamError, StreamErrorCondition as Cond,
    ns,
};
use xmppd_xml::Element;

/// A session after resource binding.
pub(crate) struct BoundSession {
    pub(crate) jid: FullJid,
    conn_id: u64,
    pub(crate) rx: mpsc::Receiver<Outbound>,
    pub(crate) control: Arc<SessionControl>,
    /// Whether the session has sent available presence (RFC 6121 §4.2).
    available: bool,
    /// Stanzas taken from the queue whose write failed.
    pub(crate) unwritten: Vec<Arc<Stanza>>,
}

impl BoundSession {
    pub(crate) fn new(
        jid: FullJid,
        conn_id: u64,
        rx: mpsc::Receiver<Outbound>,
        control: Arc<SessionControl>,
    ) -> Self {
        BoundSession {
            jid,
            conn_id,
            rx,
            control,
            available: false,
            unwritten: Vec::new(),
        }
    }
}

/// An error answer for an element that failed envelope checks, addressed back to the session
/// (we cannot trust its addresses, so it carries none but ours). `None` for error stanzas.
fn bounce_unparsed(el: &Element, me: &FullJid, error: &StanzaError) -> Option<Vec<u8>> {
    if el.attr("type") == Some("error") {
        return None;
    }
    let mut reply = Element::new(el.name(), ns::CLIENT)
        .with_attr("type", "error")
        .with_attr("to", me.as_str());
    if let Some(id) = el.attr("id") {
        reply.set_attr("id", id);
    }
    reply.push_child(error.to_element(ns::CLIENT));
    let mut out = Vec::new();
    reply.write_to(&mut out, ns::CLIENT);
    Some(out)
}

/// RFC 6121 §4.7.2.3: an integer from -128 to 127; anything else counts as 0.
fn priority_of(stanza: &Stanza) -> i8 {
    stanza
        .element()
        .child("priority", ns::CLIENT)
        .and_then(|p| p.text().trim().parse::<i8>().ok())
        .unwrap_or(0)
}

/// Handles one stanza from the client: checks, stamps `from`, and routes it. Returns bytes to
/// write straight back to the client, or the stream error that ends the session.
pub(crate) async fn handle_stanza(
    router: &Router,
    session: &mut BoundSession,
    el: Element,
) -> Result<Option<Vec<u8>>, StreamError> {
    // What a bounce needs, kept aside so the element itself is moved, not copied.
    let (name, id, is_error) = (
        el.name().to_owned(),
        el.attr("id").map(str::to_owned),
        el.attr("type") == Some("error"),
    );
    let stanza = match Stanza::parse(el, ns::CLIENT) {
        Ok(s) => s,
        Err(StanzaParseError::NotAStanza(name)) => {
            let text = format!("<{name}/> is not a stanza this server understands");
            return Err(StreamError::with_text(Cond::UnsupportedStanzaType, text));
        }
        Err(StanzaParseError::Invalid(error)) => {
            let mut head = Element::new(name, ns::CLIENT);
            if let Some(id) = id {
                head.set_attr("id", id);
            }
            if is_error {
                head.set_attr("type", "error");
            }
            return Ok(bounce_unparsed(&head, &session.jid, &error));
        }
    };
    // RFC 6120 §8.1.2.1: a client may only name itself (full or bare JID) as the sender.
    if let Some(from) = stanza.from() {
        let own = match from.try_as_full() {
            Ok(full) => full == &session.jid,
            Err(bare) => bare == &session.jid.to_bare(),
        };
        if !own {
            let text = format!("you are {}, not {from}", session.jid);
            return Err(StreamError::with_text(Cond::InvalidFrom, text));
        }
    }
    let stanza = stanza.into_with_from(Jid::from(session.jid.clone()));
    if stanza.kind() == StanzaKind::Presence && stanza.to().is_none() {
        broadcast_presence(router, session, &stanza);
        return Ok(None);
    }
    router.route(stanza).await;
    Ok(None)
}

/// Presence without `to` is the session's broadcast presence.
fn broadcast_presence(router: &Router, session: &mut BoundSession, stanza: &Stanza) {
    let sessions = router.sessions();
    match stanza.type_attr() {
        None => {
            let initial = !session.available;
            session.available = true;
            let bytes: Bytes = client_bytes(stanza);
            sessions.set_presence(
                &session.jid,
                session.conn_id,
                Some((priority_of(stanza), bytes)),
            );
            router.broadcast_own_presence(&session.jid, stanza, initial);
        }
        Some("unavailable") => {
            if session.available {
                session.available = false;
                sessions.set_presence(&session.jid, session.conn_id, None);
                router.broadcast_own_presence(&session.jid, stanza, false);
            }
        }
        // Subscription management and probes without a 'to' mean nothing.
        Some(_) => {}
    }
}

/// Unregisters a session; an available one is announced unavailable to the user's other
/// resources, whether its stream ended cleanly or the socket died. A session that was
/// replaced by a new one with the same resource was already announced when it was replaced
/// (see [`announce_unavailable`]) and says nothing now: the full JID is live again.
///
/// Stanzas still queued for the session are routed again once it is unbound, so none is lost
/// silently: the router delivers them to a replacement session, or treats the resource as gone
/// (RFC 6121 §8.5.3.2) and redirects or bounces each.
pub(crate) async fn end(router: &Router, mut session: BoundSession) {
    let still_bound = router.sessions().unbind(&session.jid, session.conn_id);
    if still_bound && session.available {
        announce_unavailable(router, &session.jid);
    }
    session.rx.close();
    let mut pending = std::mem::take(&mut session.unwritten);
    while let Ok(outbound) = session.rx.try_recv() {
        pending.extend(outbound.reroute);
    }
    for stanza in pending {
        router.route(Arc::unwrap_or_clone(stanza)).await;
    }
}

/// Tells the account's other available resources that `jid` went offline (RFC 6121
/// §4.5.2), on behalf of a session that ended or was replaced. The registry must no longer
/// hold that session's presence.
pub(crate) fn announce_unavailable(router: &Router, jid: &FullJid) {
    let el = Element::new("presence", ns::CLIENT)
        .with_attr("type", "unavailable")
        .with_attr("from", jid.as_str());
    let stanza =
        Stanza::new_unchecked(StanzaKind::Presence, Some(Jid::from(jid.clone())), None, el);
    router.broadcast_own_presence(jid, &stanza, false);
}
