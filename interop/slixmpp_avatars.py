#!/usr/bin/env python3
"""vCards (XEP-0054), vCard-based avatars (XEP-0153) and PEP avatars (XEP-0084), with
slixmpp's own xep_0054, xep_0084 and xep_0163 plugins.

alice and bob log in (bob's client announces interest in avatar metadata through its
XEP-0115 capabilities, as xep_0084 does) and become each other's contacts if they are not.
Then:
  1. alice publishes her vCard (a name, a nickname and a PNG photo) with xep_0054; bob fetches
     alice's vCard from the server and gets exactly that name, nickname and photo;
  2. alice, whose client knows nothing of XEP-0153, sends her presence again: bob sees in it
     the `vcard-temp:x:update` photo hash of her vCard's photo, stamped by the server;
  3. alice publishes another PNG as her PEP avatar with xep_0084 (data, then metadata):
     bob's client gets the metadata notification with the image's SHA-1 as id, fetches the
     data item by that id, and gets the exact bytes.
Exit status 0 when every step held, 1 otherwise (including after --timeout seconds).

    ALICE_PASSWORD=… BOB_PASSWORD=… slixmpp_avatars.py --port 5222 --ca ca.pem \
        --alice alice@localhost --bob bob@localhost
"""

import asyncio
import base64
import hashlib
import sys
import uuid
import zlib

from slixmpp.jid import JID

from xmpp_common import Client, Failure, first_match, log, password_from_env, two_user_main

UPDATE = "vcard-temp:x:update"


def png(seed: str) -> bytes:
    """A valid 1x1 PNG whose pixel depends on `seed` (so each run's image is new)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return len(data).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")

    pixel = hashlib.sha256(seed.encode()).digest()[:3]
    header = (1).to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" + pixel))
        + chunk(b"IEND", b"")
    )


class AvatarClient(Client):
    def __init__(self, jid, password, args):
        super().__init__(jid, password, args)
        for plugin in ("xep_0030", "xep_0054", "xep_0060", "xep_0115", "xep_0163", "xep_0084"):
            self.register_plugin(plugin)
        self.presences = asyncio.Queue()
        self.metadata = asyncio.Queue()
        self.add_event_handler("presence_available", self.presences.put_nowait)
        self.add_event_handler("avatar_metadata_publish", self.metadata.put_nowait)

    async def befriend(self, other: "AvatarClient", timeout: float) -> None:
        """Makes `other` a contact with subscription both (slixmpp's roster accepts and
        returns a request by default), unless it already is."""
        me, them = self.boundjid.bare, other.boundjid.bare
        await asyncio.gather(self.get_roster(), other.get_roster())
        if self.client_roster[them]["subscription"] == "both":
            return
        self.send_presence(pto=them, ptype="subscribe")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (
            self.client_roster[them]["subscription"] != "both"
            or other.client_roster[me]["subscription"] != "both"
        ):
            if loop.time() > deadline:
                raise Failure(f"{me} and {them} are not each other's contacts after {timeout} s")
            await asyncio.sleep(0.05)
        log(f"{me} and {them} are each other's contacts")

    async def photo_hash_from(self, sender: str, wanted: str, timeout: float) -> None:
        """Waits for an available presence of `sender` whose XEP-0153 photo hash is `wanted`."""

        def hashed(pres):
            photo = pres.xml.find(f"{{{UPDATE}}}x/{{{UPDATE}}}photo")
            if pres["from"].bare == sender and photo is not None and photo.text == wanted:
                return True
            return None

        what = f"presence of {sender} with photo hash {wanted}"
        await first_match(self.presences, timeout, hashed, what)
        log(f"{self.boundjid.bare}: {sender}'s presence carries photo hash {wanted}")


async def scenario(args):
    alice = AvatarClient(args.alice, password_from_env(args.alice_password_env), args)
    bob = AvatarClient(args.bob, password_from_env(args.bob_password_env), args)
    for c in (alice, bob):
        c.start()
    try:
        await asyncio.gather(alice.ready, bob.ready)
        await alice.befriend(bob, 15)

        # 1. vCard
        run = uuid.uuid4().hex[:8]
        photo = png(f"vcard {run}")
        vcard = alice.plugin["xep_0054"].make_vcard()
        vcard["FN"] = f"Alice Interop {run}"
        vcard["NICKNAME"] = f"alice-{run}"
        vcard["PHOTO"]["TYPE"] = "image/png"
        vcard["PHOTO"]["BINVAL"] = photo
        await alice.plugin["xep_0054"].publish_vcard(vcard, timeout=10)
        got = (await bob.plugin["xep_0054"].get_vcard(JID(args.alice), timeout=10))["vcard_temp"]
        if (got["FN"], got["NICKNAME"]) != (vcard["FN"], vcard["NICKNAME"]):
            raise Failure(f"bob read FN {got['FN']!r}, NICKNAME {got['NICKNAME']!r}")
        if got["PHOTO"]["BINVAL"] != photo or got["PHOTO"]["TYPE"] != "image/png":
            raise Failure("bob read another photo than alice published")
        log("bob read alice's vCard: name, nickname and photo as published")

        # 2. XEP-0153: the server stamps the photo's hash on alice's presence.
        alice.send_presence()
        await bob.photo_hash_from(args.alice, hashlib.sha1(photo).hexdigest(), 10)

        # 3. XEP-0084
        avatar = png(f"pep {run}")
        avatar_id = hashlib.sha1(avatar).hexdigest()
        await alice.plugin["xep_0084"].publish_avatar(avatar, timeout=10)
        info = {"id": avatar_id, "type": "image/png", "bytes": len(avatar)}
        await alice.plugin["xep_0084"].publish_avatar_metadata(info, timeout=10)
        def announces_avatar(msg):
            item = msg["pubsub_event"]["items"]["item"]
            return True if msg["from"].bare == args.alice and item["id"] == avatar_id else None

        await first_match(bob.metadata, 10, announces_avatar, "avatar metadata notification")
        log(f"bob was notified of alice's new avatar {avatar_id}")
        data = await bob.plugin["xep_0084"].retrieve_avatar(JID(args.alice), avatar_id, timeout=10)
        value = data["pubsub"]["items"]["item"]["avatar_data"]["value"]
        if value != avatar:
            raise Failure(f"bob fetched {len(value)} bytes, not alice's {len(avatar)}-byte avatar")
        log("bob fetched alice's avatar data: the exact bytes")
    finally:
        await asyncio.gather(alice.close(), bob.close())


if __name__ == "__main__":
    sys.exit(
        two_user_main(
            __doc__,
            scenario,
            "OK: vCard and PEP avatar published and fetched; the presence carried the photo hash",
        )
    )
