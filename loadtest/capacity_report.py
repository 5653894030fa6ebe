#!/usr/bin/env python3
"""The capacity steps of `CAPACITY=1 loadtest/run` as a table, and the highest
sustained holds/s (counted in PostgreSQL) as a ratio to the pgbench ceiling.

Usage: capacity_report.py <capacity.txt> <pgbench tps>"""
import sys

steps = [line.split("|") for line in open(sys.argv[1]).read().split("\n") if line.strip()]
pg_tps = float(sys.argv[2] or 0)
print("| offered reserves/s | holds in PostgreSQL | holds/s (PostgreSQL) | dropped by k6 | end-to-end p99 ms | failed | step |")
print("| ---: | ---: | ---: | ---: | ---: | ---: | --- |")
for rate, holds, hps, dropped, p99, failed, verdict in steps:
    print(f"| {rate} | {holds} | {hps} | {dropped} | {p99} | {failed} | {verdict} |")
held = [int(s[2]) for s in steps if s[6] == "held"]
best = max(held) if held else 0
ratio = best / pg_tps if pg_tps else 0
print(f"\nHighest sustained: **{best} holds/s** = {ratio:.2f} × pgbench ({pg_tps:,.0f} tps)"
      + ("" if held else " (no step held)"))
