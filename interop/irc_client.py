"""A minimal plain IRC client (RFC 1459/2812) on a raw TCP stream, for the gateway check.

It registers with NICK/USER, answers the server's PINGs, and queues every other line it
receives, parsed, so a check can wait (bounded) for the one it expects.
"""

import asyncio


class IrcError(Exception):
    """The IRC side of a check did not hold."""


class Line:
    """One parsed IRC line: `:prefix COMMAND params… :trailing`."""

    def __init__(self, raw):
        self.raw = raw
        self.prefix = ""
        rest = raw
        if rest.startswith(":"):
            self.prefix, _, rest = rest[1:].partition(" ")
        rest, sep, trailing = rest.partition(" :")
        words = rest.split()
        self.command = words[0].upper() if words else ""
        self.params = words[1:] + ([trailing] if sep else [])

    @property
    def nick(self):
        """The nickname in the prefix (`nick!user@host`), or the whole prefix."""
        return self.prefix.split("!", 1)[0]

    def __repr__(self):
        return f"Line({self.raw!r})"


class IrcClient:
    def __init__(self, nick, log=print):
        self.nick = nick
        self.log = log
        self.lines = asyncio.Queue()
        self.reader = None
        self.writer = None
        self.task = None

    async def connect(self, host, port, timeout):
        """Connects and registers; returns once the server welcomed us (001)."""
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(host, port), timeout
        )
        self.task = asyncio.create_task(self._read_loop())
        await self.send(f"NICK {self.nick}")
        await self.send(f"USER {self.nick} 0 * :xmppd interop IRC user")
        await self.expect(lambda l: l.command == "001", timeout, "the welcome (001)")
        self.log(f"irc: registered as {self.nick} on {host}:{port}")

    async def _read_loop(self):
        while True:
            data = await self.reader.readline()
            if not data:
                await self.lines.put(None)
                return
            raw = data.decode("utf-8", errors="replace").rstrip("\r\n")
            line = Line(raw)
            if line.command == "PING":
                await self.send("PONG :" + (line.params[-1] if line.params else ""))
                continue
            await self.lines.put(line)

    async def send(self, line):
        self.writer.write(line.encode("utf-8") + b"\r\n")
        await self.writer.drain()

    async def expect(self, predicate, timeout, what):
        """Waits for a line matching `predicate`, skipping the others; fails on an ERROR
        from the server, on a closed connection, or after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise IrcError(f"irc {self.nick}: no {what} within {timeout} s")
            try:
                line = await asyncio.wait_for(self.lines.get(), remaining)
            except asyncio.TimeoutError:
                raise IrcError(f"irc {self.nick}: no {what} within {timeout} s") from None
            if line is None:
                raise IrcError(f"irc {self.nick}: the server closed the connection")
            if line.command == "ERROR":
                raise IrcError(f"irc {self.nick}: server error: {line.raw}")
            if line.command == "433":
                raise IrcError(f"irc {self.nick}: nickname in use: {line.raw}")
            if predicate(line):
                return line

    async def join(self, channel, timeout):
        """Joins `channel` and waits for the end of its NAMES list (366)."""
        await self.send(f"JOIN {channel}")
        await self.expect(
            lambda l: l.command == "366" and len(l.params) > 1 and l.params[1] == channel,
            timeout,
            f"end of NAMES (366) for {channel}",
        )
        self.log(f"irc: {self.nick} joined {channel}")

    async def close(self):
        if self.writer is None:
            return
        try:
            await asyncio.wait_for(self.send("QUIT :done"), 2)
        except Exception:  # noqa: BLE001 - closing is best effort
            pass
        self.writer.close()
        if self.task is not None:
            self.task.cancel()
