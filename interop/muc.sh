# The multi-user chat checks of interop/run (sourced by it, not run on its own), in rooms of
# xmppd's own service, conference.localhost:
#   - slixmpp_muc.py, two slixmpp clients (plugin xep_0045): `room` (a new room locked until
#     configured, subject, groupchat messages and their reflected ids, nickname change,
#     private messages, exit and entry again with the history delayed per XEP-0203, then the
#     subject) and `departure` (not-acceptable and conflict errors; the room sees an occupant
#     leave when a new login replaces its session and when its connection is cut);
#   - poezio_muc.py, Debian's poezio in a private tmux server (as nobody when root: poezio
#     refuses to run as root) with a slixmpp occupant: the history on joining, a message each
#     way, /nick, /quit.
# poezio 0.14 runs on Debian 12's slixmpp 1.8.3, which binds SCRAM-*-PLUS only to tls-unique
# (undefined on TLS 1.3) and then retries with the `y` flag, which a listener offering channel
# binding refuses as a downgrade (RFC 5802 §6); so poezio connects to a listener of its own
# configured with `channel_binding = false` (muc_listen_toml), and everyone else keeps channel
# binding.
#
# Uses from interop/run: here, scratch, PYTHON, domain, port_starttls, check, py_debug.

muc_service="conference.$domain"

muc_prerequisites() {
    command -v poezio >/dev/null || die "poezio is missing (apt-get install poezio)"
    command -v tmux >/dev/null || die "tmux is missing (apt-get install tmux)"
    if [[ "$(id -u)" -eq 0 ]]; then
        command -v setpriv >/dev/null || die "setpriv is missing (apt-get install util-linux)"
        id nobody >/dev/null 2>&1 || die "there is no user 'nobody' to run poezio as"
    fi
}

# muc_listen_toml PORT: poezio's client listener, without channel binding.
muc_listen_toml() {
    cat <<TOML

[[listen]]
kind = "c2s"
address = "127.0.0.1"
port = $1
channel_binding = false
TOML
}

slixmpp_muc() { # scenario
    timeout 45 "$PYTHON" "$here/slixmpp_muc.py" --scenario "$1" --tls starttls \
        --port "$port_starttls" --ca "$scratch/ca.pem" --alice "alice@$domain" \
        --bob "bob@$domain" --service "$muc_service" --timeout 30 "${py_debug[@]}"
}

poezio_muc() { # port of poezio's listener
    # poezio and tmux run as nobody when we are root: they must reach their directory.
    [[ "$(id -u)" -eq 0 ]] && chmod o+x "$scratch"
    timeout 90 "$PYTHON" "$here/poezio_muc.py" --tls starttls --port "$port_starttls" \
        --poezio-port "$1" --ca "$scratch/ca.pem" --alice "alice@$domain" \
        --bob "bob@$domain" --service "$muc_service" --workdir "$scratch/poezio" \
        --timeout 75 "${py_debug[@]}"
}

muc_checks() { # port of poezio's listener
    check "slixmpp xep_0045: locked room, subject, reflected ids, nick change, private messages, history with delays" \
        slixmpp_muc room
    check "slixmpp xep_0045: not-acceptable and conflict; the room sees a replaced session and a cut connection leave" \
        slixmpp_muc departure
    check "poezio (tmux): history on joining (from the archive, and as discussion history), a message each way with slixmpp, /nick, /quit" \
        poezio_muc "$1"
}
