"""Shared pieces of the slixmpp interop scripts: argument parsing and a client that
reports, through futures, when it is ready (logged in, available) or why it failed.

Passwords come from environment variables (named on the command line) so they do not
appear in process listings.
"""

import argparse
import asyncio
import logging
import os
import re
import sys

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout

SCRAM = re.compile(r"SCRAM-SHA-(1|256)(-PLUS)?")


class Failure(Exception):
    """A check did not hold."""


def base_parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--host", default="127.0.0.1", help="address to connect to")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True, help="PEM file of the CA to trust")
    p.add_argument(
        "--tls",
        choices=["starttls", "direct"],
        default="starttls",
        help="STARTTLS on a c2s port, or direct TLS (XEP-0368) on a c2s_tls port",
    )
    p.add_argument("--timeout", type=float, default=30.0, help="overall bound, seconds")
    p.add_argument("--debug", action="store_true", help="log slixmpp's stream traffic")
    return p


def setup_logging(debug):
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def password_from_env(var):
    value = os.environ.get(var)
    if not value:
        raise SystemExit(f"the environment variable {var} (a password) is not set")
    return value


def log(msg):
    print(msg, flush=True)


def run_scenario(scenario, args, failures=()):
    """Runs `scenario(args)` within `args.timeout` seconds; the process exit status (0 on
    success, 1 with the reason logged on a Failure, one of the scenario's own `failures`, an
    iq answered with an error or not at all, or when time ran out)."""

    async def bounded():
        await asyncio.wait_for(scenario(args), args.timeout)

    try:
        asyncio.run(bounded())
    except (Failure, *failures) as e:
        log(f"failed: {e}")
        return 1
    except IqError as e:
        log(f"failed: an iq was answered with an error: {e.iq}")
        return 1
    except IqTimeout as e:
        log(f"failed: an iq was not answered in time: {e.iq}")
        return 1
    except asyncio.TimeoutError:
        log(f"failed: not done within {args.timeout} s")
        return 1
    return 0


async def first_match(queue, timeout, match, what):
    """Takes items from `queue` until `match(item)` (a function or a coroutine function)
    returns something other than None, and returns that; raises Failure("no {what} within
    {timeout} s") when time runs out. `match` may raise Failure itself."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        left = deadline - loop.time()
        if left <= 0:
            raise Failure(f"no {what} within {timeout} s")
        try:
            item = await asyncio.wait_for(queue.get(), left)
        except asyncio.TimeoutError:
            continue
        found = match(item)
        if asyncio.iscoroutine(found):
            found = await found
        if found is not None:
            return found


def scenario_main(doc, scenario, done, add_arguments):
    """The main of a script: the common options and those `add_arguments(parser)` adds, then
    `scenario(args)`; logs `done` when it held. Returns the exit status."""
    p = base_parser(doc.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args()
    setup_logging(args.debug)
    status = run_scenario(scenario, args)
    if status == 0:
        log(done)
    return status


def two_user_main(doc, scenario, done):
    """The main of a script in which alice and bob (--alice, --bob; their passwords in the
    environment variables --alice-password-env and --bob-password-env name) run
    `scenario(args)`; logs `done` when it held. Returns the exit status."""

    def accounts(p):
        p.add_argument("--alice", required=True, help="first account, user@domain")
        p.add_argument("--bob", required=True, help="second account, user@domain")
        p.add_argument("--alice-password-env", default="ALICE_PASSWORD")
        p.add_argument("--bob-password-env", default="BOB_PASSWORD")

    return scenario_main(doc, scenario, done, accounts)


class Client(slixmpp.ClientXMPP):
    """A client that logs in, checks how it logged in, becomes available, and queues every
    message it receives."""

    def __init__(self, jid, password, args):
        super().__init__(jid, password)
        self.args = args
        self.ca_certs = args.ca
        # Only the transport asked for: never plaintext, never the other TLS flavour.
        self.enable_plaintext = False
        self.enable_direct_tls = args.tls == "direct"
        self.enable_starttls = args.tls == "starttls"
        self.register_plugin("xep_0199")  # ping, used as a barrier after presence
        self.ready = asyncio.get_event_loop().create_future()
        self.messages = asyncio.Queue()
        self.mechanism = None
        self.tls_version = None
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("message", self._on_message)
        for event in ("failed_auth", "failed_all_auth"):
            self.add_event_handler(event, self._failer(f"authentication failed ({event})"))
        self.add_event_handler("ssl_invalid_chain", self._failer("the server certificate was rejected"))
        self.add_event_handler("connection_failed", self._failer("cannot connect"))
        self.add_event_handler("stream_error", self._failer("stream error"))
        self.add_event_handler("disconnected", self._failer("disconnected before being ready"))

    def _failer(self, what):
        def handler(detail=None):
            if not self.ready.done():
                self.ready.set_exception(Failure(f"{self.boundjid.bare}: {what}: {detail}"))

        return handler

    def _fail(self, what):
        if not self.ready.done():
            self.ready.set_exception(Failure(f"{self.boundjid.bare}: {what}"))

    async def _on_session_start(self, _event):
        mech = self["feature_mechanisms"].mech
        self.mechanism = mech.name if mech is not None else None
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        self.tls_version = ssl_object.version() if ssl_object is not None else None
        if self.tls_version is None:
            return self._fail("the session is not encrypted")
        if self.args.tls == "starttls" and "starttls" not in self.features:
            return self._fail("STARTTLS was not negotiated")
        if self.mechanism is None or not SCRAM.fullmatch(self.mechanism):
            return self._fail(f"logged in with {self.mechanism}, expected SCRAM-SHA-*")
        self.send_presence()
        try:
            # The server handles a session's stanzas in order: once the ping is answered,
            # the initial presence has been processed and bare-JID messages reach us.
            await self["xep_0199"].ping(jid=self.boundjid.domain, timeout=10)
        except Exception as e:  # noqa: BLE001 - any failure is a failed check
            return self._fail(f"ping to {self.boundjid.domain} failed: {e!r}")
        log(
            f"{self.boundjid.full}: logged in over {self.args.tls} ({self.tls_version}) "
            f"with {self.mechanism}"
        )
        if not self.ready.done():
            self.ready.set_result(True)

    def _on_message(self, msg):
        self.messages.put_nowait(msg)

    def start(self):
        self.connect(self.args.host, self.args.port)

    async def expect_message(self, sender_full, body, timeout):
        """Waits for the next message; it must be a chat/normal message from `sender_full`
        with exactly `body`."""
        try:
            msg = await asyncio.wait_for(self.messages.get(), timeout)
        except asyncio.TimeoutError:
            raise Failure(f"{self.boundjid.bare}: no message within {timeout} s") from None
        if msg["type"] == "error":
            raise Failure(f"{self.boundjid.bare}: got an error message: {msg}")
        if str(msg["from"]) != sender_full:
            raise Failure(f"{self.boundjid.bare}: message from {msg['from']}, expected {sender_full}")
        if msg["body"] != body:
            raise Failure(f"{self.boundjid.bare}: body {msg['body']!r}, expected {body!r}")
        if msg["to"].bare != self.boundjid.bare:
            raise Failure(f"{self.boundjid.bare}: message addressed to {msg['to']}")
        log(f"{self.boundjid.bare}: received {body!r} from {sender_full}")

    async def close(self):
        try:
            await asyncio.wait_for(self.disconnect(wait=2.0), 5)
        except Exception:  # noqa: BLE001 - closing is best effort
            self.abort()
