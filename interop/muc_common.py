"""Multi-user chat (XEP-0045) pieces shared by the MUC interop scripts: an occupant client
on slixmpp's xep_0045 plugin that keeps every stanza it receives, and the checks of what a
room sends (status codes, roles, delays) read from the XML itself.

Every stanza is kept (not queued and consumed), so a check that waits for one stanza never
throws away another a later check needs: a reflection that overtakes an occupant's
presence, history that arrives with the subject.
"""

import asyncio
import datetime
import uuid

from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from xmpp_common import Client, Failure, log

NS_CLIENT = "jabber:client"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_MUC_OWNER = "http://jabber.org/protocol/muc#owner"
NS_DATA = "jabber:x:data"
NS_ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"
NS_DELAY = "urn:xmpp:delay"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def q(ns, name):
    return f"{{{ns}}}{name}"


def unique(prefix):
    """A fresh name: rooms and nicknames of one run never meet those of another."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Inbox:
    """Every stanza of one kind a client received, in order. `expect` waits for the first
    one after a mark that matches, leaving the others for later checks."""

    def __init__(self):
        self.items = []
        self._grew = asyncio.Event()

    def put(self, item):
        self.items.append(item)
        self._grew.set()

    def mark(self):
        """The position after everything received so far."""
        return len(self.items)

    def index_of(self, item):
        """Where `item` (this very stanza: stanzas compare equal by content) is."""
        return next(i for i, x in enumerate(self.items) if x is item)

    async def expect(self, match, timeout, what, since=0):
        """The first item at or after `since` for which `match(item)` is true; raises
        Failure("no {what} within {timeout} s") when time runs out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        i = since
        while True:
            while i < len(self.items):
                if match(self.items[i]):
                    return self.items[i]
                i += 1
            left = deadline - loop.time()
            if left <= 0:
                raise Failure(f"no {what} within {timeout} s")
            self._grew.clear()
            try:
                await asyncio.wait_for(self._grew.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def quiet(self, match, seconds, what, since=0):
        """Fails if an item matching `match` arrives at or after `since` within `seconds`."""
        try:
            found = await self.expect(match, seconds, what, since)
        except Failure:
            return
        raise Failure(f"unexpected {what}: {found}")


class Occupant(Client):
    """A client for rooms: slixmpp's xep_0045 builds its joins and tracks its rooms; every
    presence and message it receives is also kept raw, in `presences` and `inbox`."""

    def __init__(self, jid, password, args):
        super().__init__(jid, password, args)
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0045")
        self.register_plugin("xep_0203")
        self.presences = Inbox()
        self.inbox = Inbox()
        # Raw handlers: the roster's ignore_updates (which xep_0045 sets for occupants) hides
        # later presence from the generic 'presence' event, and errors have no MUC payload.
        self.register_handler(
            Callback(
                "muc interop presence", MatchXPath(f"{{{NS_CLIENT}}}presence"), self.presences.put
            )
        )
        self.register_handler(
            Callback("muc interop message", MatchXPath(f"{{{NS_CLIENT}}}message"), self.inbox.put)
        )

    @property
    def me(self):
        return self.boundjid.bare

    def join_stanza(self, occupant_jid, history=None):
        """The join presence (XEP-0045 §7.2.1); `history` is maxstanzas (None: the room's
        default)."""
        room, nick = occupant_jid.split("/", 1)
        return self.plugin["xep_0045"].make_join_stanza(room, nick, maxstanzas=history)

    async def join(self, occupant_jid, step, history=None, expect_codes=()):
        """Joins and waits for the room's presence for us (status 110, §7.2.2), checking the
        status codes `expect_codes` are there; returns (self-presence, mark before joining)."""
        mark = self.presences.mark()
        stanza = self.join_stanza(occupant_jid, history)
        self.plugin["xep_0045"].rooms[None][stanza["to"].bare] = {}
        self.plugin["xep_0045"].our_nicks[None][stanza["to"].bare] = stanza["to"].resource
        stanza.send()
        pres = await self.presences.expect(
            lambda p: str(p["from"]) == occupant_jid
            and (p["type"] == "error" or 110 in status_codes(p)),
            step,
            f"self-presence (status 110) from {occupant_jid}",
            mark,
        )
        if pres["type"] == "error":
            raise Failure(
                f"{self.me}: joining {occupant_jid} failed: {error_condition(pres)} ({pres})"
            )
        missing = set(expect_codes) - status_codes(pres)
        if missing:
            raise Failure(
                f"{self.me}: self-presence from {occupant_jid} lacks status "
                f"{sorted(missing)}: {pres}"
            )
        log(
            f"{self.me}: joined as {occupant_jid} (status {sorted(status_codes(pres))}, "
            f"role {item_attr(pres, 'role')}, affiliation {item_attr(pres, 'affiliation')})"
        )
        return pres, mark

    async def configure(self, room, step, fields=None):
        """Submits the room's configuration, which unlocks a new room: `fields`, a {var: value}
        dict of muc#roomconfig fields (§10.1.3), or an empty form, which accepts the default
        configuration (an instant room, §10.1.2)."""
        iq = self.make_iq_set(ito=room)
        query = iq.xml.makeelement(q(NS_MUC_OWNER, "query"), {})
        form = query.makeelement(q(NS_DATA, "x"), {"type": "submit"})
        values = {"FORM_TYPE": NS_ROOMCONFIG, **fields} if fields else {}
        for var, value in values.items():
            field = form.makeelement(q(NS_DATA, "field"), {"var": var})
            text = field.makeelement(q(NS_DATA, "value"), {})
            text.text = value
            field.append(text)
            form.append(field)
        query.append(form)
        iq.xml.append(query)
        await iq.send(timeout=step)
        log(f"{self.me}: configured {room}: {fields or 'an instant room'}")

    async def leave(self, occupant_jid, step):
        """Exits (§7.14): the room answers with our unavailable presence (status 110)."""
        mark = self.presences.mark()
        room, nick = occupant_jid.split("/", 1)
        self.plugin["xep_0045"].leave_muc(room, nick)
        pres = await self.presences.expect(
            lambda p: str(p["from"]) == occupant_jid and p["type"] == "unavailable",
            step,
            f"own unavailable presence from {occupant_jid}",
            mark,
        )
        if 110 not in status_codes(pres):
            raise Failure(
                f"{self.me}: the unavailable presence leaving {occupant_jid} "
                f"lacks status 110: {pres}"
            )
        log(f"{self.me}: left {occupant_jid}")

    async def expect_occupant(self, occupant_jid, step, since, available=True):
        """The presence of another occupant, at or after `since`; when unavailable, its role
        must be none (§7.14), unless it is a nickname change (status 303, §7.6)."""
        gone = available is False
        pres = await self.presences.expect(
            lambda p: str(p["from"]) == occupant_jid
            and p["type"] != "error"
            and (p["type"] == "unavailable") == gone,
            step,
            f"{'unavailable' if gone else 'available'} presence of {occupant_jid} at {self.me}",
            since,
        )
        if gone and 303 not in status_codes(pres) and item_attr(pres, "role") != "none":
            raise Failure(
                f"{self.me}: {occupant_jid} left with role {item_attr(pres, 'role')!r}, "
                f"not none: {pres}"
            )
        log(f"{self.me}: sees {occupant_jid} {'leave' if gone else 'in the room'}")
        return pres

    def groupchat(self, room, body):
        """Sends a groupchat message with an id of its own; returns the id."""
        msg = self.make_message(mto=room, mbody=body, mtype="groupchat")
        msg["id"] = unique("gc")
        msg.send()
        return msg["id"]

    async def expect_groupchat(self, occupant_jid, body, step, since=0, msg_id=None):
        """A groupchat message from `occupant_jid` with exactly `body` (and `msg_id`, when
        given: the reflection keeps the sender's id, §7.4)."""
        msg = await self.inbox.expect(
            lambda m: m["type"] == "groupchat"
            and str(m["from"]) == occupant_jid
            and m["body"] == body,
            step,
            f"groupchat {body!r} from {occupant_jid} at {self.me}",
            since,
        )
        if msg_id is not None and msg["id"] != msg_id:
            raise Failure(
                f"{self.me}: the reflection has id {msg['id']!r}, not the sent {msg_id!r}"
            )
        if msg.xml.find(q(NS_DELAY, "delay")) is not None:
            raise Failure(f"{self.me}: a live groupchat message carries a delay: {msg}")
        log(
            f"{self.me}: got {body!r} from {occupant_jid}"
            + (f" with its id {msg_id}" if msg_id else "")
        )
        return msg


def status_codes(stanza):
    x = stanza.xml.find(q(NS_MUC_USER, "x"))
    if x is None:
        return set()
    codes = set()
    for s in x.findall(q(NS_MUC_USER, "status")):
        try:
            codes.add(int(s.get("code", "")))
        except ValueError:
            pass
    return codes


def item_attr(stanza, attr):
    item = stanza.xml.find(f"{q(NS_MUC_USER, 'x')}/{q(NS_MUC_USER, 'item')}")
    return None if item is None else item.get(attr)


def error_condition(stanza):
    err = stanza.xml.find(q(NS_CLIENT, "error"))
    if err is None:
        return None
    for child in err:
        if child.tag.startswith(f"{{{NS_STANZAS}}}") and not child.tag.endswith("}text"):
            return child.tag.split("}", 1)[1]
    return None


def delay_of(stanza):
    """(stamp as an aware datetime, from) of the XEP-0203 delay, or None."""
    d = stanza.xml.find(q(NS_DELAY, "delay"))
    if d is None:
        return None
    stamp = d.get("stamp", "")
    try:
        when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        raise Failure(f"the delay stamp {stamp!r} is not an XEP-0082 date-time: {stanza}") from None
    if when.tzinfo is None:
        raise Failure(f"the delay stamp {stamp!r} has no time zone: {stanza}")
    return when, d.get("from")


def check_history(messages, expected, room, started):
    """The history a joining occupant got (§7.2.13): exactly the `expected` (occupant JID,
    body) pairs, in order, each a groupchat message with a XEP-0203 delay from the room JID,
    stamped between `started` (a time.time() before they were sent) and now, in order."""
    got = [(str(m["from"]), m["body"]) for m in messages]
    if got != expected:
        raise Failure(f"history {got}, expected {expected}")
    now = datetime.datetime.now(datetime.timezone.utc)
    earliest = datetime.datetime.fromtimestamp(started, datetime.timezone.utc) - datetime.timedelta(
        seconds=2
    )
    last = None
    for m in messages:
        delay = delay_of(m)
        if delay is None:
            raise Failure(f"a history message has no delay (XEP-0203): {m}")
        when, origin = delay
        if origin != room:
            raise Failure(f"a history message's delay is from {origin!r}, not the room {room}: {m}")
        if not earliest <= when <= now + datetime.timedelta(seconds=2):
            raise Failure(
                f"a history message's delay stamp {when} is not between {earliest} and {now}"
            )
        if last is not None and when < last:
            raise Failure(f"history stamps go back in time: {last} then {when}")
        last = when
    log(f"history: {len(messages)} messages in order, each delayed (XEP-0203) from {room}")
