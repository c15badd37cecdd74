#!/usr/bin/env python3
"""Multi-user chat (XEP-0045) with two slixmpp clients (plugin xep_0045) in a room.

alice and bob log in, each to its own server (--alice-host, --bob-host; the same one unless
told otherwise, so the scenarios run on one server or across federation), and meet in a
fresh room at --service. The creator (--creator, alice by default) makes the room; the other
user is the joiner. Scenarios (--scenario):

  room       the creator enters a new room (status 110 and 201, owner, moderator); while it
             is locked the joiner is refused with item-not-found (§7.2.10; not checked with
             --locked-rooms no, for a service that opens new rooms at once); the creator
             accepts the default configuration (instant room, §10.1.2) and sets the subject;
             the joiner enters without history, after the creator's presence, and gets the
             subject; each sends a groupchat message, which the other receives from its
             occupant JID and the sender gets back with its own id (§7.4); the joiner changes
             nickname (the creator sees the old nick leave with status 303 and the new nick,
             then the new occupant, §7.6); a private message each way (§7.5); the joiner
             exits (§7.14; the creator sees role none), the creator speaks meanwhile, the joiner
             enters again and gets the three messages as history, in order, each with a
             XEP-0203 delay from the room JID (§7.2.13), then the subject (§7.2.15).
  departure  the creator makes an instant room; the joiner's groupchat message before
             entering comes back as not-acceptable (§7.4), its entry with the creator's
             nickname as a conflict (§7.2.8); it enters with its own and messages go both
             ways. Then the joiner logs in again with the same resource, which replaces its
             session (RFC 6120 §7.7.2.2): the creator must see the old occupant leave before
             the new session enters again; and at last that connection is cut without
             leaving the room, and the creator must see it leave. Either way the room learns
             it only from the joiner's server, which sends unavailable presence for the
             directed presence of a session that ended (RFC 6121 §4.6.3).

Exit status 0 when every check held, 1 otherwise (including after --timeout seconds).

    ALICE_PASSWORD=… BOB_PASSWORD=… slixmpp_muc.py --scenario room --port 5222 \
        --ca ca.pem --alice alice@localhost --bob bob@localhost --service conference.localhost
"""

import argparse
import asyncio
import sys
import time

from muc_common import (
    Occupant,
    check_history,
    error_condition,
    item_attr,
    q,
    status_codes,
    unique,
    NS_MUC_USER,
)
from xmpp_common import Failure, log, password_from_env, scenario_main


def occupants(args, resource):
    """(creator, joiner) clients, each for its own server."""
    users = {}
    for name in ("alice", "bob"):
        ns = argparse.Namespace(**vars(args))
        ns.host = getattr(args, f"{name}_host") or args.host
        jid = getattr(args, name)
        users[name] = Occupant(
            f"{jid}/{resource}", password_from_env(getattr(args, f"{name}_password_env")), ns
        )
    joiner = "bob" if args.creator == "alice" else "alice"
    return users[args.creator], users[joiner]


async def login(*clients):
    for c in clients:
        c.start()
    await asyncio.gather(*(c.ready for c in clients))


async def close(*clients):
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def nick_of(client):
    return client.boundjid.user


async def meet(creator, joiner, service):
    """Both log in; a fresh room at `service` and their occupant JIDs there (each user's
    nickname is its username)."""
    await login(creator, joiner)
    room = f"{unique('room')}@{service}"
    return room, f"{room}/{nick_of(creator)}", f"{room}/{nick_of(joiner)}"


async def create_instant(creator, room, step, locked_out=None):
    """The creator enters a new room (status 110 and 201, owner and moderator, §10.1.1) and
    unlocks it with the default configuration. `locked_out`, a (client, occupant JID) pair,
    tries to enter before that and must be refused with item-not-found (§7.2.10)."""
    pres, _ = await creator.join(
        f"{room}/{nick_of(creator)}", step, history=0, expect_codes=(110, 201)
    )
    if (item_attr(pres, "affiliation"), item_attr(pres, "role")) != ("owner", "moderator"):
        raise Failure(
            f"the creator is {item_attr(pres, 'affiliation')}/{item_attr(pres, 'role')}, "
            f"not owner/moderator: {pres}"
        )
    if locked_out is not None:
        client, occupant_jid = locked_out
        mark = client.presences.mark()
        client.join_stanza(occupant_jid, 0).send()
        await expect_presence_error(client, occupant_jid, "item-not-found", step, mark)
    await creator.configure(room, step)


async def expect_presence_error(client, occupant_jid, condition, step, since):
    pres = await client.presences.expect(
        lambda p: p["type"] == "error" and str(p["from"]) == occupant_jid,
        step,
        f"presence error from {occupant_jid}",
        since,
    )
    got = error_condition(pres)
    if got != condition:
        raise Failure(
            f"{client.me}: presence error {got!r} from {occupant_jid}, "
            f"expected {condition!r}: {pres}"
        )
    log(f"{client.me}: refused by {occupant_jid} with {condition}")


async def expect_subject(client, room, subject, step, since):
    """The subject message (§7.2.15): a groupchat message from the room (or the occupant who
    set it) with a <subject/> and no body."""

    def is_subject(m):
        el = m.xml.find(q("jabber:client", "subject"))
        return (
            m["type"] == "groupchat"
            and m["from"].bare == room
            and el is not None
            and (el.text or "") == subject
        )

    msg = await client.inbox.expect(
        is_subject, step, f"the subject {subject!r} of {room} at {client.me}", since
    )
    if msg["body"]:
        raise Failure(f"{client.me}: the subject message has a body: {msg}")
    log(f"{client.me}: sees the subject {subject!r}")
    return msg


async def room(args):
    creator, joiner = occupants(args, "muc-room")
    step = args.step_timeout
    try:
        room, c_jid, j_jid = await meet(creator, joiner, args.service)
        # ejabberd (23.01) opens a new room at once: nobody is locked out of it to check.
        locked_out = (joiner, j_jid) if args.locked_rooms == "yes" else None
        await create_instant(creator, room, step, locked_out=locked_out)

        subject = f"subject of {room} <&> ünïcødé"
        creator.plugin["xep_0045"].set_subject(room, subject)
        await expect_subject(creator, room, subject, step, 0)

        # Entering without history: the creator's presence first, then ours, then the subject.
        c_mark, i_mark = creator.presences.mark(), joiner.inbox.mark()
        pres, mark = await joiner.join(j_jid, step, history=0)
        seen = await joiner.expect_occupant(c_jid, step, mark)
        if joiner.presences.index_of(seen) > joiner.presences.index_of(pres):
            raise Failure("the joiner got its own presence before the creator's (§7.2.2)")
        await creator.expect_occupant(j_jid, step, c_mark)
        await expect_subject(joiner, room, subject, step, i_mark)

        started = time.time()
        said = []
        for sender, receiver, sender_jid in ((creator, joiner, c_jid), (joiner, creator, j_jid)):
            body = f"{sender.me} to the room <&> {time.time_ns()}"
            mark_r, mark_s = receiver.inbox.mark(), sender.inbox.mark()
            msg_id = sender.groupchat(room, body)
            await sender.expect_groupchat(sender_jid, body, step, mark_s, msg_id=msg_id)
            await receiver.expect_groupchat(sender_jid, body, step, mark_r)
            said.append((sender_jid, body))

        # Nickname change (§7.6): 303 with the new nick on the old occupant JID's unavailable.
        new_nick = f"{nick_of(joiner)}-2"
        j2_jid = f"{room}/{new_nick}"
        c_mark, j_mark = creator.presences.mark(), joiner.presences.mark()
        got = await joiner.plugin["xep_0045"].set_self_nick(room, new_nick, timeout=step)
        if got != new_nick:
            raise Failure(f"the room gave the nickname {got!r}, not {new_nick!r}")
        gone = await creator.expect_occupant(j_jid, step, c_mark, available=False)
        if 303 not in status_codes(gone) or item_attr(gone, "nick") != new_nick:
            raise Failure(
                f"the creator saw {j_jid} leave without status 303 and nick {new_nick}: {gone}"
            )
        await creator.expect_occupant(j2_jid, step, c_mark)
        await joiner.presences.expect(
            lambda p: str(p["from"]) == j2_jid
            and p["type"] != "unavailable"
            and 110 in status_codes(p),
            step,
            f"own presence as {j2_jid}",
            j_mark,
        )
        log(f"{creator.me}: saw {j_jid} become {j2_jid} (status 303)")

        # Private messages (§7.5) through the occupant JIDs.
        for sender, receiver, to, from_ in (
            (creator, joiner, j2_jid, c_jid),
            (joiner, creator, c_jid, j2_jid),
        ):
            body = f"private from {sender.me} <&> {time.time_ns()}"
            mark = receiver.inbox.mark()
            sender.send_message(mto=to, mbody=body, mtype="chat")
            msg = await receiver.inbox.expect(
                lambda m: m["type"] == "chat" and str(m["from"]) == from_ and m["body"] == body,
                step,
                f"private message from {from_} at {receiver.me}",
                mark,
            )
            if msg.xml.find(q(NS_MUC_USER, "x")) is None:
                raise Failure(
                    f"{receiver.me}: a private message lacks <x xmlns='{NS_MUC_USER}'/>: {msg}"
                )
            log(f"{receiver.me}: got the private message from {from_}")

        # Exit, a message meanwhile, entry with history (§7.2.13) and the subject after it.
        c_mark = creator.presences.mark()
        await joiner.leave(j2_jid, step)
        await creator.expect_occupant(j2_jid, step, c_mark, available=False)
        body = f"while {new_nick} was away <&> {time.time_ns()}"
        mark = creator.inbox.mark()
        msg_id = creator.groupchat(room, body)
        await creator.expect_groupchat(c_jid, body, step, mark, msg_id=msg_id)
        said.append((c_jid, body))
        i_mark = joiner.inbox.mark()
        await joiner.join(j2_jid, step, history=20)
        subject_msg = await expect_subject(joiner, room, subject, step, i_mark)
        after = joiner.inbox.items[i_mark : joiner.inbox.index_of(subject_msg)]
        history = [m for m in after if m["type"] == "groupchat" and m["body"]]
        check_history(history, said, room, started)
    finally:
        await close(creator, joiner)


async def departure(args):
    creator, joiner = occupants(args, "muc-departure")
    again = None
    step = args.step_timeout
    try:
        room, c_jid, j_jid = await meet(creator, joiner, args.service)
        await create_instant(creator, room, step)

        mark = joiner.inbox.mark()
        joiner.groupchat(room, "not an occupant yet")
        err = await joiner.inbox.expect(
            lambda m: m["type"] == "error" and m["from"].bare == room,
            step,
            f"the error for a groupchat message from a non-occupant of {room}",
            mark,
        )
        if error_condition(err) != "not-acceptable":
            raise Failure(
                f"{joiner.me}: a non-occupant's message got {error_condition(err)!r}, "
                f"not not-acceptable: {err}"
            )
        log(f"{joiner.me}: a groupchat message before entering is refused with not-acceptable")

        mark = joiner.presences.mark()
        joiner.join_stanza(c_jid, 0).send()
        await expect_presence_error(joiner, c_jid, "conflict", step, mark)

        c_mark = creator.presences.mark()
        await joiner.join(j_jid, step, history=0)
        await creator.expect_occupant(j_jid, step, c_mark)
        for sender, receiver, sender_jid in ((joiner, creator, j_jid), (creator, joiner, c_jid)):
            body = f"{sender.me} before the cut <&> {time.time_ns()}"
            mark = receiver.inbox.mark()
            sender.groupchat(room, body)
            await receiver.expect_groupchat(sender_jid, body, step, mark)

        # A new login with the same resource replaces the session (RFC 6120 §7.7.2.2): the
        # room must see the old occupant leave before the new session enters again.
        c_mark = creator.presences.mark()
        again = Occupant(str(joiner.boundjid), joiner.password, joiner.args)
        again.start()
        await again.ready
        joiner.abort()
        log(f"{again.boundjid}: logged in again, replacing the occupant's session")
        await creator.expect_occupant(j_jid, step, c_mark, available=False)
        await again.join(j_jid, step, history=0)
        await creator.expect_occupant(j_jid, step, c_mark)

        c_mark = creator.presences.mark()
        again.abort()
        log(f"{again.me}: connection cut without leaving {room}")
        await creator.expect_occupant(j_jid, step, c_mark, available=False)
    finally:
        await close(creator, joiner, *([again] if again else []))


SCENARIOS = {"room": room, "departure": departure}


def add_arguments(p):
    p.add_argument("--scenario", choices=sorted(SCENARIOS), required=True)
    p.add_argument("--alice", required=True, help="first account, user@domain")
    p.add_argument("--bob", required=True, help="second account, user@domain")
    p.add_argument("--alice-host", help="address of alice's server (default --host)")
    p.add_argument("--bob-host", help="address of bob's server (default --host)")
    p.add_argument("--alice-password-env", default="ALICE_PASSWORD")
    p.add_argument("--bob-password-env", default="BOB_PASSWORD")
    p.add_argument("--service", required=True, help="the MUC service's domain")
    p.add_argument(
        "--creator", choices=["alice", "bob"], default="alice", help="who makes the room"
    )
    p.add_argument(
        "--locked-rooms",
        choices=["yes", "no"],
        default="yes",
        help="whether the service locks a new room until it is configured (§10.1.1)",
    )
    p.add_argument(
        "--step-timeout", type=float, default=10.0, help="bound on each awaited stanza, seconds"
    )


def main():
    def scenario(args):
        return SCENARIOS[args.scenario](args)

    return scenario_main(__doc__, scenario, "muc: every check held", add_arguments)


if __name__ == "__main__":
    sys.exit(main())
