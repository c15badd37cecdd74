#!/usr/bin/env python3
"""The other side of a web client's conversation: answers a message, then fetches a file it shares.

bob logs in with slixmpp and creates --ready-file once available. He waits for a message from
--expect-from (any resource) with exactly --expect-body and answers its full JID with --reply.
With --expect-file, he then waits for a message carrying an HTTP upload URL (its body, or its
XEP-0066 out-of-band URL, as web clients send it), GETs it over HTTPS verified against --ca, and
checks the bytes are exactly the file's, then creates --done-file. Exit status 0 when every check held, 1 otherwise
(including after --timeout seconds).

    BOB_PASSWORD=… slixmpp_web_peer.py --port 5222 --ca ca.pem --jid bob@localhost \
        --expect-from alice@localhost --expect-body hi --reply hello --ready-file /tmp/ready \
        --expect-file picture.png
"""

import hashlib
import pathlib
import ssl
import sys

import aiohttp

from xmpp_common import (
    Client,
    Failure,
    base_parser,
    first_match,
    log,
    password_from_env,
    run_scenario,
    setup_logging,
)


async def scenario(args):
    me = Client(f"{args.jid}/web-peer", password_from_env(args.password_env), args)
    me.register_plugin("xep_0066")
    try:
        me.start()
        await me.ready
        pathlib.Path(args.ready_file).write_text(me.boundjid.full + "\n")

        def the_message(msg):
            if msg["type"] == "error":
                raise Failure(f"got an error message: {msg}")
            if msg["from"].bare != args.expect_from or not msg["body"]:
                return None
            if msg["body"] != args.expect_body:
                # An earlier check's message, kept offline while bob was away.
                log(f"{me.boundjid.bare}: ignoring {msg['body']!r} (not the expected body)")
                return None
            return msg

        msg = await first_match(me.messages, args.wait, the_message, "message")
        log(f"{me.boundjid.bare}: received {msg['body']!r} from {msg['from']}")
        me.send_message(mto=msg["from"], mbody=args.reply, mtype="chat")
        log(f"{me.boundjid.bare}: replied {args.reply!r} to {msg['from']}")
        if args.expect_file is None:
            return

        def url_of(m):
            if m["from"].bare != args.expect_from:
                return None
            url = m["oob"]["url"] or m["body"]
            return url if url.startswith("https://") else None

        url = await first_match(me.messages, args.wait, url_of, "message with an upload URL")
        log(f"{me.boundjid.bare}: got the URL {url}")
        expected = pathlib.Path(args.expect_file).read_bytes()
        context = ssl.create_default_context(cafile=args.ca)
        async with aiohttp.ClientSession() as session:
            async with session.get(url, ssl=context) as response:
                if response.status != 200:
                    raise Failure(f"GET {url}: HTTP {response.status}")
                body = await response.read()
        if hashlib.sha256(body).digest() != hashlib.sha256(expected).digest():
            raise Failure(f"downloaded {len(body)} bytes that are not the {len(expected)} shared")
        log(f"{me.boundjid.bare}: downloaded the same {len(body)} bytes")
        if args.done_file:
            pathlib.Path(args.done_file).write_text("downloaded\n")
    finally:
        await me.close()


def main():
    p = base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--jid", required=True)
    p.add_argument("--password-env", default="BOB_PASSWORD")
    p.add_argument("--expect-from", required=True, help="a bare JID")
    p.add_argument("--expect-body", required=True)
    p.add_argument("--reply", required=True)
    p.add_argument("--expect-file", help="a file the sender shares by HTTP upload")
    p.add_argument("--ready-file", required=True)
    p.add_argument("--done-file", help="created once the shared file was downloaded")
    p.add_argument("--wait", type=float, default=30.0, help="seconds to wait for each message")
    args = p.parse_args()
    setup_logging(args.debug)
    status = run_scenario(scenario, args)
    if status == 0:
        log("web peer: message answered" + (", file fetched" if args.expect_file else ""))
    return status


if __name__ == "__main__":
    sys.exit(main())
