#!/usr/bin/env python3
"""The closed-loop scenario's figures from the database and the processes
(#28): holds counted in PostgreSQL over the span they were created in, and
CPU µs per hold by process between two counters.py snapshots (after k6's
setup, after the last client's last outcome).

With a burst (expiry-burst), also the expired holds: how many, over how many
seconds they fell due, and how late after its time the last one expired.

Usage: closed_report.py <before.json> <after.json> <holds> <span s> [<expired> <due span s> <latest s>]
  → one JSON line"""
import json
import sys

before, after = (json.load(open(p)) for p in sys.argv[1:3])
holds, span = int(sys.argv[3]), float(sys.argv[4])
cpu = {who: (after[f"{who}_cpu"] - before[f"{who}_cpu"]) * 1e6 / holds if holds else 0
       for who in ("api", "worker", "redis", "postgres")}
cpu["stack"] = sum(cpu.values())
report = {"pg_holds": holds, "pg_holds_per_second": holds / span if span else 0,
          "cpu_us_per_hold": {k: round(v) for k, v in cpu.items()}}
if len(sys.argv) > 7:
    report["expired"] = {"holds": int(sys.argv[5]), "due_within_s": float(sys.argv[6]), "latest_s": float(sys.argv[7])}
print(json.dumps(report))
