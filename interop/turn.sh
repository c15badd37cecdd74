# The TURN check of interop/run (sourced by it, not run on its own): Debian's coturn, with the
# TURN REST API secret it shares with xmppd (`use-auth-secret`, `static-auth-secret`), accepts
# an allocation made with the credential a slixmpp client fetched from xmppd (XEP-0215), and
# refuses one with a wrong password, so the check can fail. coturn runs from a private
# configuration and database in the scratch directory, on 127.0.0.1 only (listening and
# relaying), on ports interop/run picked free; nothing of a system-wide coturn (its Debian
# service, /etc/turnserver.conf, /var/lib/turn) is used or touched.
#
# turnutils_uclient (from the coturn package) allocates a relay on UDP with the long-term
# credential (-u/-w) and sends a few messages through it to a peer on loopback (-y: the client
# is its own peer), which coturn allows only with allow-loopback-peers.
#
# Uses from interop/run: here, scratch, PYTHON, domain, port_starttls, helper_pids, stop_pid,
# say, py_debug, wait_until. Sets turn_port, turn_secret, turn_ttl (turn_setup, before the
# server configuration is written).

turn_prerequisites() {
    command -v turnserver >/dev/null || die "coturn is missing (apt-get install coturn)"
    command -v turnutils_uclient >/dev/null || die "turnutils_uclient is missing (apt-get install coturn)"
}

# turn_setup PORT: the free UDP port coturn listens on; a fresh secret.
turn_setup() {
    turn_port="$1"
    turn_secret="turn-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
    turn_ttl=600
}

# The [modules.external_services] section of the xmppd configuration.
turn_toml() {
    cat <<TOML

[modules.external_services]
turn_secret = "$turn_secret"
credential_ttl_secs = $turn_ttl

[[modules.external_services.services]]
type = "turn"
host = "127.0.0.1"
port = $turn_port
transport = "udp"
TOML
}

turn_listening() { grep -qF "UDP listener opened on: 127.0.0.1:$turn_port" "$scratch/turn/turn.log" 2>/dev/null; }

# turn_allocate USER PASSWORD: one allocation through coturn, and a few messages relayed.
turn_allocate() {
    timeout 30 turnutils_uclient -u "$1" -w "$2" -p "$turn_port" -n 1 -m 1 -y -e 127.0.0.1 \
        127.0.0.1
}

# The check: coturn, slixmpp_turn.py, then an allocation with the credential and one with a
# wrong password; stops coturn by its PID.
turn_check() {
    local dir="$scratch/turn" turn_pid status=0 username password
    mkdir -p "$dir"
    echo "coturn $(dpkg-query -W -f='${Version}' coturn 2>/dev/null || echo '?') on 127.0.0.1:$turn_port"
    cat >"$dir/turnserver.conf" <<CONF
listening-ip=127.0.0.1
relay-ip=127.0.0.1
listening-port=$turn_port
min-port=$((turn_port + 1))
max-port=$((turn_port + 40))
use-auth-secret
static-auth-secret=$turn_secret
realm=$domain
no-tls
no-dtls
no-tcp-relay
no-cli
no-stdout-log
simple-log
verbose
log-file=$dir/turn.log
pidfile=$dir/turn.pid
userdb=$dir/turndb
allow-loopback-peers
no-multicast-peers
CONF
    turnserver -c "$dir/turnserver.conf" >"$dir/stdout.log" 2>&1 &
    turn_pid=$!
    helper_pids+=("$turn_pid")
    if ! wait_until 20 "$turn_pid" turn_listening; then
        echo "coturn is not listening on 127.0.0.1:$turn_port"
        tail -n 20 "$dir/turn.log" "$dir/stdout.log" 2>/dev/null
        stop_pid "$turn_pid" "coturn"
        return 1
    fi

    timeout 45 "$PYTHON" "$here/slixmpp_turn.py" --tls starttls --port "$port_starttls" \
        --ca "$scratch/ca.pem" --alice "alice@$domain" --turn-host 127.0.0.1 \
        --turn-port "$turn_port" --ttl "$turn_ttl" --out "$dir/credential" --timeout 30 \
        "${py_debug[@]}" || status=1
    if [[ "$status" -eq 0 ]]; then
        { read -r username && read -r password; } <"$dir/credential"
        if turn_allocate "$username" "$password" >"$dir/good.log" 2>&1 &&
            grep -qF "user <$username>: incoming packet ALLOCATE processed, success" "$dir/turn.log" &&
            grep -qE "tot_recv_msgs=[1-9]" "$dir/good.log"; then
            echo "coturn allocated a relay for $username, and messages went through it"
        else
            echo "coturn refused the credential xmppd gave:"
            tail -n 10 "$dir/good.log" "$dir/turn.log"
            status=1
        fi
        if turn_allocate "$username" "not-$password" >"$dir/bad.log" 2>&1; then
            echo "coturn allocated with a wrong password: the check above proves nothing"
            status=1
        else
            echo "coturn refused the same username with a wrong password"
        fi
    fi
    stop_pid "$turn_pid" "coturn"
    return "$status"
}
