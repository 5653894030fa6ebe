#!/usr/bin/env python3
"""Scrapes Prometheus `/metrics` endpoints once a second during a scenario.

    python3 loadtest/scrape.py OUT.jsonl URL [URL ...]

Appends one JSON line per scrape: {"t": unix seconds, "url": ..., "series":
{"name{labels}": value}} (the stack's `concert_*` series only), until SIGTERM
or SIGINT. A failed scrape (process starting or stopping) is skipped; the
runner starts this before k6 and stops it after the worker has drained.
`loadtest/plot.py` draws the file.
"""
import json
import signal
import sys
import time
import urllib.request

running = True


def stop(*_):
    global running
    running = False


def parse(text):
    series = {}
    for line in text.splitlines():
        if not line.startswith("concert_"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            series[name] = float(value)
        except ValueError:
            pass
    return series


def main():
    out, urls = sys.argv[1], sys.argv[2:]
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with open(out, "a", encoding="utf-8") as f:
        next_at = time.time()
        while running:
            for url in urls:
                try:
                    with urllib.request.urlopen(url, timeout=2) as resp:
                        text = resp.read().decode("utf-8")
                except OSError:
                    continue
                f.write(json.dumps({"t": time.time(), "url": url, "series": parse(text)}) + "\n")
            f.flush()
            next_at += 1.0
            time.sleep(max(0.0, next_at - time.time()))


if __name__ == "__main__":
    main()
