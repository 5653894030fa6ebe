"""Turns one loadtest/run into summary.md: scenario figures, machine ceilings, ratios."""
import json
import pathlib
import sys

out = pathlib.Path(sys.argv[1])
redis_rps, pg_tps, bad = float(sys.argv[2] or 0), float(sys.argv[3] or 0), int(sys.argv[4])
rows = [line.split("|") for line in sys.argv[5:]]


def load(name):
    p = out / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else {}


def ms(t):
    if not t:
        return "–"
    return " / ".join(f"{t[k]:.1f}" for k in ("p(50)", "p(95)", "p(99)") if t.get(k) is not None)


print(f"# Load test {out.name}\n")
print(f"Machine ceilings: redis-benchmark SET **{redis_rps:,.0f} rps**; pgbench reserve transaction **{pg_tps:,.0f} tps**.\n")
print("| scenario | k6 exit | thresholds | key figures | api peak RSS MB / CPU s / CPU µs per request | worker peak RSS MB / CPU s | k6 CPU s | wall s | non-final jobs |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for name, status, api_rss, api_cpu, w_rss, w_cpu, elapsed, nonfinal, k6_cpu in rows:
    s = load(name)
    if name == "hot-seat":
        key = (f"accept p50/p95/p99 ms {ms(s.get('reserve_accept_ms'))}; won {s.get('holds_won')}, "
               f"SEAT_UNAVAILABLE {s.get('seat_unavailable')}, other {s.get('other_outcomes')}, 5xx {s.get('server_errors')}; "
               f"all final {s.get('final_after_last_accept_ms')} ms after the last accept")
    elif name == "reservations" or name.startswith("capacity-"):
        hps = s.get("holds_per_second") or 0
        key = (f"offered {s.get('offered_per_second')}/s: {s.get('holds_completed')} holds ({s.get('iterations_dropped')} dropped by k6), "
               f"{hps:.0f}/s = {hps / pg_tps:.2f} × pgbench; accept {ms(s.get('reserve_accept_ms'))}; "
               f"end-to-end {ms(s.get('hold_end_to_end_ms'))}; failed {s.get('holds_failed')}")
    elif name.startswith("expiry-burst-"):
        pg = load(f"{name}-pg")
        exp = pg.get("expired") or {}
        key = (f"{s.get('clients')} clients in a closed loop while {s.get('burst_accepted')} of {s.get('burst')} burst holds expire "
               f"({exp.get('holds', 0)} expired, due within {exp.get('due_within_s', 0):.1f} s, the last {exp.get('latest_s', 0):.1f} s after its time): "
               f"{(pg.get('pg_holds_per_second') or 0):.0f} holds/s; to a known outcome {ms(s.get('outcome_ms'))}; "
               f"failed {s.get('holds_failed')}, refused {s.get('reserves_refused')}")
    elif name.startswith("closed-"):
        pg = load(f"{name}-pg")
        cpu = pg.get("cpu_us_per_hold") or {}
        key = (f"{s.get('clients')} clients in a closed loop: {pg.get('pg_holds')} holds in PostgreSQL, "
               f"{(pg.get('pg_holds_per_second') or 0):.0f}/s = {(pg.get('pg_holds_per_second') or 0) / pg_tps:.2f} × pgbench; "
               f"to a known outcome {ms(s.get('outcome_ms'))}; accept {ms(s.get('reserve_accept_ms'))}; "
               f"CPU µs per hold api {cpu.get('api')}, worker {cpu.get('worker')}, Redis {cpu.get('redis')}, "
               f"PostgreSQL {cpu.get('postgres')}, stack {cpu.get('stack')}; failed {s.get('holds_failed')}, "
               f"refused {s.get('reserves_refused')}, clients out of seats {s.get('clients_out_of_seats')}")
    elif name == "overload":
        key = (f"offered {s.get('offered_per_second')} reserves/s + {s.get('pollers')} long-polling fans: {s.get('accepted')} accepted, "
               f"{s.get('shed_429', 0)} shed 429 (answered {ms(s.get('shed_ms'))}), "
               f"{s.get('refused_4xx')} other 4xx, {s.get('server_errors')} 5xx ({s.get('iterations_dropped')} dropped by k6); "
               f"accept {ms(s.get('accept_ms'))}; pollers' end-to-end {ms(s.get('poller_end_to_end_ms'))}, "
               f"{s.get('poller_holds')} held, {s.get('poller_unfinished')} unfinished after 60 s")
    elif name == "waiting-room":
        ips = s.get("issues_per_second") or 0
        key = (f"offered {s.get('offered_issues_per_second')} issues/s: {s.get('tokens_issued')} issued at {ips:.0f}/s = "
               f"{ips / redis_rps:.3f} × redis SET ({s.get('iterations_dropped')} dropped by k6); issue {ms(s.get('token_issue_ms'))}; "
               f"{s.get('polls')} polls {ms(s.get('status_poll_ms'))}")
    elif name == "journey":
        reasons = ", ".join(f"{k} {v}" for k, v in (s.get("abandoned_by_reason") or {}).items())
        key = (f"{s.get('journeys_completed')} journeys ({(s.get('journeys_per_second') or 0):.1f}/s), abandoned {s.get('journeys_abandoned')}"
               f"{f' ({reasons})' if reasons else ''}; journey {ms(s.get('journey_ms'))}; 5xx {s.get('server_errors')}")
    else:
        key = (f"{s.get('recharges_applied')} applied ({(s.get('recharges_per_second') or 0):.0f}/s), failed {s.get('recharges_failed')}; "
               f"accept {ms(s.get('recharge_accept_ms'))}")
    ok = "met" if s.get("thresholds_ok") else "missed"
    # The api's whole CPU time (setup requests included) over every request k6 made.
    per_req = f"{float(api_cpu) * 1e6 / s['http_reqs']:.0f}" if s.get("http_reqs") else "–"
    print(f"| {name} | {status} | {ok} | {key} | {api_rss} / {float(api_cpu):.1f} / {per_req} | {w_rss} / {float(w_cpu):.1f} "
          f"| {float(k6_cpu or 0):.1f} | {float(elapsed):.0f} | {nonfinal} |")
floors = {label: load(f"floor-{label}") for label in ("same", "max")}
if floors["same"]:
    wr = load("waiting-room").get("issues_per_second") or 0
    print("\nHTTP floor (`examples/http_floor.rs`, the waiting-room spike's executor; /s sustained, k6 on the same cores):\n")
    print("| offered/s | fixed JSON/s | one EVALSHA/s | EVALSHA p99 ms | dropped by k6 |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for f in floors.values():
        if f:
            print(f"| {f['offered_per_second']:,} | {f['static_per_second']:,.0f} | {f['evalsha_per_second']:,.0f} | "
                  f"{f['evalsha_p99_ms'] or 0:.1f} | {f['dropped']} |")
    same, top = floors["same"].get("evalsha_per_second") or 0, max(f.get("evalsha_per_second") or 0 for f in floors.values() if f)
    if wr and same and top:
        print(f"\nWaiting-room issues/s {wr:,.0f} = **{wr / same:.2f} ×** the one-EVALSHA floor at the same offered rate, "
              f"**{wr / top:.2f} ×** its highest ({top:,.0f}/s).")
wire = [(name, json.loads((out / f"{name}-wire.json").read_text())) for name, *_ in rows if (out / f"{name}-wire.json").exists()]
if wire:
    print("\nServer latency on the loopback wire (`WIRE=1`: a request's first packet in to its response's first packet out; "
          "k6's own scheduling excluded), endpoints with ≥ 100 requests:\n")
    print("| scenario | endpoint | requests | p50 / p95 / p99 / max ms |")
    print("| --- | --- | --- | --- |")
    for name, endpoints in wire:
        for ep, t in endpoints.items():
            if t["count"] >= 100:
                print(f"| {name} | `{ep}` | {t['count']} | {ms(t)} / {t['max']:.1f} |")
print(f"\nInvariants in PostgreSQL: {'all hold' if bad == 0 else f'{bad} violated'} (see invariants.txt). Latencies are ms.")
