# The servers of the federation checks: start and stop xmppd (a.test), Prosody (b.test) and
# ejabberd (c.test), each from a fresh configuration and data directory of its own, on its own
# loopback address and the standard ports. Sourced by interop/federation.sh, whose globals
# (FED_PID, FED_PASSWORD, fed_dir, fed_ejabberd_ctl, …) and helpers (fed_trust, fed_wait,
# fed_ports_open, …) these functions use; see there for the whole picture.

# --- xmppd (a.test) ---------------------------------------------------------------------------
fed_start_xmppd() { # variant dir
    local variant="$1" d="$2" domain=a.test addr=127.0.0.11 secure_auth=false
    [[ "$variant" == cert ]] && secure_auth=true
    mkdir -p "$d"
    cp "$fed_dir/certs/$domain.crt" "$fed_dir/certs/$domain.key" "$d/"
    cp "$(fed_trust "$variant")" "$d/ca.pem"
    cat >"$d/xmppd.toml" <<TOML
[general]
data_dir = "data"

[[host]]
name = "$domain"
cert = "$domain.crt"
key = "$domain.key"

[[listen]]
kind = "c2s"
address = "$addr"
port = 5222

[[listen]]
kind = "s2s"
address = "$addr"
port = 5269

[s2s]
require_tls = true
secure_auth = $secure_auth
ca_file = ["ca.pem"]
TOML
    FED_PASSWORD[xmppd]="$(fed_new_password alice)"
    printf '%s\n' "${FED_PASSWORD[xmppd]}" |
        "$xmppd" --config "$d/xmppd.toml" adduser "alice@$domain" >"$d/adduser.log" 2>&1 || {
        echo "xmppd adduser failed:"
        cat "$d/adduser.log"
        return 1
    }
    if fed_debug; then
        RUST_LOG="${RUST_LOG:-debug}" "$xmppd" --config "$d/xmppd.toml" serve >"$d/xmppd.log" 2>&1 </dev/null &
    else
        "$xmppd" --config "$d/xmppd.toml" serve >"$d/xmppd.log" 2>&1 </dev/null &
    fi
    FED_PID[xmppd]=$!
    helper_pids+=("${FED_PID[xmppd]}")
    if ! fed_wait 20 "${FED_PID[xmppd]}" fed_ports_open "$addr"; then
        echo "xmppd did not listen on $addr:5222 and :5269 within 20 s"
        tail -n 30 "$d/xmppd.log"
        return 1
    fi
    echo "xmppd is up for $domain on $addr (pid ${FED_PID[xmppd]})"
}

fed_stop_xmppd() {
    [[ -n "${FED_PID[xmppd]:-}" ]] || return 0
    stop_pid "${FED_PID[xmppd]}" xmppd
    FED_PID[xmppd]=""
}

# --- Prosody (b.test) -------------------------------------------------------------------------
fed_start_prosody() { # variant dir
    local variant="$1" d="$2" domain=b.test addr=127.0.0.12
    local secure_auth=false modules='"roster"; "saslauth"; "tls"; "disco"; "ping";' disabled=""
    if [[ "$variant" == cert ]]; then
        secure_auth=true
        disabled='"dialback";'
    else
        modules+=' "dialback";'
    fi
    # Every s2s stanza and nonza (features, SASL, dialback) in the log, both ways.
    fed_debug && modules+=' "stanza_debug";'
    mkdir -p "$d/data" "$d/certs"
    cp "$fed_dir/certs/$domain.crt" "$fed_dir/certs/$domain.key" "$d/"
    cp "$(fed_trust "$variant")" "$d/ca.pem"
    # Runs as root (run_as_root): the files stay private to this run. lua-unbound reads
    # /etc/hosts only when told (hoststxt); the Lua fallback resolver never does.
    cat >"$d/prosody.cfg.lua" <<LUA
run_as_root = true
pidfile = "$d/prosody.pid"
data_path = "$d/data"
log = { { levels = { min = "debug" }, to = "file", filename = "$d/prosody.log" } }
network_backend = "epoll"
interfaces = { "$addr" }
c2s_ports = { 5222 }
c2s_direct_tls_ports = { }
s2s_ports = { 5269 }
s2s_direct_tls_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }
unbound = { hoststxt = true }
c2s_require_encryption = true
s2s_require_encryption = true
s2s_secure_auth = $secure_auth
s2s_timeout = 20
authentication = "internal_hashed"
storage = "internal"
certificates = "$d/certs"
ssl = { certificate = "$d/$domain.crt", key = "$d/$domain.key", cafile = "$d/ca.pem" }
modules_enabled = { $modules }
modules_disabled = { $disabled }
VirtualHost "$domain"
$fed_prosody_extra
LUA
    FED_PASSWORD[prosody]="$(fed_new_password bob)"
    prosodyctl --config "$d/prosody.cfg.lua" register bob "$domain" "${FED_PASSWORD[prosody]}" \
        >"$d/register.log" 2>&1 || {
        echo "prosodyctl register failed:"
        cat "$d/register.log"
        return 1
    }
    prosody --config "$d/prosody.cfg.lua" -F >"$d/stdout.log" 2>&1 </dev/null &
    FED_PID[prosody]=$!
    helper_pids+=("${FED_PID[prosody]}")
    if ! fed_wait 20 "${FED_PID[prosody]}" fed_ports_open "$addr"; then
        echo "Prosody did not listen on $addr:5222 and :5269 within 20 s"
        tail -n 30 "$d/stdout.log" "$d/prosody.log"
        return 1
    fi
    echo "Prosody is up for $domain on $addr (pid ${FED_PID[prosody]})"
}

fed_stop_prosody() {
    [[ -n "${FED_PID[prosody]:-}" ]] || return 0
    stop_pid "${FED_PID[prosody]}" prosody
    FED_PID[prosody]=""
}

# --- ejabberd (c.test) ------------------------------------------------------------------------
fed_ejabberd_status() { timeout 15 "${fed_ejabberd_ctl[@]}" status >/dev/null 2>&1; }

fed_start_ejabberd() { # variant dir
    local variant="$1" d="$2" domain=c.test addr=127.0.0.13 dialback="" loglevel=info
    local node
    [[ "$variant" == dialback ]] && dialback="  mod_s2s_dialback: {}"
    fed_debug && loglevel=debug
    node="fedc$$@localhost"
    cookie="fed$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
    mkdir -p "$d/logs" "$d/spool"
    cat "$fed_dir/certs/$domain.crt" "$fed_dir/certs/$domain.key" >"$d/$domain.pem"
    cp "$(fed_trust "$variant")" "$d/ca.pem"
    ejabberd_node_files "$d" "$node"
    # s2s_use_starttls: required makes TLS mandatory both ways; s2s_cafile is the trust anchor
    # for the peer's certificate in both directions. Without mod_s2s_dialback, the outgoing
    # side verifies the peer's certificate (its s2s_out_tls_verify hook is gone) and only
    # SASL EXTERNAL remains; with it, ejabberd skips that verification on outgoing streams and
    # falls back to dialback when EXTERNAL fails or is not offered.
    cat >"$d/ejabberd.yml" <<YML
hosts: [$domain]
loglevel: $loglevel
log_rotate_count: 0
certfiles: ["$d/$domain.pem"]
ca_file: "$d/ca.pem"
define_macro: {}
listen:
  - port: 5222
    ip: "$addr"
    module: ejabberd_c2s
    starttls_required: true
  - port: 5269
    ip: "$addr"
    module: ejabberd_s2s_in
s2s_use_starttls: required
s2s_cafile: "$d/ca.pem"
s2s_dns_timeout: 3
s2s_dns_retries: 1
s2s_max_retry_delay: 5
outgoing_s2s_families: [ipv4]
outgoing_s2s_ipv4_address: "$addr"
auth_method: internal
auth_password_format: scram
auth_scram_hash: sha
registration_timeout: infinity
modules:
  mod_roster: {}
  mod_disco: {}
  mod_ping: {}
$dialback
$fed_ejabberd_extra
YML
    chown -R ejabberd: "$d"
    chmod 700 "$d"
    # As the ejabberd user without su (setpriv execs; HOME in the run dir for .erlang.cookie).
    fed_ejabberd_ctl=(setpriv --reuid=ejabberd --regid=ejabberd --init-groups
        env HOME="$d" ejabberdctl --node "$node" --config-dir "$d" --config "$d/ejabberd.yml"
        --ctl-config "$d/ejabberdctl.cfg" --logs "$d/logs" --spool "$d/spool")
    "${fed_ejabberd_ctl[@]}" foreground >"$d/stdout.log" 2>&1 </dev/null &
    FED_PID[ejabberd]=$!
    helper_pids+=("${FED_PID[ejabberd]}")
    if ! fed_wait 40 "${FED_PID[ejabberd]}" fed_ejabberd_status; then
        echo "ejabberd did not report started within 40 s"
        tail -n 30 "$d/stdout.log" "$d/logs/ejabberd.log" "$d/logs/error.log" 2>/dev/null
        return 1
    fi
    # The beam process is the launcher's child; its cleanup may need it (SIGTERM stops it).
    local beam
    beam="$(pgrep -P "${FED_PID[ejabberd]}" | head -n1 || true)"
    [[ -n "$beam" ]] && helper_pids+=("$beam")
    if ! fed_wait 20 "${FED_PID[ejabberd]}" fed_ports_open "$addr"; then
        echo "ejabberd did not listen on $addr:5222 and :5269 within 20 s"
        tail -n 30 "$d/logs/ejabberd.log"
        return 1
    fi
    FED_PASSWORD[ejabberd]="$(fed_new_password carol)"
    timeout 30 "${fed_ejabberd_ctl[@]}" register carol "$domain" "${FED_PASSWORD[ejabberd]}" \
        >"$d/register.log" 2>&1 || {
        echo "ejabberdctl register failed:"
        cat "$d/register.log"
        return 1
    }
    echo "ejabberd is up for $domain on $addr (node $node, launcher pid ${FED_PID[ejabberd]}," \
        "beam pid ${beam:-?})"
}

fed_stop_ejabberd() {
    local pid="${FED_PID[ejabberd]:-}" beam i
    [[ -n "$pid" ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        beam="$(pgrep -P "$pid" | head -n1 || true)"
        timeout 20 "${fed_ejabberd_ctl[@]}" stop >/dev/null 2>&1 || true
        for ((i = 0; i < 100; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null && [[ -n "$beam" ]]; then
            fed_say "ejabberd did not stop within 20 s of ejabberdctl stop; signalling its beam ($beam)"
            stop_pid "$beam" "ejabberd beam"
        fi
    fi
    stop_pid "$pid" ejabberd
    FED_PID[ejabberd]=""
}
