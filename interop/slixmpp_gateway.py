#!/usr/bin/env python3
"""An XMPP user and a plain IRC user talk through an IRC gateway (biboumi) that is connected
to the server as an external component (XEP-0114).

alice logs in with slixmpp (STARTTLS, SCRAM, the certificate checked against --ca), then:
  1. the server's disco#items lists --gateway, and the gateway answers disco#info (an iq
     routed to the component and its result routed back);
  2. alice runs the gateway's "configure" ad-hoc command (XEP-0050) on the IRC server JID
     (--irc-server@--gateway) to make it connect to --irc-port without TLS: biboumi
     otherwise tries 6697 and 6670 (TLS), then 6667, which may belong to another server;
  3. the IRC user (--irc-nick, a raw-socket client) connects to the IRC server and joins
     --channel;
  4. alice joins the MUC <channel>%<irc-server>@<gateway> as --nick (XEP-0045 join
     presence) and must get her own presence back from the room; the IRC user must see her
     JOIN;
  5. alice sends a groupchat message: the IRC user must receive it as a PRIVMSG to the
     channel from --nick with exactly that text;
  6. the IRC user replies with a PRIVMSG to the channel: alice must receive it as a
     groupchat message from <room>/<irc-nick> with exactly that body;
  7. alice's connection drops (no unavailable presence, no stream close): the server must
     send unavailable presence to the room on her behalf (RFC 6121 §4.6.3), so the IRC user
     must see her leave (PART or QUIT).
Exit status 0 when every step held, 1 otherwise (including after --timeout seconds).

    ALICE_PASSWORD=… slixmpp_gateway.py --port 5222 --ca ca.pem --jid alice@localhost \
        --gateway biboumi.localhost --irc-port 6667
"""

import asyncio
import sys
import xml.etree.ElementTree as ET


from irc_client import IrcClient, IrcError
from xmpp_common import (
    Client,
    Failure,
    base_parser,
    log,
    password_from_env,
    run_scenario,
    setup_logging,
)

MUC = "http://jabber.org/protocol/muc"
MUC_USER = "http://jabber.org/protocol/muc#user"
DATA = "jabber:x:data"
COMMANDS = "http://jabber.org/protocol/commands"


class Alice(Client):
    """The XMPP user: also queues the presences she receives."""

    def __init__(self, jid, password, args):
        super().__init__(jid, password, args)
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0050")
        self.presences = asyncio.Queue()
        self.add_event_handler("presence", self.presences.put_nowait)

    async def next_matching(self, queue, predicate, timeout, what):
        """The next stanza of `queue` matching `predicate`, skipping the others; an error
        stanza from the gateway fails at once."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise Failure(f"alice: no {what} within {timeout} s")
            try:
                stanza = await asyncio.wait_for(queue.get(), remaining)
            except asyncio.TimeoutError:
                raise Failure(f"alice: no {what} within {timeout} s") from None
            if stanza["type"] == "error":
                raise Failure(f"alice: got an error while waiting for {what}: {stanza}")
            if predicate(stanza):
                return stanza


async def discover(alice, gateway):
    items = await alice.plugin["xep_0030"].get_items(jid=alice.boundjid.domain, timeout=10)
    jids = [item[0] for item in items["disco_items"]["items"]]
    if gateway not in jids:
        raise Failure(f"the server's disco#items {jids} does not list {gateway}")
    info = await alice.plugin["xep_0030"].get_info(jid=gateway, timeout=10)
    identities = [(i[0], i[1], i[3]) for i in info["disco_info"]["identities"]]
    if str(info["from"]) != gateway or not identities:
        raise Failure(f"unexpected disco#info from the gateway: {info}")
    log(f"alice: the server lists {gateway}; its disco#info identities: {identities}")


async def configure_irc_server(alice, server_jid, irc_port):
    """Runs the gateway's 'configure' command on the IRC server JID: every field of the form
    is sent back as received, except the port lists (plain --irc-port, no TLS ports)."""
    xep_0050 = alice.plugin["xep_0050"]
    first = await xep_0050.send_command(server_jid, "configure", timeout=10)
    command = first["command"]
    form = command.xml.find(f"{{{DATA}}}x")
    if first["type"] != "result" or form is None:
        raise Failure(f"the configure command gave no form: {first}")
    submit = ET.Element(f"{{{DATA}}}x", {"type": "submit"})
    for field in form.findall(f"{{{DATA}}}field"):
        var = field.get("var")
        if not var:
            continue
        values = [v.text or "" for v in field.findall(f"{{{DATA}}}value")]
        if var == "ports":
            values = [str(irc_port)]
        elif var == "tls_ports":
            values = []
        out = ET.SubElement(submit, f"{{{DATA}}}field", {"var": var})
        for value in values:
            ET.SubElement(out, f"{{{DATA}}}value").text = value
    done = await xep_0050.send_command(
        server_jid,
        "configure",
        action="complete",
        payload=submit,
        sessionid=command["sessionid"],
        timeout=10,
    )
    status = done["command"]["status"]
    notes = [text for _, text in done["command"]["notes"]]
    if done["type"] != "result" or status != "completed":
        raise Failure(f"the configure command did not complete: {done}")
    log(f"alice: configured {server_jid}: port {irc_port}, no TLS ({'; '.join(notes)})")


def is_self_presence(stanza, occupant):
    if str(stanza["from"]) != occupant:
        return False
    x = stanza.xml.find(f"{{{MUC_USER}}}x")
    if x is None:
        return False
    # XEP-0045 §7.2.2: status 110 marks the presence that refers to the joining user.
    return "110" in {s.get("code") for s in x.findall(f"{{{MUC_USER}}}status")}


async def scenario(args):
    alice = Alice(f"{args.jid}/interop-gw", password_from_env(args.password_env), args)
    irc = IrcClient(args.irc_nick, log=log)
    room = f"{args.channel}%{args.irc_server}@{args.gateway}"
    occupant = f"{room}/{args.nick}"
    try:
        alice.start()
        await alice.ready

        await discover(alice, args.gateway)
        await configure_irc_server(alice, f"{args.irc_server}@{args.gateway}", args.irc_port)

        await irc.connect(args.irc_host, args.irc_port, 15)
        await irc.join(args.channel, 10)

        join = alice.make_presence(pto=occupant)
        join.append(ET.Element(f"{{{MUC}}}x"))
        join.send()
        await alice.next_matching(
            alice.presences,
            lambda p: is_self_presence(p, occupant),
            30,
            f"self-presence from {occupant}",
        )
        log(f"alice: joined {room} as {args.nick}")
        await irc.expect(
            lambda l: l.command == "JOIN" and l.nick == args.nick and l.params[:1] == [args.channel],
            15,
            f"JOIN of {args.nick}",
        )
        log(f"irc: saw {args.nick} join {args.channel}")

        # Escaping and non-ASCII must survive XMPP → IRC unchanged (one line: IRC has no
        # multi-line messages).
        hello = "Hello IRC from XMPP <&> 'quoted' — ünïcødé ✓"
        alice.send_message(mto=room, mbody=hello, mtype="groupchat")
        line = await irc.expect(
            lambda l: l.command == "PRIVMSG" and l.nick == args.nick,
            15,
            f"PRIVMSG from {args.nick}",
        )
        if line.params != [args.channel, hello]:
            raise Failure(f"irc: got {line.raw!r}, expected a PRIVMSG to {args.channel} with {hello!r}")
        log(f"irc: {args.irc_nick} received {hello!r} from {args.nick} in {args.channel}")

        reply = "Hi alice, IRC here: <b>&amp;</b> 42 ✔"
        await irc.send(f"PRIVMSG {args.channel} :{reply}")
        sender = f"{room}/{args.irc_nick}"
        msg = await alice.next_matching(
            alice.messages,
            lambda m: str(m["from"]) == sender,
            15,
            f"message from {sender}",
        )
        if msg["type"] != "groupchat" or msg["body"] != reply:
            raise Failure(f"alice: got {msg}, expected a groupchat message with {reply!r}")
        if msg["to"].bare != alice.boundjid.bare:
            raise Failure(f"alice: the message is addressed to {msg['to']}")
        log(f"alice: received {reply!r} from {sender}")

        alice.abort()
        line = await irc.expect(
            lambda l: l.command in ("PART", "QUIT") and l.nick == args.nick,
            15,
            f"PART or QUIT of {args.nick} after her connection dropped",
        )
        log(f"irc: {args.nick} left after her connection dropped: {line.raw!r}")
    finally:
        await asyncio.gather(irc.close(), alice.close(), return_exceptions=True)


def main():
    p = base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--jid", required=True, help="the XMPP account, user@domain")
    p.add_argument("--password-env", default="ALICE_PASSWORD")
    p.add_argument("--nick", default="alice", help="alice's nick in the room (and on IRC)")
    p.add_argument("--gateway", required=True, help="the gateway's component domain")
    p.add_argument("--irc-server", default="127.0.0.1", help="IRC server name in the JIDs")
    p.add_argument("--irc-host", default="127.0.0.1", help="where the IRC user connects")
    p.add_argument("--irc-port", type=int, required=True)
    p.add_argument("--irc-nick", default="bob", help="the plain IRC user's nick")
    p.add_argument("--channel", default="#chan")
    args = p.parse_args()
    setup_logging(args.debug)
    status = run_scenario(scenario, args, failures=(IrcError,))
    if status == 0:
        log("gateway: both directions delivered; the dropped session left the channel")
    return status

if __name__ == "__main__":
    sys.exit(main())
