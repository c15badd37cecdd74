//! Who may retrieve a node's items and receive its notifications: the access models of
//! XEP-0060 §4.5 as a PEP service applies them (XEP-0163 §4), and the error each refusal
//! carries (XEP-0060 §6.5.9).
//!
//! The requester's relation to the owner is read once (the roster item), then the decision is
//! a pure function of the model and that relation — the table `access_tests` checks row by
//! row.

use xmppd_proto::pubsub::PubSubCondition;
use xmppd_proto::{DefinedCondition, StanzaError};

use crate::config::{AccessModel, NodeConfig};

/// The requester as the owner's roster sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Relation {
    /// The owner's own account (any of its resources).
    Owner,
    /// A contact; `from`: subscribed to the owner's presence; `groups`: its roster groups.
    Contact {
        /// Subscription `from` or `both`.
        from: bool,
        /// The roster groups the owner put the contact in.
        groups: Vec<String>,
    },
    /// Anyone else.
    Stranger,
}

/// Why access is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// `presence`: not subscribed to the owner's presence (§6.5.9.6).
    PresenceSubscriptionRequired,
    /// `roster`: in none of the allowed groups (§6.5.9.7).
    NotInRosterGroup,
    /// `whitelist`: not on it (§6.5.9.8).
    ClosedNode,
}

impl From<Denied> for StanzaError {
    fn from(d: Denied) -> Self {
        match d {
            Denied::PresenceSubscriptionRequired => {
                PubSubCondition::PresenceSubscriptionRequired.error(DefinedCondition::NotAuthorized)
            }
            Denied::NotInRosterGroup => {
                PubSubCondition::NotInRosterGroup.error(DefinedCondition::NotAuthorized)
            }
            Denied::ClosedNode => PubSubCondition::ClosedNode.error(DefinedCondition::NotAllowed),
        }
    }
}

/// Whether `relation` may read a node configured with `config`.
pub fn check(config: &NodeConfig, relation: &Relation) -> Result<(), Denied> {
    let (from, groups) = match relation {
        Relation::Owner => return Ok(()),
        Relation::Contact { from, groups } => (*from, groups.as_slice()),
        Relation::Stranger => (false, &[][..]),
    };
    match config.access_model {
        AccessModel::Open => Ok(()),
        AccessModel::Presence if from => Ok(()),
        AccessModel::Presence => Err(Denied::PresenceSubscriptionRequired),
        AccessModel::Roster
            if from
                && groups
                    .iter()
                    .any(|g| config.roster_groups_allowed.contains(g)) =>
        {
            Ok(())
        }
        AccessModel::Roster => Err(Denied::NotInRosterGroup),
        AccessModel::Whitelist => Err(Denied::ClosedNode),
    }
}

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;
