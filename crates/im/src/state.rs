//! The subscription state machine of RFC 6121 Appendix A, as a pure function.
//!
//! One user's view of one contact is a [`SubState`]: the subscription (`none`/`to`/`from`/
//! `both`), whether the user asked for the contact's presence and awaits an answer (pending
//! out, `ask='subscribe'`), whether the contact asked and awaits the user's answer (pending
//! in), and whether the user approved the contact in advance (§3.4 pre-approval).
//!
//! [`outbound`] is table A.2 (the user's server, for stanzas the user sends) and [`inbound`]
//! table A.3 (the user's server, for stanzas a contact sends to the user). Both return the
//! new state and what to do — route or deliver, auto-reply, push, presence side effects — so
//! the module applies a [`Transition`] without deciding anything itself, and the unit tests
//! below check every row of both tables.

use xmppd_core::SubscriptionKind;

/// The `subscription` attribute of a roster item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sub {
    /// Neither sees the other.
    None,
    /// The user sees the contact's presence.
    To,
    /// The contact sees the user's presence.
    From,
    /// Both ways.
    Both,
}

impl Sub {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Sub::None => "none",
            Sub::To => "to",
            Sub::From => "from",
            Sub::Both => "both",
        }
    }

    /// Whether the user receives the contact's presence.
    pub fn to(self) -> bool {
        matches!(self, Sub::To | Sub::Both)
    }

    /// Whether the contact receives the user's presence.
    pub fn from(self) -> bool {
        matches!(self, Sub::From | Sub::Both)
    }

    fn with(to: bool, from: bool) -> Sub {
        match (to, from) {
            (false, false) => Sub::None,
            (true, false) => Sub::To,
            (false, true) => Sub::From,
            (true, true) => Sub::Both,
        }
    }
}

/// The user's relationship with one contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SubState {
    /// The subscription.
    pub sub: Sub,
    /// The user asked to see the contact's presence ("Pending Out").
    pub pending_out: bool,
    /// The contact asked to see the user's presence ("Pending In").
    pub pending_in: bool,
    /// The user approved the contact in advance (§3.4); only without `from`.
    pub approved: bool,
}

impl SubState {
    /// "None", the state of a contact that is not in the roster.
    pub const NONE: SubState = SubState {
        sub: Sub::None,
        pending_out: false,
        pending_in: false,
        approved: false,
    };

    fn with_sub(self, to: bool, from: bool) -> Self {
        SubState {
            sub: Sub::with(to, from),
            ..self
        }
    }
}

/// Presence the user's server sends to the contact on the user's behalf, besides the
/// subscription stanza itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Nothing more.
    None,
    /// The contact just got a subscription to the user: send it the current presence of each
    /// of the user's available resources (§3.1.5).
    SendPresence,
    /// The contact just lost its subscription to the user: send it unavailable presence from
    /// each of the user's available resources (§3.2.2, §3.3.3).
    SendUnavailable,
}

/// What a subscription stanza does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// The state afterwards.
    pub new: SubState,
    /// Outbound: route the stanza to the contact. Inbound: deliver it to the user's
    /// available resources.
    pub forward: bool,
    /// Inbound only: answer the contact on the user's behalf with this stanza (`subscribed`
    /// when it is already subscribed or was pre-approved).
    pub reply: Option<SubscriptionKind>,
    /// Presence to send from the user to the contact.
    pub effect: Effect,
}

impl Transition {
    /// Whether the roster item as clients see it (subscription, ask, approved) changed, which
    /// calls for a roster push; a change of pending-in alone is not shown (§3.1.3).
    pub fn pushes(&self, old: &SubState) -> bool {
        self.new.sub != old.sub
            || self.new.pending_out != old.pending_out
            || self.new.approved != old.approved
    }
}

/// Table A.2: the user sends `kind` to the contact.
pub fn outbound(state: SubState, kind: SubscriptionKind) -> Transition {
    let s = state;
    let (to, from) = (s.sub.to(), s.sub.from());
    let keep = |new: SubState, forward: bool, effect: Effect| Transition {
        new,
        forward,
        reply: None,
        effect,
    };
    match kind {
        // A.2.1: always routed, so a contact's server that lost the state can answer again.
        SubscriptionKind::Subscribe => {
            let new = if to {
                s
            } else {
                SubState {
                    pending_out: true,
                    ..s
                }
            };
            keep(new, true, Effect::None)
        }
        // A.2.2: always routed; the user loses `to` and any pending request.
        SubscriptionKind::Unsubscribe => {
            let new = SubState {
                pending_out: false,
                ..s.with_sub(false, from)
            };
            keep(new, true, Effect::None)
        }
        // A.2.3: approves a pending request, or pre-approves (§3.4); never routed twice.
        SubscriptionKind::Subscribed => {
            if from {
                keep(s, false, Effect::None)
            } else if s.pending_in {
                let new = SubState {
                    pending_in: false,
                    approved: false,
                    ..s.with_sub(to, true)
                };
                keep(new, true, Effect::SendPresence)
            } else {
                let new = SubState {
                    approved: true,
                    ..s
                };
                keep(new, false, Effect::None)
            }
        }
        // A.2.4: denies a pending request or revokes `from`; otherwise cancels a
        // pre-approval and goes nowhere.
        SubscriptionKind::Unsubscribed => {
            if from || s.pending_in {
                let new = SubState {
                    pending_in: false,
                    approved: false,
                    ..s.with_sub(to, false)
                };
                let effect = if from {
                    Effect::SendUnavailable
                } else {
                    Effect::None
                };
                keep(new, true, effect)
            } else {
                let new = SubState {
                    approved: false,
                    ..s
                };
                keep(new, false, Effect::None)
            }
        }
    }
}

/// Table A.3: the contact sends `kind` to the user.
pub fn inbound(state: SubState, kind: SubscriptionKind) -> Transition {
    let s = state;
    let (to, from) = (s.sub.to(), s.sub.from());
    let plain = |new: SubState, forward: bool| Transition {
        new,
        forward,
        reply: None,
        effect: Effect::None,
    };
    match kind {
        // A.3.1; a subscribed contact is answered for the user (the "*" rows), and so is a
        // pre-approved one, which then becomes subscribed (§3.4).
        SubscriptionKind::Subscribe => {
            if from {
                Transition {
                    reply: Some(SubscriptionKind::Subscribed),
                    effect: Effect::SendPresence,
                    ..plain(s, false)
                }
            } else if s.approved {
                let new = SubState {
                    approved: false,
                    pending_in: false,
                    ..s.with_sub(to, true)
                };
                Transition {
                    new,
                    forward: false,
                    reply: Some(SubscriptionKind::Subscribed),
                    effect: Effect::SendPresence,
                }
            } else if s.pending_in {
                plain(s, false)
            } else {
                plain(
                    SubState {
                        pending_in: true,
                        ..s
                    },
                    true,
                )
            }
        }
        // A.3.2: the contact stops seeing the user; it is told the user is gone.
        SubscriptionKind::Unsubscribe => {
            if from || s.pending_in {
                let new = SubState {
                    pending_in: false,
                    ..s.with_sub(to, false)
                };
                let effect = if from {
                    Effect::SendUnavailable
                } else {
                    Effect::None
                };
                Transition {
                    new,
                    forward: true,
                    reply: None,
                    effect,
                }
            } else {
                plain(s, false)
            }
        }
        // A.3.3: only an outstanding request can be approved.
        SubscriptionKind::Subscribed => {
            if !to && s.pending_out {
                let new = SubState {
                    pending_out: false,
                    ..s.with_sub(true, from)
                };
                plain(new, true)
            } else {
                plain(s, false)
            }
        }
        // A.3.4: the user's subscription or request is over.
        SubscriptionKind::Unsubscribed => {
            if to || s.pending_out {
                let new = SubState {
                    pending_out: false,
                    ..s.with_sub(false, from)
                };
                plain(new, true)
            } else {
                plain(s, false)
            }
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
