"""What open long-polls cost the api in memory (#17 item 5).

    python3 loadtest/longpolls.py BASE_URL ADMIN_TOKEN API_PID [LEVELS] > longpolls.md

With no worker running, every reserve job stays QUEUED, so a long-poll on it
(`GET /v1/jobs/{id}?waitSeconds=30`) stays open. For each level (default
1000,2000,5000,10000) it opens that many long-polls at once, each on a job of
its own over a connection of its own, waits until the api's resident memory
stops growing, reads it (VmRSS), and closes them. The slope is MB per 1,000
open long-polls. Plain asyncio sockets, so the client costs the api nothing
but the requests themselves.
"""
import asyncio
import json
import sys
import time
import urllib.parse

BASE, ADMIN, PID = sys.argv[1], sys.argv[2], int(sys.argv[3])
LEVELS = [int(x) for x in (sys.argv[4] if len(sys.argv) > 4 else "1000,2000,5000,10000").split(",")]
HOST = urllib.parse.urlsplit(BASE)
FANS = 100


def rss_mb():
    for line in open(f"/proc/{PID}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def request(method, path, token=None, body=None):
    """One request over its own connection; returns (status, JSON body)."""
    reader, writer = await asyncio.open_connection(HOST.hostname, HOST.port)
    data = json.dumps(body).encode() if body is not None else b""
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST.netloc}\r\nConnection: close\r\nContent-Length: {len(data)}\r\n"
    if body is not None:
        head += "Content-Type: application/json\r\n"
    if token:
        head += f"Authorization: Bearer {token}\r\n"
    writer.write(head.encode() + b"\r\n" + data)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    status = int(raw.split(b" ", 2)[1])
    payload = raw.split(b"\r\n\r\n", 1)[1]
    return status, (json.loads(payload) if payload.strip().startswith((b"{", b"[")) else None)


async def bounded(n, make, limit=64):
    gate = asyncio.Semaphore(limit)

    async def one(i):
        async with gate:
            return await make(i)

    return await asyncio.gather(*(one(i) for i in range(n)))


async def setup(jobs):
    """FANS fans with queue tokens, and `jobs` QUEUED reserve jobs spread over them."""
    now = time.time()
    iso = lambda t: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    dates = -(-jobs // (FANS * 4)) + 1
    schedules = []
    for made in range(0, dates, 100):
        items = [{"startsAt": iso(now + (10 + made + i) * 86400), "bookingOpensAt": iso(now - 3600),
                  "bookingClosesAt": iso(now + 9 * 86400), "seatPrice": 1000} for i in range(min(100, dates - made))]
        status, concert = await request("POST", "/v1/admin/concerts", ADMIN, {"title": "longpolls", "schedules": items})
        assert status == 201, (status, concert)
        schedules += [s["scheduleId"] for s in concert["schedules"]]

    async def fan(i):
        status, user = await request("POST", "/v1/users", body={"name": f"lp-{i}"})
        assert status == 201, status
        status, ticket = await request("POST", "/v1/queue/tokens", user["accessToken"])
        assert ticket["status"] == "ACTIVE", ticket
        return user["accessToken"], ticket["token"]

    fans = await bounded(FANS, fan)

    async def reserve(i):
        access, token = fans[i % FANS]
        # Any valid request will do: with no worker, nothing judges it.
        schedule = schedules[(i // FANS) // 4 % len(schedules)]
        seat = (i // FANS) % 4 + 1 + 4 * ((i % FANS) % 12)
        status, body = await request("POST", "/v1/reservations", token, {"scheduleId": schedule, "seatNumbers": [seat]})
        assert status == 202, (status, body)
        return access, body["jobId"]

    return await bounded(jobs, reserve)


async def hold_open(jobs):
    """Opens a long-poll per job; returns the writers once every request is sent."""
    async def one(job):
        access, job_id = job
        reader, writer = await asyncio.open_connection(HOST.hostname, HOST.port)
        writer.write(f"GET /v1/jobs/{job_id}?waitSeconds=30 HTTP/1.1\r\nHost: {HOST.netloc}\r\n"
                     f"Authorization: Bearer {access}\r\n\r\n".encode())
        await writer.drain()
        # Anything read before the measurement means the poll was answered, not held.
        return asyncio.create_task(reader.read(1)), writer

    return await bounded(len(jobs), lambda i: one(jobs[i]), limit=500)


async def main():
    jobs = await setup(max(LEVELS))
    idle = rss_mb()
    rows = []
    for level in LEVELS:
        open_ = await hold_open(jobs[:level])
        # Settled: resident memory has stopped growing for half a second (within 20 s of the 30 s wait).
        last, steady, started = -1.0, 0, time.time()
        while steady < 5 and time.time() - started < 20:
            await asyncio.sleep(0.1)
            now = rss_mb()
            steady = steady + 1 if abs(now - last) < 0.05 else 0
            last = now
        answered = sum(1 for first, _ in open_ if first.done() and first.result())
        rows.append((level, last, answered))
        for first, w in open_:
            first.cancel()
            w.close()
        await asyncio.sleep(1)
    print(f"api resident memory (VmRSS) with no long-poll open, after setup: **{idle:.1f} MB**\n")
    print("| long-polls open at once | api VmRSS MB | over idle MB | MB per 1,000 open | answered before the read (must be 0) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for level, mb, answered in rows:
        print(f"| {level:,} | {mb:.1f} | {mb - idle:.1f} | {(mb - idle) * 1000 / level:.2f} | {answered} |")


asyncio.run(main())
