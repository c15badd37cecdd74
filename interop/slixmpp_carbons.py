#!/usr/bin/env python3
"""Message carbons (XEP-0280) and the server's entity capabilities (XEP-0115), with
slixmpp's own plugins.

alice logs in twice (resources interop-c1 and interop-c2), both enable carbons with
slixmpp's xep_0280 plugin, and bob logs in; the server must advertise urn:xmpp:carbons:2,
and slixmpp's xep_0115 plugin must have verified the caps hash the server offered in its
stream features (it asks disco#info for node#ver and recomputes the hash). Then:
  1. bob sends a chat message to alice/interop-c1: c1 receives it, and c2 a received carbon
     of it (slixmpp only reports carbons from alice's own bare JID);
  2. c1 sends a chat message to bob: bob receives it, and c2 a sent carbon of it;
  3. c2 sends bob a message marked <private/> with the no-copy hint: bob receives it, and
     c1 no carbon of it.
Exit status 0 when every step held, 1 otherwise (including after --timeout seconds).

    ALICE_PASSWORD=… BOB_PASSWORD=… slixmpp_carbons.py --port 5222 --ca ca.pem \
        --alice alice@localhost --bob bob@localhost
"""

import asyncio
import sys

from xmpp_common import (
    Client,
    Failure,
    log,
    password_from_env,
    two_user_main,
)

CARBONS = "urn:xmpp:carbons:2"


class CarbonsClient(Client):
    """A client that queues the carbons slixmpp accepts, as (direction, forwarded message)."""

    def __init__(self, jid, password, args):
        super().__init__(jid, password, args)
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0115")
        self.register_plugin("xep_0280")
        self.register_plugin("xep_0334")
        self.carbons = asyncio.Queue()
        self.add_event_handler("carbon_received", self._carbon("received"))
        self.add_event_handler("carbon_sent", self._carbon("sent"))

    def _carbon(self, direction):
        def handler(msg):
            self.carbons.put_nowait((direction, msg[f"carbon_{direction}"]))

        return handler

    async def expect_carbon(self, direction, sender, recipient, body, timeout):
        try:
            got, inner = await asyncio.wait_for(self.carbons.get(), timeout)
        except asyncio.TimeoutError:
            raise Failure(f"{self.boundjid.full}: no {direction} carbon within {timeout} s") from None
        if got != direction:
            raise Failure(f"{self.boundjid.full}: a {got} carbon, expected {direction}")
        if str(inner["from"]) != sender or inner["to"].bare != recipient or inner["body"] != body:
            raise Failure(f"{self.boundjid.full}: unexpected {direction} carbon {inner}")
        log(f"{self.boundjid.full}: {direction} carbon of {body!r} ({sender} -> {recipient})")

    async def expect_no_carbon(self, within):
        try:
            got = await asyncio.wait_for(self.carbons.get(), within)
        except asyncio.TimeoutError:
            return
        raise Failure(f"{self.boundjid.full}: unexpected carbon {got}")


async def expect_verified_caps(client, domain):
    """slixmpp assigns a caps hash to an entity only once it has checked it against the
    entity's disco#info; the check starts when the stream features arrive."""
    if "caps" not in client.features:
        raise Failure("no caps in the server's stream features")
    for _ in range(50):
        ver = await client.plugin["xep_0115"].get_verstring(domain)
        if ver:
            log(f"slixmpp verified the server's caps: {ver}")
            return
        await asyncio.sleep(0.1)
    raise Failure("slixmpp did not verify the server's caps hash")


async def scenario(args):
    alice_password = password_from_env(args.alice_password_env)
    c1 = CarbonsClient(f"{args.alice}/interop-c1", alice_password, args)
    c2 = CarbonsClient(f"{args.alice}/interop-c2", alice_password, args)
    bob = Client(f"{args.bob}/interop-b", password_from_env(args.bob_password_env), args)
    clients = (c1, c2, bob)
    try:
        for client in clients:
            client.start()
        await asyncio.gather(*(client.ready for client in clients))
        domain = c1.boundjid.domain
        info = await c1.plugin["xep_0030"].get_info(jid=domain, timeout=10)
        if CARBONS not in info["disco_info"]["features"]:
            raise Failure(f"the server does not advertise {CARBONS}")
        await expect_verified_caps(c1, domain)
        await asyncio.gather(
            c1.plugin["xep_0280"].enable(timeout=10), c2.plugin["xep_0280"].enable(timeout=10)
        )
        log("carbons enabled on both of alice's resources")

        text = "to c1, seen by c2"
        bob.send_message(mto=c1.boundjid.full, mbody=text, mtype="chat")
        await c1.expect_message(bob.boundjid.full, text, 10)
        await c2.expect_carbon("received", bob.boundjid.full, c1.boundjid.bare, text, 10)

        text = "from c1, seen by c2"
        c1.send_message(mto=bob.boundjid.bare, mbody=text, mtype="chat")
        await bob.expect_message(c1.boundjid.full, text, 10)
        await c2.expect_carbon("sent", c1.boundjid.full, bob.boundjid.bare, text, 10)

        text = "private, from c2"
        msg = c2.make_message(mto=bob.boundjid.bare, mbody=text, mtype="chat")
        msg.enable("carbon_private")
        msg.enable("no-copy")
        msg.send()
        await bob.expect_message(c2.boundjid.full, text, 10)
        await c1.expect_no_carbon(1.0)
        log("no carbon of the private message")
    finally:
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


def main():
    return two_user_main(__doc__, scenario, "carbons: received, sent and private behave; caps verified")


if __name__ == "__main__":
    sys.exit(main())
