#!/usr/bin/env python3
"""Peak memory of the server while a large file is uploaded (XEP-0363), and downloaded.

Logs in as --jid (password in the environment variable --password-env) with slixmpp, asks the
server's upload service for a slot of --mib MiB, PUTs that many bytes over HTTPS streamed from
a generator (the client never holds the file), then GETs it back and checks its SHA-256.
Before the upload the server's peak RSS is reset (writing 5 to /proc/PID/clear_refs, root
only) and its RSS read; during both transfers VmRSS is sampled every 20 ms; after each, VmHWM
(the kernel's peak since the reset) is read. Prints one JSON object: rss_before_kib,
peak_put_kib, peak_get_kib, growth_put_kib, growth_get_kib, seconds_put, seconds_get.

    SSL_CERT_FILE=ca.pem PW=… bench/upload_rss.py --port 5222 --ca ca.pem --jid a@localhost \
        --password-env PW --pid 1234 --mib 100

Needs slixmpp and aiohttp (interop/requirements.txt).
"""

import argparse
import asyncio
import hashlib
import json
import os
import ssl
import sys
import time

import aiohttp
import slixmpp

CHUNK = 1024 * 1024


def status_kib(pid, field):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise SystemExit(f"no {field} in /proc/{pid}/status")


def reset_peak(pid):
    with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as f:
        f.write("5")


async def sample_peak(pid, stop, peak):
    while not stop.is_set():
        peak[0] = max(peak[0], status_kib(pid, "VmRSS"))
        await asyncio.sleep(0.02)


def pattern(i):
    # Deterministic, incompressible enough, and cheap: each MiB differs.
    return hashlib.sha256(i.to_bytes(8, "big")).digest() * (CHUNK // 32)


async def body(mib, digest):
    for i in range(mib):
        block = pattern(i)
        digest.update(block)
        yield block


async def measure(args, client):
    slot_iq = await client.plugin["xep_0363"].request_slot(
        f"upload.{client.boundjid.domain}", "big.bin", args.mib * CHUNK, "application/octet-stream",
        timeout=20,
    )
    slot = slot_iq["http_upload_slot"]
    put_url, get_url = slot["put"]["url"], slot["get"]["url"]
    context = ssl.create_default_context(cafile=args.ca)
    reset_peak(args.pid)
    before = status_kib(args.pid, "VmRSS")
    result = {"mib": args.mib, "rss_before_kib": before}
    async with aiohttp.ClientSession() as session:
        for phase in ("put", "get"):
            reset_peak(args.pid)
            stop, peak = asyncio.Event(), [before]
            sampler = asyncio.create_task(sample_peak(args.pid, stop, peak))
            started = time.monotonic()
            if phase == "put":
                sent = hashlib.sha256()
                headers = {"Content-Type": "application/octet-stream",
                           "Content-Length": str(args.mib * CHUNK)}
                async with session.put(put_url, data=body(args.mib, sent), headers=headers,
                                       ssl=context) as response:
                    if response.status != 201:
                        raise SystemExit(f"PUT: {response.status} {await response.text()}")
            else:
                got = hashlib.sha256()
                async with session.get(get_url, ssl=context) as response:
                    if response.status != 200:
                        raise SystemExit(f"GET: {response.status}")
                    async for block in response.content.iter_chunked(CHUNK):
                        got.update(block)
                if got.digest() != sent.digest():
                    raise SystemExit("the downloaded bytes differ from the uploaded ones")
            result[f"seconds_{phase}"] = round(time.monotonic() - started, 2)
            stop.set()
            await sampler
            top = max(peak[0], status_kib(args.pid, "VmHWM"))
            result[f"peak_{phase}_kib"] = top
            result[f"growth_{phase}_kib"] = top - before
    return result


async def main_async(args):
    client = slixmpp.ClientXMPP(f"{args.jid}/bench", os.environ[args.password_env])
    client.ca_certs = args.ca
    client.enable_plaintext = False
    client.register_plugin("xep_0363")
    ready = asyncio.get_running_loop().create_future()
    client.add_event_handler("session_start", lambda _: ready.done() or ready.set_result(True))
    client.add_event_handler("failed_all_auth", lambda _: ready.done() or ready.set_exception(
        SystemExit("authentication failed")))
    client.connect(args.host, args.port)
    await asyncio.wait_for(ready, 20)
    try:
        print(json.dumps(await measure(args, client)))
    finally:
        client.disconnect()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ca", required=True)
    p.add_argument("--jid", required=True)
    p.add_argument("--password-env", required=True)
    p.add_argument("--pid", type=int, required=True, help="the server's process id")
    p.add_argument("--mib", type=int, default=100)
    p.add_argument("--timeout", type=float, default=300)
    args = p.parse_args()
    asyncio.run(asyncio.wait_for(main_async(args), args.timeout))
    return 0


if __name__ == "__main__":
    sys.exit(main())
