# shellcheck shell=bash
# A private ejabberd node's control files, shared by federation_servers.sh and migrate.sh.

# ejabberd_node_files DIR NODE: DIR/inetrc and DIR/ejabberdctl.cfg for NODE. The Erlang
# distribution listens on a fixed free port of 127.0.0.1 (so no epmd is started), with a fresh
# cookie. Erlang's resolver reads /etc/hosts only when an inetrc says so (ejabberdctl points
# ERL_INETRC at <config-dir>/inetrc).
ejabberd_node_files() {
    local d="$1" node="$2" dist_port cookie
    dist_port="$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')" ||
        return 1
    cookie="ej$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
    echo '{file, hosts, "/etc/hosts"}. {lookup, [file, native]}.' >"$d/inetrc"
    cat >"$d/ejabberdctl.cfg" <<CFG
ERLANG_NODE=$node
INET_DIST_INTERFACE=127.0.0.1
ERL_DIST_PORT=$dist_port
ERL_OPTIONS="-setcookie $cookie"
CFG
}
