#!/usr/bin/env python3
"""An account brought over from another server logs in and finds what it had there.

The account (--jid; its password, the one it had on the old server, in the environment
variable --password-env names) logs in with SCRAM over TLS and fetches its roster, which
must hold --contact with subscription --subscription (and --group when given). With
--offline-body, a stored message with exactly that body must arrive after the initial
presence; with --vcard-fn, the account's own vCard must carry that FN.
Exit status 0 when every check held, 1 otherwise (including after --timeout seconds).

    PAMELA_PASSWORD=… slixmpp_migrated.py --port 5222 --ca ca.pem --jid pamela@localhost \
        --password-env PAMELA_PASSWORD --contact peter@localhost --subscription both
"""

import sys

from xmpp_common import Client, Failure, first_match, log, password_from_env, scenario_main


async def scenario(args):
    client = Client(f"{args.jid}/migrated", password_from_env(args.password_env), args)
    client.register_plugin("xep_0054")
    client.register_plugin("xep_0203")
    try:
        client.start()
        await client.ready
        roster = await client.get_roster(timeout=10)
        items = roster["roster"]["items"]
        contact = next((v for k, v in items.items() if str(k) == args.contact), None)
        if contact is None:
            raise Failure(f"{args.jid}: {args.contact} is not in the roster: {dict(items)}")
        if contact["subscription"] != args.subscription:
            raise Failure(
                f"{args.jid}: {args.contact} has subscription {contact['subscription']}, "
                f"expected {args.subscription}"
            )
        if args.group and args.group not in contact["groups"]:
            raise Failure(f"{args.jid}: {args.contact} is not in group {args.group}")
        log(f"{args.jid}: roster holds {args.contact} ({contact['subscription']})")
        if args.vcard_fn:
            vcard = await client.plugin["xep_0054"].get_vcard(jid=client.boundjid.bare, local=False, timeout=10)
            fn = vcard["vcard_temp"]["FN"]
            if fn != args.vcard_fn:
                raise Failure(f"{args.jid}: vCard FN {fn!r}, expected {args.vcard_fn!r}")
            log(f"{args.jid}: vCard FN {fn!r}")
        if args.offline_body:
            def is_it(msg):
                return msg if msg["body"] == args.offline_body else None

            msg = await first_match(client.messages, 10, is_it, "offline message")
            if not msg["delay"]["stamp"]:
                raise Failure(f"{args.jid}: the offline message has no delay stamp")
            log(f"{args.jid}: offline message {args.offline_body!r} from {msg['from']}")
    finally:
        await client.close()


def add_arguments(p):
    p.add_argument("--jid", required=True)
    p.add_argument("--password-env", required=True)
    p.add_argument("--contact", required=True)
    p.add_argument("--subscription", default="both")
    p.add_argument("--group")
    p.add_argument("--offline-body")
    p.add_argument("--vcard-fn")


def main():
    return scenario_main(__doc__, scenario, "migrated: logged in with the old password, data found", add_arguments)


if __name__ == "__main__":
    sys.exit(main())
