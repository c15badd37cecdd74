#!/usr/bin/env python3
"""External service discovery (XEP-0215): alice, with slixmpp, asks her server for its TURN
services and writes the credential it gives to a file, for a TURN client to use.

alice logs in; the server must advertise urn:xmpp:extdisco:2 in its disco#info; a
<services type='turn'/> query must list exactly one TURN service, at --turn-host and
--turn-port over UDP, marked restricted, with a username of the form EXPIRY:alice's bare
JID (EXPIRY a Unix time within the next --ttl seconds) and a password; `expires` must be
that time in XEP-0082 form. A <credentials/> query for that host and type must give the
same kind of credential. The username and password are written to --out, one per line.
Exit status 0 when every step held, 1 otherwise (including after --timeout seconds).

    ALICE_PASSWORD=… slixmpp_turn.py --port 5222 --ca ca.pem --alice alice@localhost \
        --turn-host 127.0.0.1 --turn-port 3478 --ttl 3600 --out credential.txt
"""

import asyncio
import datetime
import sys
import time
import xml.etree.ElementTree as ET

from xmpp_common import Client, Failure, log, password_from_env, scenario_main

EXTDISCO = "urn:xmpp:extdisco:2"


def check_credential(service, args, jid):
    """The TURN REST API username/password of a <service/>, checked; (username, password)."""
    username = service.get("username", "")
    password = service.get("password", "")
    expiry, _, who = username.partition(":")
    if who != jid or not expiry.isdigit():
        raise Failure(f"the username {username!r} is not EXPIRY:{jid}")
    now = int(time.time())
    if not now < int(expiry) <= now + args.ttl + 1:
        raise Failure(f"the credential expires at {expiry}, not within {args.ttl} s of {now}")
    if not password:
        raise Failure(f"no password for {username!r}")
    expires = service.get("expires", "")
    stamp = datetime.datetime.fromisoformat(expires.replace("Z", "+00:00"))
    if int(stamp.timestamp()) != int(expiry) or stamp.utcoffset() != datetime.timedelta(0):
        raise Failure(f"expires={expires!r} is not the username's time {expiry} in UTC")
    return username, password


async def query(client, payload):
    iq = client.make_iq_get(ito=client.boundjid.domain)
    iq.append(payload)
    result = await iq.send(timeout=10)
    found = result.xml.find(f"{{{EXTDISCO}}}{payload.tag.split('}')[1]}")
    if found is None:
        raise Failure(f"no {payload.tag} in the answer: {result}")
    return found


async def scenario(args):
    alice = Client(args.alice, password_from_env(args.alice_password_env), args)
    alice.register_plugin("xep_0030")
    alice.start()
    try:
        await alice.ready
        info = await alice.plugin["xep_0030"].get_info(jid=alice.boundjid.domain, timeout=10)
        if EXTDISCO not in info["disco_info"]["features"]:
            raise Failure(f"{EXTDISCO} is not among the server's features")

        services = await query(alice, ET.Element(f"{{{EXTDISCO}}}services", {"type": "turn"}))
        turn = services.findall(f"{{{EXTDISCO}}}service")
        if len(turn) != 1:
            raise Failure(f"expected one TURN service, got {len(turn)}: {ET.tostring(services)!r}")
        service = turn[0]
        where = (service.get("type"), service.get("host"), service.get("port"), service.get("transport"))
        if where != ("turn", args.turn_host, str(args.turn_port), "udp"):
            raise Failure(f"the TURN service is {where}")
        if service.get("restricted") not in ("1", "true"):
            raise Failure("the TURN service is not marked restricted")
        username, password = check_credential(service, args, alice.boundjid.bare)
        log(f"{alice.boundjid.full}: TURN service {where[1]}:{where[2]}, username {username}")

        request = ET.Element(f"{{{EXTDISCO}}}credentials")
        ET.SubElement(request, f"{{{EXTDISCO}}}service", {"host": args.turn_host, "type": "turn"})
        credentials = await query(alice, request)
        given = credentials.findall(f"{{{EXTDISCO}}}service")
        if len(given) != 1:
            raise Failure(f"expected one credential, got {ET.tostring(credentials)!r}")
        check_credential(given[0], args, alice.boundjid.bare)
        log(f"{alice.boundjid.full}: <credentials/> answered for {args.turn_host}")

        with open(args.out, "w", encoding="utf-8") as f:
            f.write(f"{username}\n{password}\n")
    finally:
        await alice.close()


def arguments(p):
    p.add_argument("--alice", required=True, help="the account, user@domain")
    p.add_argument("--alice-password-env", default="ALICE_PASSWORD")
    p.add_argument("--turn-host", required=True)
    p.add_argument("--turn-port", type=int, required=True)
    p.add_argument("--ttl", type=int, required=True, help="the server's credential_ttl_secs")
    p.add_argument("--out", required=True, help="file for the username and password")


if __name__ == "__main__":
    sys.exit(scenario_main(__doc__, scenario, "the server's TURN credential was fetched and checked", arguments))
