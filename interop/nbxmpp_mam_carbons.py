#!/usr/bin/env python3
"""Message carbons (XEP-0280) and message archive management (XEP-0313) with a second
client implementation: nbxmpp, Gajim's XMPP library, used as Gajim uses it.

alice logs in twice with nbxmpp (resources interop-nb1 and interop-nb2), bob once. As Gajim
does, alice asks the server's disco#info for urn:xmpp:carbons:2 and her own bare JID's for
urn:xmpp:mam:2 (nbxmpp's Discovery module; DiscoInfo.mam_namespace), and enables carbons on
both resources with <enable xmlns='urn:xmpp:carbons:2'/> (nbxmpp parses carbons but leaves
enabling them to the application). Each received message is looked at through the
MessageProperties nbxmpp's dispatcher fills in (it unwraps carbons and MAM results). Then:
  1. bob sends a chat message to alice/interop-nb1: nb1 gets it (no carbon flags) with a
     stanza-id by alice's bare JID; nb2 gets it as a carbon: is_carbon_message,
     is_received_carbon, not is_sent_carbon, the unwrapped message from bob to nb1;
  2. bob sends a chat message to alice's bare JID: each resource gets it exactly once,
     either delivered or as a received carbon (never both, never neither);
  3. nb1 sends bob a chat message: bob gets it; nb2 gets it as a sent carbon
     (is_sent_carbon, properties.jid is bob), nb1 no copy;
  4. nb2 pages through alice's archive `with` bob from a time before step 1, through
     nbxmpp's MAM module (make_query, 2 a page, `after` the last id until <fin
     complete='true'/>, as Gajim pages): exactly the three messages, in order, each parsed as
     a MAM message (properties.mam with the query's id and the archive id; remote_jid bob,
     the sent one included), the received ones with the archive ids nb1 saw live as their stanza-ids.
Exit status 0 when every check held, 1 otherwise (including after --timeout seconds).

    ALICE_PASSWORD=… BOB_PASSWORD=… nbxmpp_mam_carbons.py --port 5222 --cert localhost.crt \
        --alice alice@localhost --bob bob@localhost
"""

import os
import sys
import time
from datetime import datetime, timezone

from nbxmpp_sm import Failure, Peer, log, pump, wait_until  # first: it pins the gi versions
from nbxmpp_sm import main as nbxmpp_main

from nbxmpp.namespaces import Namespace  # noqa: E402
from nbxmpp.protocol import JID, Iq  # noqa: E402


class Account(Peer):
    """A Peer that keeps the MessageProperties nbxmpp parsed for each message."""

    def __init__(self, *args, **kwargs):
        self.received = []
        super().__init__(*args, **kwargs)

    def _on_message(self, _client, stanza, properties):
        self.messages.append(stanza)
        self.received.append(properties)

    def request(self, what, make, timeout, **kwargs):
        """Runs an nbxmpp module request (an iq_request_task) to its end; its result."""
        done = []

        def on_done(task):  # held weakly by nbxmpp; the task is reset once this returns
            try:
                done.append((task.finish(), None))
            except Exception as e:  # noqa: BLE001 - nbxmpp raises its own error types
                done.append((None, e))

        make(callback=on_done, **kwargs)
        wait_until(what, lambda: done, timeout)
        result, error = done[0]
        if error is not None:
            raise Failure(f"{self.name}: {what}: {error!r}")
        return result

    def enable_carbons(self, timeout):
        """What Gajim sends once the server advertises carbons."""
        iq = Iq(typ="set")
        iq.addChild("enable", namespace=Namespace.CARBONS)
        answers = []
        self.client.send_stanza(iq, callback=lambda _c, stanza, **_k: answers.append(stanza),
                                user_data={})
        wait_until(f"{self.name}: carbons enabled", lambda: answers, timeout)
        if answers[0].getType() != "result":
            raise Failure(f"{self.name}: enabling carbons failed: {answers[0]}")

    def tagged(self, tag):
        """The properties of this run's messages (a `tag` in their id), MAM results aside."""
        return [p for p in self.received if str(tag) in (p.id or "") and not p.is_mam_message]


def expect_only(peer, props, what):
    if len(props) != 1:
        raise Failure(f"{peer.name}: {what}: {len(props)} copies: {[str(p.id) for p in props]}")
    return props[0]


def check_plain(peer, p, mid, sender, to, body, own_bare):
    if p.is_carbon_message or p.is_mam_message:
        raise Failure(f"{peer.name}: {mid} flagged carbon={p.carbon} mam={p.mam}")
    if p.id != mid or str(p.from_) != sender or str(p.to) != to or p.body != body:
        raise Failure(f"{peer.name}: got {p.id} {p.from_}->{p.to} {p.body!r}, expected {mid}")
    ids = [s.id for s in p.stanza_ids if s.by == own_bare]
    if len(ids) != 1:
        raise Failure(f"{peer.name}: {mid} has stanza-ids {p.stanza_ids}, expected one by {own_bare}")
    return ids[0]


def check_carbon(peer, p, direction, mid, sender, to, body):
    flags = (p.is_carbon_message, p.is_received_carbon, p.is_sent_carbon)
    if flags != (True, direction == "received", direction == "sent") or p.carbon.type != direction:
        raise Failure(f"{peer.name}: {mid}: carbon {p.carbon}, flags {flags}, expected {direction}")
    if p.id != mid or str(p.from_) != sender or str(p.to) != to or p.body != body:
        raise Failure(f"{peer.name}: {direction} carbon {p.id} {p.from_}->{p.to} {p.body!r}")


def run(args):
    tag = time.time_ns()
    step = args.timeout / 8
    password = os.environ["ALICE_PASSWORD"]
    nb1 = Account(args, args.alice, password, "interop-nb1", sm=False)
    nb2 = Account(args, args.alice, password, "interop-nb2", sm=False)
    bob = Account(args, args.bob, os.environ["BOB_PASSWORD"], "interop-nbb", sm=False)
    peers = (nb1, nb2, bob)
    nb1.name, nb2.name = "alice/nb1", "alice/nb2"
    try:
        for p in peers:
            p.login(step)
        own = args.alice
        full1 = str(nb1.client.get_bound_jid())
        bob_full = str(bob.client.get_bound_jid())
        disco = nb1.client.get_module("Discovery")
        server = nb1.request("server disco#info", lambda **k: disco.disco_info(
            nb1.client.domain, **k), step)
        if Namespace.CARBONS not in server.features:
            raise Failure(f"the server does not advertise {Namespace.CARBONS}: {server.features}")
        account = nb1.request("account disco#info", lambda **k: disco.disco_info(own, **k), step)
        if account.mam_namespace != Namespace.MAM_2:
            raise Failure(f"{own}: nbxmpp finds MAM {account.mam_namespace}: {account.features}")
        log(f"the server advertises carbons, {own} {account.mam_namespace}")
        for p in (nb1, nb2):
            p.enable_carbons(step)
        log("carbons enabled on both of alice's resources")

        # Anything archived by earlier checks is older than `start` (nbxmpp sends whole seconds).
        pump(1.1)
        start = datetime.now(timezone.utc)

        # 1. to nb1's full JID
        m1, b1 = f"nbc-full-{tag}", "to nb1, seen by nb2"
        bob.send_chat(JID.from_string(full1), m1, b1)
        wait_until("nb1 and nb2 get message 1", lambda: nb1.tagged(tag) and nb2.tagged(tag), step)
        pump(0.3)
        live1 = check_plain(nb1, expect_only(nb1, nb1.tagged(tag), m1), m1, bob_full, full1, b1, own)
        check_carbon(nb2, expect_only(nb2, nb2.tagged(tag), m1), "received", m1, bob_full, full1, b1)
        log(f"nb1 got {m1} (stanza-id {live1}); nb2 a received carbon, nbxmpp's flags right")

        # 2. to the bare JID
        m2, b2 = f"nbc-bare-{tag}", "to alice's bare JID"
        bob.send_chat(JID.from_string(own), m2, b2)

        def copies(peer):
            return [p for p in peer.tagged(tag) if p.id == m2]

        wait_until("both resources get message 2", lambda: copies(nb1) and copies(nb2), step)
        pump(0.3)
        how = []
        live2 = None
        for peer in (nb1, nb2):
            p = expect_only(peer, copies(peer), m2)
            if p.is_carbon_message:
                check_carbon(peer, p, "received", m2, bob_full, str(p.to), b2)
                how.append(f"{peer.name} a received carbon")
            else:
                stanza_id = check_plain(peer, p, m2, bob_full, str(p.to), b2, own)
                if live2 not in (None, stanza_id):
                    raise Failure(f"message 2 has stanza-ids {live2} and {stanza_id}")
                live2 = stanza_id
                how.append(f"{peer.name} the message")
        if live2 is None:
            raise Failure("message 2 was delivered to neither resource, only carbons")
        log(f"to the bare JID: {', '.join(how)}, each exactly once")

        # 3. from nb1
        m3, b3 = f"nbc-sent-{tag}", "from nb1, seen by nb2"
        nb1.send_chat(JID.from_string(args.bob), m3, b3)
        wait_until("bob gets message 3", lambda: [p for p in bob.tagged(tag) if p.id == m3], step)
        wait_until("nb2 gets the sent carbon", lambda: [p for p in nb2.tagged(tag) if p.id == m3],
                   step)
        nb1.ping(step)
        pump(0.3)
        p = expect_only(nb2, [p for p in nb2.tagged(tag) if p.id == m3], m3)
        check_carbon(nb2, p, "sent", m3, full1, args.bob, b3)
        if str(p.jid) != args.bob:
            raise Failure(f"nb2: nbxmpp's jid of the sent carbon is {p.jid}, expected {args.bob}")
        if [p for p in nb1.tagged(tag) if p.id == m3]:
            raise Failure("nb1 got a copy of its own message")
        log(f"bob got {m3}; nb2 a sent carbon (nbxmpp's flags right), nb1 nothing")

        # 4. the archive, through nbxmpp's MAM module, paged as Gajim pages
        mam = nb2.client.get_module("MAM")
        results, after, pages = [], None, 0
        while True:
            queryid = f"nbq-{tag}-{pages}"
            fin = nb2.request(
                f"MAM page {pages}",
                lambda **k: mam.make_query(own, queryid=queryid, start=start, with_=args.bob,
                                           after=after, max_=2, **k),
                step,
            )
            page = [p for p in nb2.received if p.is_mam_message and p.mam.query_id == queryid]
            if len(page) > 2:
                raise Failure(f"MAM page {pages}: {len(page)} results for max 2")
            results.extend(page)
            pages += 1
            if fin.complete:
                break
            if pages >= 10 or fin.rsm.last is None:
                raise Failure(f"MAM: not complete after {pages} pages: {fin}")
            after = fin.rsm.last
        got = [(p.id, p.body) for p in results]
        if got != [(m1, b1), (m2, b2), (m3, b3)]:
            raise Failure(f"MAM: got {got}")
        archive_ids = [p.mam.id for p in results]
        if archive_ids[0] != live1 or archive_ids[1] != live2 or len(set(archive_ids)) != 3:
            raise Failure(f"MAM: archive ids {archive_ids}, live stanza-ids {live1} {live2}")
        if any(str(p.mam.archive) != own for p in results if p.mam.archive is not None):
            raise Failure(f"MAM: results from {[str(p.mam.archive) for p in results]}")
        if any(str(p.remote_jid) != args.bob for p in results):
            raise Failure(f"MAM: nbxmpp's remote_jids {[str(p.remote_jid) for p in results]}")
        log(
            f"MAM (nbxmpp make_query, {pages} pages of 2): the three messages in order, "
            "archive ids equal to the live stanza-ids, the last fin complete"
        )
    finally:
        for p in peers:
            p.close()


if __name__ == "__main__":
    sys.exit(nbxmpp_main(__doc__, run))
