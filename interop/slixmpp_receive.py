#!/usr/bin/env python3
"""Logs in with slixmpp, becomes available, and waits for one message with an exact body.

Used to check what another client (go-sendxmpp) sends: the script creates --ready-file once
it is available (so the sender can start), then waits for the next message. It must not be
an error, must carry exactly --expect-body (compared after stripping one trailing newline,
which senders reading stdin may keep) and come from --expect-from (a bare JID; any resource).
With --reply, it then answers the sender's full JID with that body, and stays a second
before logging out so the reply is on its way. Exit status 0 when it did, 1 otherwise (including
after --timeout seconds).

    BOB_PASSWORD=… slixmpp_receive.py --port 5222 --ca ca.pem --jid bob@localhost \
        --expect-from alice@localhost --expect-body 'hello' --ready-file /tmp/ready
"""

import asyncio
import pathlib
import sys

from xmpp_common import (
    Client,
    Failure,
    base_parser,
    log,
    password_from_env,
    run_scenario,
    setup_logging,
)


async def scenario(args):
    me = Client(f"{args.jid}/interop-recv", password_from_env(args.password_env), args)
    try:
        me.start()
        await me.ready
        pathlib.Path(args.ready_file).write_text(me.boundjid.full + "\n")
        try:
            msg = await asyncio.wait_for(me.messages.get(), args.wait)
        except asyncio.TimeoutError:
            raise Failure(f"no message within {args.wait} s") from None
        if msg["type"] == "error":
            raise Failure(f"got an error message: {msg}")
        if msg["from"].bare != args.expect_from:
            raise Failure(f"message from {msg['from']}, expected {args.expect_from}/…")
        body = msg["body"]
        if body.endswith("\n"):
            body = body[:-1]
        if body != args.expect_body:
            raise Failure(f"body {msg['body']!r}, expected {args.expect_body!r}")
        log(f"{me.boundjid.bare}: received {body!r} from {msg['from']}")
        if args.reply is not None:
            me.send_message(mto=msg["from"], mbody=args.reply, mtype="chat")
            log(f"{me.boundjid.bare}: replied {args.reply!r} to {msg['from']}")
            await asyncio.sleep(1)
    finally:
        await me.close()


def main():
    p = base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--jid", required=True, help="the account to log in as, user@domain")
    p.add_argument("--password-env", default="BOB_PASSWORD")
    p.add_argument("--expect-from", required=True, help="bare JID of the sender")
    p.add_argument("--expect-body", required=True)
    p.add_argument("--ready-file", required=True, help="created once logged in and available")
    p.add_argument("--reply", help="answer the message with this body")
    p.add_argument("--wait", type=float, default=20.0, help="how long to wait for the message")
    args = p.parse_args()
    setup_logging(args.debug)

    return run_scenario(scenario, args)


if __name__ == "__main__":
    sys.exit(main())
