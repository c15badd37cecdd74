#!/usr/bin/env python3
"""Stream management (XEP-0198) with a second client implementation: nbxmpp, Gajim's XMPP
library, as Gajim uses it (its own Smacks: <enable resume='true'/> after bind, <resume/> on
reconnect).

alice (nbxmpp, resumption on) and bob (nbxmpp, stream management off) log in over
STARTTLS. The server certificate is accepted as Gajim accepts one the user pinned (the
exact certificate, nothing else). Bob sends alice a first batch of messages; after she has
read some, her socket is shut down under nbxmpp without a stream close. Bob sends a second
batch while she is away; alice reconnects and nbxmpp resumes: `resume-successful` fires,
no resource is bound again (no second `connected`, the same full JID), and alice has every
message of both batches exactly once and in order (counted by id). A message alice sent
before the cut reaches bob exactly once.

Exit status 0 when every check held, 1 otherwise (including after --timeout seconds).

    ALICE_PASSWORD=… BOB_PASSWORD=… nbxmpp_sm.py --port 5222 --cert localhost.crt \
        --alice alice@localhost --bob bob@localhost
"""

import argparse
import logging
import os
import socket
import sys
import time

import gi

gi.require_version("Gio", "2.0")
gi.require_version("GLib", "2.0")
from gi.repository import Gio, GLib  # noqa: E402

import nbxmpp  # noqa: E402
from nbxmpp.client import Client  # noqa: E402
from nbxmpp.const import ConnectionProtocol, ConnectionType  # noqa: E402
from nbxmpp.namespaces import Namespace  # noqa: E402
from nbxmpp.protocol import JID, Iq, Message, Presence  # noqa: E402
from nbxmpp.structs import StanzaHandler  # noqa: E402


class Failure(Exception):
    pass


def log(msg):
    print(msg, flush=True)


def wait_until(what, predicate, timeout):
    """Runs the GLib main loop until `predicate()` holds; a Failure after `timeout` s."""
    ctx = GLib.MainContext.default()
    deadline = time.monotonic() + timeout
    tick = GLib.timeout_add(50, lambda: True)  # wakes the loop up to check the deadline
    try:
        while not predicate():
            if time.monotonic() > deadline:
                raise Failure(f"{what}: not within {timeout} s")
            ctx.iteration(True)
    finally:
        GLib.source_remove(tick)


def pump(seconds):
    """Runs the GLib main loop for `seconds`."""
    end = time.monotonic() + seconds
    wait_until("pump", lambda: time.monotonic() > end, seconds + 5)


class Peer:
    """An nbxmpp Client with the events this check looks at recorded."""

    def __init__(self, args, jid, password, resource, sm):
        self.name = jid.split("@")[0]
        self.client = Client(log_context=self.name)
        user, domain = jid.split("@")
        self.client.set_username(user)
        self.client.set_domain(domain)
        self.client.set_resource(resource)
        self.client.set_password(password)
        self.client.set_sm_disabled(not sm)
        self.client.set_custom_host(
            f"{args.host}:{args.port}", ConnectionProtocol.TCP, ConnectionType.START_TLS
        )
        self.client.set_accepted_certificates([Gio.TlsCertificate.new_from_file(args.cert)])
        self.events = []
        self.messages = []
        self.pongs = set()
        for signal in (
            "connected",
            "disconnected",
            "connection-failed",
            "resume-successful",
            "resume-failed",
        ):
            self.client.subscribe(signal, self._on_signal)
        self.client.register_handler(StanzaHandler(name="message", callback=self._on_message))

    def _on_signal(self, _client, signal, *_args):
        self.events.append(signal)

    def _on_message(self, _client, stanza, _properties):
        self.messages.append(stanza)

    def count(self, signal):
        return self.events.count(signal)

    def login(self, timeout):
        self.client.connect()
        wait_until(
            f"{self.name} logs in",
            lambda: self.count("connected") or self.count("connection-failed")
            or self.count("disconnected"),
            timeout,
        )
        if not self.count("connected"):
            raise Failure(f"{self.name}: login failed: {self.events} {self.client.get_error()}")
        self.client.send_stanza(Presence())
        self.ping(timeout)
        log(f"{self.name}: logged in as {self.client.get_bound_jid()} over STARTTLS")

    def ping(self, timeout):
        """A XEP-0199 ping to the server, answered: a barrier for what was sent before."""
        iq = Iq(typ="get", to=self.client.domain)
        iq.addChild("ping", namespace=Namespace.PING)
        id_ = self.client.send_stanza(
            iq, callback=lambda _c, stanza, **_k: self.pongs.add(iq.getID()), user_data={}
        )
        wait_until(f"{self.name}: ping answered", lambda: id_ in self.pongs, timeout)

    def send_chat(self, to, id_, body):
        msg = Message(to=to, body=body, typ="chat")
        msg.setID(id_)
        self.client.send_stanza(msg)

    def ids_from(self, sender_bare, tag):
        """The ids of the messages received with this run's `tag` in their id, in order;
        messages of an earlier run (held for alice when one ended early) are skipped."""
        out = []
        for m in self.messages:
            if m.getType() == "error" or m.getFrom().bare != sender_bare:
                raise Failure(f"{self.name}: unexpected message {m}")
            if str(tag) in (m.getID() or ""):
                out.append(m.getID())
        return out

    def close(self):
        try:
            if self.count("disconnected") < self.count("connected") + self.count(
                "resume-successful"
            ):
                self.client.disconnect()
                wait_until(
                    f"{self.name} disconnects",
                    lambda: self.client.state.name == "DISCONNECTED",
                    5,
                )
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


def cut(peer):
    """Shuts the TCP socket down under nbxmpp: no </stream:stream>, no TLS close_notify."""
    gsock = peer.client._con._con.get_socket()  # the Gio.SocketConnection's socket
    dup = socket.socket(fileno=os.dup(gsock.get_fd()))
    try:
        dup.shutdown(socket.SHUT_RDWR)
    finally:
        dup.close()


def run(args):
    tag = time.time_ns()
    step = args.timeout / 6
    alice = Peer(args, args.alice, os.environ["ALICE_PASSWORD"], "interop-nbxmpp", sm=True)
    bob = Peer(args, args.bob, os.environ["BOB_PASSWORD"], "interop-nbxmpp", sm=False)
    try:
        for p in (alice, bob):
            p.login(step)
        smacks = alice.client._smacks
        wait_until("alice: <enabled/>", lambda: smacks.enabled, step)
        if not alice.client.resumeable:
            raise Failure("alice: the server did not enable resumption")
        bound = str(alice.client.get_bound_jid())
        log(f"alice: stream management enabled, resumable ({smacks._session_id})")

        mine = f"nbxmpp-alice-{tag}"
        alice.send_chat(args.bob, mine, f"from alice {mine}")
        first = [f"nb-before-{tag}-{i}" for i in range(6)]
        second = [f"nb-outage-{tag}-{i}" for i in range(6)]
        for mid in first:
            bob.send_chat(args.alice, mid, f"message {mid}")
        wait_until(
            "alice reads 3 messages", lambda: len(alice.ids_from(args.bob, tag)) >= 3, step
        )
        cut(alice)
        wait_until("nbxmpp notices the cut", lambda: alice.count("disconnected") == 1, step)
        log(f"alice: socket shut down after receiving {alice.ids_from(args.bob, tag)}")
        for mid in second:
            bob.send_chat(args.alice, mid, f"message {mid}")
        bob.ping(step)
        log("bob: sent the second batch while alice was away")

        alice.client.connect()
        wait_until(
            "alice resumes",
            lambda: alice.count("resume-successful") or alice.count("resume-failed")
            or alice.count("disconnected") > 1 or alice.count("connected") > 1,
            step,
        )
        if alice.count("resume-successful") != 1 or alice.count("connected") != 1:
            raise Failure(f"alice: did not resume: {alice.events}")
        if str(alice.client.get_bound_jid()) != bound:
            raise Failure(f"alice: bound {alice.client.get_bound_jid()}, was {bound}")
        log(f"alice: resumed, still {bound}, no new bind")

        expected = first + second
        wait_until(
            "alice gets both batches",
            lambda: len(alice.ids_from(args.bob, tag)) >= len(expected),
            step,
        )
        pump(1.0)
        got = alice.ids_from(args.bob, tag)
        if got != expected:
            raise Failure(f"alice: got {got}, expected {expected}")
        log(f"alice: every message exactly once and in order ({len(got)})")

        probe = f"nb-full-{tag}"
        bob.send_chat(JID.from_string(bound), probe, "to the full JID")
        wait_until(
            "alice gets the full-JID message",
            lambda: len(alice.ids_from(args.bob, tag)) > len(expected),
            step,
        )
        last = alice.messages[-1]
        if last.getID() != probe or str(last.getTo()) != bound:
            raise Failure(f"alice: got {last}, expected {probe} to {bound}")

        alice.ping(step)  # the server has handled all alice sent
        wait_until("bob gets alice's message", lambda: bob.ids_from(args.alice, tag), step)
        pump(0.5)
        if bob.ids_from(args.alice, tag) != [mine]:
            raise Failure(f"bob: got {[str(m) for m in bob.messages]}, expected {mine} once")
        log("bob: alice's message arrived exactly once")
        # Everything alice got is acknowledged before she leaves (so nothing is re-routed).
        alice.client._smacks._send_ack()
    finally:
        for p in (alice, bob):
            p.close()


def main(doc=__doc__, scenario=None):
    """Parses the common arguments and runs `scenario` (this file's `run` by default) within
    --timeout seconds; 0 when it held, 1 otherwise."""
    scenario = scenario or run
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cert", required=True, help="the server certificate (PEM) to accept")
    p.add_argument("--alice", required=True)
    p.add_argument("--bob", required=True)
    p.add_argument("--timeout", type=float, default=30.0)
    p.add_argument("--debug", action="store_true")
    args = p.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for var in ("ALICE_PASSWORD", "BOB_PASSWORD"):
        if not os.environ.get(var):
            raise SystemExit(f"the environment variable {var} (a password) is not set")
    log(f"nbxmpp {nbxmpp.__version__}")

    def out_of_time():
        log(f"failed: not done within {args.timeout} s")
        os._exit(1)

    deadline = GLib.timeout_add(int(args.timeout * 1000), out_of_time)
    try:
        scenario(args)
    except Failure as e:
        log(f"failed: {e}")
        return 1
    finally:
        GLib.source_remove(deadline)
    return 0


if __name__ == "__main__":
    sys.exit(main())
