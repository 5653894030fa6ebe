#!/usr/bin/env python3
"""Chaos summary: per fault, the jobs accepted during its phase, how many are
final, lost, doubled, the 5xx and dropped connections clients met, and the
recovery time. Exits 1 on any lost job or broken invariant.

Usage: chaos_report.py <results dir> <stamp>"""
import json
import re
import sys
from pathlib import Path

out, stamp = Path(sys.argv[1]), sys.argv[2]
phases = []
for line in (out / "phases.txt").read_text().splitlines():
    name, start, end, recovery = line.split()
    phases.append((name, float(start) * 1000, float(end) * 1000, float(recovery)))
accepted = []
for line in (out / "accepted.txt").read_text().splitlines():
    _, ms, job, kind = line.split()
    accepted.append((float(ms), job, kind))
final = set((out / "final-ids.txt").read_text().split())
lost_ids = set((out / "lost.txt").read_text().split())
errors = []
for m in re.finditer(r"ERR (\d+) (\d+) ([a-z-]+)", (out / "k6.log").read_text()):
    errors.append((float(m.group(1)), int(m.group(2)), m.group(3)))
violations = 0
broken = []
for line in (out / "invariants.txt").read_text().splitlines():
    if "|" in line:
        what, n = line.rsplit("|", 1)
        violations += int(n)
        if int(n):
            broken.append(f"{what}: {n}")

start_all = min([a[0] for a in accepted] + [p[1] for p in phases]) if accepted else 0
windows = [("(before any fault)", start_all, phases[0][1] if phases else float("inf"), None)] + phases
if phases:
    windows.append(("(after the last fault)", phases[-1][2], float("inf"), None))

rows = []
for name, start, end, recovery in windows:
    ids = [job for ms, job, _ in accepted if start <= ms < end]
    errs = [e for e in errors if start <= e[0] < end]
    rows.append({
        "fault": name,
        "accepted": len(ids),
        "final": sum(1 for j in ids if j in final),
        "lost": sum(1 for j in ids if j not in final or j in lost_ids),
        "503": sum(1 for e in errs if e[1] == 503),
        "other_5xx": sum(1 for e in errs if e[1] >= 500 and e[1] != 503),
        "dropped": sum(1 for e in errs if e[1] == 0),
        "recovery_s": recovery,
    })
summary = json.loads((out / "chaos.json").read_text()) if (out / "chaos.json").exists() else {}
total_lost = sum(r["lost"] for r in rows)

print(f"# Chaos run {stamp}\n")
print(f"2 api + 2 worker processes, own PostgreSQL and Redis (AOF, appendfsync always); "
      f"k6: {summary.get('accepted_jobs', len(accepted))} jobs accepted, "
      f"{summary.get('journeys_completed', '?')} journeys paid, {summary.get('refused_5xx', '?')} refused attempts retried.\n")
print("| fault | accepted | final | lost | doubled | 503 / other 5xx / dropped during | recovery s |")
print("| --- | ---: | ---: | ---: | ---: | --- | ---: |")
for r in rows:
    rec = "—" if r["recovery_s"] is None else f"{r['recovery_s']:.1f}"
    print(f"| {r['fault']} | {r['accepted']} | {r['final']} | {r['lost']} | {violations} | "
          f"{r['503']} / {r['other_5xx']} / {r['dropped']} | {rec} |")
print(f"\nDoubled = broken invariants over the whole run (loadtest/sql/invariants.sql plus one recharge per fan): {violations}."
      f" Recovery = from the fault until a new recharge, retried on either api, is accepted and final.")
if broken:
    print("\nBroken: " + "; ".join(broken))
print(f"\nResult: {'PASS' if total_lost == 0 and violations == 0 and accepted else 'FAIL'}"
      f" ({len(accepted)} accepted, {total_lost} lost, {violations} violations)")
sys.exit(0 if total_lost == 0 and violations == 0 and accepted else 1)
