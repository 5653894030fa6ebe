#!/usr/bin/env python3
"""The account of one hold (#17 item 3): what one reserve — accept, run,
status, expiry scheduling — costs, from two counters.py snapshots taken around
the load (after k6's setup, after the queue drained) and the data packets
clients sent to Redis and PostgreSQL in between (tcpdump: one request packet ≈
one round trip).

Usage: account.py <before.json> <after.json> <holds> <redis packets> <pg packets> <label>"""
import json
import sys

before, after = (json.load(open(p)) for p in sys.argv[1:3])
holds = int(sys.argv[3])
redis_rt, pg_rt, label = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
per = lambda x: x / holds if holds else 0  # noqa: E731

cmds = {k: after["redis_commands"].get(k, 0) - before["redis_commands"].get(k, 0) for k in after["redis_commands"]}
cmds = {k: v for k, v in cmds.items() if v > 0}
scripts = sum(v for k, v in cmds.items() if k.startswith("eval"))
top = sorted(cmds.items(), key=lambda kv: -kv[1])[:8]


def delta(key):
    return (after.get(key) or 0) - (before.get(key) or 0) if after.get(key) is not None else None


stmts = delta("pg_statements")
print(f"### Account of one hold — {label} ({holds} holds, {after['t'] - before['t']:.0f} s)\n")
print("| per hold | figure |")
print("| --- | ---: |")
print(f"| Redis round trips (client request packets) | {per(redis_rt):.1f} |")
print(f"| Redis commands (scripts' own calls included) | {per(sum(cmds.values())):.1f} |")
print(f"| of which script calls (EVAL/EVALSHA) | {per(scripts):.1f} |")
print(f"| PostgreSQL round trips (client request packets) | {per(pg_rt):.1f} |")
print(f"| PostgreSQL transactions | {per(delta('pg_transactions') or 0):.1f} |")
print(f"| PostgreSQL statements (pg_stat_statements) | {'n/a' if stmts is None else f'{per(stmts):.1f}'} |")
for who in ("api", "worker", "redis", "postgres"):
    print(f"| CPU µs, {who} | {per(delta(f'{who}_cpu')) * 1e6:.0f} |")
print("\nRedis commands per hold, most frequent: " + ", ".join(f"`{k}` {per(v):.2f}" for k, v in top))
