# Multi-user chat across federation, over s2s: xmppd's users in rooms on the peer's MUC
# service, and the peer's users in rooms of xmppd's MUC service, with Prosody (its MUC
# component) and with ejabberd (mod_muc). Sourced by interop/federation.sh, whose servers,
# users, certificates and helpers it uses (fed_start_pair, fed_stop_xmppd, FED_PASSWORD,
# check, …).
#
# xmppd serves a.test on 127.0.0.11, with its MUC service conference.a.test; Prosody b.test on
# 127.0.0.12 with a MUC component, conference.b.test; ejabberd c.test on 127.0.0.13 with
# mod_muc on conference.c.test (each its own s2s domain: /etc/hosts and the certificates name
# them too). All trust the fed CA and insist on certificates, so every stream between them,
# the services' included, is authenticated with SASL EXTERNAL.
# slixmpp_muc.py, with alice@a.test on xmppd and the peer's user (bob@b.test on Prosody,
# carol@c.test on ejabberd), first in a room the peer's user makes on the peer's service
# (alice is the one joining):
#   room       the peer's user creates a room; alice is refused while it is locked (a presence
#              error from the remote room; ejabberd does not lock new rooms, so not there),
#              enters once it is configured, gets the subject;
#              groupchat messages both ways (reflections keep their ids), a nickname change
#              seen by the other (303), private messages both ways through the occupant JIDs,
#              alice exits, the other speaks, alice enters again and gets the history with
#              XEP-0203 delays, then the subject;
#   departure  alice's groupchat message before entering comes back as not-acceptable, her
#              entry with the other's nickname as conflict; she enters, messages go both ways;
#              a new login with her resource replaces her session, and the other sees her
#              leave before she enters again; then her connection is cut without leaving the
#              room, and the other sees her leave: both times xmppd sent the room unavailable
#              presence for her directed presence (RFC 6121 §4.6.3).
# then the same two scenarios in a room alice makes on conference.a.test, which the peer's
# user joins: xmppd's rooms with a remote occupant, whose departures the peer announces.
# Only the cert variant: the s2s authentication methods are checked by the pairs already.

# fed_muc_prosody: Prosody's part of the configuration (the MUC component).
fed_muc_prosody() {
    cat <<'LUA'
Component "conference.b.test" "muc"
LUA
}

# fed_muc_ejabberd: ejabberd's part of the configuration (a module under `modules:`): rooms
# created by anyone (its default, written out).
fed_muc_ejabberd() {
    cat <<'YML'
  mod_muc:
    host: "conference.c.test"
    access_create: all
YML
}

fed_muc_slixmpp() { # peer scenario creator service
    local peer="$1" py_dbg=() other domain locked=yes
    shift
    fed_debug && py_dbg=(--debug)
    # ejabberd 23.01's mod_muc opens a room as soon as it is made (it has no XEP-0045 §10.1.1
    # lock), so nobody can be refused entry to check it; xmppd and Prosody lock it.
    [[ "$peer" == ejabberd && "$3" == "conference.c.test" ]] && locked=no
    other="${FED_USER[$peer]}"
    domain="${FED_DOMAIN[$peer]}"
    # slixmpp_muc.py calls the second account bob, whoever it is.
    ALICE_PASSWORD="${FED_PASSWORD[xmppd]}" BOB_PASSWORD="${FED_PASSWORD[$peer]}" \
        timeout 45 "$PYTHON" "$fed_here/slixmpp_muc.py" --scenario "$1" --creator "$2" \
        --service "$3" --ca "$fed_dir/certs/ca.pem" --tls starttls --port 5222 \
        --alice "alice@a.test" --alice-host "${FED_ADDR[a.test]}" \
        --bob "$other@$domain" --bob-host "${FED_ADDR[$domain]}" --locked-rooms "$locked" \
        --timeout 30 "${py_dbg[@]}"
}

fed_muc_start() { # peer dir
    case "$1" in
        prosody) fed_prosody_extra="$(fed_muc_prosody)" ;;
        ejabberd) fed_ejabberd_extra="$(fed_muc_ejabberd)" ;;
    esac
    fed_start_pair xmppd "$1" cert "$2"
}

# fed_muc_checks PEER: starts xmppd and the peer (prosody or ejabberd) with its MUC service,
# runs the checks, stops both.
fed_muc_checks() {
    local peer="$1" d="$fed_dir/muc-$1" before="$failed" label="muc/$1/cert"
    local other="${FED_USER[$1]}@${FED_DOMAIN[$1]}" service="conference.${FED_DOMAIN[$1]}"
    local locked="locked, "
    [[ "$peer" == ejabberd ]] && locked=""
    mkdir -p "$d"
    chmod o+x "$d"
    fed_say "$label: alice@a.test (xmppd) and $other ($peer) in rooms on $service and conference.a.test"
    check "$label: xmppd and $peer with its MUC service start" fed_muc_start "$peer" "$d"
    if [[ "$failed" -eq "$before" ]]; then
        check "$label: alice@a.test in $other's room on $service: ${locked}subject, messages with their ids, nick change, private messages, history after leaving" \
            fed_muc_slixmpp "$peer" room bob "$service"
        check "$label: errors from the remote room reach alice@a.test; a new login with her resource, then her cut connection, make her leave $other's room (RFC 6121 §4.6.3)" \
            fed_muc_slixmpp "$peer" departure bob "$service"
        check "$label: $other in alice's room on conference.a.test (xmppd's MUC): locked, subject, messages with their ids, nick change, private messages, history after leaving" \
            fed_muc_slixmpp "$peer" room alice conference.a.test
        check "$label: errors from xmppd's room reach $other; a new login with the same resource, then a cut connection, make $other leave alice's room" \
            fed_muc_slixmpp "$peer" departure alice conference.a.test
    fi
    "fed_stop_$peer"
    fed_stop_xmppd
    fed_prosody_extra=""
    fed_ejabberd_extra=""
    if [[ "$failed" -ne "$before" ]]; then
        fed_show_logs xmppd "$peer" "$d"
    fi
}
