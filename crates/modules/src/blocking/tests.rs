//! §6 matching, item by item.

use super::*;

fn list(items: &[&str]) -> BlockList {
    BlockList::new(
        items
            .iter()
            .map(|s| Jid::new(s).unwrap().as_str().to_owned()),
    )
}

fn matches(items: &[&str], jid: &str) -> bool {
    list(items).matches(&Jid::new(jid).unwrap())
}

/// §6, after XEP-0016 §2.1: each item form and what it covers.
#[test]
fn jid_matching_follows_section_6() {
    let rows: &[(&str, &str, bool)] = &[
        // <user@domain/resource>: only that resource.
        (
            "romeo@montague.net/orchard",
            "romeo@montague.net/orchard",
            true,
        ),
        (
            "romeo@montague.net/orchard",
            "romeo@montague.net/garden",
            false,
        ),
        ("romeo@montague.net/orchard", "romeo@montague.net", false),
        // <user@domain>: any resource.
        ("romeo@montague.net", "romeo@montague.net", true),
        ("romeo@montague.net", "romeo@montague.net/orchard", true),
        ("romeo@montague.net", "benvolio@montague.net", false),
        // <domain/resource>: only that resource, of the domain or of a user there.
        ("montague.net/orchard", "montague.net/orchard", true),
        ("montague.net/orchard", "romeo@montague.net/orchard", true),
        ("montague.net/orchard", "romeo@montague.net/garden", false),
        ("montague.net/orchard", "montague.net", false),
        // <domain>: the domain and everything at it.
        ("montague.net", "montague.net", true),
        ("montague.net", "romeo@montague.net", true),
        ("montague.net", "romeo@montague.net/orchard", true),
        ("montague.net", "montague.net/orchard", true),
        ("montague.net", "capulet.com", false),
        ("montague.net", "romeo@sub.montague.net", false),
    ];
    for (item, jid, expected) in rows {
        assert_eq!(matches(&[item], jid), *expected, "{item} against {jid}");
    }
}

#[test]
fn matching_is_on_normalised_jids_and_empty_matches_nothing() {
    assert!(matches(&["Romeo@Montague.NET"], "romeo@montague.net/x"));
    assert!(!matches(&[], "romeo@montague.net"));
}
