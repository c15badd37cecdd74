#!/usr/bin/env python3
"""Message archive management (XEP-0313) and stanza-ids (XEP-0359), with slixmpp's own
xep_0313 and xep_0359 plugins.

alice and bob log in; the server must advertise urn:xmpp:mam:2 on alice's bare JID. Then:
  1. bob sends alice 30 chat messages (unique ids) while she is online; she receives them in
     order, each carrying exactly one <stanza-id by='alice@…'/> (read with xep_0359), all
     different;
  2. alice pages through her archive `with` bob, 10 at a time, with slixmpp's RSM iterator
     (xep_0313 retrieve(iterator=True)): no page holds more than 10 results, no archive id
     repeats, this run's 30 messages are there exactly once and in order, each result's id is
     the stanza-id she got live, and the last page's <fin/> says complete='true';
  3. the same query with a `start` filter (the time before bob's first message), through
     xep_0313's message iterator, gives exactly the 30 messages, in order;
  4. a query with the `after-id` filter (the 10th message's stanza-id) gives exactly the 20
     after it, in two pages of 10, the first <fin/> incomplete and the last complete.
Exit status 0 when every step held, 1 otherwise (including after --timeout seconds).

    ALICE_PASSWORD=… BOB_PASSWORD=… slixmpp_mam.py --port 5222 --ca ca.pem \
        --alice alice@localhost --bob bob@localhost
"""

import asyncio
import sys
import time
from datetime import datetime, timezone

from xmpp_common import Client, Failure, log, password_from_env, two_user_main

MAM = "urn:xmpp:mam:2"
SID = "urn:xmpp:sid:0"
N = 30
PAGE = 10


class MamClient(Client):
    def __init__(self, jid, password, args):
        super().__init__(jid, password, args)
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0059")
        self.register_plugin("xep_0297")
        self.register_plugin("xep_0313")
        self.register_plugin("xep_0359")


def own_stanza_ids(msg, by):
    """The ids of the <stanza-id/> elements of `msg` whose `by` is `by`."""
    return [
        el.get("id") for el in msg.xml.findall(f"{{{SID}}}stanza-id") if el.get("by") == by
    ]


def archived(result_msg):
    """(archive id, forwarded message) of a MAM result message."""
    return result_msg["mam_result"]["id"], result_msg["mam_result"]["forwarded"]["stanza"]


async def pages_after_id(client, with_jid, after_id):
    """The result pages (Iq, list of result messages) of a query with an `after-id` filter,
    paged by xep_0059's iterator as xep_0313 pages its own queries (slixmpp's retrieve() has
    no parameter for the XEP-0313 v0.6 id filters, its stanza has)."""
    plugin = client.plugin["xep_0313"]
    iq, mask = plugin._pre_mam_retrieve(None, None, None, with_jid, None)
    iq["mam"]["after_id"] = after_id
    collected = {}

    def pre_cb(query):
        from slixmpp.xmlstream.handler import Collector
        from slixmpp.xmlstream.matcher import MatchXMLMask

        mask["mam_result"]["queryid"] = query["id"]
        query["mam"]["queryid"] = query["id"]
        collected["c"] = Collector(f"MAM_after_id_{query['id']}", MatchXMLMask(str(mask)))
        client.register_handler(collected["c"])

    def post_cb(result):
        result["mam_fin"]["results"] = collected["c"].stop()

    out = []
    async for page in client.plugin["xep_0059"].iterate(
        iq, "mam", "results", amount=PAGE, recv_interface="mam_fin", pre_cb=pre_cb,
        post_cb=post_cb,
    ):
        out.append((page, list(page["mam_fin"]["results"])))
    return out


def check_pages(what, pages):
    """Each page holds at most PAGE results, the last <fin/> is complete and the others are
    not; returns the (archive id, message) pairs in order, checked for repeats."""
    if not pages:
        raise Failure(f"{what}: no page of results")
    out = []
    for n, (iq, results) in enumerate(pages):
        if len(results) > PAGE:
            raise Failure(f"{what}: page {n} holds {len(results)} results, asked for {PAGE}")
        complete = iq["mam_fin"]["complete"] in ("true", "1")
        if complete != (n == len(pages) - 1):
            raise Failure(f"{what}: page {n} of {len(pages)} has complete={complete}: {iq}")
        out.extend(archived(m) for m in results)
    ids = [i for i, _ in out]
    if len(set(ids)) != len(ids):
        raise Failure(f"{what}: an archive id repeats: {ids}")
    return out


def check_run(what, entries, expected, live_ids):
    """`entries` (archive id, message) are exactly `expected` (message ids), in order, with
    the archive ids alice got live."""
    got = [(aid, m["id"]) for aid, m in entries]
    want = [(live_ids[mid], mid) for mid in expected]
    if got != want:
        raise Failure(f"{what}: got {got}, expected {want}")
    for _, m in entries:
        if m["body"] != f"archived {m['id']}":
            raise Failure(f"{what}: the archived message lost its body: {m}")


async def scenario(args):
    tag = time.time_ns()
    alice = MamClient(f"{args.alice}/interop-mam", password_from_env(args.alice_password_env), args)
    bob = MamClient(f"{args.bob}/interop-mam", password_from_env(args.bob_password_env), args)
    clients = (alice, bob)
    try:
        for client in clients:
            client.start()
        await asyncio.gather(*(client.ready for client in clients))
        own = alice.boundjid.bare
        info = await alice.plugin["xep_0030"].get_info(jid=own, timeout=10)
        if MAM not in info["disco_info"]["features"]:
            raise Failure(f"{own} does not advertise {MAM}: {info}")
        log(f"{own} advertises {MAM}")

        # Anything archived by earlier checks is more than a second older than `start`.
        await asyncio.sleep(1.1)
        start = datetime.now(timezone.utc)
        expected = [f"mam-{tag}-{i:02}" for i in range(N)]
        for mid in expected:
            msg = bob.make_message(mto=own, mbody=f"archived {mid}", mtype="chat")
            msg["id"] = mid
            msg.send()

        # 1. live, each with alice's archive's stanza-id
        live_ids = {}
        for mid in expected:
            try:
                msg = await asyncio.wait_for(alice.messages.get(), 10)
            except asyncio.TimeoutError:
                raise Failure(f"alice: {mid} did not arrive within 10 s") from None
            if msg["id"] != mid or str(msg["from"]) != bob.boundjid.full:
                raise Failure(f"alice: got {msg}, expected {mid} from {bob.boundjid.full}")
            ids = own_stanza_ids(msg, own)
            if len(ids) != 1 or not ids[0] or msg["stanza_id"]["by"] != own:
                raise Failure(f"alice: {mid} has stanza-ids {ids} by {own}: {msg}")
            if msg["stanza_id"]["id"] != ids[0]:
                raise Failure(f"alice: xep_0359 read {msg['stanza_id']}, the XML has {ids}")
            live_ids[mid] = ids[0]
        if len(set(live_ids.values())) != N:
            raise Failure(f"alice: the stanza-ids are not all different: {live_ids}")
        log(f"alice: {N} messages live, in order, each with a stanza-id by {own}")

        # 2. with=bob, 10 a page, through xep_0313's RSM iterator
        pages = []
        async for page in alice.plugin["xep_0313"].retrieve(
            with_jid=bob.boundjid.bare, iterator=True, rsm={"max": PAGE}
        ):
            pages.append((page, list(page["mam"]["results"])))
            if len(pages) > 1000:
                raise Failure("more than 1000 pages")
        entries = check_pages("with=bob", pages)
        mine = [(aid, m) for aid, m in entries if str(tag) in (m["id"] or "")]
        check_run("with=bob", mine, expected, live_ids)
        for _, m in entries:
            if m["from"].bare != bob.boundjid.bare and m["to"].bare != bob.boundjid.bare:
                raise Failure(f"with=bob: a message not with bob: {m}")
        log(
            f"alice: with=bob, {len(pages)} pages of at most {PAGE} ({len(entries)} messages): "
            f"the {N} of this run exactly once, in order, with the live stanza-ids; "
            "the last fin complete"
        )

        # 3. with=bob and start, through xep_0313's message iterator
        got = []
        async for m in alice.plugin["xep_0313"].iterate(
            with_jid=bob.boundjid.bare, start=start, rsm={"max": PAGE}
        ):
            got.append(archived(m))
            if len(got) > 10 * N:
                raise Failure("start: far too many results")
        check_run("start", got, expected, live_ids)
        log(f"alice: with=bob and start: exactly the {N} messages, in order")

        # 4. after-id: the 20 after the 10th
        pages = await pages_after_id(alice, bob.boundjid.bare, live_ids[expected[9]])
        entries = check_pages("after-id", pages)
        check_run("after-id", entries, expected[10:], live_ids)
        if len(pages) != 2:
            raise Failure(f"after-id: {len(pages)} pages, expected 2")
        log("alice: after-id of the 10th: exactly the 20 after it, 2 pages, the last complete")
    finally:
        await asyncio.gather(*(client.close() for client in clients), return_exceptions=True)


def main():
    return two_user_main(
        __doc__, scenario, "mam: live stanza-ids, paging with=bob, start and after-id all held"
    )


if __name__ == "__main__":
    sys.exit(main())
