"""Server latency as seen on the loopback wire, per endpoint, from a tcpdump capture.

    python3 loadtest/wire.py CAPTURE.pcap PORT > wire.json

A request's latency here is its first packet into PORT to its response's first
packet out: the api, Redis and the kernel's accept queue, but not the load
generator's own scheduling (k6 shares the CPUs in the runner, and its figures
include the time it takes to get round to sending and reading). HTTP/1.1
without pipelining is assumed (k6's behaviour): responses answer a
connection's requests in order. Paths are grouped with ids replaced.
"""
import json
import re
import struct
import sys

ID = re.compile(r"/(?:[0-9a-fA-F-]{32,36}|\d+)(?=/|$)")
METHODS = (b"GET ", b"POST ", b"PUT ", b"PATCH ", b"DELETE ", b"HEAD ", b"OPTIONS ")


def packets(path):
    """(time, src port, dst port, payload) of each IPv4 TCP packet of a classic pcap."""
    with open(path, "rb") as f:
        header = f.read(24)
        magic = struct.unpack("<I", header[:4])[0]
        endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
        nano = magic in (0xA1B23C4D, 0x4D3CB2A1)
        link = struct.unpack(endian + "I", header[20:24])[0]
        skip = {1: 14, 113: 16, 276: 20}.get(link)
        if skip is None:
            sys.exit(f"unsupported link type {link}")
        while len(rec := f.read(16)) == 16:
            sec, frac, caplen, _ = struct.unpack(endian + "IIII", rec)
            data = f.read(caplen)
            ip = data[skip:]
            if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
                continue
            tcp = ip[(ip[0] & 15) * 4:]
            if len(tcp) < 20:
                continue
            sport, dport = struct.unpack(">HH", tcp[:4])
            yield sec + frac / (1e9 if nano else 1e6), sport, dport, tcp[(tcp[12] >> 4) * 4:]


def endpoint(request_line):
    method, _, rest = request_line.partition(" ")
    target = rest.split(" ", 1)[0]
    path, _, query = target.partition("?")
    name = f"{method} {ID.sub('/{id}', path)}"
    return name + (" (long-poll)" if "waitSeconds=" in query and "waitSeconds=0" not in query else "")


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def main():
    port = int(sys.argv[2])
    pending, latencies = {}, {}
    for t, sport, dport, payload in packets(sys.argv[1]):
        if dport == port and payload.startswith(METHODS):
            line = payload.split(b"\r\n", 1)[0].decode("latin-1")
            pending.setdefault(sport, []).append((t, endpoint(line)))
        elif sport == port and payload.startswith(b"HTTP/1.") and pending.get(dport):
            start, name = pending[dport].pop(0)
            # Refusals apart from the rest (e.g. a shed reserve's 429 vs a 202).
            status = payload[9:12].decode("latin-1")
            if not status.startswith("2"):
                name = f"{name} → {status}"
            latencies.setdefault(name, []).append((t - start) * 1000)
    out = {}
    for name, values in sorted(latencies.items(), key=lambda kv: -len(kv[1])):
        values.sort()
        out[name] = {"count": len(values), **{f"p({q})": round(percentile(values, q / 100), 2) for q in (50, 95, 99)},
                     "max": round(values[-1], 2)}
    json.dump(out, sys.stdout, indent=1)


if __name__ == "__main__":
    main()
