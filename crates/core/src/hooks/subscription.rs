//! The presence types a server handles for an account rather than delivering as they are
//! (RFC 6121 §3 and §4.3), and the subscription states their handling produces.

/// The four subscription-related presence types (RFC 6121 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscriptionKind {
    /// `subscribe`: a request to see the other's presence.
    Subscribe,
    /// `subscribed`: approval of a request (or a pre-approval).
    Subscribed,
    /// `unsubscribe`: cancelling one's own subscription.
    Unsubscribe,
    /// `unsubscribed`: denying or revoking the other's subscription.
    Unsubscribed,
}

impl SubscriptionKind {
    /// The kind named by a presence `type`, if it is one of the four.
    pub fn from_type(t: Option<&str>) -> Option<Self> {
        match t? {
            "subscribe" => Some(Self::Subscribe),
            "subscribed" => Some(Self::Subscribed),
            "unsubscribe" => Some(Self::Unsubscribe),
            "unsubscribed" => Some(Self::Unsubscribed),
            _ => None,
        }
    }

    /// The presence `type` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Subscribe => "subscribe",
            Self::Subscribed => "subscribed",
            Self::Unsubscribe => "unsubscribe",
            Self::Unsubscribed => "unsubscribed",
        }
    }
}

/// Presence addressed to a local account that the account's server answers itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboundPresenceKind {
    /// A subscription stanza from a contact (RFC 6121 Appendix A.3).
    Subscription(SubscriptionKind),
    /// A presence probe (§4.3).
    Probe,
}

impl InboundPresenceKind {
    /// The kind of a presence `type`, if the account's server handles it.
    pub fn from_type(t: Option<&str>) -> Option<Self> {
        match t {
            Some("probe") => Some(Self::Probe),
            other => SubscriptionKind::from_type(other).map(Self::Subscription),
        }
    }
}

/// The subscription of a roster item as other features see it (RFC 6121 §3): whether the
/// contact receives the user's presence (`from`) and the user the contact's (`to`). Pending
/// requests are left out: no feature but the roster's own acts on them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Subscription {
    /// The contact is subscribed to the user's presence (`from` or `both`).
    pub from: bool,
    /// The user is subscribed to the contact's presence (`to` or `both`).
    pub to: bool,
}
