# shellcheck shell=bash
# The Prosody and ejabberd passes of bench/compare, which sources this file: each starts the
# peer from a private configuration and data directory on loopback, creates the accounts and
# runs the generator through bench/compare's helpers (gen, run_scenarios, wait_port,
# stop_server, $RUN, $BIN and the scenario settings).

# --- Prosody --------------------------------------------------------------------------------------
start_prosody() { prosody_pass prosody 25222 ""; }

# WebSocket: mod_websocket on an https port, the scenarios over wss://.
start_prosody-ws() {
    [[ -n "$ws_scenarios" ]] || return 0
    local PASS_SCENARIOS="$ws_scenarios" WS_PORT=24443
    prosody_pass prosody-ws 24222 ""
}

# Group chat with room archiving on (mod_muc_mam on the MUC component), the muc scenario only.
start_prosody-muc-mam() {
    [[ -n "$muc_only" ]] || return 0
    local PASS_SCENARIOS="$muc_only" MUC_ARCHIVE=on USERS="$MUC_USERS"
    prosody_pass prosody-muc-mam 23222 '"muc_mam"'
}

# prosody_pass LABEL PORT COMPONENT_MODULES: a private Prosody from a configuration under
# $RUN/LABEL whose MUC component also loads COMPONENT_MODULES, its accounts by in-band
# registration, every scenario.
prosody_pass() {
    local label="$1" port="$2" component_modules="$3" d="$RUN/$1" prosody_ws="" https_ports=""
    if [[ -n "${WS_PORT:-}" ]]; then prosody_ws=', "websocket"'; https_ports="$WS_PORT"; fi
    mkdir -p "$d/data"
    cat > "$d/prosody.cfg.lua" <<LUA
run_as_root = true
pidfile = "$d/prosody.pid"
data_path = "$d/data"
log = { warn = "$d/prosody.log" }
network_backend = "epoll"
interfaces = { "127.0.0.1" }
c2s_ports = { $port }
c2s_direct_tls_ports = { }
s2s_ports = { }
c2s_require_encryption = true
allow_registration = true
registration_whitelist = { "127.0.0.1" }
min_seconds_between_registrations = 0
authentication = "internal_hashed"
storage = "internal"
certificates = "$d/certs"
ssl = { certificate = "$RUN/localhost.crt", key = "$RUN/localhost.key" }
modules_enabled = { "roster", "saslauth", "tls", "disco", "register", "offline", "ping", "pep"$prosody_ws }
modules_disabled = { "s2s", "mam", "limits" }
http_ports = { }
https_ports = { $https_ports }
http_interfaces = { "127.0.0.1" }
https_interfaces = { "127.0.0.1" }
https_ssl = { certificate = "$RUN/localhost.crt", key = "$RUN/localhost.key" }
VirtualHost "localhost"
-- Group chat. 0.12 has no occupant limit and lets any user create a room; a new room is
-- locked until its owner configures it. With mod_muc_mam, rooms archive unless their owner
-- says otherwise, and the archive limit is raised from 10,000 messages per room, past which
-- Prosody drops the oldest, so that each server archives every message.
Component "conference.localhost" "muc"
    modules_enabled = { $component_modules }
    muc_log_by_default = true
    storage_archive_item_limit = 10000000
LUA
    mkdir -p "$d/certs"
    taskset -c 0 prosody --config "$d/prosody.cfg.lua" -F > "$d/stdout" 2>&1 &
    SERVER_PID=$!
    STARTED_PIDS+=("$SERVER_PID")
    wait_port "$port" "$d/stdout"
    gen register --addr "127.0.0.1:$port" --ca "$RUN/ca.pem" --users "$USERS" --password "$PASS" --concurrency 8
    if [[ -n "${WS_PORT:-}" ]]; then
        wait_port "$WS_PORT" "$d/stdout"
        run_scenarios "$label" "$WS_PORT" websocket --ws-path "$WS_PATH"
    else
        run_scenarios "$label" "$port" xmpp
    fi
    stop_server "$SERVER_PID"
}

# --- ejabberd -------------------------------------------------------------------------------------
start_ejabberd() { ejabberd_pass ejabberd 26222 "" ""; }

# WebSocket: ejabberd_http_ws on an ejabberd_http listener with TLS, the scenarios over wss://.
start_ejabberd-ws() {
    [[ -n "$ws_scenarios" ]] || return 0
    local PASS_SCENARIOS="$ws_scenarios" WS_PORT=26443
    ejabberd_pass ejabberd-ws 26223 "" ""
}

# Stream management and message archiving (every message), the same clients as xmppd-sm-mam.
# The archive is in EJABBERD_MAM_DB: `mnesia` (default; ejabberd's own database) or `sql`
# (SQLite, ejabberd's schema loaded into a new database file; ejabberd's SQLite connection
# commits every insert with a rollback journal and synchronous=FULL: ~80 rows/s here).
start_ejabberd-sm-mam() {
    local db="${EJABBERD_MAM_DB:-mnesia}" top=""
    if [[ "$db" == sql ]]; then
        top="$(printf 'sql_type: sqlite\nsql_database: "%s"' "$RUN/ejabberd-sm-mam/ejabberd.db")"
    fi
    ejabberd_pass ejabberd-sm-mam 28222 "$top" "$(cat <<YML
  mod_stream_mgmt:
    resume_timeout: 300
  mod_mam:
    db_type: $db
    default: always
YML
)" --sm --sm-request-every "$SM_REQUEST_EVERY"
}

# Group chat with room archiving on: mod_mam (db_type as for ejabberd-sm-mam) and rooms that
# archive by default; the muc scenario only.
start_ejabberd-muc-mam() {
    [[ -n "$muc_only" ]] || return 0
    local db="${EJABBERD_MAM_DB:-mnesia}" top=""
    if [[ "$db" == sql ]]; then
        top="$(printf 'sql_type: sqlite\nsql_database: "%s"' "$RUN/ejabberd-muc-mam/ejabberd.db")"
    fi
    local PASS_SCENARIOS="$muc_only" MUC_ARCHIVE=on USERS="$MUC_USERS" EJABBERD_ROOM_MAM=true
    ejabberd_pass ejabberd-muc-mam 29222 "$top" "$(printf '  mod_mam:\n    db_type: %s' "$db")"
}

# ejabberd_pass LABEL PORT EXTRA_TOP EXTRA_MODULES [GENERATOR OPTIONS...]: a private node from
# a configuration under $RUN/LABEL with EXTRA_TOP (top-level YAML lines) and EXTRA_MODULES (YAML
# lines under modules:), its accounts by in-band registration, every scenario. Its rooms
# archive by default when EJABBERD_ROOM_MAM is true (with mod_mam among EXTRA_MODULES).
ejabberd_pass() {
    local label="$1" port="$2" top="$3" extra="$4" d="$RUN/$1" node="xmppdbench${1//-/}$$@localhost"
    # ejabberd's name for the archiving field of the room configuration form. Without mod_mam
    # ejabberd refuses the field (internal-server-error: "set_room_option hook failed for
    # option 'mam'"), so there the owner submits an empty form: no archive without mod_mam.
    local MUC_FIELD=""
    if [[ "${EJABBERD_ROOM_MAM:-false}" == true ]]; then MUC_FIELD='muc#roomconfig_mam'; fi
    shift 4
    local ws_listener=""
    if [[ -n "${WS_PORT:-}" ]]; then
        ws_listener="$(cat <<YML
  - port: $WS_PORT
    ip: "127.0.0.1"
    module: ejabberd_http
    tls: true
    backlog: 1024
    request_handlers:
      $WS_PATH: ejabberd_http_ws
YML
)"
    fi
    mkdir -p "$d/logs" "$d/spool"
    cat "$RUN/localhost.crt" "$RUN/localhost.key" > "$d/localhost.pem"
    echo '{file, hosts, "/etc/hosts"}. {lookup, [file, native]}.' > "$d/inetrc"
    cat > "$d/ejabberdctl.cfg" <<CFG
ERLANG_NODE=$node
INET_DIST_INTERFACE=127.0.0.1
ERL_MAX_PORTS=262144
ERL_PROCESSES=1000000
ERL_OPTIONS="-setcookie xmppdbench$$ -kernel inetrc \\"$d/inetrc\\""
CFG
    cat > "$d/ejabberd.yml" <<YML
hosts: [localhost]
loglevel: warning
certfiles: ["$d/localhost.pem"]
define_macro: {}
listen:
  - port: $port
    ip: "127.0.0.1"
    module: ejabberd_c2s
    starttls_required: true
    backlog: 1024
    max_stanza_size: 262144
    access: c2s
$ws_listener
auth_method: internal
$top
auth_password_format: scram
auth_scram_hash: sha
registration_timeout: infinity
acl:
  loopback:
    ip: [127.0.0.0/8]
access_rules:
  c2s:
    allow: all
  register:
    allow: all
max_fsm_queue: 100000
modules:
  mod_roster: {}
  mod_offline: {}
  mod_disco: {}
  mod_ping: {}
  mod_caps: {}
  mod_pubsub:
    plugins:
      - flat
      - pep
  mod_register:
    ip_access: all
    access: register
  # Group chat: any local user may create a room (the default access_create: all); a room
  # holds 200 occupants unless max_users says otherwise, both for the service and as the
  # rooms' default.
  mod_muc:
    access_create: all
    max_users: $MUC_USERS
    default_room_options:
      max_users: $MUC_USERS
      mam: ${EJABBERD_ROOM_MAM:-false}
$extra
YML
    if [[ "$top" == *"sql_type: sqlite"* ]]; then
        # ejabberd's own SQLite schema for its version (the default, not the multi-host one).
        sqlite3 "$d/ejabberd.db" < "$(dpkg -L ejabberd | grep -m1 '/sql/lite.sql$')"
    fi
    chown -R ejabberd "$d"
    # As the ejabberd user without su (whose PAM session would reset the open-file limit).
    local ctl=(setpriv --reuid=ejabberd --regid=ejabberd --init-groups env HOME="$d"
        ejabberdctl --node "$node" --config-dir "$d" --config "$d/ejabberd.yml"
        --ctl-config "$d/ejabberdctl.cfg" --logs "$d/logs" --spool "$d/spool")
    local epmd_before epmd_pid=""
    epmd_before="$(pgrep -x epmd || true)"
    taskset -c 0 "${ctl[@]}" start
    "${ctl[@]}" started
    SERVER_PID="$(pgrep -o -u ejabberd -f "beam.*$node" || true)"
    if [[ -z "$epmd_before" ]]; then epmd_pid="$(pgrep -o -x epmd || true)"; fi
    [[ -z "${epmd_pid:-}" ]] || STARTED_PIDS+=("$epmd_pid")
    [[ -n "$SERVER_PID" ]] || { echo "ejabberd's beam process not found" >&2; return 1; }
    STARTED_PIDS+=("$SERVER_PID")
    wait_port "$port" "$d/logs/ejabberd.log"
    gen register --addr "127.0.0.1:$port" --ca "$RUN/ca.pem" --users "$USERS" --password "$PASS" --concurrency 8
    if [[ -n "${WS_PORT:-}" ]]; then
        wait_port "$WS_PORT" "$d/logs/ejabberd.log"
        run_scenarios "$label" "$WS_PORT" websocket --ws-path "$WS_PATH" "$@"
    else
        run_scenarios "$label" "$port" xmpp "$@"
    fi
    "${ctl[@]}" stop > /dev/null 2>&1 || true
    stop_server "$SERVER_PID"
}

