# Multi-user chat across federation, over s2s: xmppd's users in rooms on Prosody's MUC
# component, and Prosody's users in rooms of xmppd's MUC service. Sourced by
# interop/federation.sh, whose servers, users, certificates and helpers it uses
# (fed_start_pair, fed_stop_xmppd, FED_PASSWORD, check, …).
#
# xmppd serves a.test on 127.0.0.11, with its MUC service conference.a.test, and Prosody b.test
# on 127.0.0.12 with a MUC component, conference.b.test (each its own s2s domain: /etc/hosts
# and the certificates name them too). Both trust the fed CA and insist on certificates, so
# every stream between them, the services' included, is authenticated with SASL EXTERNAL.
# slixmpp_muc.py, with alice@a.test on xmppd and bob@b.test on Prosody, first in a room bob
# makes on conference.b.test (alice is the one joining):
#   room       bob creates a room on conference.b.test; alice is refused while it is locked
#              (a presence error from the remote room), enters once it is configured, gets the
#              subject; groupchat messages both ways (reflections keep their ids), a nickname
#              change seen by bob (303), private messages both ways through the occupant JIDs,
#              alice exits, bob speaks, alice enters again and gets the history with XEP-0203
#              delays, then the subject;
#   departure  alice's groupchat message before entering comes back as not-acceptable, her
#              entry with bob's nickname as conflict; she enters, messages go both ways; a
#              new login with her resource replaces her session, and bob sees her leave
#              before she enters again; then her connection is cut without leaving the room,
#              and bob sees her leave: both times xmppd sent the room unavailable presence
#              for her directed presence (RFC 6121 §4.6.3).
# then the same two scenarios in a room alice makes on conference.a.test, which bob joins from
# Prosody: xmppd's rooms with a remote occupant, whose departures Prosody announces.
# Only the cert variant: the s2s authentication methods are checked by the pairs already.

# fed_muc_prosody: Prosody's part of the configuration (the MUC component).
fed_muc_prosody() {
    cat <<'LUA'
Component "conference.b.test" "muc"
LUA
}

fed_muc_slixmpp() { # scenario creator service
    local py_dbg=()
    fed_debug && py_dbg=(--debug)
    ALICE_PASSWORD="${FED_PASSWORD[xmppd]}" BOB_PASSWORD="${FED_PASSWORD[prosody]}" \
        timeout 45 "$PYTHON" "$fed_here/slixmpp_muc.py" --scenario "$1" --creator "$2" \
        --service "$3" --ca "$fed_dir/certs/ca.pem" --tls starttls --port 5222 \
        --alice "alice@a.test" --alice-host "${FED_ADDR[a.test]}" \
        --bob "bob@b.test" --bob-host "${FED_ADDR[b.test]}" --timeout 30 "${py_dbg[@]}"
}

fed_muc_start() { # dir
    fed_prosody_extra="$(fed_muc_prosody)"
    fed_start_pair xmppd prosody cert "$1"
}

# fed_muc_checks: starts xmppd and Prosody with its MUC, runs the checks, stops both.
fed_muc_checks() {
    local d="$fed_dir/muc" before="$failed" label="muc/cert"
    mkdir -p "$d"
    chmod o+x "$d"
    fed_say "$label: alice@a.test (xmppd) and bob@b.test (Prosody) in rooms on conference.b.test and conference.a.test"
    check "$label: xmppd and Prosody with its MUC component start" fed_muc_start "$d"
    if [[ "$failed" -eq "$before" ]]; then
        check "$label: alice@a.test in bob's room on conference.b.test: locked, subject, messages with their ids, nick change, private messages, history after leaving" \
            fed_muc_slixmpp room bob conference.b.test
        check "$label: errors from the remote room reach alice@a.test; a new login with her resource, then her cut connection, make her leave bob's room (RFC 6121 §4.6.3)" \
            fed_muc_slixmpp departure bob conference.b.test
        check "$label: bob@b.test in alice's room on conference.a.test (xmppd's MUC): locked, subject, messages with their ids, nick change, private messages, history after leaving" \
            fed_muc_slixmpp room alice conference.a.test
        check "$label: errors from xmppd's room reach bob@b.test; a new login with his resource, then his cut connection, make him leave alice's room" \
            fed_muc_slixmpp departure alice conference.a.test
    fi
    fed_stop_prosody
    fed_stop_xmppd
    fed_prosody_extra=""
    if [[ "$failed" -ne "$before" ]]; then
        fed_show_logs xmppd prosody "$d"
    fi
}
