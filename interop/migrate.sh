# shellcheck shell=bash
# Migration from Prosody and ejabberd (XEP-0227). Sourced by interop/run, which provides say,
# check, stop_pid, wait helpers, $scratch, $here, $xmppd, $domain, $PYTHON and the test
# certificate for $domain in $scratch.
#
# Each peer serves $domain from a private directory on a free loopback port. Prosody: two
# accounts made with prosodyctl subscribe to each other with slixmpp (slixmpp_im.py), pamela
# publishes a nick to her PEP and sends peter a chat message, which Prosody's mod_mam
# archives for both (slixmpp_migrated.py --publish-nick --send-body), then prosody-migrator
# writes its XEP-0227 files, PEP nodes with their items and message archives included. ejabberd: two accounts made with ejabberdctl,
# a roster both ways, a vCard, private XML and an offline message (mod_admin_extra), then
# export_piefxis. A fresh xmppd imports both exports, starts, and each account logs in with
# its old password (slixmpp_migrated.py) and finds its roster, the Prosody ones pamela's
# nick in her PEP (peter reading it too, as its access model allows) and the message in both
# archives (XEP-0313) under the ids Prosody gave it, and the ejabberd ones their vCard and
# offline message.
#
# Both peers keep SCRAM-SHA-1 credentials only (their default), so the xmppd that takes them
# over does not offer SCRAM-SHA-256 (README, "Moving from Prosody or ejabberd").

migrate_free_port() {
    "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

migrate_password() { echo "$1-$(od -An -N6 -tx1 /dev/urandom | tr -d ' \n')"; }

# migrate_archive_id FILE: the id of the first archived message of a XEP-0227 file.
migrate_archive_id() {
    grep -o "<result [^>]*>" "$1" | head -n1 | grep -o "id='[^']*'" | cut -d"'" -f2
}

migrate_wait_port() { # pid port seconds
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        kill -0 "$1" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# Prosody: accounts pamela and peter, subscribed both ways, exported to $d/out.
migrate_prosody_export() {
    local d="$scratch/migrate/prosody" port pid
    mkdir -p "$d/data" "$d/out" || return 1
    port="$(migrate_free_port)" || return 1
    cp "$scratch/$domain.crt" "$scratch/$domain.key" "$d/" || return 1
    cat >"$d/prosody.cfg.lua" <<LUA
run_as_root = true
pidfile = "$d/prosody.pid"
data_path = "$d/data"
log = { { levels = { min = "info" }, to = "file", filename = "$d/prosody.log" } }
interfaces = { "127.0.0.1" }
c2s_ports = { $port }
c2s_direct_tls_ports = { }
s2s_ports = { }
component_ports = { }
http_ports = { }
https_ports = { }
c2s_require_encryption = true
authentication = "internal_hashed"
storage = "internal"
certificates = "$d"
ssl = { certificate = "$d/$domain.crt", key = "$d/$domain.key" }
modules_enabled = { "roster"; "saslauth"; "tls"; "disco"; "ping"; "vcard_legacy"; "private"; "pep"; "mam" }
default_archive_policy = true
archive_expires_after = "never"
VirtualHost "$domain"
LUA
    export PAMELA_PASSWORD PETER_PASSWORD
    PAMELA_PASSWORD="$(migrate_password pamela)"
    PETER_PASSWORD="$(migrate_password peter)"
    prosodyctl --config "$d/prosody.cfg.lua" register pamela "$domain" "$PAMELA_PASSWORD" &&
        prosodyctl --config "$d/prosody.cfg.lua" register peter "$domain" "$PETER_PASSWORD" ||
        return 1
    prosody --config "$d/prosody.cfg.lua" -F >"$d/stdout.log" 2>&1 </dev/null &
    pid=$!
    helper_pids+=("$pid")
    if ! migrate_wait_port "$pid" "$port" 20; then
        echo "Prosody did not listen on 127.0.0.1:$port"
        tail -n 20 "$d/prosody.log" "$d/stdout.log"
        return 1
    fi
    ALICE_PASSWORD="$PAMELA_PASSWORD" BOB_PASSWORD="$PETER_PASSWORD" timeout 45 "$PYTHON" \
        "$here/slixmpp_im.py" --scenario subscribe --port "$port" --ca "$scratch/ca.pem" \
        --alice "pamela@$domain" --bob "peter@$domain" --timeout 30 || {
        stop_pid "$pid" prosody
        return 1
    }
    export MIGRATE_NICK="Pamela of $domain" MIGRATE_BODY
    MIGRATE_BODY="archived on Prosody $(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
    timeout 45 "$PYTHON" "$here/slixmpp_migrated.py" --port "$port" --ca "$scratch/ca.pem" \
        --timeout 30 --jid "pamela@$domain" --password-env PAMELA_PASSWORD \
        --contact "peter@$domain" --publish-nick "$MIGRATE_NICK" --send-body "$MIGRATE_BODY" || {
        stop_pid "$pid" prosody
        return 1
    }
    stop_pid "$pid" prosody
    # prosody-migrator writes XEP-0227 files into Prosody's data directory, a constant of
    # its script; a copy of the script points it at this run's directory instead.
    sed "s#^CFG_DATADIR=.*#CFG_DATADIR='$d/out';#" /usr/bin/prosody-migrator >"$d/prosody-migrator" &&
        cat >"$d/migrator.cfg.lua" <<LUA || return 1
input { type = "internal"; path = "$d/data"; hosts = { ["$domain"] = { "accounts", "roster", "vcard", "private", "pep-pubsub", "archive-archive" } } }
output { type = "xep0227"; path = "$d/out"; }
LUA
    # The migrator drops to the prosody user when started as root.
    chown -R prosody: "$d" && chmod o+x "$scratch" "$scratch/migrate" || return 1
    lua5.4 "$d/prosody-migrator" --config="$d/migrator.cfg.lua" input output >"$d/migrator.log" 2>&1 || {
        cat "$d/migrator.log"
        return 1
    }
    ls -l "$d/out"
    [[ -f "$d/out/pamela@$domain.xml" && -f "$d/out/peter@$domain.xml" ]] &&
        grep -q "urn:xmpp:pie:0#mam" "$d/out/pamela@$domain.xml" &&
        grep -q "http://jabber.org/protocol/pubsub#owner" "$d/out/pamela@$domain.xml"
}

# ejabberd: accounts ed and eve with a roster both ways, ed's vCard, private XML and an
# offline message from eve, exported to $d/out.
migrate_ejabberd_export() {
    local d="$scratch/migrate/ejabberd" node port pid i ctl
    mkdir -p "$d/logs" "$d/spool" "$d/out" || return 1
    node="migrate$$@localhost"
    port="$(migrate_free_port)" && ejabberd_node_files "$d" "$node" || return 1
    cat >"$d/ejabberd.yml" <<YML
hosts: [$domain]
loglevel: info
log_rotate_count: 0
listen:
  - port: $port
    ip: "127.0.0.1"
    module: ejabberd_c2s
auth_method: internal
auth_password_format: scram
modules:
  mod_roster: {}
  mod_vcard: {}
  mod_private: {}
  mod_offline: {}
  mod_admin_extra: {}
YML
    chown -R ejabberd: "$d" && chmod 700 "$d" || return 1
    ctl=(setpriv --reuid=ejabberd --regid=ejabberd --init-groups env HOME="$d" ejabberdctl
        --node "$node" --config-dir "$d" --config "$d/ejabberd.yml" --ctl-config "$d/ejabberdctl.cfg"
        --logs "$d/logs" --spool "$d/spool")
    "${ctl[@]}" foreground >"$d/stdout.log" 2>&1 </dev/null &
    pid=$!
    helper_pids+=("$pid")
    for ((i = 0; i < 40; i++)); do
        timeout 15 "${ctl[@]}" status >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 1
    done
    local beam
    beam="$(pgrep -P "$pid" | head -n1 || true)"
    [[ -n "$beam" ]] && helper_pids+=("$beam")
    export ED_PASSWORD EVE_PASSWORD
    ED_PASSWORD="$(migrate_password ed)"
    EVE_PASSWORD="$(migrate_password eve)"
    local status=0
    {
        timeout 30 "${ctl[@]}" register ed "$domain" "$ED_PASSWORD" &&
            timeout 30 "${ctl[@]}" register eve "$domain" "$EVE_PASSWORD" &&
            timeout 30 "${ctl[@]}" add_rosteritem ed "$domain" eve "$domain" Eve Friends both &&
            timeout 30 "${ctl[@]}" add_rosteritem eve "$domain" ed "$domain" Ed Friends both &&
            timeout 30 "${ctl[@]}" set_vcard ed "$domain" FN "Ed Wood" &&
            timeout 30 "${ctl[@]}" private_set ed "$domain" \
                "<notes xmlns='http://example.org/notes'>tea at 5</notes>" &&
            timeout 30 "${ctl[@]}" send_message chat "eve@$domain" "ed@$domain" "" \
                "kept while you were away"
    } 2>&1 | grep -v -e '^=ERROR REPORT' -e inetrc -e '^$' || true
    [[ "${PIPESTATUS[0]}" -eq 0 ]] || status=1
    # export_piefxis writes a main file that includes one file per host; under load it has
    # been seen to return with the main file only. The export is retried (bounded) until the
    # host's file is there, and ejabberd's log is shown if it never is.
    local attempt
    for ((attempt = 1; status == 0 && attempt <= 3; attempt++)); do
        rm -f "$d/out/"*.xml
        timeout 60 "${ctl[@]}" export_piefxis "$d/out" 2>&1 |
            grep -v -e '^=ERROR REPORT' -e inetrc -e '^$' || true
        compgen -G "$d/out/*_$domain.xml" >/dev/null && break
        echo "export_piefxis attempt $attempt wrote no file for $domain"
        sleep 2
    done
    if ! compgen -G "$d/out/*_$domain.xml" >/dev/null; then
        status=1
        tail -n 30 "$d/logs/ejabberd.log" "$d/logs/error.log" 2>/dev/null
    fi
    timeout 20 "${ctl[@]}" stop >/dev/null 2>&1 || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    stop_pid "$pid" ejabberd
    [[ -n "$beam" ]] && stop_pid "$beam" beam
    ls -l "$d/out"
    return "$status"
}

migrate_check() {
    local d="$scratch/migrate/xmppd" port pid status=0 main pamela_id peter_id
    migrate_prosody_export || { echo "the Prosody export failed"; return 1; }
    migrate_ejabberd_export || { echo "the ejabberd export failed"; return 1; }
    mkdir -p "$d" || return 1
    port="$(migrate_free_port)" || return 1
    cat >"$d/xmppd.toml" <<TOML
[general]
data_dir = "data"
disable_sasl_mechanisms = ["SCRAM-SHA-256", "SCRAM-SHA-256-PLUS"]

[[host]]
name = "$domain"
cert = "$scratch/$domain.crt"
key = "$scratch/$domain.key"

[[listen]]
kind = "c2s"
address = "127.0.0.1"
port = $port
TOML
    # ejabberd's main file includes one file per host (XInclude).
    main="$(find "$scratch/migrate/ejabberd/out" -name '*.xml' ! -name "*_$domain.xml" | head -n1)"
    "$xmppd" --config "$d/xmppd.toml" import "$scratch/migrate/prosody/out/pamela@$domain.xml" \
        "$scratch/migrate/prosody/out/peter@$domain.xml" "$main" | tee "$d/import.log" || return 1
    grep -q "4 imported, 0 already there, 0 refused" "$d/import.log" || {
        echo "xmppd import did not import the four accounts"
        return 1
    }
    # Each archive's message keeps the id Prosody gave it there.
    pamela_id="$(migrate_archive_id "$scratch/migrate/prosody/out/pamela@$domain.xml")"
    peter_id="$(migrate_archive_id "$scratch/migrate/prosody/out/peter@$domain.xml")"
    [[ -n "$pamela_id" && -n "$peter_id" ]] || return 1
    "$xmppd" --config "$d/xmppd.toml" serve >"$d/xmppd.log" 2>&1 &
    pid=$!
    helper_pids+=("$pid")
    migrate_wait_port "$pid" "$port" 20 || { tail -n 20 "$d/xmppd.log"; return 1; }
    local common=(--port "$port" --ca "$scratch/ca.pem" --timeout 30)
    timeout 45 "$PYTHON" "$here/slixmpp_migrated.py" "${common[@]}" --jid "pamela@$domain" \
        --password-env PAMELA_PASSWORD --contact "peter@$domain" --nick "$MIGRATE_NICK" \
        --archived-body "$MIGRATE_BODY" --archived-id "$pamela_id" || status=1
    timeout 45 "$PYTHON" "$here/slixmpp_migrated.py" "${common[@]}" --jid "peter@$domain" \
        --password-env PETER_PASSWORD --contact "pamela@$domain" --contact-nick "$MIGRATE_NICK" \
        --archived-body "$MIGRATE_BODY" --archived-id "$peter_id" || status=1
    timeout 45 "$PYTHON" "$here/slixmpp_migrated.py" "${common[@]}" --jid "ed@$domain" \
        --password-env ED_PASSWORD --contact "eve@$domain" --group Friends --vcard-fn "Ed Wood" \
        --offline-body "kept while you were away" || status=1
    timeout 45 "$PYTHON" "$here/slixmpp_migrated.py" "${common[@]}" --jid "eve@$domain" \
        --password-env EVE_PASSWORD --contact "ed@$domain" --group Friends || status=1
    stop_pid "$pid" "migrated xmppd"
    return "$status"
}
