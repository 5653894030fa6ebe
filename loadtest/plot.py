#!/usr/bin/env python3
"""Draws one PNG per scenario from the scrapes `loadtest/scrape.py` wrote.

    python3 loadtest/plot.py SCRAPES.jsonl OUT.png TITLE

Three panels over the scenario's seconds: throughput (jobs finished per second
by outcome, and HTTP requests per second), p99 settle time (accepted → final,
from the worker's histogram buckets over a sliding 5 s window, interpolated as
Prometheus' histogram_quantile does) and queue depth per queue (waiting +
scheduled + running; stack-wide gauges, so the max over processes).
Needs matplotlib (the runner installs it from PyPI if absent).
"""
import json
import re
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

LABELS = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
WINDOW = 5  # seconds behind each p99 point


def split(key):
    name, _, rest = key.partition("{")
    return name, dict(LABELS.findall(rest))


def load(path):
    """{url: [(t, {key: value})]} in time order."""
    by_url = defaultdict(list)
    with open(path, encoding="utf-8") as f:
        for line in f:
            s = json.loads(line)
            by_url[s["url"]].append((s["t"], s["series"]))
    return by_url


def rates(by_url, want):
    """{second: summed rate} of the counters `want(name, labels)` selects, over every process."""
    out = defaultdict(float)
    for scrapes in by_url.values():
        for (t0, a), (t1, b) in zip(scrapes, scrapes[1:]):
            dt = t1 - t0
            if dt <= 0:
                continue
            total = 0.0
            for key, v in b.items():
                name, labels = split(key)
                if want(name, labels):
                    total += max(0.0, v - a.get(key, 0.0))  # a restart resets: no negative rates
            out[round(t1)] += total / dt
    return out


def quantile(q, buckets):
    """histogram_quantile over [(le, cumulative count)]."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_c) / (c - prev_c) if c > prev_c else 1.0)
        prev_le, prev_c = le, c
    return prev_le


def settle_p99(by_url):
    out = {}
    for scrapes in by_url.values():
        for i in range(WINDOW, len(scrapes)):
            (_, a), (t1, b) = scrapes[i - WINDOW], scrapes[i]
            cum = defaultdict(float)
            for key, v in b.items():
                name, labels = split(key)
                if name == "concert_job_settle_seconds_bucket":
                    cum[float(labels["le"])] += max(0.0, v - a.get(key, 0.0))
            p = quantile(0.99, list(cum.items()))
            if p is not None:
                out[round(t1)] = max(p, out.get(round(t1), 0.0))
    return out


def depths(by_url):
    """{queue: {second: depth}}, max over processes (the gauges are stack-wide)."""
    out = defaultdict(dict)
    for scrapes in by_url.values():
        for t, series in scrapes:
            per_queue = defaultdict(float)
            for key, v in series.items():
                name, labels = split(key)
                if name == "concert_queue_jobs" and labels.get("state") in ("waiting", "scheduled", "running"):
                    per_queue[labels["queue"]] += v
            for queue, v in per_queue.items():
                out[queue][round(t)] = max(v, out[queue].get(round(t), 0.0))
    return out


def main():
    src, png, title = sys.argv[1], sys.argv[2], sys.argv[3]
    by_url = load(src)
    if not by_url:
        print(f"plot: no scrapes in {src}", file=sys.stderr)
        return 1
    start = min(s[0][0] for s in by_url.values())

    def xy(points):
        keys = sorted(points)
        return [k - start for k in keys], [points[k] for k in keys]

    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    fig.suptitle(title)
    for outcome in ("succeeded", "failed"):
        r = rates(by_url, lambda n, l, o=outcome: n == "concert_jobs_finished_total" and l.get("outcome") == o)
        if any(r.values()):
            ax1.plot(*xy(r), label=f"jobs {outcome}/s")
    retried = rates(by_url, lambda n, l: n == "concert_job_retries_total")
    if any(retried.values()):
        ax1.plot(*xy(retried), label="jobs retried/s")
    http = rates(by_url, lambda n, l: n == "concert_http_requests_total")
    ax1.plot(*xy(http), label="HTTP requests/s", linestyle="--")
    ax1.set_ylabel("per second")
    ax1.legend(loc="upper right", fontsize="small")

    p99 = settle_p99(by_url)
    if p99:
        ax2.plot(*xy(p99), color="tab:red", label=f"p99 over {WINDOW} s")
        ax2.legend(loc="upper right", fontsize="small")
    ax2.set_ylabel("settle time (s)")

    for queue, points in sorted(depths(by_url).items()):
        if any(points.values()):
            ax3.plot(*xy(points), label=queue)
    if ax3.get_legend_handles_labels()[0]:
        ax3.legend(loc="upper right", fontsize="small")
    ax3.set_ylabel("tasks in queue")
    ax3.set_xlabel("seconds since the scenario started")
    for ax in (ax1, ax2, ax3):
        ax.grid(alpha=0.3)
        ax.margins(y=0.1)
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
