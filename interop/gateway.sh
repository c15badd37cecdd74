# The gateway check of interop/run (sourced by it, not run on its own): biboumi, Debian's
# XMPP–IRC gateway, connects to xmppd as an external component (XEP-0114 "accept"), with a
# private ngircd as the IRC network. Everything listens on 127.0.0.1 only, on ports that
# interop/run picked free; nothing of a system-wide biboumi or ngircd (their Debian services,
# /etc configuration, /var/lib database, port 6667) is used or touched.
#
# biboumi 9.0 has no option for the IRC port: it connects to the ports stored per user and
# per IRC server in its database (by default 6697 and 6670 with TLS, then 6667), which a user
# edits with the "configure" ad-hoc command on the server's JID. slixmpp_gateway.py runs that
# command as alice (through xmppd, like any client would) to point biboumi at ngircd's port
# without TLS, so the check does not depend on 6667 being free.
#
# Uses from interop/run: here, scratch, PYTHON, domain, port_starttls, server_pid,
# server_log, helper_pids, stop_pid, say, py_debug. Sets gateway_domain, gateway_secret,
# port_component, port_irc (gateway_setup, before the server configuration is written).

gateway_domain="biboumi.$domain"

gateway_prerequisites() {
    command -v biboumi >/dev/null || die "biboumi is missing (apt-get install biboumi)"
    command -v ngircd >/dev/null || die "ngircd is missing (apt-get install ngircd)"
}

# gateway_setup COMPONENT_PORT IRC_PORT: the free ports to use; a fresh secret.
gateway_setup() {
    port_component="$1"
    port_irc="$2"
    gateway_secret="gw-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
}

# The [[component]] section of the xmppd configuration.
gateway_component_toml() {
    cat <<TOML

[[component]]
name = "$gateway_domain"
secret = "$gateway_secret"
address = "127.0.0.1"
port = $port_component
TOML
}

gateway_versions() {
    echo "biboumi $(dpkg-query -W -f='${Version}' biboumi 2>/dev/null || echo '?')," \
        "ngircd $(dpkg-query -W -f='${Version}' ngircd 2>/dev/null || echo '?')"
}

# wait_until SECONDS PID COMMAND...: polls COMMAND every 0.1 s while PID lives.
wait_until() {
    local limit=$(($1 * 10)) pid="$2" i
    shift 2
    for ((i = 0; i < limit; i++)); do
        "$@" && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

component_connected() {
    grep "component connected" "$server_log" 2>/dev/null | grep -qF "$gateway_domain"
}

# The check: ngircd, then biboumi, then slixmpp_gateway.py; stops both by their PIDs.
gateway_check() {
    local dir="$scratch/gateway" ngircd_pid biboumi_pid status=0
    mkdir -p "$dir/ngircd.d"
    echo "$(gateway_versions); IRC on 127.0.0.1:$port_irc, component port $port_component"

    # ngircd: foreground (-n), loopback only, no DNS/ident/PAM lookups, no include directory
    # of the system. As root it drops to "nobody" after reading this file.
    cat >"$dir/ngircd.conf" <<CONF
[Global]
Name = irc.interop.localhost
Info = xmppd interop IRC network
AdminInfo1 = xmppd interop checks
AdminInfo2 = loopback only
AdminEMail = root@localhost
Listen = 127.0.0.1
Ports = $port_irc
MotdPhrase = xmppd interop
[Limits]
MaxConnectionsIP = 0
[Options]
DNS = no
Ident = no
PAM = no
IncludeDir = $dir/ngircd.d
CONF
    ngircd -f "$dir/ngircd.conf" -n >"$dir/ngircd.log" 2>&1 &
    ngircd_pid=$!
    helper_pids+=("$ngircd_pid")
    if ! wait_until 10 "$ngircd_pid" port_open "$port_irc"; then
        echo "ngircd did not listen on 127.0.0.1:$port_irc"
        tail -n 20 "$dir/ngircd.log"
        stop_pid "$ngircd_pid" ngircd
        return 1
    fi
    echo "ngircd is up (pid $ngircd_pid)"

    # biboumi: its own database, no identd (the default, 113, is privileged), TLS policy
    # files looked up in the scratch directory only, every stanza logged (log_level=0).
    cat >"$dir/biboumi.cfg" <<CONF
hostname=$gateway_domain
password=$gateway_secret
xmpp_server_ip=127.0.0.1
port=$port_component
db_name=$dir/biboumi.sqlite
identd_port=0
policy_directory=$dir
ca_file=$scratch/ca.pem
realname_customization=true
log_file=
log_level=0
CONF
    chmod 600 "$dir/biboumi.cfg"
    # BIBOUMI_<OPTION> variables would override this file: run without any.
    local var no_overrides=()
    for var in $(compgen -e); do
        [[ "$var" == BIBOUMI_* ]] && no_overrides+=(-u "$var")
    done
    env "${no_overrides[@]}" biboumi "$dir/biboumi.cfg" >"$dir/biboumi.log" 2>&1 &
    biboumi_pid=$!
    helper_pids+=("$biboumi_pid")
    if wait_until 20 "$biboumi_pid" component_connected; then
        echo "biboumi is connected as $gateway_domain (pid $biboumi_pid)"
        timeout 90 "$PYTHON" "$here/slixmpp_gateway.py" --tls starttls --port "$port_starttls" \
            --ca "$scratch/ca.pem" --jid "alice@$domain" --gateway "$gateway_domain" \
            --irc-server 127.0.0.1 --irc-host 127.0.0.1 --irc-port "$port_irc" \
            --nick alice --irc-nick bob --channel '#chan' --timeout 60 "${py_debug[@]}" ||
            status=$?
    else
        echo "biboumi did not connect to xmppd as $gateway_domain within 20 s"
        status=1
    fi

    stop_pid "$biboumi_pid" biboumi
    stop_pid "$ngircd_pid" ngircd
    if [[ "$status" -ne 0 ]]; then
        echo "--- last lines of the biboumi log ($dir/biboumi.log):"
        tail -n 25 "$dir/biboumi.log"
        echo "--- last lines of the ngircd log ($dir/ngircd.log):"
        tail -n 15 "$dir/ngircd.log"
    fi
    return "$status"
}
