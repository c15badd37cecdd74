#!/usr/bin/env python3
"""HTTP File Upload (XEP-0363) with slixmpp's own xep_0363 plugin, as a client sends a picture.

alice's plugin finds the server's upload service (disco#items, then the service's
max-file-size form), asks for a slot and PUTs 300 KiB of random bytes over HTTPS; she sends
bob the URL in a message with XEP-0066 out-of-band data, as Conversations does. bob
receives it and GETs the URL: the bytes must be exactly hers, with her Content-Type.
HTTPS is verified against --ca; the plugin's HTTP client (aiohttp) reads its trust store when
imported, so SSL_CERT_FILE must name the same file in the environment.
Exit status 0 when every check held, 1 otherwise (including after --timeout seconds).

    SSL_CERT_FILE=ca.pem ALICE_PASSWORD=… BOB_PASSWORD=… slixmpp_upload.py --port 5222 --ca ca.pem \
        --alice alice@localhost --bob bob@localhost
"""

import hashlib
import io
import os
import ssl
import sys

import aiohttp

from xmpp_common import Client, Failure, first_match, log, password_from_env, two_user_main

SIZE = 300 * 1024
CONTENT_TYPE = "image/png"


async def scenario(args):
    if os.environ.get("SSL_CERT_FILE") != args.ca:
        raise Failure("set SSL_CERT_FILE to the --ca file: aiohttp reads it when imported")
    alice = Client(f"{args.alice}/upload", password_from_env(args.alice_password_env), args)
    bob = Client(f"{args.bob}/upload", password_from_env(args.bob_password_env), args)
    for plugin in ("xep_0030", "xep_0066", "xep_0363"):
        alice.register_plugin(plugin)
        bob.register_plugin(plugin)
    try:
        alice.start()
        bob.start()
        await alice.ready
        await bob.ready
        data = os.urandom(SIZE)
        url = await alice.plugin["xep_0363"].upload_file(
            "picture.png",
            size=SIZE,
            content_type=CONTENT_TYPE,
            input_file=io.BytesIO(data),
            domain=alice.boundjid.domain,
            timeout=20,
        )
        log(f"{args.alice}: uploaded {SIZE} bytes to {url}")
        msg = alice.make_message(mto=bob.boundjid.bare, mbody=url, mtype="chat")
        msg["oob"]["url"] = url
        msg.send()

        def carries_url(m):
            return m if m["oob"]["url"] else None

        got = await first_match(bob.messages, 15, carries_url, "message with a URL")
        if got["oob"]["url"] != url or got["body"] != url:
            raise Failure(f"{args.bob}: got {got['oob']['url']!r}, expected {url!r}")
        context = ssl.create_default_context(cafile=args.ca)
        async with aiohttp.ClientSession() as session:
            async with session.get(url, ssl=context) as response:
                body = await response.read()
                if response.status != 200:
                    raise Failure(f"GET {url}: {response.status}")
                content_type = response.headers.get("Content-Type")
        if hashlib.sha256(body).digest() != hashlib.sha256(data).digest():
            raise Failure(f"{args.bob}: downloaded {len(body)} bytes that are not alice's")
        if content_type != CONTENT_TYPE:
            raise Failure(f"{args.bob}: Content-Type {content_type!r}, expected {CONTENT_TYPE!r}")
        log(f"{args.bob}: downloaded the same {len(body)} bytes ({content_type})")
    finally:
        await alice.close()
        await bob.close()


def main():
    return two_user_main(__doc__, scenario, "upload: slot, PUT and GET through xep_0363")


if __name__ == "__main__":
    sys.exit(main())
