#!/usr/bin/env python3
"""Federation (server-to-server) checks with slixmpp: one user on each of two servers.

The "local" user (e.g. alice@a.test, on xmppd) and the "remote" user (e.g. bob@b.test, on
Prosody or ejabberd) each log in to their own server (SCRAM over STARTTLS, certificates
checked against --ca); everything between them crosses the servers' s2s link. Scenarios
(--scenario):

  message   local sends the remote user a message, which must arrive with exactly its body
            and the local user's full JID as sender; the remote user replies, and the reply
            must arrive the same way.
  presence  a subscription handshake both ways (subscribe / subscribed), after which each
            user sees the other available and has a roster item with subscription 'both';
            then each in turn changes its status text, and the other must see the change.
  ping      each user pings (XEP-0199) the other user's server domain (alice pings b.test,
            bob pings a.test); both must get a result.

Exit status 0 when every check held, 1 otherwise (including after --timeout seconds).

    FED_LOCAL_PASSWORD=… FED_REMOTE_PASSWORD=… slixmpp_federation.py --scenario message \
        --ca ca.pem --local alice@a.test --local-host 127.0.0.11 \
        --remote bob@b.test --remote-host 127.0.0.12
"""

import argparse
import asyncio
import sys
import time

from slixmpp_im import ImClient
from xmpp_common import Failure, base_parser, log, password_from_env, run_scenario, setup_logging


class FedClient(ImClient):
    """An ImClient that also queues every available presence with its status, so a status
    change can be awaited."""

    def __init__(self, jid, password, args):
        super().__init__(jid, password, args)
        self.statuses = asyncio.Queue()
        self.add_event_handler("presence", self._on_presence)

    def _on_presence(self, presence):
        # Available presence only (no type attribute; show may be set).
        if presence["from"].bare == self.boundjid.bare:
            return
        if presence["type"] in ("available", "away", "chat", "dnd", "xa"):
            self.statuses.put_nowait(presence)

    async def expect_status(self, bare, status, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                p = await asyncio.wait_for(self.statuses.get(), max(left, 0.01))
            except asyncio.TimeoutError:
                raise Failure(
                    f"{self.boundjid.bare}: no presence from {bare} with status {status!r}"
                ) from None
            if p["from"].bare == bare and p["status"] == status:
                log(f"{self.boundjid.bare}: sees {p['from']} with status {status!r}")
                return p


def client_args(args, host):
    """The common arguments, with the address of this user's own server."""
    ns = argparse.Namespace(**vars(args))
    ns.host = host
    return ns


def make_clients(args, resource):
    local = FedClient(
        f"{args.local}/{resource}",
        password_from_env("FED_LOCAL_PASSWORD"),
        client_args(args, args.local_host),
    )
    remote = FedClient(
        f"{args.remote}/{resource}",
        password_from_env("FED_REMOTE_PASSWORD"),
        client_args(args, args.remote_host),
    )
    return local, remote


async def login(args, *clients):
    """Both users log in (to their own servers) at once; each must be ready, that is logged
    in, available and answered by its own server, within --login-timeout seconds."""
    for c in clients:
        c.start()
    for c in clients:
        try:
            await asyncio.wait_for(asyncio.shield(c.ready), args.login_timeout)
        except asyncio.TimeoutError:
            raise Failure(
                f"{c.boundjid.bare}: not logged in to {c.args.host}:{c.args.port} "
                f"within {args.login_timeout} s"
            ) from None


async def close(*clients):
    for c in clients:
        await c.close()


async def message(args):
    local, remote = make_clients(args, "fed-msg")
    try:
        await login(args, local, remote)
        step = args.step_timeout
        body = f"across the federation <&> ünïcødé {time.time_ns()}"
        local.send_message(mto=args.remote, mbody=body, mtype="chat")
        log(f"{args.local}: sent {body!r} to {args.remote}")
        await remote.expect_message(local.boundjid.full, body, step)
        reply = f"and back again <&> ✓ {time.time_ns()}"
        remote.send_message(mto=local.boundjid.full, mbody=reply, mtype="chat")
        log(f"{args.remote}: replied {reply!r} to {local.boundjid.full}")
        await local.expect_message(remote.boundjid.full, reply, step)
    finally:
        await close(local, remote)


async def presence(args):
    local, remote = make_clients(args, "fed-presence")
    try:
        await login(args, local, remote)
        for c in (local, remote):
            await c.get_roster()
        step = args.step_timeout
        local.send_presence(pto=args.remote, ptype="subscribe")
        await remote.expect_request_from(args.local, step)
        remote.send_presence(pto=args.local, ptype="subscribed")
        await local.expect_presence_of(args.remote, step)
        remote.send_presence(pto=args.local, ptype="subscribe")
        await local.expect_request_from(args.remote, step)
        local.send_presence(pto=args.remote, ptype="subscribed")
        await remote.expect_presence_of(args.local, step)
        await local.expect_subscription(args.remote, "both", step)
        await remote.expect_subscription(args.local, "both", step)
        for sender, receiver, who in ((local, remote, args.local), (remote, local, args.remote)):
            status = f"status of {who} <&> ünïcødé {time.time_ns()}"
            sender.send_presence(pstatus=status)
            log(f"{who}: changed its status to {status!r}")
            await receiver.expect_status(who, status, step)
    finally:
        await close(local, remote)


async def ping(args):
    local, remote = make_clients(args, "fed-ping")
    try:
        await login(args, local, remote)
        step = args.step_timeout
        for client, target in ((local, remote.boundjid.domain), (remote, local.boundjid.domain)):
            try:
                rtt = await client.plugin["xep_0199"].ping(jid=target, timeout=step)
            except Exception as e:  # noqa: BLE001 - any failure is a failed check
                raise Failure(f"{client.boundjid.bare}: ping to {target} failed: {e!r}") from None
            log(f"{client.boundjid.bare}: ping to {target} answered in {rtt * 1000:.0f} ms")
    finally:
        await close(local, remote)


SCENARIOS = {"message": message, "presence": presence, "ping": ping}


def main():
    p = base_parser(__doc__.split("\n\n")[0])
    p.set_defaults(port=5222)
    for action in p._actions:  # --port has a default here (both servers use 5222)
        if action.dest == "port":
            action.required = False
    p.add_argument("--scenario", choices=sorted(SCENARIOS), required=True)
    p.add_argument("--local", required=True, help="bare JID of the user on the first server")
    p.add_argument("--local-host", required=True, help="address of the first server")
    p.add_argument("--remote", required=True, help="bare JID of the user on the second server")
    p.add_argument("--remote-host", required=True, help="address of the second server")
    p.add_argument("--login-timeout", type=float, default=10.0, help="bound on each login, seconds")
    p.add_argument(
        "--step-timeout", type=float, default=10.0, help="bound on each awaited stanza, seconds"
    )
    args = p.parse_args()
    setup_logging(args.debug)

    return run_scenario(SCENARIOS[args.scenario], args)


if __name__ == "__main__":
    sys.exit(main())
