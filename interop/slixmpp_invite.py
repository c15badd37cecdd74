#!/usr/bin/env python3
"""XEP-0401 invitations from a client, with slixmpp's own xep_0050 (ad-hoc commands) plugin.

  1. alice's command list on her server holds urn:xmpp:invite#invite (and not the account
     invitation, which is for administrators);
  2. alice runs it: the command completes at once with a urn:xmpp:invite#invitation form
     whose uri is xmpp:alice@DOMAIN?roster;preauth=TOKEN;ibr=y, with a landing-url and an
     expire date;
  3. a fresh account, --user (registered in band), asks alice for her presence with that
     token (XEP-0379 <preauth/>) and is approved by the server: alice's client, which
     approves nothing itself, is not asked;
  4. the fresh account is removed again.
Exit status 0 when every step held, 1 otherwise (including after --timeout seconds).

    ALICE_PASSWORD=… USER_PASSWORD=… slixmpp_invite.py --port 5222 --ca ca.pem \\
        --alice alice@localhost --user dave@localhost
"""

import asyncio
import sys
import urllib.parse

from slixmpp import JID
from slixmpp_register import Registrant
from xmpp_common import Client, Failure, log, password_from_env, scenario_main

DATA = "jabber:x:data"
INVITE = "urn:xmpp:invite#invite"
CREATE_ACCOUNT = "urn:xmpp:invite#create-account"
PARS = "urn:xmpp:pars:0"


class Inviter(Client):
    """alice: runs ad-hoc commands and approves no subscription herself."""

    def __init__(self, jid, password, args):
        super().__init__(jid, password, args)
        self.register_plugin("xep_0050")
        self.roster.auto_authorize = False
        self.roster.auto_subscribe = False
        self.asked = asyncio.Queue()
        self.add_event_handler("presence_subscribe", lambda p: self.asked.put_nowait(p))


def form_values(command):
    """The result form's fields, var -> first value."""
    form = command.xml.find(f"{{{DATA}}}x")
    if form is None:
        raise Failure(f"the command result has no form: {command}")
    values = {}
    for field in form.findall(f"{{{DATA}}}field"):
        value = field.find(f"{{{DATA}}}value")
        values[field.get("var")] = value.text if value is not None else None
    return values


async def invite(alice):
    domain = JID(alice.boundjid.domain)
    listed = await alice.plugin["xep_0050"].get_commands(domain, timeout=10)
    nodes = [item[1] for item in listed["disco_items"]["items"]]
    if INVITE not in nodes or CREATE_ACCOUNT in nodes:
        raise Failure(f"alice's command list is {nodes}")
    log(f"{alice.boundjid.bare}: the command list offers {INVITE}")
    done = await alice.plugin["xep_0050"].send_command(domain, INVITE, timeout=10)
    command = done["command"]
    if done["type"] != "result" or command["status"] != "completed":
        raise Failure(f"the invitation command did not complete at once: {done}")
    values = form_values(command)
    if values.get("FORM_TYPE") != "urn:xmpp:invite#invitation":
        raise Failure(f"the result's FORM_TYPE is {values.get('FORM_TYPE')}")
    uri = values.get("uri") or ""
    prefix = f"xmpp:{alice.boundjid.bare}?roster;preauth="
    if not uri.startswith(prefix) or not uri.endswith(";ibr=y"):
        raise Failure(f"the invitation URI is {uri}")
    token = urllib.parse.unquote(uri[len(prefix):-len(";ibr=y")])
    for var in ("landing-url", "expire"):
        if not values.get(var):
            raise Failure(f"the result has no {var}: {values}")
    if not values["landing-url"].endswith(token):
        raise Failure(f"the landing page {values['landing-url']} is not the token's")
    log(f"{alice.boundjid.bare}: invitation {prefix}…;ibr=y, expires {values['expire']}")
    return token


async def scenario(args):
    alice = Inviter(args.alice, password_from_env(args.alice_password_env), args)
    alice.start()
    user = None
    try:
        await alice.ready
        token = await invite(alice)

        user = Registrant(args.user, password_from_env(args.user_password_env), args)
        approved = asyncio.get_event_loop().create_future()
        user.add_event_handler(
            "presence_subscribed",
            lambda p: approved.done() or approved.set_result(p),
        )
        user.start()
        await asyncio.wait_for(asyncio.shield(user.registered), 15)
        await user.ready
        # RFC 6121 §3.1.6: the approval reaches interested resources, those that asked for
        # the roster.
        await user.get_roster(timeout=10)
        presence = user.Presence()
        presence["to"] = alice.boundjid.bare
        presence["type"] = "subscribe"
        preauth = presence.xml.makeelement(f"{{{PARS}}}preauth", {"token": token})
        presence.xml.append(preauth)
        presence.send()
        try:
            answer = await asyncio.wait_for(approved, 10)
        except asyncio.TimeoutError:
            raise Failure("the request carrying the token was not approved") from None
        if answer["from"].bare != alice.boundjid.bare:
            raise Failure(f"subscribed from {answer['from']}")
        if not alice.asked.empty():
            raise Failure("alice's client was asked although the token approves the request")
        log(f"{user.boundjid.bare}: approved by the token, alice was not asked")
        await user.plugin["xep_0077"].cancel_registration(timeout=10)
    finally:
        await alice.close()
        if user is not None:
            await user.close()


def arguments(p):
    p.add_argument("--alice", required=True, help="the inviting account, user@domain")
    p.add_argument("--alice-password-env", default="ALICE_PASSWORD")
    p.add_argument("--user", required=True, help="a fresh account to register, user@domain")
    p.add_argument("--user-password-env", default="USER_PASSWORD")


DONE = "invited from the client, and the invitation approved a new contact"

if __name__ == "__main__":
    sys.exit(scenario_main(__doc__, scenario, DONE, arguments))
