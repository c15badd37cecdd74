//! The exposition's exact lines after known events.

use super::*;

fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn events_appear_as_samples_in_both_formats() {
    let m = Metrics::new();
    let _c2s = m.connection(ConnectionKind::C2s);
    {
        let _ws = m.connection(ConnectionKind::WebSocket);
    }
    m.login("SCRAM-SHA-256");
    m.login("SCRAM-SHA-256");
    m.login_failed("PLAIN", "not-authorized");
    m.received(Peer::Client, StanzaKind::Message);
    m.sent_bytes(Peer::Client, b"<presence from='a@b'/>");
    m.sent_bytes(Peer::Client, b"<r xmlns='urn:xmpp:sm:3'/>");
    m.routing_error("service-unavailable");
    let mut link = m.s2s_link(true);
    let _negotiating = m.s2s_link(false);
    link.established();
    m.storage_call("keyval", "get", 0.0003);
    let scraped = Scraped {
        bound_sessions: 2,
        archives: vec![("offline".into(), 7)],
        resident_bytes: 4096,
        ..Scraped::default()
    };
    let text = m.encode(&scraped, false);
    let samples = lines(&text);
    for expected in [
        "xmppd_connections{kind=\"c2s\"} 1",
        "xmppd_connections{kind=\"websocket\"} 0",
        "xmppd_connections{kind=\"bosh\"} 0",
        "xmppd_logins_total{mechanism=\"SCRAM-SHA-256\"} 2",
        "xmppd_login_failures_total{mechanism=\"PLAIN\",condition=\"not-authorized\"} 1",
        "xmppd_stanzas_received_total{peer=\"client\",kind=\"message\"} 1",
        "xmppd_stanzas_sent_total{peer=\"client\",kind=\"presence\"} 1",
        "xmppd_stanzas_sent_total{peer=\"client\",kind=\"message\"} 0",
        "xmppd_routing_errors_total{condition=\"service-unavailable\"} 1",
        "xmppd_s2s_links{direction=\"out\",state=\"established\"} 1",
        "xmppd_s2s_links{direction=\"out\",state=\"negotiating\"} 0",
        "xmppd_s2s_links{direction=\"in\",state=\"negotiating\"} 1",
        "xmppd_storage_seconds_count{shape=\"keyval\",operation=\"get\"} 1",
        "xmppd_storage_seconds_bucket{shape=\"keyval\",operation=\"get\",le=\"0.00025\"} 0",
        "xmppd_storage_seconds_bucket{shape=\"keyval\",operation=\"get\",le=\"0.000625\"} 1",
        "xmppd_sessions{kind=\"bound\"} 2",
        "xmppd_archived_messages{store=\"offline\"} 7",
        "process_resident_memory_bytes 4096",
    ] {
        assert!(
            samples.contains(&expected),
            "{expected} missing from\n{text}"
        );
    }
    assert!(text.contains("# TYPE xmppd_logins_total counter"), "{text}");
    assert!(!text.contains("# EOF"), "{text}");

    let open = m.encode(&scraped, true);
    assert!(open.contains("# TYPE xmppd_logins counter"), "{open}");
    assert!(open.ends_with("# EOF\n"), "{open}");
    assert!(lines(&open).contains(&"xmppd_logins_total{mechanism=\"SCRAM-SHA-256\"} 2"));
}
