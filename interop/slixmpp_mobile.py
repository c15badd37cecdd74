#!/usr/bin/env python3
"""Mobile-client checks with slixmpp's own plugins: stream management (XEP-0198, plugin
xep_0198) and client state indication (XEP-0352, plugin xep_0352).

Two scenarios (--scenario):

  sm   alice (xep_0198, resumption asked for) and bob (no stream management) log in. Bob
       sends alice a first batch of messages; once she has read some of them her TCP
       connection is cut without a stream close (the transport aborted, as when a phone
       loses its network). Bob sends a second batch while she is away; alice reconnects and
       slixmpp resumes the stream: `session_resumed` fires with the id of the stream she
       enabled, `session_start` does not fire again, and stanzas still reach the full JID
       bound the first time. Alice must then have every message of both batches exactly
       once and in order (counted by id, nothing deduplicated). Alice's own messages to bob,
       before the cut and after the resumption, must be acknowledged by the server
       (`stanza_acked` for each, nothing left unacknowledged after an <r/>), and bob must
       get them exactly once.
  csi  alice (xep_0352) sends <inactive/>; bob sends her several directed presences
       (different `show` values, each with its own status) and then a chat message with a
       body. While only presences are waiting alice gets nothing; with the message she gets
       exactly the last presence, then the message. After <active/> a further presence
       from bob reaches her at once.

Exit status 0 when every check held, 1 otherwise (including after --timeout seconds).

    ALICE_PASSWORD=… BOB_PASSWORD=… slixmpp_mobile.py --scenario sm --port 5222 \
        --ca ca.pem --alice alice@localhost --bob bob@localhost
"""

import asyncio
import sys
import time

from xmpp_common import (
    Client,
    Failure,
    base_parser,
    log,
    password_from_env,
    run_scenario,
    setup_logging,
)


async def drain(queue, quiet, timeout):
    """Everything `queue` yields until it stays empty for `quiet` seconds (at most
    `timeout` seconds in all)."""
    items = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            items.append(await asyncio.wait_for(queue.get(), quiet))
        except asyncio.TimeoutError:
            break
    return items


async def receive_ids(client, sender_bare, tag, n, timeout):
    """The ids of the next `n` messages from `sender_bare` whose id has `tag` (this run's);
    an error or a message from anyone else is a failure. Messages of earlier runs (held
    for alice when one of them ended early) are skipped."""
    ids = []
    deadline = time.monotonic() + timeout
    while len(ids) < n:
        left = deadline - time.monotonic()
        try:
            msg = await asyncio.wait_for(client.messages.get(), max(left, 0.01))
        except asyncio.TimeoutError:
            raise Failure(
                f"{client.boundjid.bare}: {len(ids)} of {n} messages within {timeout} s: {ids}"
            ) from None
        if msg["type"] == "error" or msg["from"].bare != sender_bare:
            raise Failure(f"{client.boundjid.bare}: unexpected message {msg}")
        if str(tag) not in msg["id"]:
            log(f"{client.boundjid.bare}: skips a message of an earlier run: {msg['id']}")
            continue
        ids.append(msg["id"])
    return ids


# --- sm ----------------------------------------------------------------------------------------


class SmClient(Client):
    """alice: stream management with resumption; reconnects (once the scenario says so)
    when her connection is lost, as a mobile client does."""

    def __init__(self, jid, password, args):
        super().__init__(jid, password, args)
        self.register_plugin("xep_0198", {"allow_resume": True, "window": 1})
        self.session_starts = 0
        self.enabled_ids = []
        self.resumed = asyncio.get_event_loop().create_future()
        self.acked = []
        self.reconnect_on_loss = False
        self.losses = 0
        self.add_event_handler("session_start", self._count_start)
        self.add_event_handler("sm_enabled", self._on_enabled)
        self.add_event_handler("sm_failed", self._on_sm_failed)
        self.add_event_handler("session_resumed", self._on_resumed)
        self.add_event_handler("stanza_acked", self._on_acked)
        self.add_event_handler("disconnected", self._on_disconnected)

    def _count_start(self, _event):
        self.session_starts += 1

    def _on_enabled(self, enabled):
        self.enabled_ids.append((enabled["id"], enabled["resume"]))

    def _on_sm_failed(self, failed):
        if not self.resumed.done():
            self.resumed.set_exception(Failure(f"alice: the server answered <failed/>: {failed}"))

    def _on_resumed(self, resumed):
        if not self.resumed.done():
            self.resumed.set_result(resumed)

    def _on_acked(self, stanza):
        self.acked.append(stanza)

    def _on_disconnected(self, _reason):
        self.losses += 1
        if self.reconnect_on_loss:
            self.reconnect_on_loss = False
            self.connect(self.args.host, self.args.port)

    async def wait_all_acked(self, ids, timeout):
        """Asks the server for acks until the messages `ids` were acknowledged and alice has
        nothing unacknowledged (slixmpp queues a stanza for acks only once it is written)."""
        sm = self.plugin["xep_0198"]
        deadline = time.monotonic() + timeout
        while True:
            acked = {s["id"] for s in self.acked if s.name == "message"}
            if set(ids) <= acked and not sm.unacked_queue:
                return
            if time.monotonic() > deadline:
                raise Failure(
                    f"alice: not acknowledged after {timeout} s: messages "
                    f"{sorted(set(ids) - acked)}, queue {[str(s) for _, s in sm.unacked_queue]}"
                )
            if sm.unacked_queue:
                sm.request_ack()
            await asyncio.sleep(0.2)


async def sm(args):
    tag = time.time_ns()
    alice = SmClient(f"{args.alice}/interop-sm", password_from_env("ALICE_PASSWORD"), args)
    bob = Client(f"{args.bob}/interop-sm", password_from_env("BOB_PASSWORD"), args)
    step = args.timeout / 6
    try:
        for c in (alice, bob):
            c.start()
            await c.ready
        if not alice.enabled_ids or alice.enabled_ids[0][1] is not True:
            raise Failure(f"alice: stream management not enabled with resumption: {alice.enabled_ids}")
        sm_id = alice.plugin["xep_0198"].sm_id
        bound = alice.boundjid.full
        log(f"alice: stream management enabled, resumable, id {sm_id}, bound {bound}")

        # Alice's own messages, acknowledged by the server one by one (window 1).
        mine = [f"alice-{tag}-{i}" for i in range(3)]
        for mid in mine:
            m = alice.make_message(mto=bob.boundjid.full, mbody=f"from alice {mid}", mtype="chat")
            m["id"] = mid
            m.send()

        first = [f"before-{tag}-{i}" for i in range(6)]
        second = [f"outage-{tag}-{i}" for i in range(6)]
        for mid in first:
            m = bob.make_message(mto=args.alice, mbody=f"message {mid}", mtype="chat")
            m["id"] = mid
            m.send()
        got = await receive_ids(alice, args.bob, tag, 3, step)
        # Cut the connection with no </stream:stream> and no TLS close: the server sees the
        # link die while it may still be writing the rest of the first batch.
        alice.reconnect_on_loss = False
        alice.abort()
        for _ in range(50):
            if alice.transport is None and alice.losses:
                break
            await asyncio.sleep(0.1)
        if alice.losses != 1:
            raise Failure("alice: the aborted connection was not reported as lost")
        log(f"alice: connection aborted after receiving {got}")
        for mid in second:
            m = bob.make_message(mto=args.alice, mbody=f"message {mid}", mtype="chat")
            m["id"] = mid
            m.send()
        # Bob's stanzas are handled in order: once his ping is answered, the second batch has
        # been routed (to alice's session waiting to be resumed).
        await bob.plugin["xep_0199"].ping(jid=bob.boundjid.domain, timeout=10)
        log("bob: sent the second batch while alice was away")

        starts_before = alice.session_starts
        alice.connect(args.host, args.port)
        resumed = await asyncio.wait_for(asyncio.shield(alice.resumed), step)
        if resumed["previd"] != sm_id:
            raise Failure(f"alice: resumed {resumed['previd']!r}, expected {sm_id!r}")
        if alice.session_starts != starts_before:
            raise Failure("alice: a new session started instead of resuming")
        log(f"alice: resumed stream {sm_id} (h={resumed['h']}), no new session_start")

        got += await receive_ids(alice, args.bob, tag, len(first) + len(second) - 3, step)
        extra = await drain(alice.messages, 1.0, step)
        if extra:
            raise Failure(f"alice: messages after the expected ones: {[str(m) for m in extra]}")
        if got != first + second:
            raise Failure(f"alice: got {got}, expected {first + second}")
        log(f"alice: every message exactly once and in order ({len(got)})")

        # The full JID is still the one bound the first time: the server addresses it.
        probe = bob.make_message(mto=bound, mbody="to the full JID", mtype="chat")
        probe["id"] = f"full-{tag}"
        probe.send()
        msg = await asyncio.wait_for(alice.messages.get(), step)
        if msg["id"] != f"full-{tag}" or str(msg["to"]) != bound:
            raise Failure(f"alice: after resumption, got {msg} (expected it to {bound})")
        if alice.boundjid.full != bound:
            raise Failure(f"alice: bound {alice.boundjid.full} after resumption, was {bound}")
        log(f"alice: still {bound} after resumption")

        # Acks: alice's messages from before the cut and one after the resumption.
        after = f"alice-{tag}-after"
        m = alice.make_message(mto=bob.boundjid.full, mbody=f"from alice {after}", mtype="chat")
        m["id"] = after
        m.send()
        await alice.wait_all_acked(mine + [after], step)
        acked_ids = [s["id"] for s in alice.acked if s.name == "message"]
        if acked_ids != mine + [after]:
            raise Failure(f"alice: stanza_acked for the messages {acked_ids}, expected {mine + [after]}")
        log(f"alice: {len(alice.acked)} stanzas acknowledged, none pending after <r/>")
        bodies = []
        for _ in range(len(mine) + 1):
            msg = await asyncio.wait_for(bob.messages.get(), step)
            bodies.append(msg["body"])
        extra = await drain(bob.messages, 0.5, step)
        expected = [f"from alice {mid}" for mid in mine + [after]]
        if bodies != expected or extra:
            raise Failure(f"bob: got {bodies} + {[str(m) for m in extra]}, expected {expected}")
        log("bob: alice's messages arrived exactly once and in order")
        # Everything alice got is acknowledged before she leaves (so nothing is re-routed).
        alice.plugin["xep_0198"].send_ack()
    finally:
        for c in (alice, bob):
            await c.close()


# --- csi ---------------------------------------------------------------------------------------


class CsiClient(Client):
    def __init__(self, jid, password, args):
        super().__init__(jid, password, args)
        self.register_plugin("xep_0352")
        self.stanzas = asyncio.Queue()  # presence and messages, in the order received
        self.add_event_handler("presence", self._on_presence)
        self.add_event_handler("message", self._on_any_message)

    def _on_presence(self, presence):
        self.stanzas.put_nowait(presence)

    def _on_any_message(self, msg):
        self.stanzas.put_nowait(msg)


async def csi(args):
    tag = time.time_ns()
    bob = Client(f"{args.bob}/interop-csi", password_from_env("BOB_PASSWORD"), args)
    alice = CsiClient(f"{args.alice}/interop-csi", password_from_env("ALICE_PASSWORD"), args)
    step = args.timeout / 6
    try:
        for c in (bob, alice):
            c.start()
            await c.ready
        # The plugin turns itself on (and sends anything) only when the server offers CSI.
        if not alice.plugin["xep_0352"].enabled:
            raise Failure("alice: the server does not offer CSI in its stream features")
        await drain(alice.stanzas, 0.5, step)  # whatever logging in brought
        alice.plugin["xep_0352"].send_inactive()
        # Alice's stanzas are handled in order: the answered ping means <inactive/> is in force.
        await alice.plugin["xep_0199"].ping(jid=alice.boundjid.domain, timeout=10)
        log("alice: inactive")

        shows = ["away", "xa", "dnd", "chat"]
        for i, show in enumerate(shows):
            bob.send_presence(pto=alice.boundjid.full, pshow=show, pstatus=f"csi-{tag}-{i}")
        await bob.plugin["xep_0199"].ping(jid=bob.boundjid.domain, timeout=10)
        held = await drain(alice.stanzas, 1.0, step)
        if held:
            raise Failure(f"alice (inactive) got presence at once: {[str(s) for s in held]}")
        log(f"bob: sent {len(shows)} presences ({', '.join(shows)}); alice got none yet")

        body = f"urgent {tag}"
        bob.send_message(mto=alice.boundjid.full, mbody=body, mtype="chat")
        got = []
        deadline = time.monotonic() + step
        while not got or got[-1].name != "message":
            left = deadline - time.monotonic()
            try:
                got.append(await asyncio.wait_for(alice.stanzas.get(), max(left, 0.01)))
            except asyncio.TimeoutError:
                raise Failure(f"alice: no message; got {[str(s) for s in got]}") from None
        if (
            len(got) != 2
            or got[0].name != "presence"
            or got[0]["from"] != bob.boundjid
            or got[0]["status"] != f"csi-{tag}-{len(shows) - 1}"
            or got[0]["show"] != shows[-1]
            or got[1]["body"] != body
        ):
            raise Failure(
                "alice: expected bob's last presence then the message, got "
                f"{[str(s) for s in got]}"
            )
        log(f"alice: got only the last presence (show {shows[-1]}), then the message")

        alice.plugin["xep_0352"].send_active()
        await alice.plugin["xep_0199"].ping(jid=alice.boundjid.domain, timeout=10)
        extra = await drain(alice.stanzas, 0.5, step)
        if extra:
            raise Failure(f"alice: more after the message: {[str(s) for s in extra]}")
        bob.send_presence(pto=alice.boundjid.full, pshow="away", pstatus=f"csi-{tag}-active")
        try:
            p = await asyncio.wait_for(alice.stanzas.get(), 5)
        except asyncio.TimeoutError:
            raise Failure("alice (active): bob's presence did not arrive within 5 s") from None
        if p.name != "presence" or p["status"] != f"csi-{tag}-active":
            raise Failure(f"alice (active): got {p}")
        log("alice: active again, bob's next presence arrived at once")
    finally:
        for c in (alice, bob):
            await c.close()


def main():
    p = base_parser(__doc__.split("\n\n")[0])
    p.add_argument("--scenario", choices=["sm", "csi"], required=True)
    p.add_argument("--alice", required=True)
    p.add_argument("--bob", required=True)
    args = p.parse_args()
    setup_logging(args.debug)
    return run_scenario(sm if args.scenario == "sm" else csi, args)


if __name__ == "__main__":
    sys.exit(main())
