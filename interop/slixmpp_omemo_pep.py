#!/usr/bin/env python3
"""OMEMO (XEP-0384) end to end through the server's PEP, with slixmpp-omemo.

alice and bob log in, each with slixmpp-omemo's XEP-0384 plugin (both versions of OMEMO:
urn:xmpp:omemo:2 and eu.siacs.conversations.axolotl). At session start the plugin publishes
its device list and bundle to the account's PEP service with publish-options
(`pubsub#access_model=open`, and `pubsub#max_items=max` for the OMEMO 2 bundles); the server
must accept them. Then:
  1. each reads the other's device lists and bundles of both versions with plain pubsub items
     queries, as a stranger without any subscription would: alice's lists name her device id,
     bob's his, and each device's bundle is there;
  2. alice encrypts a message for bob: the plugin downloads bob's device list and bundle
     from the server and builds a session; the message on the wire carries no plaintext;
  3. bob decrypts it and gets alice's text; he answers encrypted, and alice decrypts his text.
Exit status 0 when every step held, 1 otherwise (including after --timeout seconds).

    ALICE_PASSWORD=… BOB_PASSWORD=… slixmpp_omemo_pep.py --port 5222 --ca ca.pem \
        --alice alice@localhost --bob bob@localhost
"""

import asyncio
import sys
import uuid
from typing import Any, FrozenSet, Optional

from omemo.storage import Just, Maybe, Nothing, Storage
from omemo.types import DeviceInformation
from slixmpp.jid import JID
from slixmpp.plugins import register_plugin
from slixmpp_omemo import XEP_0384

from xmpp_common import Client, Failure, first_match, log, password_from_env, two_user_main

OMEMO2 = "urn:xmpp:omemo:2"
OLDMEMO = "eu.siacs.conversations.axolotl"
DEVICE_LIST_NODES = {OMEMO2: "urn:xmpp:omemo:2:devices", OLDMEMO: f"{OLDMEMO}.devicelist"}


class MemoryStorage(Storage):
    """The plugin's key storage, in memory: every run starts as a freshly installed client."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict = {}

    async def _load(self, key: str) -> Maybe:
        return Just(self.data[key]) if key in self.data else Nothing()

    async def _store(self, key: str, value: Any) -> None:
        self.data[key] = value

    async def _delete(self, key: str) -> None:
        self.data.pop(key, None)


class XEP_0384Memory(XEP_0384):  # noqa: N801 - slixmpp's plugin naming
    """slixmpp-omemo with in-memory storage and blind trust before verification (BTBV), as
    Conversations and Dino start out."""

    name = "xep_0384"
    default_config = {"fallback_message": "This message is OMEMO encrypted."}

    def plugin_init(self) -> None:
        self._memory = MemoryStorage()
        super().plugin_init()

    @property
    def storage(self) -> Storage:
        return self._memory

    @property
    def _btbv_enabled(self) -> bool:
        return True

    async def _devices_blindly_trusted(
        self, blindly_trusted: FrozenSet[DeviceInformation], identifier: Optional[str]
    ) -> None:
        pass

    async def _prompt_manual_trust(
        self, manually_trusted: FrozenSet[DeviceInformation], identifier: Optional[str]
    ) -> None:
        raise Failure(f"manual trust asked for {manually_trusted} (BTBV is on)")


register_plugin(XEP_0384Memory)


class OmemoClient(Client):
    def __init__(self, jid, password, args):
        super().__init__(jid, password, args)
        for plugin in ("xep_0030", "xep_0060", "xep_0163", "xep_0380"):
            self.register_plugin(plugin)
        self.register_plugin("xep_0384", module=sys.modules[__name__])

    async def own_device_id(self) -> int:
        manager = await self.plugin["xep_0384"].get_session_manager()
        info, _ = await manager.get_own_device_information()
        return info.device_id

    async def device_ids_of(self, owner: str, namespace: str) -> set:
        """The device ids in `owner`'s device list node, by a plain pubsub items query."""
        node = DEVICE_LIST_NODES[namespace]
        iq = await self.plugin["xep_0060"].get_items(JID(owner), node, timeout=10)
        ids = set()
        for item in iq["pubsub"]["items"]:
            for device in item.xml.iter():
                if device.tag.endswith("}device") and device.get("id"):
                    ids.add(int(device.get("id")))
        return ids

    async def has_bundle(self, owner: str, namespace: str, device_id: int) -> bool:
        """Whether `owner`'s PEP service holds the bundle of `device_id` for `namespace`."""
        if namespace == OMEMO2:
            node, item_ids = f"{OMEMO2}:bundles", [str(device_id)]
        else:
            node, item_ids = f"{OLDMEMO}.bundles:{device_id}", None
        iq = await self.plugin["xep_0060"].get_items(JID(owner), node, item_ids=item_ids, timeout=10)
        return any(
            el.tag.endswith("}bundle") for item in iq["pubsub"]["items"] for el in item.xml
        )

    async def send_encrypted(self, to: str, body: str) -> None:
        msg = self.make_message(mto=JID(to), mtype="chat")
        msg["body"] = body
        encrypted, errors = await self.plugin["xep_0384"].encrypt_message(msg, {JID(to)})
        if encrypted is None:
            raise Failure(f"{self.boundjid.bare}: nothing encrypted for {to}: {errors}")
        if body in str(encrypted):
            raise Failure(f"{self.boundjid.bare}: the encrypted message carries the plaintext")
        namespaces = sorted(self.plugin["xep_0384"].is_encrypted(encrypted))
        encrypted.send()
        log(f"{self.boundjid.bare}: sent an encrypted message to {to} ({', '.join(namespaces)})")

    async def expect_encrypted(self, sender: str, body: str, timeout: float) -> None:
        """Waits for an OMEMO message from `sender` and decrypts it to `body`; plaintext or
        other messages from `sender` in between are a failure."""

        async def decrypted(msg):
            if msg["from"].bare != sender:
                return None
            if msg["type"] == "error":
                raise Failure(f"{self.boundjid.bare}: error message from {sender}: {msg}")
            if not self.plugin["xep_0384"].is_encrypted(msg):
                if not msg["body"]:
                    return None  # a chat state or receipt
                raise Failure(f"{self.boundjid.bare}: unencrypted message from {sender}: {msg}")
            plain, device = await self.plugin["xep_0384"].decrypt_message(msg)
            if plain["body"] != body:
                raise Failure(f"{self.boundjid.bare}: decrypted {plain['body']!r}, expected {body!r}")
            return device

        what = f"encrypted message from {sender} for {self.boundjid.bare}"
        device = await first_match(self.messages, timeout, decrypted, what)
        log(f"{self.boundjid.bare}: decrypted {body!r} from {sender} device {device.device_id}")


async def scenario(args):
    alice = OmemoClient(args.alice, password_from_env(args.alice_password_env), args)
    bob = OmemoClient(args.bob, password_from_env(args.bob_password_env), args)
    for c in (alice, bob):
        c.start()
    try:
        await asyncio.gather(alice.ready, bob.ready)
        # The plugin publishes its device list and bundle during session start; its session
        # manager is ready once they are on the server.
        alice_id, bob_id = await asyncio.gather(alice.own_device_id(), bob.own_device_id())
        for namespace in (OMEMO2, OLDMEMO):
            seen_by_alice = await alice.device_ids_of(args.bob, namespace)
            seen_by_bob = await bob.device_ids_of(args.alice, namespace)
            if bob_id not in seen_by_alice or alice_id not in seen_by_bob:
                raise Failure(
                    f"{namespace} device lists: alice sees {seen_by_alice} for bob ({bob_id}), "
                    f"bob sees {seen_by_bob} for alice ({alice_id})"
                )
            if not await alice.has_bundle(args.bob, namespace, bob_id) or not await bob.has_bundle(
                args.alice, namespace, alice_id
            ):
                raise Failure(f"{namespace}: a bundle is missing")
            log(f"{namespace}: each device list names the other's device, each bundle is there")
        hello = f"hello bob, secretly {uuid.uuid4()}"
        await alice.send_encrypted(args.bob, hello)
        await bob.expect_encrypted(args.alice, hello, 20)
        answer = f"hello alice, secretly {uuid.uuid4()}"
        await bob.send_encrypted(args.alice, answer)
        await alice.expect_encrypted(args.bob, answer, 20)
    finally:
        await asyncio.gather(alice.close(), bob.close())


if __name__ == "__main__":
    sys.exit(
        two_user_main(
            __doc__,
            scenario,
            "OK: OMEMO device lists and bundles went through PEP, and both messages decrypted",
        )
    )
