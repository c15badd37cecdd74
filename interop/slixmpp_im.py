#!/usr/bin/env python3
"""Instant-messaging checks with slixmpp: subscriptions, presence and offline messages.

Two scenarios (--scenario):

  subscribe  alice and bob (both fetch their roster, so they get roster pushes) log in;
             alice asks bob for a subscription, bob approves and asks back, alice
             approves. Each must then see the other's presence and have a roster item with
             subscription 'both'.
  offline    alice logs in while bob is offline and sends him a message, then logs out;
             bob logs in and must receive exactly that message, with a delay stamp
             (XEP-0203) from the server.

Exit status 0 when every check held, 1 otherwise (including after --timeout seconds).

    ALICE_PASSWORD=… BOB_PASSWORD=… slixmpp_im.py --scenario subscribe --port 5222 \
        --ca ca.pem --alice alice@localhost --bob bob@localhost
"""

import asyncio
import sys
import time

from xmpp_common import (
    Client,
    Failure,
    base_parser,
    log,
    password_from_env,
    run_scenario,
    setup_logging,
)


class ImClient(Client):
    """A client that also queues presence from others and answers subscription requests
    as told."""

    def __init__(self, jid, password, args):
        super().__init__(jid, password, args)
        self.register_plugin("xep_0203")  # delayed delivery
        self.presences = asyncio.Queue()
        self.requests = asyncio.Queue()
        # The scenario answers requests itself.
        self.roster.auto_authorize = None
        self.roster.auto_subscribe = False
        self.add_event_handler("presence_available", self._on_available)
        self.add_event_handler("presence_subscribe", self._on_subscribe)

    def _on_available(self, presence):
        if presence["from"].bare != self.boundjid.bare:
            self.presences.put_nowait(presence)

    def _on_subscribe(self, presence):
        self.requests.put_nowait(presence)

    async def expect_presence_of(self, bare, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                p = await asyncio.wait_for(self.presences.get(), max(left, 0.01))
            except asyncio.TimeoutError:
                raise Failure(f"{self.boundjid.bare}: no presence from {bare}") from None
            if p["from"].bare == bare:
                log(f"{self.boundjid.bare}: sees {p['from']} available")
                return p

    async def expect_request_from(self, bare, timeout):
        try:
            p = await asyncio.wait_for(self.requests.get(), timeout)
        except asyncio.TimeoutError:
            raise Failure(f"{self.boundjid.bare}: no subscription request") from None
        if p["from"].bare != bare:
            raise Failure(f"{self.boundjid.bare}: request from {p['from']}, expected {bare}")
        log(f"{self.boundjid.bare}: subscription request from {p['from']}")

    async def expect_subscription(self, bare, wanted, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await self.get_roster()
            if bare in self.client_roster and self.client_roster[bare]["subscription"] == wanted:
                log(f"{self.boundjid.bare}: roster has {bare} with subscription {wanted}")
                return
            await asyncio.sleep(0.2)
        raise Failure(f"{self.boundjid.bare}: {bare} is not '{wanted}' in the roster")


async def subscribe(args):
    alice = ImClient(f"{args.alice}/interop-im", password_from_env("ALICE_PASSWORD"), args)
    bob = ImClient(f"{args.bob}/interop-im", password_from_env("BOB_PASSWORD"), args)
    try:
        for c in (alice, bob):
            c.start()
            await c.ready
            await c.get_roster()
        step = args.timeout / 6
        alice.send_presence(pto=args.bob, ptype="subscribe")
        await bob.expect_request_from(args.alice, step)
        bob.send_presence(pto=args.alice, ptype="subscribed")
        await alice.expect_presence_of(args.bob, step)
        bob.send_presence(pto=args.alice, ptype="subscribe")
        await alice.expect_request_from(args.bob, step)
        alice.send_presence(pto=args.bob, ptype="subscribed")
        await bob.expect_presence_of(args.alice, step)
        await alice.expect_subscription(args.bob, "both", step)
        await bob.expect_subscription(args.alice, "both", step)
    finally:
        for c in (alice, bob):
            await c.close()


async def offline(args):
    body = f"kept for you <&> ünïcødé {time.time_ns()}"
    alice = ImClient(f"{args.alice}/interop-off", password_from_env("ALICE_PASSWORD"), args)
    try:
        alice.start()
        await alice.ready
        alice.send_message(mto=args.bob, mbody=body, mtype="chat")
        # The server handles a session's stanzas in order: the answered ping means the
        # message was stored (a bounce would have come first).
        await alice["xep_0199"].ping(jid=alice.boundjid.domain, timeout=10)
        try:
            msg = await asyncio.wait_for(alice.messages.get(), 1)
            raise Failure(f"alice got {msg}")
        except asyncio.TimeoutError:
            pass
    finally:
        await alice.close()
    log(f"alice sent {body!r} to offline bob and logged out")
    bob = ImClient(f"{args.bob}/interop-off", password_from_env("BOB_PASSWORD"), args)
    try:
        bob.start()
        await bob.ready
        try:
            msg = await asyncio.wait_for(bob.messages.get(), args.timeout / 2)
        except asyncio.TimeoutError:
            raise Failure("bob got no offline message") from None
        if msg["type"] == "error" or msg["body"] != body:
            raise Failure(f"bob got {msg}, expected the body {body!r}")
        if msg["from"].bare != args.alice:
            raise Failure(f"bob got a message from {msg['from']}")
        stamp = msg["delay"]["stamp"]
        if stamp is None or msg["delay"]["from"] != bob.boundjid.domain:
            raise Failure(f"no delay stamp from the server: {msg}")
        log(f"bob received {body!r} from {msg['from']}, stored at {stamp.isoformat()}")
    finally:
        await bob.close()


def main():
    p = base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--scenario", choices=["subscribe", "offline"], required=True)
    p.add_argument("--alice", required=True)
    p.add_argument("--bob", required=True)
    args = p.parse_args()
    setup_logging(args.debug)
    scenario = subscribe if args.scenario == "subscribe" else offline

    return run_scenario(scenario, args)


if __name__ == "__main__":
    sys.exit(main())
