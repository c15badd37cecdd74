//! XEP-0060 §4.5 and §6.5.9 as a table: every access model against every relation.

use super::*;
use crate::config::MaxItems;

use AccessModel::{Open, Presence, Roster, Whitelist};
use Denied::{ClosedNode, NotInRosterGroup, PresenceSubscriptionRequired};

fn contact(from: bool, groups: &[&str]) -> Relation {
    Relation::Contact {
        from,
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
    }
}

#[test]
fn the_access_table() {
    // (model, relation, expected), the roster model allowing the group "friends".
    let rows: Vec<(AccessModel, Relation, Result<(), Denied>)> = vec![
        (Open, Relation::Owner, Ok(())),
        (Open, contact(true, &[]), Ok(())),
        (Open, contact(false, &[]), Ok(())),
        (Open, Relation::Stranger, Ok(())),
        (Presence, Relation::Owner, Ok(())),
        (Presence, contact(true, &[]), Ok(())),
        (
            Presence,
            contact(false, &["friends"]),
            Err(PresenceSubscriptionRequired),
        ),
        (
            Presence,
            Relation::Stranger,
            Err(PresenceSubscriptionRequired),
        ),
        (Roster, Relation::Owner, Ok(())),
        (Roster, contact(true, &["friends"]), Ok(())),
        (Roster, contact(true, &["work", "friends"]), Ok(())),
        (Roster, contact(true, &["work"]), Err(NotInRosterGroup)),
        (Roster, contact(false, &["friends"]), Err(NotInRosterGroup)),
        (Roster, Relation::Stranger, Err(NotInRosterGroup)),
        (Whitelist, Relation::Owner, Ok(())),
        (Whitelist, contact(true, &["friends"]), Err(ClosedNode)),
        (Whitelist, Relation::Stranger, Err(ClosedNode)),
    ];
    for (model, relation, expected) in rows {
        let mut config = NodeConfig::default_with(model, MaxItems::Count(1));
        config.roster_groups_allowed = vec!["friends".into()];
        assert_eq!(
            check(&config, &relation),
            expected,
            "{model:?} {relation:?}"
        );
    }
}

#[test]
fn refusals_carry_the_conditions_of_section_6_5_9() {
    let cases = [
        (
            PresenceSubscriptionRequired,
            DefinedCondition::NotAuthorized,
            "presence-subscription-required",
        ),
        (
            NotInRosterGroup,
            DefinedCondition::NotAuthorized,
            "not-in-roster-group",
        ),
        (ClosedNode, DefinedCondition::NotAllowed, "closed-node"),
    ];
    for (denied, condition, app) in cases {
        let e = StanzaError::from(denied);
        assert_eq!(e.condition, condition);
        assert_eq!(e.app.map(|a| a.name().to_owned()).as_deref(), Some(app));
    }
}
