#!/usr/bin/env python3
"""Two slixmpp clients chat through the server.

alice and bob log in (STARTTLS, or direct TLS with --tls direct; SASL SCRAM-SHA-* required;
the server certificate is verified against --ca), become available, then:
  1. alice sends a chat message to bob's bare JID; bob must receive exactly that body, from
     alice's full JID;
  2. bob answers to alice's full JID; alice must receive exactly that body, from bob's full
     JID.
Exit status 0 when every step held, 1 otherwise (including after --timeout seconds).

    ALICE_PASSWORD=… BOB_PASSWORD=… slixmpp_chat.py --port 5222 --ca ca.pem \
        --alice alice@localhost --bob bob@localhost
"""

import asyncio
import sys

from xmpp_common import (
    Client,
    log,
    password_from_env,
    two_user_main,
)


async def scenario(args):
    alice = Client(f"{args.alice}/interop-a", password_from_env(args.alice_password_env), args)
    bob = Client(f"{args.bob}/interop-b", password_from_env(args.bob_password_env), args)
    try:
        alice.start()
        bob.start()
        await asyncio.gather(alice.ready, bob.ready)

        # Escaping and non-ASCII must survive the round trip unchanged.
        hello = "Hello bob <&> 'quoted' \"double\" — ünïcødé ✓"
        alice.send_message(mto=bob.boundjid.bare, mbody=hello, mtype="chat")
        await bob.expect_message(alice.boundjid.full, hello, 10)

        reply = "Hi alice, got it: 42 ✔"
        bob.send_message(mto=alice.boundjid.full, mbody=reply, mtype="chat")
        await alice.expect_message(bob.boundjid.full, reply, 10)
    finally:
        await asyncio.gather(alice.close(), bob.close(), return_exceptions=True)


def main():
    return two_user_main(__doc__, scenario, "chat: both directions delivered")


if __name__ == "__main__":
    sys.exit(main())
