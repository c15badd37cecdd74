# shellcheck shell=bash
# The systemd unit in deploy/: its syntax, its exposure score, and xmppd running under its
# sandbox. Sourced by interop/run, which provides say, check, stop_pid, $scratch, $here,
# $root, $xmppd, $domain, $PYTHON and the test certificate in $scratch.
#
# There is no systemd to start the unit here, so sandbox_exec.py applies its settings itself
# (systemd.exec(5): read-only system, private /tmp and /dev, no home, the xmppd user without
# capabilities or new privileges, its syscall filter and W^X and address-family restrictions
# by seccomp) in a mount namespace of its own; what only systemd can do is listed by it and
# scored by `systemd-analyze security`.

sandbox_prerequisites() {
    command -v systemd-analyze >/dev/null || die "systemd-analyze is missing (apt-get install systemd)"
    command -v unshare >/dev/null || die "unshare is missing (util-linux)"
    /usr/bin/python3 -c 'import seccomp' 2>/dev/null ||
        die "python3-seccomp is missing (apt-get install python3-seccomp)"
}

# The unit with ExecStart pointing at the built binary, for systemd-analyze (which checks the
# binary exists).
sandbox_unit_for_analysis() {
    sed "s#/usr/local/bin/xmppd#$xmppd#g" "$root/deploy/xmppd.service" >"$scratch/sandbox/xmppd.service"
}

sandbox_unit_checks() {
    mkdir -p "$scratch/sandbox"
    sandbox_unit_for_analysis || return 1
    systemd-analyze verify "$scratch/sandbox/xmppd.service" || return 1
    echo "systemd-analyze verify: no complaint"
    # Exposure is 0-10 (shown) and 0-100 (threshold): at most 2.0, "OK".
    systemd-analyze security --offline=true --threshold=20 "$scratch/sandbox/xmppd.service" |
        tail -n 1
}

# "${sandbox_command[@]}" ARGS...: xmppd ARGS under the unit's sandbox. unshare and
# sandbox_exec.py each exec the next, so the PID of this command is the server's.
sandbox_command=()
sandbox_command_set() {
    sandbox_command=(unshare --mount -- /usr/bin/python3 "$here/sandbox_exec.py"
        --unit "$root/deploy/xmppd.service" --binary "$xmppd"
        --state "$scratch/sandbox/state" --config-dir "$scratch/sandbox/etc" --)
}

# Every step's failure is returned: interop/run's check calls this where errexit is off.
sandbox_run_check() {
    local created=() dir status=0
    id xmppd >/dev/null 2>&1 || useradd --system --user-group --home-dir /var/lib/xmppd \
        --no-create-home --shell /usr/sbin/nologin xmppd || return 1
    # The mount points the unit's directories are bound on (systemd creates them too); those
    # made here are removed afterwards.
    for dir in /var/lib/xmppd /etc/xmppd; do
        if [[ ! -d "$dir" ]]; then
            mkdir -p "$dir" || return 1
            created+=("$dir")
        fi
    done
    sandbox_serve_and_chat || status=$?
    for dir in "${created[@]}"; do rmdir "$dir" 2>/dev/null || true; done
    return "$status"
}

sandbox_serve_and_chat() {
    local port pid status=0
    mkdir -p "$scratch/sandbox/state" "$scratch/sandbox/etc" || return 1
    port="$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')" ||
        return 1
    install -o root -g xmppd -m 0640 "$scratch/$domain.crt" "$scratch/sandbox/etc/$domain.crt" &&
        install -o root -g xmppd -m 0640 "$scratch/$domain.key" "$scratch/sandbox/etc/$domain.key" ||
        return 1
    cat >"$scratch/sandbox/etc/xmppd.toml" <<TOML || return 1
[general]
data_dir = "/var/lib/xmppd"

[[host]]
name = "$domain"
cert = "/etc/xmppd/$domain.crt"
key = "/etc/xmppd/$domain.key"

[[listen]]
kind = "c2s"
address = "127.0.0.1"
port = $port
TOML
    chown -R root:xmppd "$scratch/sandbox/etc" && chmod 0750 "$scratch/sandbox/etc" &&
        chown xmppd:xmppd "$scratch/sandbox/state" && chmod 0750 "$scratch/sandbox/state" &&
        # The sandboxed process must reach its directories: the scratch path is searchable.
        chmod o+x "$scratch" "$scratch/sandbox" || return 1

    sandbox_command_set
    "${sandbox_command[@]}" --config /etc/xmppd/xmppd.toml check || return 1
    printf '%s\n' "$ALICE_PASSWORD" |
        "${sandbox_command[@]}" --config /etc/xmppd/xmppd.toml adduser "alice@$domain" || return 1
    printf '%s\n' "$BOB_PASSWORD" |
        "${sandbox_command[@]}" --config /etc/xmppd/xmppd.toml adduser "bob@$domain" || return 1

    "${sandbox_command[@]}" --config /etc/xmppd/xmppd.toml serve >"$scratch/sandbox/serve.log" 2>&1 &
    pid=$!
    helper_pids+=("$pid")
    local i
    for ((i = 0; i < 200; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    # The server process as the kernel sees it: the unit's user, no capabilities at all, no
    # new privileges, a seccomp filter.
    grep -E '^(Uid|Gid|Groups|CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' "/proc/$pid/status" |
        sed 's/^/    /'
    local uid
    uid="$(id -u xmppd)"
    grep -Eq "^Uid:\s+$uid\s+$uid\s+$uid\s+$uid\s*$" "/proc/$pid/status" || status=1
    grep -Eq '^CapEff:\s+0+$' "/proc/$pid/status" || status=1
    grep -Eq '^CapBnd:\s+0+$' "/proc/$pid/status" || status=1
    grep -Eq '^NoNewPrivs:\s+1$' "/proc/$pid/status" || status=1
    grep -Eq '^Seccomp:\s+2$' "/proc/$pid/status" || status=1
    [[ "$status" -eq 0 ]] || echo "the server process is not sandboxed as the unit says"
    timeout 45 "$PYTHON" "$here/slixmpp_chat.py" --tls starttls --port "$port" \
        --ca "$scratch/ca.pem" --alice "alice@$domain" --bob "bob@$domain" --timeout 30 ||
        status=$?
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" || status=$?
    sed 's/^/    server: /' "$scratch/sandbox/serve.log"
    # What the server wrote is its own and not readable by others (UMask=0027).
    echo "state directory:"
    find "$scratch/sandbox/state" -printf '    %M %u:%g %P\n'
    if find "$scratch/sandbox/state" -mindepth 1 \( -not -user xmppd -o -perm -o=r \) | grep -q .; then
        echo "files in the state directory not owned by xmppd or readable by others"
        status=1
    fi
    return "$status"
}
