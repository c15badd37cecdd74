#!/usr/bin/env python3
"""Turns the generator's JSON lines into one markdown table with ratios.

Usage: bench/table.py results.jsonl
"""
import json
import statistics
import sys

SERVERS = ["xmppd", "baseline", "ejabberd", "prosody", "relay", "xmppd-sm-mam", "xmppd-sm", "ejabberd-sm-mam",
           "xmppd-muc-mam", "ejabberd-muc-mam", "prosody-muc-mam", "xmppd-ws", "ejabberd-ws", "prosody-ws"]

# Ratio columns (numerator, denominator, heading); a column is shown when both servers ran.
# The first three are shown whenever xmppd ran, as before the stream management variants existed.
RATIOS = [
    ("xmppd", "ejabberd", "xmppd/ejabberd"),
    ("xmppd", "prosody", "xmppd/Prosody"),
    ("xmppd", "relay", "xmppd/relay"),
    ("xmppd", "baseline", "xmppd/baseline"),
    ("xmppd-sm-mam", "xmppd-sm", "archive on/off (xmppd-sm-mam/xmppd-sm)"),
    ("xmppd-sm-mam", "ejabberd-sm-mam", "xmppd-sm-mam/ejabberd-sm-mam"),
    ("xmppd-sm-mam", "xmppd", "xmppd-sm-mam/xmppd"),
    ("xmppd-muc-mam", "xmppd", "room archive on/off (xmppd-muc-mam/xmppd)"),
    ("xmppd-muc-mam", "ejabberd-muc-mam", "xmppd-muc-mam/ejabberd-muc-mam"),
    ("xmppd-muc-mam", "prosody-muc-mam", "xmppd-muc-mam/prosody-muc-mam"),
    ("ejabberd-muc-mam", "ejabberd", "ejabberd room archive on/off"),
    ("prosody-muc-mam", "prosody", "Prosody room archive on/off"),
    ("xmppd-ws", "ejabberd-ws", "xmppd-ws/ejabberd-ws"),
    ("xmppd-ws", "prosody-ws", "xmppd-ws/prosody-ws"),
    ("xmppd-ws", "xmppd", "xmppd WebSocket/TCP"),
]
ALWAYS = 3


def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            if r["scenario"] in ("login", "muc"):
                key = f"{r['scenario']} {r['n']}"
            elif r["scenario"] == "throughput_round":
                key = f"throughput_round {r['round']}"
            else:
                key = r["scenario"]
            rows.setdefault(key, {})[r["server"]] = r
    return rows


def fmt(v, digits=0):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def ratio(a, b):
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


# (row label, scenario key, field, digits, higher is better)
METRICS = [
    ("logins/s, {n} clients", "login", "logins_per_s", 0, True),
    ("server CPU us/login, {n} clients", "login", "server_us_per_login", 0, False),
    ("time to all-in s, {n} clients", "login", "secs_all_in", 2, False),
    ("idle KiB/session ({n})", "idle", "kib_per_session", 1, False),
    ("RSS MiB empty -> after {n} login/out (first peak)", "warm", ("rss_empty_kib", "rss_after_logout_kib"), 1, False),
    ("RSS MiB before -> after {n} login/out (a later cycle)", "login", ("rss_before_kib", "rss_after_logout_kib"), 1, False),
    ("msg/s (throughput)", "throughput", "msgs_per_s", 0, True),
    ("server CPU us/msg", "throughput", "server_us_per_msg", 2, False),
    ("server CPU s per 1k msgs", "throughput", "server_cpu_s_per_1k_msgs", 3, False),
    ("msg/s, interleaved round {n}", "throughput_round", "msgs_per_s", 0, True),
    ("server CPU us/msg, interleaved round {n}", "throughput_round", "server_us_per_msg", 2, False),
    ("latency p50 ms @ rate", "latency", "p50_ms", 3, False),
    ("latency p99 ms @ rate", "latency", "p99_ms", 3, False),
    ("latency p99.9 ms @ rate", "latency", "p999_ms", 3, False),
    ("generator CPU s (throughput)", "throughput", "gen_cpu_s", 2, False),
    ("presence fan-out: presences/s ({n} users)", "fanout", "presences_per_s", 0, True),
    ("server CPU us/presence (fan-out, logins included)", "fanout", "server_us_per_presence", 2, False),
    ("server CPU us/presence (fan-out, logins' CPU taken out)", "fanout", "server_us_per_presence_excl_logins", 2, False),
    ("fan-out presences delivered/expected", "fanout", "fraction", 3, True),
    ("PEP fan-out: notifications/s ({n} contacts)", "pep", "notifications_per_s", 0, True),
    ("server CPU us/notification (PEP fan-out)", "pep", "server_us_per_notification", 2, False),
    ("PEP notifications delivered/expected", "pep", "fraction", 3, True),
    ("group chat: copies delivered/s, room of {n}", "muc", "deliveries_per_s", 0, True),
    ("server CPU us/delivered copy, room of {n}", "muc", "server_us_per_delivery", 2, False),
    ("group chat copies delivered/expected, room of {n}", "muc", "fraction", 3, True),
    ("room archive count/messages sent, room of {n}", "muc", "archived_fraction", 3, True),
    ("soak: login/logout cycles done (of {n})", "soak_cycles", "completed", 0, True),
    ("soak: cycles/s", "soak_cycles", "cycles_per_s", 0, True),
    ("soak: server CPU us/cycle", "soak_cycles", "server_us_per_cycle", 0, False),
    ("soak: RSS MiB after the first batch -> at the end", "soak_cycles", ("rss_first_kib", "rss_end_kib"), 1, False),
    ("soak: RSS growth after the first batch", "soak_cycles", "rss_growth", 4, False),
    ("soak: verdict (every cycle done, RSS back within 10 %)", "soak_cycles", "verdict", 0, True),
    ("soak: idle sessions held (of {n})", "soak_idle", "ok", 0, True),
    ("soak: idle KiB/session", "soak_idle", "kib_per_session", 1, False),
]


def print_median_round_ratio(rows, present, other="relay"):
    """The median over the interleaved rounds of xmppd's msg/s divided by `other`'s."""
    ratios = []
    for key, by in rows.items():
        if key.split(" ")[0] != "throughput_round":
            continue
        x, r = by.get("xmppd", {}).get("msgs_per_s"), by.get(other, {}).get("msgs_per_s")
        if x is not None and r:
            ratios.append(x / r)
    if not ratios:
        return
    label = f"msg/s xmppd/{other}, median of the {len(ratios)} interleaved rounds"
    spread = f"{min(ratios):.2f}x-{max(ratios):.2f}x"
    figure = f"{statistics.median(ratios):.2f}x (rounds {spread})"
    cells = ["" for _ in present]
    ratio_cells = [figure if (a, b) == ("xmppd", other) else "" for a, b, _ in ratio_columns(present)]
    print("| " + " | ".join([label] + cells + ratio_cells) + " |")


def ratio_columns(present):
    return [r for i, r in enumerate(RATIOS) if (i < ALWAYS and "xmppd" in present) or (r[0] in present and r[1] in present)]


def main():
    rows = load(sys.argv[1])
    present = [s for s in SERVERS if any(s in r for r in rows.values())]
    columns = ratio_columns(present)
    head = ["metric"] + present + [h for _, _, h in columns]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for label, scen, field, digits, _ in METRICS:
        keys = sorted((k for k in rows if k.split(" ")[0] == scen), key=lambda k: int(k.split(" ")[1]) if " " in k else 0)
        for key in keys:
            by = rows[key]
            n = next((r.get("n", r.get("round")) for r in by.values() if "n" in r or "round" in r), "")
            if isinstance(field, tuple):
                vals = {}
                for s, r in by.items():
                    e, a = r.get(field[0]), r.get(field[1])
                    vals[s] = None if e is None or a is None else (e / 1024, a / 1024)
                cells = [("n/a" if vals.get(s) is None else f"{vals[s][0]:.1f} -> {vals[s][1]:.1f}") for s in present]
                rat = ["" for _ in columns]
            else:
                vals = {s: by.get(s, {}).get(field) for s in present}
                cells = [fmt(vals[s], digits) for s in present]
                rat = [ratio(vals.get(a), vals.get(b)) for a, b, _ in columns]
            print("| " + " | ".join([label.format(n=n)] + cells + rat) + " |")
        if scen == "throughput_round" and field == "msgs_per_s":
            print_median_round_ratio(rows, present)
            if "baseline" in present:
                print_median_round_ratio(rows, present, "baseline")
    print()
    print("Ratios are the first server's figure divided by the second's (for costs and latency, lower is better).")
    if any(s.endswith("-sm-mam") or s.endswith("-sm") for s in present):
        print("`-sm`: stream management enabled on every client (`<r/>` answered, the clients' own `<r/>` too);")
        print("`-mam`: message archiving on, archiving every message. Their idle rows are resumable sessions.")
    if any(s.endswith("-ws") for s in present):
        print("`-ws`: the same scenarios over XMPP over WebSocket (wss://, RFC 7395); idle KiB/session is per WebSocket session.")
    if any(s.endswith("-muc-mam") for s in present):
        print("`-muc-mam`: group chat rooms created with archiving on (the other servers' rooms have it off).")
    for s, r in rows.get("soak_cycles", {}).items():
        samples = ", ".join(
            f"{x['cycles']:,}: {x['rss_kib'] / 1024:.1f}" for x in r.get("rss_samples", []) if x.get("rss_kib") is not None
        )
        print()
        print(f"Soak, {s}: RSS MiB by cycles done: {samples}; at most {fmt(r.get('time_wait_max'))} sockets in TIME_WAIT"
              + (f"; stopped by the {r['stopped_by']} after {r['completed']:,} cycles" if r.get("stopped_by") else "") + ".")
    for s, r in rows.get("soak_idle", {}).items():
        if r.get("limited_by"):
            print()
            print(f"Soak, {s}: {r['n']:,} idle sessions of the {r['requested']:,} asked: {r['limited_by']}.")
    errs = [(k, s, r.get("error") or r.get("failed") or r.get("errors") or r.get("out_of_order")) for k, by in rows.items() for s, r in by.items()]
    errs = [e for e in errs if e[2]]
    if errs:
        print()
        print("Failures/errors/out-of-order counts: " + ", ".join(f"{s} {k}: {v}" for k, s, v in errs))


if __name__ == "__main__":
    main()
