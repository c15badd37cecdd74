# The web client check of interop/run (sourced by it, not run on its own): Converse.js, the
# released bundle from npm (pinned in interop/web/package-lock.json), in Debian's headless
# Chromium driven by playwright-core (interop/web/conversejs.mjs), logs in to xmppd as alice
# over WebSocket and, in a second run, over BOSH (XEP-0124/0206), shows bob in her roster, sends him a
# message that bob (slixmpp_web_peer.py, over STARTTLS) receives and answers; the answer is read
# from the page. In each run alice then shares a file through the chat toolbar: Converse
# uploads it with XEP-0363 (a cross-origin PUT, so xmppd's CORS answers are part of the check)
# and bob downloads exactly the same bytes. Screenshots are kept in $INTEROP_ARTIFACTS
# (default: $CARGO_TARGET_DIR/interop-artifacts).
#
# Chromium verifies xmppd's certificate: the test CA is imported into an NSS database under a
# private HOME (certutil, Debian libnss3-tools); no certificate check is switched off.
#
# Uses from interop/run: here, scratch, PYTHON, domain, port_starttls, port_https, helper_pids,
# stop_pid, say, py_debug, debug.

converse_prerequisites() {
    command -v chromium >/dev/null || die "chromium is missing (apt-get install chromium)"
    command -v certutil >/dev/null || die "certutil is missing (apt-get install libnss3-tools)"
    [[ -d "$here/web/node_modules/converse.js/dist" ]] ||
        die "interop/web has no converse.js (npm ci --prefix interop/web)"
    [[ -d "$here/web/node_modules/playwright-core" ]] ||
        die "interop/web has no playwright-core (npm ci --prefix interop/web)"
}

# A HOME whose NSS database trusts the test CA (and nothing else of the session's).
converse_browser_home() {
    local home="$scratch/chromium-home"
    if [[ ! -d "$home/.pki/nssdb" ]]; then
        mkdir -p "$home/.pki/nssdb"
        certutil -d "sql:$home/.pki/nssdb" -N --empty-password
        certutil -d "sql:$home/.pki/nssdb" -A -t "C,," -n "xmppd interop test CA" \
            -i "$scratch/ca.pem"
    fi
    echo "$home"
}

# converse_check TRANSPORT ENDPOINT [upload]
converse_check() {
    local transport="$1" endpoint="$2" upload="${3:-}" body reply ready pid status=0 home
    local artifacts="${INTEROP_ARTIFACTS:-$CARGO_TARGET_DIR/interop-artifacts}"
    local file="" peer_file=() node_upload=() node_debug=()
    mkdir -p "$artifacts"
    body="Converse.js over $transport says hi <&> ünïcødé $(date +%s%N)"
    reply="slixmpp answers Converse.js $(date +%s%N)"
    ready="$scratch/ready-converse-$transport"
    if [[ -n "$upload" ]]; then
        file="$scratch/converse-upload.png"
        head -c 150000 /dev/urandom >"$file"
        rm -f "$scratch/converse-done-$transport"
        peer_file=(--expect-file "$file" --done-file "$scratch/converse-done-$transport")
        node_upload=(--upload "$file" --wait-for-file "$scratch/converse-done-$transport")
    fi
    [[ -n "$debug" ]] && node_debug=(--debug)
    home="$(converse_browser_home)" || return 1
    timeout 100 "$PYTHON" "$here/slixmpp_web_peer.py" --tls starttls --port "$port_starttls" \
        --ca "$scratch/ca.pem" --jid "bob@$domain" --expect-from "alice@$domain" \
        --expect-body "$body" --reply "$reply" "${peer_file[@]}" --ready-file "$ready" \
        --timeout 90 --wait 75 "${py_debug[@]}" &
    pid=$!
    helper_pids+=("$pid")
    local i
    for ((i = 0; i < 200; i++)); do
        [[ -f "$ready" ]] && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if [[ ! -f "$ready" ]]; then
        echo "the slixmpp peer did not become ready"
        wait "$pid" || true
        return 1
    fi
    echo "peer ready as $(cat "$ready")"
    (cd "$here/web" && HOME="$home" timeout 90 node conversejs.mjs --transport "$transport" \
        --endpoint "$endpoint" --jid "alice@$domain" --to "bob@$domain" --body "$body" \
        --expect-reply "$reply" "${node_upload[@]}" \
        --screenshot "$artifacts/conversejs-$transport.png" --timeout 75 "${node_debug[@]}") ||
        status=$?
    if [[ "$status" -ne 0 ]]; then
        echo "the Converse.js run exited with $status"
        stop_pid "$pid" "peer"
        return 1
    fi
    wait "$pid"
}
