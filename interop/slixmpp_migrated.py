#!/usr/bin/env python3
"""An account brought over from another server logs in and finds what it had there.

The account (--jid; its password, the one it had on the old server, in the environment
variable --password-env names) logs in with SCRAM over TLS and fetches its roster, which
must hold --contact with subscription --subscription (and --group when given). With
--offline-body, a stored message with exactly that body must arrive after the initial
presence; with --vcard-fn, the account's own vCard must carry that FN; with --nick, the
account's PEP node http://jabber.org/protocol/nick (XEP-0172) must hold that nick, and with
--contact-nick the contact's (which the node's access model must let the account read); with
--archived-body, the account's message archive (XEP-0313) must hold a message with exactly
that body, under an archive id (with --archived-id, that one: the id it had on the old
server).

On the old server, before the export, the same script makes that data instead:
--publish-nick publishes a nick to the account's PEP and --send-body sends the contact a chat
message (which the old server archives for both), after the roster check.
Exit status 0 when every check held, 1 otherwise (including after --timeout seconds).

    PAMELA_PASSWORD=… slixmpp_migrated.py --port 5222 --ca ca.pem --jid pamela@localhost \
        --password-env PAMELA_PASSWORD --contact peter@localhost --subscription both
"""

import sys

from slixmpp.plugins.xep_0172 import UserNick

from xmpp_common import Client, Failure, first_match, log, password_from_env, scenario_main


NICK = "http://jabber.org/protocol/nick"


async def make_data(client, args):
    """On the old server: a nick in PEP and a message to the contact."""
    if args.publish_nick:
        nick = UserNick()
        nick["nick"] = args.publish_nick
        await client.plugin["xep_0060"].publish(client.boundjid.bare, NICK, payload=nick, timeout=10)
        log(f"{args.jid}: published the nick {args.publish_nick!r}")
    if args.send_body:
        client.send_message(mto=args.contact, mbody=args.send_body, mtype="chat")
        # Stanzas of a session are handled in order: after the ping, the message is archived.
        await client.plugin["xep_0199"].ping(jid=client.boundjid.domain, timeout=10)
        log(f"{args.jid}: sent {args.send_body!r} to {args.contact}")


async def pep_nicks(client, owner):
    iq = await client.plugin["xep_0060"].get_items(owner, NICK, timeout=10)
    return [el.text for item in iq["pubsub"]["items"] for el in item.xml.iter(f"{{{NICK}}}nick")]


async def check_pep_and_archive(client, args):
    """On the new server: the nicks and the archived message came over."""
    for owner, nick in ((client.boundjid.bare, args.nick), (args.contact, args.contact_nick)):
        if nick:
            nicks = await pep_nicks(client, owner)
            if nick not in nicks:
                raise Failure(f"{args.jid}: {owner}'s PEP nick node holds {nicks}, expected {nick!r}")
            log(f"{args.jid}: {owner}'s PEP nick {nick!r}")
    if args.archived_body:
        found = []
        async for m in client.plugin["xep_0313"].iterate(rsm={"max": 50}):
            result = m["mam_result"]
            found.append((result["id"], result["forwarded"]["stanza"]["body"]))
            if len(found) > 1000:
                raise Failure(f"{args.jid}: more than 1000 archived messages")
        ids = [aid for aid, body in found if body == args.archived_body and aid]
        if not ids:
            raise Failure(f"{args.jid}: the archive holds {found}, not {args.archived_body!r}")
        if args.archived_id and ids != [args.archived_id]:
            raise Failure(f"{args.jid}: {args.archived_body!r} is under {ids}, not {args.archived_id}")
        log(f"{args.jid}: archived {args.archived_body!r} under id {ids[0]}")


async def scenario(args):
    client = Client(f"{args.jid}/migrated", password_from_env(args.password_env), args)
    client.register_plugin("xep_0054")
    client.register_plugin("xep_0203")
    for plugin in ("xep_0030", "xep_0059", "xep_0060", "xep_0297", "xep_0313"):
        client.register_plugin(plugin)
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
        await make_data(client, args)
        await check_pep_and_archive(client, args)
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
    p.add_argument("--nick")
    p.add_argument("--contact-nick")
    p.add_argument("--archived-body")
    p.add_argument("--archived-id")
    p.add_argument("--publish-nick")
    p.add_argument("--send-body")


def main():
    return scenario_main(__doc__, scenario, "migrated: logged in with the old password, data found", add_arguments)


if __name__ == "__main__":
    sys.exit(main())
