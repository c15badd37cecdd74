//! Every row of RFC 6121 Appendix A.2 (outbound) and A.3 (inbound), as the RFC prints them,
//! plus the pre-approval rows of §3.4.

use super::*;
use SubscriptionKind::{Subscribe, Subscribed, Unsubscribe, Unsubscribed};

/// The RFC's names for the nine states.
fn st(name: &str) -> SubState {
    let (sub, pending_out, pending_in) = match name {
        "None" => (Sub::None, false, false),
        "None + Pending Out" => (Sub::None, true, false),
        "None + Pending In" => (Sub::None, false, true),
        "None + Pending Out+In" => (Sub::None, true, true),
        "To" => (Sub::To, false, false),
        "To + Pending In" => (Sub::To, false, true),
        "From" => (Sub::From, false, false),
        "From + Pending Out" => (Sub::From, true, false),
        "Both" => (Sub::Both, false, false),
        other => panic!("not a state: {other}"),
    };
    SubState {
        sub,
        pending_out,
        pending_in,
        approved: false,
    }
}

/// (existing state, route/deliver?, new state or "no state change")
type Row = (&'static str, bool, &'static str);

fn check(
    table: &str,
    f: fn(SubState, SubscriptionKind) -> Transition,
    kind: SubscriptionKind,
    rows: &[Row],
) {
    assert_eq!(rows.len(), 9, "{table}: every state has a row");
    for (old, forward, new) in rows {
        let t = f(st(old), kind);
        let expected = if *new == "no state change" {
            st(old)
        } else {
            st(new)
        };
        assert_eq!(t.forward, *forward, "{table} {old}: route/deliver");
        assert_eq!(t.new, expected, "{table} {old}: new state");
    }
}

#[test]
fn a_2_1_outbound_subscribe() {
    check(
        "A.2.1",
        outbound,
        Subscribe,
        &[
            ("None", true, "None + Pending Out"),
            ("None + Pending Out", true, "no state change"),
            ("None + Pending In", true, "None + Pending Out+In"),
            ("None + Pending Out+In", true, "no state change"),
            ("To", true, "no state change"),
            ("To + Pending In", true, "no state change"),
            ("From", true, "From + Pending Out"),
            ("From + Pending Out", true, "no state change"),
            ("Both", true, "no state change"),
        ],
    );
}

#[test]
fn a_2_2_outbound_unsubscribe() {
    check(
        "A.2.2",
        outbound,
        Unsubscribe,
        &[
            ("None", true, "no state change"),
            ("None + Pending Out", true, "None"),
            ("None + Pending In", true, "no state change"),
            ("None + Pending Out+In", true, "None + Pending In"),
            ("To", true, "None"),
            ("To + Pending In", true, "None + Pending In"),
            ("From", true, "no state change"),
            ("From + Pending Out", true, "From"),
            ("Both", true, "From"),
        ],
    );
}

#[test]
fn a_2_3_outbound_subscribed() {
    // The rows without a request to approve record a pre-approval instead (checked below).
    let rows: [Row; 9] = [
        ("None", false, "no state change"),
        ("None + Pending Out", false, "no state change"),
        ("None + Pending In", true, "From"),
        ("None + Pending Out+In", true, "From + Pending Out"),
        ("To", false, "no state change"),
        ("To + Pending In", true, "Both"),
        ("From", false, "no state change"),
        ("From + Pending Out", false, "no state change"),
        ("Both", false, "no state change"),
    ];
    for (old, forward, new) in rows {
        let t = outbound(st(old), Subscribed);
        assert_eq!(t.forward, forward, "A.2.3 {old}");
        let mut expected = if new == "no state change" {
            st(old)
        } else {
            st(new)
        };
        if matches!(old, "None" | "None + Pending Out" | "To") {
            expected.approved = true;
        }
        assert_eq!(t.new, expected, "A.2.3 {old}");
        let effect = if forward {
            Effect::SendPresence
        } else {
            Effect::None
        };
        assert_eq!(
            t.effect, effect,
            "A.2.3 {old}: presence follows the approval"
        );
    }
}

#[test]
fn a_2_4_outbound_unsubscribed() {
    check(
        "A.2.4",
        outbound,
        Unsubscribed,
        &[
            ("None", false, "no state change"),
            ("None + Pending Out", false, "no state change"),
            ("None + Pending In", true, "None"),
            ("None + Pending Out+In", true, "None + Pending Out"),
            ("To", false, "no state change"),
            ("To + Pending In", true, "To"),
            ("From", true, "None"),
            ("From + Pending Out", true, "None + Pending Out"),
            ("Both", true, "To"),
        ],
    );
    for old in ["From", "From + Pending Out", "Both"] {
        assert_eq!(
            outbound(st(old), Unsubscribed).effect,
            Effect::SendUnavailable,
            "{old}"
        );
    }
}

#[test]
fn a_3_1_inbound_subscribe() {
    check(
        "A.3.1",
        inbound,
        Subscribe,
        &[
            ("None", true, "None + Pending In"),
            ("None + Pending Out", true, "None + Pending Out+In"),
            ("None + Pending In", false, "no state change"),
            ("None + Pending Out+In", false, "no state change"),
            ("To", true, "To + Pending In"),
            ("To + Pending In", false, "no state change"),
            ("From", false, "no state change"),
            ("From + Pending Out", false, "no state change"),
            ("Both", false, "no state change"),
        ],
    );
    // The "*" rows: the server answers `subscribed` on the user's behalf.
    for old in ["From", "From + Pending Out", "Both"] {
        assert_eq!(inbound(st(old), Subscribe).reply, Some(Subscribed), "{old}");
    }
    for old in ["None", "None + Pending Out", "To", "None + Pending In"] {
        assert_eq!(inbound(st(old), Subscribe).reply, None, "{old}");
    }
}

#[test]
fn a_3_2_inbound_unsubscribe() {
    check(
        "A.3.2",
        inbound,
        Unsubscribe,
        &[
            ("None", false, "no state change"),
            ("None + Pending Out", false, "no state change"),
            ("None + Pending In", true, "None"),
            ("None + Pending Out+In", true, "None + Pending Out"),
            ("To", false, "no state change"),
            ("To + Pending In", true, "To"),
            ("From", true, "None"),
            ("From + Pending Out", true, "None + Pending Out"),
            ("Both", true, "To"),
        ],
    );
    for old in ["From", "From + Pending Out", "Both"] {
        assert_eq!(
            inbound(st(old), Unsubscribe).effect,
            Effect::SendUnavailable,
            "{old}"
        );
    }
}

#[test]
fn a_3_3_inbound_subscribed() {
    check(
        "A.3.3",
        inbound,
        Subscribed,
        &[
            ("None", false, "no state change"),
            ("None + Pending Out", true, "To"),
            ("None + Pending In", false, "no state change"),
            ("None + Pending Out+In", true, "To + Pending In"),
            ("To", false, "no state change"),
            ("To + Pending In", false, "no state change"),
            ("From", false, "no state change"),
            ("From + Pending Out", true, "Both"),
            ("Both", false, "no state change"),
        ],
    );
}

#[test]
fn a_3_4_inbound_unsubscribed() {
    check(
        "A.3.4",
        inbound,
        Unsubscribed,
        &[
            ("None", false, "no state change"),
            ("None + Pending Out", true, "None"),
            ("None + Pending In", false, "no state change"),
            ("None + Pending Out+In", true, "None + Pending In"),
            ("To", true, "None"),
            ("To + Pending In", true, "None + Pending In"),
            ("From", false, "no state change"),
            ("From + Pending Out", true, "From"),
            ("Both", true, "From"),
        ],
    );
}

#[test]
fn pre_approval_turns_the_next_request_into_a_subscription() {
    for (old, new) in [
        ("None", "From"),
        ("None + Pending Out", "From + Pending Out"),
        ("To", "Both"),
    ] {
        let approved = outbound(st(old), Subscribed).new;
        assert!(approved.approved, "{old}");
        let t = inbound(approved, Subscribe);
        assert_eq!(t.new, st(new), "{old}");
        assert!(!t.forward, "{old}: the user is not asked");
        assert_eq!(t.reply, Some(Subscribed));
        assert_eq!(t.effect, Effect::SendPresence);
        // Cancelling the pre-approval with `unsubscribed` brings back the plain request.
        let cancelled = outbound(approved, Unsubscribed);
        assert!(!cancelled.forward);
        assert_eq!(cancelled.new, st(old));
        assert!(cancelled.pushes(&approved));
    }
}

#[test]
fn pending_in_alone_is_not_pushed() {
    let t = inbound(st("None"), Subscribe);
    assert!(!t.pushes(&st("None")));
    let t = inbound(st("None + Pending Out"), Subscribed);
    assert!(t.pushes(&st("None + Pending Out")));
}
