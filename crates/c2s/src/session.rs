//! What a bound client session does with its stanzas (RFC 6120 §8.1.2, RFC 6121 §4).
//!
//! The session keeps the presence state that belongs to it alone: whether it is available,
//! and to whom it sent directed presence (§4.6), because those entities must hear that it
//! went away even when they are not subscribers. Everything about contacts is left to the
//! router's hooks (the IM module).

use std::collections::HashSet;
use std::sync::Arc;

use jid::{FullJid, Jid};
use xmppd_core::{QueueReceiver, Router, SessionControl, SessionPresence, SubscriptionKind};
use xmppd_proto::{
    DefinedCondition, Rejected, Stanza, StanzaError, StanzaKind, StanzaParseError, StreamError,
    StreamErrorCondition as Cond, ns,
};
use xmppd_xml::Element;

/// A session after resource binding.
pub(crate) struct BoundSession {
    pub(crate) jid: FullJid,
    conn_id: u64,
    pub(crate) rx: QueueReceiver,
    pub(crate) control: Arc<SessionControl>,
    /// Whether the session has sent available presence (RFC 6121 §4.2).
    available: bool,
    /// Where it sent directed available presence while available (§4.6.2); cleared when it
    /// becomes unavailable, after telling them.
    directed: HashSet<Jid>,
    /// Stanzas taken from the queue whose write failed.
    pub(crate) unwritten: Vec<Arc<Stanza>>,
}

impl BoundSession {
    pub(crate) fn new(
        jid: FullJid,
        conn_id: u64,
        rx: QueueReceiver,
        control: Arc<SessionControl>,
    ) -> Self {
        BoundSession {
            jid,
            conn_id,
            rx,
            control,
            available: false,
            directed: HashSet::new(),
            unwritten: Vec::new(),
        }
    }
}

/// An error answer for an element that failed envelope checks, addressed back to the session
/// (we cannot trust its addresses, so it carries none but ours). `None` for error stanzas.
fn bounce_unparsed(el: &Element, me: &FullJid, error: &StanzaError) -> Option<Vec<u8>> {
    let mut reply = xmppd_proto::bounce_unparsed(el, error)?;
    reply.remove_attr("from");
    reply.set_attr("to", me.as_str());
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
    // The element is moved through parsing and from-stamping, never copied: a refused one
    // comes back with the error for the bounce.
    let stanza = match Stanza::parse_keeping(el, ns::CLIENT).map_err(Rejected::into_parts) {
        Ok(s) => s,
        Err((StanzaParseError::NotAStanza(name), _)) => {
            let text = format!("<{name}/> is not a stanza this server understands");
            return Err(StreamError::with_text(Cond::UnsupportedStanzaType, text));
        }
        Err((StanzaParseError::Invalid(error), el)) => {
            return Ok(bounce_unparsed(&el, &session.jid, &error));
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
    if stanza.kind() == StanzaKind::Presence {
        let Some(to) = stanza.to().cloned() else {
            broadcast_presence(router, session, stanza).await;
            return Ok(None);
        };
        if let Some(kind) = SubscriptionKind::from_type(stanza.type_attr()) {
            router
                .outbound_subscription(kind, stanza, &session.jid)
                .await;
            return Ok(None);
        }
        if !track_directed(session, &stanza, to) {
            let error = StanzaError::new(DefinedCondition::PolicyViolation).with_text(format!(
                "at most {MAX_DIRECTED_PRESENCE} entities can receive directed presence at once"
            ));
            if let Some(bounce) = stanza.error_reply(&error) {
                let mut out = Vec::new();
                bounce.element().write_to(&mut out, ns::CLIENT);
                return Ok(Some(out));
            }
            return Ok(None);
        }
    }
    router.route(stanza).await;
    Ok(None)
}

/// Directed-presence targets one session may have at once: each must later get its
/// unavailable, so the set cannot be allowed to grow without bound.
pub(crate) const MAX_DIRECTED_PRESENCE: usize = 1000;

/// Remembers directed presence (RFC 6121 §4.6): available presence adds the target (while
/// the session is available), unavailable presence removes it. Returns `false` when the
/// target would exceed [`MAX_DIRECTED_PRESENCE`]; the presence is then refused rather than
/// sent untracked, so no entity is left believing the session is online.
fn track_directed(session: &mut BoundSession, stanza: &Stanza, to: Jid) -> bool {
    match stanza.type_attr() {
        None if session.available && !session.directed.contains(&to) => {
            if session.directed.len() >= MAX_DIRECTED_PRESENCE {
                return false;
            }
            session.directed.insert(to);
        }
        Some("unavailable") => {
            session.directed.remove(&to);
        }
        _ => {}
    }
    true
}

/// Presence without `to` is the session's broadcast presence.
async fn broadcast_presence(router: &Router, session: &mut BoundSession, stanza: Stanza) {
    let sessions = router.sessions();
    match stanza.type_attr() {
        None => {
            let initial = !session.available;
            session.available = true;
            let priority = priority_of(&stanza);
            let stanza = Arc::new(stanza);
            sessions.set_presence(
                &session.jid,
                session.conn_id,
                Some((priority, stanza.clone())),
            );
            router
                .session_presence(SessionPresence::Available {
                    jid: &session.jid,
                    stanza: &stanza,
                    initial,
                    priority,
                })
                .await;
        }
        Some("unavailable") => {
            if session.available {
                session.available = false;
                sessions.set_presence(&session.jid, session.conn_id, None);
                let directed: Vec<Jid> =
                    std::mem::take(&mut session.directed).into_iter().collect();
                router
                    .session_presence(SessionPresence::Unavailable {
                        jid: &session.jid,
                        stanza: &stanza,
                        directed: &directed,
                    })
                    .await;
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
        let directed: Vec<Jid> = std::mem::take(&mut session.directed).into_iter().collect();
        announce_unavailable(router, &session.jid, &directed).await;
    }
    session.rx.close();
    let mut pending = std::mem::take(&mut session.unwritten);
    while let Some(outbound) = session.rx.try_recv() {
        pending.extend(outbound.reroute);
    }
    for stanza in pending {
        router.route(Arc::unwrap_or_clone(stanza)).await;
    }
}

/// Tells the account's other available resources, its contacts and the entities it sent
/// directed presence to that `jid` went offline (RFC 6121 §4.5.2, §4.6.3), on behalf of a
/// session that ended or was replaced. The registry must no longer hold that session's
/// presence.
pub(crate) async fn announce_unavailable(router: &Router, jid: &FullJid, directed: &[Jid]) {
    let el = Element::new("presence", ns::CLIENT)
        .with_attr("type", "unavailable")
        .with_attr("from", jid.as_str());
    let stanza =
        Stanza::new_unchecked(StanzaKind::Presence, Some(Jid::from(jid.clone())), None, el);
    router
        .session_presence(SessionPresence::Unavailable {
            jid,
            stanza: &stanza,
            directed,
        })
        .await;
}
