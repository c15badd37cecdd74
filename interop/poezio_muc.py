#!/usr/bin/env python3
"""poezio, a terminal client built for group chat, in a room with a slixmpp occupant.

poezio (Debian's) runs in a private tmux server (its own socket), driven with send-keys and
read with capture-pane; as root, both run as the unprivileged user --as-user (poezio refuses
to run as root), from a home directory of their own under --workdir. alice (slixmpp,
plugin xep_0045) logs in and makes two fresh rooms at --service, and says something in each
before anyone else is there: the first an instant room (XEP-0045 §10.1.2, archived by
default), the second configured not to archive (muc#roomconfig_enablearchiving = 0). Then:
  1. poezio logs in as bob (SCRAM over STARTTLS, the certificate checked against --ca) and
     joins both rooms with /join; alice must see its occupant enter each, and poezio's screen
     must show what alice said there before: poezio asks an archived room's archive
     (XEP-0313) and takes the discussion history (§7.2.13) elsewhere, so the second room's
     history must have come as discussion history (its debug log shows no archive query to
     it), which also shows that room does not offer an archive it was told not to keep;
  2. in the second room, a line typed into poezio reaches alice as a groupchat message from
     poezio's occupant JID, with exactly that body;
  3. alice's answer appears on poezio's screen;
  4. /nick in poezio: alice sees the old nickname leave with status 303 and the new one
     (XEP-0045 §7.6), and the next line typed arrives from the new occupant JID;
  5. /quit: alice sees poezio's occupant leave, and poezio exits with status 0.
Every wait is bounded (--step-timeout each, --timeout in all); the tmux server is ended by its
socket and poezio, if still there, by its PID. On failure the screen and the end of
poezio's debug log are printed.

    ALICE_PASSWORD=… BOB_PASSWORD=… poezio_muc.py --port 5222 --ca ca.pem \
        --alice alice@localhost --bob bob@localhost --service conference.localhost \
        --workdir /tmp/poezio-check
"""

import asyncio
import os
import pwd
import shutil
import sys
import time
from pathlib import Path

from muc_common import Occupant, item_attr, status_codes, unique
from xmpp_common import Failure, log, password_from_env, scenario_main

SCREEN_WIDTH, SCREEN_HEIGHT = 200, 50
# Between keys poezio must read apart (see Tmux.type_line), seconds.
KEY_GAP = 0.3


class Tmux:
    """A private tmux server (`socket`) holding one session with poezio, every command run
    as `user` when we are root (tmux only talks to its own user's server)."""

    def __init__(self, workdir, user):
        self.socket = workdir / "tmux.sock"
        env = {
            "HOME": str(workdir / "home"),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            # tmux runs the pane's command with the user's shell, which for an unprivileged
            # system user is nologin.
            "SHELL": "/bin/sh",
            "TERM": "xterm-256color",
            "TMUX_TMPDIR": str(workdir),
        }
        self.prefix = ["env", "-i", *(f"{k}={v}" for k, v in env.items())]
        if os.geteuid() == 0:
            entry = pwd.getpwnam(user)
            self.prefix = [
                "setpriv",
                f"--reuid={entry.pw_uid}",
                f"--regid={entry.pw_gid}",
                "--clear-groups",
                *self.prefix,
            ]
        self.pane_pid = None

    async def run(self, *args, timeout=10):
        """Runs `tmux -S socket ARGS`; its standard output. Fails when tmux fails or takes
        longer than `timeout` seconds."""
        proc = await asyncio.create_subprocess_exec(
            *self.prefix,
            "tmux",
            "-S",
            str(self.socket),
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
            raise Failure(f"tmux {args[0]} did not finish within {timeout} s") from None
        if proc.returncode != 0:
            raise Failure(f"tmux {' '.join(args[:2])} failed: {err.decode(errors='replace')}")
        return out.decode(errors="replace")

    async def start(self, command):
        """A detached session running `command` (a shell command line): when it ends, the
        pane stays, showing its exit status, until the server is ended."""
        shell = f'{command}; echo "poezio exited with status $?"; exec sleep 600'
        size = ["-x", str(SCREEN_WIDTH), "-y", str(SCREEN_HEIGHT)]
        await self.run("new-session", "-d", "-s", "poezio", *size, shell)
        self.pane_pid = int(
            (await self.run("display-message", "-p", "-t", "poezio", "#{pane_pid}")).strip()
        )

    async def type_line(self, text):
        """Types `text` literally, then Enter. poezio takes keys that it reads together as a
        paste into the open input, so the pieces are apart: a command's "/" first, alone (in
        the roster tab it is the key that opens the command line), and Enter last, alone (in
        a paste it is a line break, not "send")."""
        if text.startswith("/"):
            await self.run("send-keys", "-t", "poezio", "-l", "/")
            await asyncio.sleep(KEY_GAP)
            text = text[1:]
        await self.run("send-keys", "-t", "poezio", "-l", text)
        await asyncio.sleep(KEY_GAP)
        await self.run("send-keys", "-t", "poezio", "Enter")

    async def screen(self):
        """The pane's text, with the scrollback, wrapped lines joined."""
        return await self.run("capture-pane", "-p", "-J", "-S", "-", "-t", "poezio")

    async def wait_for(self, text, timeout, what):
        """Polls the screen until `text` is on it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if text in await self.screen():
                log(f"poezio: shows {what}")
                return
            if loop.time() >= deadline:
                raise Failure(f"poezio did not show {what} ({text!r}) within {timeout} s")
            await asyncio.sleep(0.2)

    async def stop(self):
        """Ends the server by its socket, then the pane's process by its PID if it is still
        there."""
        try:
            await self.run("kill-server", timeout=5)
        except Failure as e:
            log(f"tmux kill-server: {e}")
        if self.pane_pid is not None:
            for _ in range(50):
                try:
                    os.kill(self.pane_pid, 0)
                except ProcessLookupError:
                    return
                await asyncio.sleep(0.1)
            log(f"the pane's process {self.pane_pid} outlived the tmux server; killing it")
            try:
                os.kill(self.pane_pid, 9)
            except ProcessLookupError:
                pass


def poezio_config(args, workdir, server):
    """poezio's configuration: bob's account on the server under test, the test CA, and
    nothing that sends or fetches more than the check needs."""
    host, port = server
    return "\n".join(
        [
            "[Poezio]",
            f"jid = {args.bob}",
            f"password = {password_from_env(args.bob_password_env)}",
            f"custom_host = {host}",
            f"custom_port = {port}",
            f"ca_cert_path = {workdir / 'ca.pem'}",
            "force_encryption = true",
            "auto_reconnect = false",
            "use_remote_bookmarks = false",
            "open_all_bookmarks = false",
            "enable_carbons = false",
            "enable_avatars = false",
            "enable_user_nick = false",
            "enable_smacks = false",
            "send_os_info = false",
            "send_poezio_info = false",
            "send_time = false",
            "use_log = false",
            "load_log = 0",
            "mam_sync = false",
            "exec_remote = false",
            "autorejoin = false",
            "lang = en",
            "",
        ]
    )


def prepare(args, user):
    """The work directory, with poezio's home, configuration and CA, owned by `user` when
    we are root."""
    workdir = Path(args.workdir)
    (workdir / "home").mkdir(parents=True, exist_ok=True)
    shutil.copy(args.ca, workdir / "ca.pem")
    config = workdir / "poezio.cfg"
    config.write_text(poezio_config(args, workdir, (args.host, args.poezio_port or args.port)))
    config.chmod(0o600)
    if os.geteuid() == 0:
        entry = pwd.getpwnam(user)
        for path in [workdir, *workdir.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid)
    return workdir, config


async def scenario(args):
    workdir, config = prepare(args, args.as_user)
    step = args.step_timeout
    alice = Occupant(f"{args.alice}/poezio-check", password_from_env(args.alice_password_env), args)
    tmux = Tmux(workdir, args.as_user)
    debug_log = workdir / "poezio-debug.log"
    try:
        alice.start()
        await alice.ready
        # Two rooms: the first archived (XEP-0313, the default), the second not, so poezio takes
        # the history from the archive in one and as discussion history in the other.
        archived = await room_with_a_past(alice, args.service, step)
        archived_at = time.time()
        room, a_jid, earlier = await room_with_a_past(
            alice, args.service, step, {"muc#roomconfig_enablearchiving": "0"}
        )

        nick = unique("poezio")
        await tmux.start(f"poezio -f {config} -d {debug_log}")
        # The roster tab is ready for commands once poezio is connected.
        await tmux.wait_for(f"{args.bob}/", args.login_timeout, "its own JID (logged in)")
        # poezio asks the archive for what came before its first line in the tab (its joining),
        # with the time cut to whole seconds: what was said in that second is not asked for.
        # So the archived room's message is left two seconds older than the joining.
        await asyncio.sleep(max(0.0, archived_at + 2.0 - time.time()))
        await poezio_joins(tmux, alice, archived, nick, step)
        path = history_path(debug_log, archived[0])
        log(f"poezio: got the history of {archived[0]} {path}")
        await poezio_joins(tmux, alice, (room, a_jid, earlier), nick, step)
        path = history_path(debug_log, room)
        if path != MUC_HISTORY:
            raise Failure(f"poezio got the history of {room}, which is not archived, {path}")
        log(f"poezio: got the history of {room} {path}")
        # From here on poezio's tab is the second room's.
        p_jid = f"{room}/{nick}"

        said = f"poezio says hello {unique('p')}"
        mark = alice.inbox.mark()
        await tmux.type_line(said)
        await alice.expect_groupchat(p_jid, said, step, mark)

        answer = f"alice answers poezio {unique('a')}"
        alice.groupchat(room, answer)
        await tmux.wait_for(answer, step, "alice's answer")

        new_nick = f"{nick}-2"
        p2_jid = f"{room}/{new_nick}"
        p_mark = alice.presences.mark()
        await tmux.type_line(f"/nick {new_nick}")
        gone = await alice.expect_occupant(p_jid, step, p_mark, available=False)
        if 303 not in status_codes(gone) or item_attr(gone, "nick") != new_nick:
            raise Failure(f"the nickname change lacks status 303 and nick {new_nick}: {gone}")
        await alice.expect_occupant(p2_jid, step, p_mark)
        log(f"{alice.me}: saw {p_jid} become {p2_jid} (status 303)")
        said = f"poezio under its new nickname {unique('p')}"
        mark = alice.inbox.mark()
        await tmux.type_line(said)
        await alice.expect_groupchat(p2_jid, said, step, mark)

        p_mark = alice.presences.mark()
        await tmux.type_line("/quit")
        await alice.expect_occupant(p2_jid, step, p_mark, available=False)
        await tmux.wait_for("poezio exited with status 0", step, "that it exited with status 0")
    except Failure:
        await show_diagnostics(tmux, debug_log)
        raise
    finally:
        await tmux.stop()
        await alice.close()


MUC_HISTORY = "as discussion history on entering (XEP-0045 §7.2.13)"


async def room_with_a_past(alice, service, step, fields=None):
    """A new room alice makes (configured with `fields`) and says something in; returns (room,
    alice's occupant JID, what she said)."""
    room = f"{unique('poezio')}@{service}"
    a_jid = f"{room}/{alice.boundjid.user}"
    await alice.join(a_jid, step, history=0, expect_codes=(110, 201))
    await alice.configure(room, step, fields)
    # Short: poezio wraps long lines itself, and the screen is searched for the whole text.
    earlier = f"before poezio came {unique('h')}"
    mark = alice.inbox.mark()
    alice.groupchat(room, earlier)
    await alice.expect_groupchat(a_jid, earlier, step, mark)
    return room, a_jid, earlier


async def poezio_joins(tmux, alice, room_past, nick, step):
    """poezio joins with /join; alice sees it enter, and poezio shows what she said before."""
    room, _, earlier = room_past
    p_jid = f"{room}/{nick}"
    mark = alice.presences.mark()
    await tmux.type_line(f"/join {p_jid}")
    await alice.expect_occupant(p_jid, step, mark)
    await tmux.wait_for(earlier, step, f"the history of {room}: alice's message from before")


def history_path(debug_log, room):
    """How poezio fetched the history, from its debug log: it asks the room's archive when the
    room advertises XEP-0313, and otherwise takes the discussion history sent on entering."""
    try:
        lines = debug_log.read_text(errors="replace").splitlines()
    except OSError:
        return "(its debug log is unreadable)"
    if any("SEND:" in line and "urn:xmpp:mam:2" in line and room in line for line in lines):
        return "from the room's archive (XEP-0313)"
    return MUC_HISTORY


async def show_diagnostics(tmux, debug_log):
    try:
        screen = await tmux.screen()
        log("poezio's screen:\n" + "\n".join("    " + line for line in screen.rstrip().split("\n")))
    except Failure as e:
        log(f"no screen: {e}")
    if debug_log.exists():
        lines = debug_log.read_text(errors="replace").splitlines()[-40:]
        log("end of poezio's debug log:\n" + "\n".join("    " + line[:300] for line in lines))


def add_arguments(p):
    p.add_argument("--alice", required=True, help="the slixmpp occupant, user@domain")
    p.add_argument("--bob", required=True, help="poezio's account, user@domain")
    p.add_argument("--alice-password-env", default="ALICE_PASSWORD")
    p.add_argument("--bob-password-env", default="BOB_PASSWORD")
    p.add_argument("--service", required=True, help="the MUC service's domain")
    p.add_argument("--workdir", required=True, help="a fresh directory for poezio and tmux")
    p.add_argument(
        "--poezio-port",
        type=int,
        help="the port poezio connects to (default --port, where alice connects)",
    )
    p.add_argument(
        "--as-user", default="nobody", help="the user poezio and tmux run as when we are root"
    )
    p.add_argument("--login-timeout", type=float, default=20.0, help="bound on poezio's login")
    p.add_argument(
        "--step-timeout", type=float, default=10.0, help="bound on each awaited event, seconds"
    )


def main():
    return scenario_main(__doc__, scenario, "poezio: every check held", add_arguments)


if __name__ == "__main__":
    sys.exit(main())
