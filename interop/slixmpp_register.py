#!/usr/bin/env python3
"""In-band registration (XEP-0077) with slixmpp's own xep_0077 plugin.

  1. a new user, --user, registers before authenticating, as slixmpp does when the server
     offers the <register/> stream feature: it fetches the form, which must ask for a
     username and a password, sends both, then logs in with them on the same stream;
  2. the user changes the password (xep_0077 change_password); a second client logs in with
     the new password;
  3. the user cancels the registration (xep_0077 cancel_registration): the result arrives,
     then the server ends the stream with a not-authorized stream error;
  4. logging in with the new password fails: the account is gone.
Exit status 0 when every step held, 1 otherwise (including after --timeout seconds).

    USER_PASSWORD=… slixmpp_register.py --port 5222 --ca ca.pem --user carol@localhost
"""

import asyncio
import sys

from xmpp_common import Client, Failure, log, password_from_env, scenario_main

REGISTER = "jabber:iq:register"


class Registrant(Client):
    """A client that registers its account in band before logging in, and records the
    stream error that ends its stream."""

    def __init__(self, jid, password, args):
        super().__init__(jid, password, args)
        self.register_plugin("xep_0077", {"create_account": True})
        self.registered = asyncio.get_event_loop().create_future()
        self.stream_errors = asyncio.Queue()
        self.add_event_handler("register", self._on_register)
        self.add_event_handler("stream_error", lambda e: self.stream_errors.put_nowait(e))

    async def _on_register(self, form):
        query = form["register"].xml
        missing = [f for f in ("username", "password") if query.find(f"{{{REGISTER}}}{f}") is None]
        if missing:
            self.registered.set_exception(Failure(f"the form does not ask for {missing}: {form}"))
            return
        iq = self.Iq()
        iq["type"] = "set"
        iq["register"]["username"] = self.boundjid.user
        iq["register"]["password"] = self.password
        try:
            await iq.send(timeout=10)
        except Exception as e:  # noqa: BLE001 - any failure is a failed check
            self.registered.set_exception(Failure(f"registration refused: {e!r}"))
            return
        log(f"{self.boundjid.bare}: registered in band")
        self.registered.set_result(True)


async def login(jid, password, args):
    """A plain client logged in as `jid`; raises Failure when it cannot."""
    client = Client(jid, password, args)
    client.start()
    try:
        await asyncio.wait_for(asyncio.shield(client.ready), 15)
    finally:
        await client.close()


async def scenario(args):
    first = password_from_env(args.user_password_env)
    second = first + "-changed"
    user = Registrant(args.user, first, args)
    user.start()
    try:
        await asyncio.wait_for(asyncio.shield(user.registered), 15)
        await user.ready
        log(f"{user.boundjid.full}: logged in with the account it registered")

        await user.plugin["xep_0077"].change_password(second, timeout=10)
        log(f"{user.boundjid.bare}: password changed")
        await login(args.user, second, args)
        log(f"{args.user}: a second client logged in with the new password")

        await user.plugin["xep_0077"].cancel_registration(timeout=10)
        log(f"{user.boundjid.bare}: registration cancelled")
        try:
            error = await asyncio.wait_for(user.stream_errors.get(), 10)
        except asyncio.TimeoutError:
            raise Failure("no stream error after the removal") from None
        if error["condition"] != "not-authorized":
            raise Failure(f"the stream ended with {error['condition']}, expected not-authorized")
        log(f"{user.boundjid.bare}: the stream ended with not-authorized")
    finally:
        await user.close()

    try:
        await login(args.user, second, args)
    except Failure as e:
        log(f"{args.user}: cannot log in any more ({e})")
    else:
        raise Failure("the removed account still logs in")


def arguments(p):
    p.add_argument("--user", required=True, help="the account to create, user@domain")
    p.add_argument("--user-password-env", default="USER_PASSWORD")


DONE = "registered, changed the password and removed the account in band"

if __name__ == "__main__":
    sys.exit(scenario_main(__doc__, scenario, DONE, arguments))
