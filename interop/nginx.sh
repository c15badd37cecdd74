# The reverse-proxy check of interop/run (sourced by it, not run on its own): Debian's nginx,
# configured with the README's own example (its two ```nginx blocks, read from README.md so the
# documentation is what is tested), terminates TLS in front of an xmppd `http` listener on
# loopback that trusts it (`[http] trusted_proxies`). @xmpp/client then reads host-meta.json
# through nginx, must find nginx's wss URL there (xmppd builds it from the forwarded host and
# scheme), and logs in and chats through it; Converse.js in Chromium logs in over BOSH through
# nginx's /http-bind and chats too. nginx runs from a private prefix in the scratch
# directory, on 127.0.0.1 only; only the README's `listen`, certificate, include and upstream
# lines are adapted to the scratch directory and the ports interop/run picked.
#
# Uses from interop/run: here, root, scratch, domain, helper_pids, stop_pid, say,
# xmppjs_websocket, converse_check. Sets nginx_port, nginx_upstream_port (nginx_setup, before the server
# configuration is written).

nginx_prerequisites() {
    command -v nginx >/dev/null || die "nginx is missing (apt-get install nginx)"
}

# nginx_setup NGINX_PORT UPSTREAM_PORT: nginx's TLS port and xmppd's plain HTTP listener.
nginx_setup() {
    nginx_port="$1"
    nginx_upstream_port="$2"
}

# The xmppd configuration the README asks for behind nginx.
nginx_toml() {
    cat <<TOML

[[listen]]
kind = "http"
address = "127.0.0.1"
port = $nginx_upstream_port

[http]
trusted_proxies = ["127.0.0.1"]
TOML
}

# Writes nginx.conf and xmppd_proxy.conf under $scratch/nginx from the README's blocks.
nginx_config() {
    local dir="$scratch/nginx"
    mkdir -p "$dir/logs" "$dir/tmp"
    "$PYTHON" - "$root/README.md" "$dir" "$nginx_port" "$nginx_upstream_port" \
        "$scratch/$domain.crt" "$scratch/$domain.key" <<'PY'
import re
import sys

readme, out, port, upstream, cert, key = sys.argv[1:]
blocks = re.findall(r"```nginx\n(.*?)```", open(readme, encoding="utf-8").read(), re.S)
if len(blocks) != 2:
    sys.exit(f"README.md has {len(blocks)} nginx blocks; this check reads two (server, proxy.conf)")
server, proxy = blocks
subs = [
    (r"listen 443 ssl http2;", f"listen 127.0.0.1:{port} ssl http2;"),
    (r"listen \[::\]:443 ssl http2;", ""),
    (r"ssl_certificate +\S+;", f"ssl_certificate {cert};"),
    (r"ssl_certificate_key +\S+;", f"ssl_certificate_key {key};"),
    (r"/etc/nginx/xmppd_proxy\.conf", f"{out}/xmppd_proxy.conf"),
    (r"127\.0\.0\.1:5280", f"127.0.0.1:{upstream}"),
]
for pattern, replacement in subs:
    server, n = re.subn(pattern, replacement, server)
    if n == 0:
        sys.exit(f"README.md's nginx server block has no line matching {pattern!r}")
open(f"{out}/xmppd_proxy.conf", "w", encoding="utf-8").write(proxy)
open(f"{out}/nginx.conf", "w", encoding="utf-8").write(f"""\
worker_processes 1;
pid {out}/nginx.pid;
error_log {out}/logs/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {out}/logs/access.log;
    client_body_temp_path {out}/tmp/body;
    proxy_temp_path {out}/tmp/proxy;
    fastcgi_temp_path {out}/tmp/fastcgi;
    uwsgi_temp_path {out}/tmp/uwsgi;
    scgi_temp_path {out}/tmp/scgi;
{server}
}}
""")
PY
}

nginx_check() {
    local dir="$scratch/nginx" pid i status=0
    nginx_config || return 1
    # The workers must reach their temporary directories inside the private scratch directory.
    nginx -t -p "$dir" -c "$dir/nginx.conf" -g "user root;" || return 1
    nginx -p "$dir" -c "$dir/nginx.conf" -g "daemon off; user root;" &
    pid=$!
    helper_pids+=("$pid")
    for ((i = 0; i < 100; i++)); do
        (exec 3<>"/dev/tcp/127.0.0.1/$nginx_port") 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    xmppjs_websocket "https://localhost:$nginx_port" || status=$?
    converse_check bosh "https://localhost:$nginx_port/http-bind" || status=$?
    grep -q '"GET /xmpp-websocket HTTP/1.1" 101' "$dir/logs/access.log" || {
        echo "nginx's access log shows no WebSocket upgrade:"
        cat "$dir/logs/access.log"
        status=1
    }
    grep -Eq '"POST /http-bind HTTP/[0-9.]+" 200' "$dir/logs/access.log" || {
        echo "nginx's access log shows no BOSH request"
        status=1
    }
    grep -q 'host-meta.json' "$dir/logs/access.log" || {
        echo "nginx's access log shows no host-meta request"
        status=1
    }
    stop_pid "$pid" "nginx"
    return "$status"
}
