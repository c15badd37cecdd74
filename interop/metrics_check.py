#!/usr/bin/env python3
"""Scrapes xmppd's /metrics after the client checks ran and has real parsers read it.

The Prometheus text (0.0.4) goes to Prometheus' own `promtool check metrics` (its parser
and its linter); the OpenMetrics exposition (asked for with Accept, as Prometheus does) goes
to the OpenMetrics parser of the `prometheus-client` Python package, which is strict about
the format (`# EOF`, `_total` counters, histogram buckets). Then the values the earlier
checks must have produced are asserted: the clients' logins (some with SCRAM), a
WebSocket connection sample, stanzas read from and sent to clients, archive
sizes and storage latency.

    metrics_check.py --port PORT [--promtool promtool]
"""

import argparse
import subprocess
import sys
import urllib.request

from prometheus_client.openmetrics.parser import text_string_to_metric_families

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


def fetch(port, accept=None):
    headers = {"Accept": accept} if accept else {}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.headers.get("Content-Type"), response.read().decode("utf-8")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--promtool", default="promtool")
    args = parser.parse_args()
    problems = []

    content_type, text = fetch(args.port)
    if content_type != PROMETHEUS:
        problems.append(f"Prometheus text served as {content_type!r}")
    lint = subprocess.run(
        [args.promtool, "check", "metrics"], input=text, capture_output=True, text=True
    )
    print(f"promtool check metrics: exit {lint.returncode} {lint.stdout}{lint.stderr}".strip())
    if lint.returncode != 0:
        problems.append("promtool rejected the Prometheus text")

    content_type, text = fetch(args.port, "application/openmetrics-text;version=1.0.0")
    if content_type != OPENMETRICS:
        problems.append(f"OpenMetrics served as {content_type!r}")
    samples = {}
    families = list(text_string_to_metric_families(text))
    for family in families:
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    print(f"OpenMetrics: {len(families)} families, {len(samples)} samples parsed")

    def at_least(name, minimum):
        value = samples.get(name, 0)
        print(f"  {name} = {value}")
        if value < minimum:
            problems.append(f"{name} is {value}, expected at least {minimum}")

    logins = {k: v for k, v in samples.items() if k.startswith("xmppd_logins_total{")}
    scram = sum(v for k, v in logins.items() if "SCRAM" in k)
    print(f"  logins: {logins}")
    if sum(logins.values()) < 10 or scram < 1:
        problems.append(f"too few logins counted: {logins}")
    at_least("xmppd_stanzas_received_total{kind=message,peer=client}", 10)
    at_least("xmppd_stanzas_sent_total{kind=message,peer=client}", 10)
    at_least("xmppd_archived_messages{store=mam}", 30)
    at_least("xmppd_storage_seconds_count{operation=get,shape=keyval}", 1)
    at_least("process_resident_memory_bytes{}", 1_000_000)
    if "xmppd_connections{kind=websocket}" not in samples:
        problems.append("no xmppd_connections sample for websocket")

    for problem in problems:
        print(f"FAIL: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
