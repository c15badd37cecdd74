#!/usr/bin/env bash
# Federation (server-to-server) interop checks: xmppd against Prosody and ejabberd over s2s.
#
#   XMPPD=/path/to/xmppd interop/federation.sh          # standalone
#   FED_PAIRS=prosody-ejabberd interop/federation.sh    # the harness alone, without xmppd
#   source interop/federation.sh                        # from interop/run: see below
#
# Three servers, each on its own loopback address and the standard ports (c2s 5222 with
# STARTTLS, s2s 5269), one user on each:
#   a.test  127.0.0.11  xmppd     alice@a.test
#   b.test  127.0.0.12  Prosody   bob@b.test
#   c.test  127.0.0.13  ejabberd  carol@c.test
# Lines for the three names and for conference.a.test, conference.b.test and conference.c.test
# (MUC services, on their servers' addresses) are added to /etc/hosts if missing (and left there). A private
# test CA ("fed CA") signs one certificate per domain (SAN DNS:<domain> and
# DNS:conference.<domain>, EKU serverAuth and clientAuth, EC P-256); an unrelated CA, which signs none of them, is what the servers trust
# in the dialback variant. The clients (slixmpp) always trust the fed CA.
#
# For each pair (FED_PAIRS, default "xmppd-prosody xmppd-ejabberd"; "prosody-ejabberd" runs
# the same checks between the two peers, to validate the harness without xmppd) and each
# variant (FED_VARIANTS, default "cert dialback"), both servers start from fresh
# configurations and data, then:
#   cert      both trust the fed CA; the peers have dialback off and insist on valid
#             certificates (Prosody: modules_disabled = { "dialback" }, s2s_secure_auth;
#             ejabberd: no mod_s2s_dialback, which also makes its outgoing side verify the
#             peer's certificate), and xmppd has secure_auth = true: the servers must
#             authenticate each other with SASL EXTERNAL (XEP-0178), both ways;
#   dialback  both trust only the unrelated CA, so each finds the other's certificate
#             untrusted; TLS is still required, dialback (XEP-0220) on, secure auth off:
#             the servers must authenticate each other with dialback.
# and the checks (slixmpp_federation.py, each user logged in to its own server):
#   - a message from the first server's user arrives at the second's with its exact body,
#     and the reply arrives back;
#   - presence subscription both ways, each sees the other available, and a status change
#     of each reaches the other;
#   - each user pings (XEP-0199) the other server's domain and gets a result;
#   - the peers' logs show the expected authentication (EXTERNAL or dialback) both ways.
# With the pairs xmppd-prosody and xmppd-ejabberd, interop/federation_muc.sh then puts xmppd's
# user in rooms on Prosody's MUC component (conference.b.test) and on ejabberd's mod_muc
# (conference.c.test), and the peers' users in rooms of xmppd's MUC service, conference.a.test.
# Each check prints PASS or FAIL; the exit status is non-zero if any failed. Every wait is
# bounded; only the processes started here are stopped, by their PID (ejabberd through
# `ejabberdctl stop` on its private node, then by PID if need be).
#
# Needs root (/etc/hosts; Prosody and ejabberd run as root and as the ejabberd user), openssl,
# prosody with lua-unbound (Prosody's built-in resolver ignores /etc/hosts; with lua-unbound
# it is told to read it), ejabberd, setpriv, and python3 with slixmpp (PYTHON names another
# interpreter, e.g. a venv's). The system services of Prosody and ejabberd, /etc/prosody and
# /etc/ejabberd are never used. Environment:
#   XMPPD            the xmppd binary (standalone; default $CARGO_TARGET_DIR/release/xmppd,
#                    CARGO_TARGET_DIR defaulting to <repo>/target); not built here
#   PYTHON           interpreter with slixmpp (default: python3)
#   FED_PAIRS        pairs to check (see above)
#   FED_VARIANTS     variants to check (see above)
#   FED_KEEP=1       keep the scratch directory (configurations, certificates, logs)
#   FED_DEBUG=1      slixmpp stream logs, RUST_LOG=debug for xmppd, raw s2s XML in the
#                    Prosody log (mod_stanza_debug) and debug level for ejabberd
#   (INTEROP_KEEP / INTEROP_DEBUG of interop/run count as FED_KEEP / FED_DEBUG)
#
# Sourced (by interop/run): defines federation_prerequisites and federation_checks, which
# use from the sourcing script: scratch, PYTHON, xmppd (the binary), check, stop_pid, say,
# die, helper_pids (the servers' PIDs are added, so its cleanup stops them on an early exit).

fed_here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=interop/ejabberd_node.sh
source "$fed_here/ejabberd_node.sh"
# shellcheck source=interop/federation_servers.sh
source "$fed_here/federation_servers.sh"
# shellcheck source=interop/federation_muc.sh
source "$fed_here/federation_muc.sh"

declare -gA FED_DOMAIN=([xmppd]=a.test [prosody]=b.test [ejabberd]=c.test)
declare -gA FED_USER=([xmppd]=alice [prosody]=bob [ejabberd]=carol)
declare -gA FED_ADDR=([a.test]=127.0.0.11 [b.test]=127.0.0.12 [c.test]=127.0.0.13
    [conference.a.test]=127.0.0.11 [conference.b.test]=127.0.0.12 [conference.c.test]=127.0.0.13)
declare -gA FED_PID=()        # server kind -> PID of the running server (or its launcher)
declare -gA FED_PASSWORD=()   # server kind -> password of its user in this run
declare -g fed_dir=""         # <scratch>/federation
declare -ga fed_ejabberd_ctl=()  # the ejabberdctl command line for the running node
declare -g fed_prosody_extra=""  # appended to Prosody's configuration (Lua), e.g. a MUC component
declare -g fed_ejabberd_extra="" # appended to ejabberd's modules (YAML), e.g. mod_muc

fed_say() { echo "federation: $*"; }

fed_debug() { [[ -n "${FED_DEBUG:-${INTEROP_DEBUG:-}}" ]]; }

federation_pairs() { echo "${FED_PAIRS:-xmppd-prosody xmppd-ejabberd}"; }

federation_variants() { echo "${FED_VARIANTS:-cert dialback}"; }

fed_pairs_use_xmppd() { [[ " $(federation_pairs) " == *xmppd* ]]; }

federation_prerequisites() {
    local pair variant
    [[ "$(id -u)" -eq 0 ]] || die "federation: needs root (it edits /etc/hosts and runs ejabberd as its user)"
    for pair in $(federation_pairs); do
        case "$pair" in
            xmppd-prosody | xmppd-ejabberd | prosody-ejabberd) ;;
            *) die "federation: unknown pair '$pair' (xmppd-prosody, xmppd-ejabberd, prosody-ejabberd)" ;;
        esac
    done
    for variant in $(federation_variants); do
        [[ "$variant" == cert || "$variant" == dialback ]] ||
            die "federation: unknown variant '$variant' (cert, dialback)"
    done
    command -v openssl >/dev/null || die "openssl is missing (apt-get install openssl)"
    command -v setpriv >/dev/null || die "setpriv is missing (apt-get install util-linux)"
    if [[ " $(federation_pairs) " == *prosody* ]]; then
        if ! command -v prosody >/dev/null || ! command -v prosodyctl >/dev/null; then
            die "prosody is missing (apt-get install prosody)"
        fi
        [[ "$(dpkg-query -W -f='${Status}' lua-unbound 2>/dev/null)" == *"ok installed"* ]] ||
            die "lua-unbound is missing (apt-get install lua-unbound): without it Prosody cannot" \
                "resolve the test domains from /etc/hosts"
    fi
    if [[ " $(federation_pairs) " == *ejabberd* ]]; then
        command -v ejabberdctl >/dev/null || die "ejabberd is missing (apt-get install ejabberd)"
        id ejabberd >/dev/null 2>&1 || die "there is no ejabberd user (apt-get install ejabberd)"
    fi
    "$PYTHON" -c 'import slixmpp' 2>/dev/null ||
        die "$PYTHON cannot import slixmpp (pip install -r interop/requirements.txt, or set PYTHON)"
    # The xmppd binary is checked by federation_checks (interop/run builds it after this).
}

fed_versions() {
    local v=()
    fed_pairs_use_xmppd && v+=("xmppd $("$xmppd" --version 2>/dev/null | head -n1 || echo '?')")
    [[ " $(federation_pairs) " == *prosody* ]] &&
        v+=("prosody $(dpkg-query -W -f='${Version}' prosody 2>/dev/null || echo '?')")
    [[ " $(federation_pairs) " == *ejabberd* ]] &&
        v+=("ejabberd $(dpkg-query -W -f='${Version}' ejabberd 2>/dev/null || echo '?')")
    local joined
    printf -v joined '%s; ' "${v[@]}"
    echo "${joined%; }"
}

# --- /etc/hosts -------------------------------------------------------------------------------
# Adds "ADDRESS DOMAIN" for each test domain unless /etc/hosts already maps the domain there;
# refuses to go on if it maps it elsewhere. Appends in place (the file may be a bind mount).
fed_hosts() {
    local domain addr current
    for domain in a.test b.test c.test conference.a.test conference.b.test conference.c.test; do
        addr="${FED_ADDR[$domain]}"
        current="$(awk -v d="$domain" '$1 !~ /^#/ { for (i = 2; i <= NF; i++) if ($i == d) { print $1; exit } }' /etc/hosts)"
        if [[ -z "$current" ]]; then
            printf '%s\t%s\n' "$addr" "$domain" >>/etc/hosts
            fed_say "added '$addr $domain' to /etc/hosts"
        elif [[ "$current" != "$addr" ]]; then
            die "federation: /etc/hosts maps $domain to $current, not $addr"
        fi
    done
}

# --- certificates -----------------------------------------------------------------------------
# fed_ca NAME SUBJECT: a self-signed CA, NAME.key and NAME.pem, in the current directory.
fed_ca() {
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null
    openssl req -x509 -new -key "$1.key" -sha256 -days 2 -subj "/CN=$2" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$1.pem"
    chmod 600 "$1.key"
}

# fed_certs: in $fed_dir/certs, the fed CA (ca.pem), the unrelated CA (other-ca.pem) and
# DOMAIN.key / DOMAIN.crt for the three domains, signed by the fed CA.
fed_certs() {
    local domain
    mkdir -p "$fed_dir/certs"
    (
        cd "$fed_dir/certs"
        fed_ca ca "xmppd federation test CA"
        fed_ca other-ca "xmppd federation unrelated CA"
        for domain in a.test b.test c.test; do
            openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$domain.key" 2>/dev/null
            openssl req -new -key "$domain.key" -subj "/CN=$domain" -out "$domain.csr"
            cat >"$domain.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=DNS:$domain,DNS:conference.$domain
EXT
            openssl x509 -req -in "$domain.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
                -sha256 -days 2 -extfile "$domain.ext" -out "$domain.crt" 2>/dev/null
            openssl verify -CAfile ca.pem -purpose sslserver "$domain.crt" >/dev/null
            openssl verify -CAfile ca.pem -purpose sslclient "$domain.crt" >/dev/null
            chmod 600 "$domain.key"
        done
    )
}

# fed_trust VARIANT: the CA file a server trusts (beside the system roots) in that variant.
fed_trust() {
    if [[ "$1" == cert ]]; then echo "$fed_dir/certs/ca.pem"; else echo "$fed_dir/certs/other-ca.pem"; fi
}

fed_new_password() { echo "fed-$1-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"; }

# fed_wait SECONDS PID COMMAND...: polls COMMAND every 0.2 s while PID lives.
fed_wait() {
    local limit=$(($1 * 5)) pid="$2" i
    shift 2
    for ((i = 0; i < limit; i++)); do
        "$@" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}

fed_port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

fed_ports_open() { fed_port_open "$1" 5222 && fed_port_open "$1" 5269; }

# fed_port_free ADDRESS PORT: nothing listens there (a leftover server would spoil the run).
fed_port_free() { ! fed_port_open "$1" "$2"; }

# --- logs: which authentication the peers saw -------------------------------------------------
fed_log_of() { # kind dir
    case "$1" in
        xmppd) echo "$2/xmppd.log" ;;
        prosody) echo "$2/prosody.log" ;;
        ejabberd) echo "$2/logs/ejabberd.log" ;;
    esac
}

# fed_prosody_session_logged LOG COMPLETE_LINE LINE: a Prosody session (s2sin… or s2sout…)
# that logged COMPLETE_LINE (info) also logged LINE (an extended regex).
fed_prosody_session_logged() {
    local log="$1" complete="$2" line="$3" sid
    while read -r sid; do
        grep -Eq "^.{15} ${sid}[[:space:]]+debug[[:space:]]+${line}" "$log" && return 0
    done < <(grep -F "$complete" "$log" | awk '$5 == "info" { print $4 }')
    return 1
}

# fed_peer_saw KIND LOG MECH REMOTE_DOMAIN DIRECTION: whether a peer's log shows an s2s
# authentication with MECH (EXTERNAL or dialback) of REMOTE_DOMAIN (in) or to it (out).
fed_peer_saw() {
    local kind="$1" log="$2" mech="$3" remote="$4" dir="$5" own
    own="${FED_DOMAIN[$kind]}"
    case "$kind:$mech:$dir" in
        ejabberd:EXTERNAL:in) grep -q "Accepted inbound s2s EXTERNAL authentication $remote -> $own" "$log" ;;
        ejabberd:EXTERNAL:out) grep -q "Accepted outbound s2s EXTERNAL authentication $own -> $remote" "$log" ;;
        ejabberd:dialback:in) grep -q "Accepted inbound s2s dialback authentication $remote -> $own" "$log" ;;
        ejabberd:dialback:out) grep -q "Accepted outbound s2s dialback authentication $own -> $remote" "$log" ;;
        prosody:EXTERNAL:in) grep -q "Accepting SASL EXTERNAL identity from $remote" "$log" ;;
        prosody:EXTERNAL:out) grep -q "SASL EXTERNAL with $remote succeeded" "$log" ;;
        prosody:dialback:in) fed_prosody_session_logged "$log" "Incoming s2s connection $remote->$own complete" \
            "asking $remote if key [0-9a-f]+ belongs to them" ;;
        prosody:dialback:out) fed_prosody_session_logged "$log" "Outgoing s2s connection $own->$remote complete" \
            "sent dialback key on outgoing s2s stream" ;;
        *) return 1 ;;
    esac
}

# The check: each peer (not xmppd, whose log format is its own) logged MECH both ways.
fed_auth_check() { # first second variant dir
    local first="$1" second="$2" variant="$3" d="$4" mech=dialback kind other status=0 dir
    [[ "$variant" == cert ]] && mech=EXTERNAL
    for kind in "$first" "$second"; do
        [[ "$kind" == xmppd ]] && continue
        other="$first"
        [[ "$kind" == "$first" ]] && other="$second"
        for dir in in out; do
            if fed_peer_saw "$kind" "$(fed_log_of "$kind" "$d/$kind")" "$mech" "${FED_DOMAIN[$other]}" "$dir"; then
                echo "$kind: $mech authentication $dir ${FED_DOMAIN[$other]} logged"
            else
                echo "$kind: no $mech authentication $dir ${FED_DOMAIN[$other]} in its log"
                status=1
            fi
        done
    done
    return "$status"
}

# --- one pair, one variant --------------------------------------------------------------------
fed_slixmpp() { # first second scenario
    local first="$1" second="$2" scenario="$3" py_dbg=()
    fed_debug && py_dbg=(--debug)
    FED_LOCAL_PASSWORD="${FED_PASSWORD[$first]}" FED_REMOTE_PASSWORD="${FED_PASSWORD[$second]}" \
        timeout 45 "$PYTHON" "$fed_here/slixmpp_federation.py" --scenario "$scenario" \
        --ca "$fed_dir/certs/ca.pem" --tls starttls --port 5222 \
        --local "${FED_USER[$first]}@${FED_DOMAIN[$first]}" --local-host "${FED_ADDR[${FED_DOMAIN[$first]}]}" \
        --remote "${FED_USER[$second]}@${FED_DOMAIN[$second]}" --remote-host "${FED_ADDR[${FED_DOMAIN[$second]}]}" \
        --timeout 30 "${py_dbg[@]}"
}

fed_start_pair() { # first second variant dir
    local kind
    for kind in "$1" "$2"; do
        "fed_start_$kind" "$3" "$4/$kind" || return 1
    done
}

# After a failure: the s2s-related and warning lines of the peers' logs, all of xmppd's tail.
fed_show_logs() { # first second dir
    local kind log
    for kind in "$1" "$2"; do
        log="$(fed_log_of "$kind" "$3/$kind")"
        [[ -f "$log" ]] || continue
        case "$kind" in
            prosody)
                fed_say "s2s, warning and error lines of the Prosody log ($log), last 40:"
                grep -E $'\t(warn|error)\t|^.{15} s2s' "$log" | grep -v 'debug.*\(SEND\|RECV\): <\(message\|presence\|iq\)' |
                    tail -n 40 | sed 's/^/    /' || true
                ;;
            ejabberd)
                fed_say "s2s, warning and error lines of the ejabberd log ($log), last 40:"
                grep -E '\[(warning|error)\]|s2s (authentication|connection)|Retrying|dialback' "$log" |
                    tail -n 40 | sed 's/^/    /' || true
                ;;
            *)
                fed_say "last lines of the $kind log ($log):"
                tail -n 60 "$log" | sed 's/^/    /'
                ;;
        esac
    done
}

fed_run_pair() { # pair variant
    local pair="$1" variant="$2" first second d label before u1 u2
    first="${pair%-*}"
    second="${pair#*-}"
    u1="${FED_USER[$first]}@${FED_DOMAIN[$first]}"
    u2="${FED_USER[$second]}@${FED_DOMAIN[$second]}"
    d="$fed_dir/$pair-$variant"
    label="$pair/$variant"
    mkdir -p "$d"
    chmod o+x "$d"
    before="$failed"
    fed_say "$label: ${FED_DOMAIN[$first]} ($first) <-> ${FED_DOMAIN[$second]} ($second)," \
        "$( [[ "$variant" == cert ]] && echo "certificates only (SASL EXTERNAL)" || echo "untrusted certificates (dialback)")"
    check "$label: both servers start" fed_start_pair "$first" "$second" "$variant" "$d"
    if [[ "$failed" -eq "$before" ]]; then
        check "$label: $u1 -> $u2 message arrives with its exact body, the reply comes back" \
            fed_slixmpp "$first" "$second" message
        check "$label: $u1 <-> $u2 subscribe both ways, see each other's presence and status changes" \
            fed_slixmpp "$first" "$second" presence
        check "$label: $u1 pings ${FED_DOMAIN[$second]}, $u2 pings ${FED_DOMAIN[$first]} (XEP-0199): results" \
            fed_slixmpp "$first" "$second" ping
        check "$label: the peers' logs show $( [[ "$variant" == cert ]] && echo "SASL EXTERNAL" || echo "dialback") authentication both ways" \
            fed_auth_check "$first" "$second" "$variant" "$d"
    fi
    "fed_stop_$second"
    "fed_stop_$first"
    if [[ "$failed" -ne "$before" ]]; then
        fed_show_logs "$first" "$second" "$d"
    fi
}

# federation_checks: hosts, certificates, then every pair in every variant. Uses check,
# failed, scratch, xmppd, PYTHON, stop_pid, say, die, helper_pids of the caller.
federation_checks() {
    local pair variant addr port
    if fed_pairs_use_xmppd; then
        [[ -x "${xmppd:-}" ]] || die "federation: no xmppd binary at '${xmppd:-}' (set XMPPD;" \
            "FED_PAIRS=prosody-ejabberd checks the harness without xmppd)"
    fi
    fed_dir="$scratch/federation"
    mkdir -p "$fed_dir"
    # ejabberd runs as its own user: it must be able to traverse down to its run directory
    # (search permission only; nothing here becomes readable to others).
    chmod o+x "$scratch" "$fed_dir"
    fed_say "$(fed_versions); scratch $fed_dir"
    fed_hosts
    for addr in 127.0.0.11 127.0.0.12 127.0.0.13; do
        for port in 5222 5269; do
            fed_port_free "$addr" "$port" ||
                die "federation: something already listens on $addr:$port (a leftover server?)"
        done
    done
    fed_certs
    for pair in $(federation_pairs); do
        for variant in $(federation_variants); do
            fed_run_pair "$pair" "$variant"
        done
    done
    for pair in xmppd-prosody xmppd-ejabberd; do
        if [[ " $(federation_pairs) " == *" $pair "* ]]; then
            fed_muc_checks "${pair#xmppd-}"
        fi
    done
}

# --- standalone -------------------------------------------------------------------------------
fed_main() {
    set -euo pipefail
    local root
    root="$(cd "$fed_here/.." && pwd)"
    PYTHON="${PYTHON:-python3}"
    xmppd="${XMPPD:-${CARGO_TARGET_DIR:-$root/target}/release/xmppd}"
    FED_KEEP="${FED_KEEP:-${INTEROP_KEEP:-}}"
    failed=0
    helper_pids=()
    say() { echo "federation: $*"; }
    die() { echo "federation: $*" >&2; exit 2; }
    stop_pid() { # pid, name: SIGTERM, then SIGKILL after a bounded wait
        local pid="$1" name="$2" i
        kill -0 "$pid" 2>/dev/null || return 0
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "$name (pid $pid) did not stop within 10 s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    }
    check() { # name command...: runs the command, prints PASS or FAIL with its output
        local name="$1" out status=0
        shift
        out="$scratch/check-$(echo "$name" | tr -c 'A-Za-z0-9' '-' | cut -c1-100).log"
        "$@" >"$out" 2>&1 || status=$?
        if [[ "$status" -eq 0 ]]; then
            echo "PASS: $name"
            sed 's/^/    /' "$out"
        else
            echo "FAIL: $name (exit $status)"
            tail -n 60 "$out" | sed 's/^/    /'
            failed=$((failed + 1))
        fi
    }
    federation_prerequisites
    scratch="$(mktemp -d "${TMPDIR:-/tmp}/xmppd-federation.XXXXXX")"
    fed_cleanup() {
        local status=$? pid
        set +e
        fed_stop_ejabberd 2>/dev/null
        fed_stop_prosody 2>/dev/null
        fed_stop_xmppd 2>/dev/null
        for pid in "${helper_pids[@]}"; do
            stop_pid "$pid" helper
        done
        if [[ -n "$FED_KEEP" ]]; then
            say "kept $scratch"
        else
            rm -rf "$scratch"
        fi
        exit "$status"
    }
    trap fed_cleanup EXIT
    trap 'exit 130' INT TERM
    local start=$SECONDS
    federation_checks
    if [[ "$failed" -ne 0 ]]; then
        say "$failed check(s) failed ($((SECONDS - start)) s)"
        exit 1
    fi
    say "all checks passed ($((SECONDS - start)) s)"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    fed_main "$@"
fi
