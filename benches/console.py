#!/usr/bin/env python3
"""The console benchmark's driver (issue 27), run by benches/console.sh
against a `serve` of the synthetic repository.

1. Stores RUNS runs through POST /v1/runs (NDJSON batches of 10,000), spread
   over the chains of the first 2,000 users, each with the pack id and version
   /v1/resolve returned for its chain.
2. Merges a change to one tenant pack, so a canary rollout exists with runs
   on both arms.
3. Signs in to the console with the token (POST /ui/login) and requests each
   page many times, one after another on one kept-alive connection: the
   figure is the time from sending the request to the last byte of the
   answer on 127.0.0.1, an upper bound on the server's time (p50, p95).
4. Exports every run as CSV and NDJSON (console) and NDJSON (/v1/runs) and
   reports rows per second.
5. Holds and resumes the rollout through the API while a console event
   stream (/ui/events) is open and reports how long each change took to be
   announced on the stream.
"""

import argparse
import http.client
import json
import socket
import statistics
import subprocess
import threading
import time
import urllib.parse

DOMAINS, TENANTS = 20, 500


def conn(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    c.connect()
    c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return c


def call(c, method, path, headers=None, body=None):
    c.request(method, path, body=body, headers=headers or {})
    r = c.getresponse()
    data = r.read()
    return r.status, r.getheaders(), data


def chain(u):
    t = u % TENANTS
    d = (t + (u // TENANTS % 3) * 7) % DOMAINS
    return f"domain-{d:02}", f"tenant-{t:03}", f"user-{u:05}"


def ingest(port, tok, runs):
    c = conn(port)
    auth = {"Authorization": "Bearer " + tok}
    served = []
    for u in range(2000):
        d, t, us = chain(u)
        q = urllib.parse.urlencode({"domain": d, "tenant": t, "user": us})
        s, _, body = call(c, "GET", "/v1/resolve?" + q, auth)
        assert s == 200, (s, body[:300])
        b = json.loads(body)
        served.append((t, us, b["pack_id"], b["pack_version"]))
    tasks = ["qa", "summary", "ticket", "lookup"]
    start = time.perf_counter()
    batch, n = [], 0
    for i in range(runs):
        t, us, pack, version = served[i % len(served)]
        ok = i % 23 != 0
        minute = i % 1440
        batch.append(
            json.dumps(
                {
                    "run_id": f"r{i}",
                    "tenant_id": t,
                    "user_id": us,
                    "agent_id": "bench-agent",
                    "pack_id": pack,
                    "pack_version": version,
                    "task_type": tasks[i % 4],
                    "latency_ms": 80 + i % 900,
                    "cost_usd": 0.0004 + (i % 7) / 10000,
                    "success_bool": ok,
                    "error_code": None if ok else "timeout",
                    "created_at": f"2026-12-0{1 + i % 6}T{minute // 60:02}:{minute % 60:02}:00Z",
                },
                separators=(",", ":"),
            )
        )
        if len(batch) == 10000 or i == runs - 1:
            s, _, body = call(c, "POST", "/v1/runs", {**auth, "Content-Type": "application/x-ndjson"}, "\n".join(batch).encode())
            assert s == 200, (s, body[:500])
            r = json.loads(body)
            assert r.get("accepted", len(batch)) == len(batch), body[:500]
            n += len(batch)
            batch = []
    secs = time.perf_counter() - start
    print(f"stored {n} runs in {secs:.1f} s ({n / secs:,.0f} rows/s through POST /v1/runs)")
    return served


def rollout(port, tok, work, served):
    """Change one tenant pack on main; wait for its rollout; store runs on
    both arms. Returns the rollout id."""
    t = "tenant-003"
    pack = f"{work}/packs/tenants/{t}/pack.yaml"
    text = open(pack).read().replace("version: 1.0.0", "version: 1.1.0", 1)
    open(pack, "w").write(text)
    with open(f"{work}/packs/tenants/{t}/context.md", "a") as f:
        f.write("\nConfirm the ticket number before closing.\n")
    g = ["git", "-C", work, "-c", "user.name=bench", "-c", "user.email=bench@127.0.0.1"]
    subprocess.run(g + ["commit", "-qam", f"{t}: 1.1.0"], check=True)
    subprocess.run(g + ["push", "-q", "origin", "HEAD:main"], check=True)
    c = conn(port)
    auth = {"Authorization": "Bearer " + tok}
    deadline = time.time() + 120
    while time.time() < deadline:
        s, _, body = call(c, "GET", "/v1/rollouts", auth)
        assert s == 200, body[:300]
        rs = json.loads(body)
        rs = rs.get("rollouts", rs) if isinstance(rs, dict) else rs
        mine = [r for r in rs if r.get("pack_id") == t]
        if mine:
            return mine[0]["rollout_id"]
        time.sleep(0.5)
    raise SystemExit("no rollout for tenant-003 within 120 s: " + body[:500].decode())


def pages(port, tok, rollout_id, n):
    c = conn(port)
    s, h, body = call(c, "POST", "/ui/login", {"Content-Type": "application/x-www-form-urlencoded"}, "token=" + urllib.parse.quote(tok))
    assert s == 303, (s, body[:300])
    cookie = dict(h)["set-cookie"].split(";")[0]
    hdr = {"Cookie": cookie}
    rows = [
        ("fleet", "/ui/"),
        ("fleet, one tenant", "/ui/?tenant=tenant-003"),
        ("pack (domain)", "/ui/packs/domain-03-pack"),
        ("pack (tenant)", "/ui/packs/tenant-003"),
        ("rollouts", "/ui/rollouts"),
        ("rollout", "/ui/rollouts/" + urllib.parse.quote(rollout_id)),
        ("runs, first page", "/ui/runs"),
        ("runs, one tenant", "/ui/runs?tenant=tenant-003"),
        ("runs, errors of a pack", "/ui/runs?pack=tenant-003-user-00003&error_code=timeout"),
        ("decisions", "/ui/decisions"),
    ]
    print(f"\nserver time per page, {n} requests each, one kept-alive connection (ms):")
    print(f"{'page':26} {'p50':>8} {'p95':>8} {'max':>8} {'bytes':>9}")
    out = {}
    for name, path in rows:
        times = []
        size = 0
        for _ in range(n):
            t0 = time.perf_counter()
            s, _, body = call(c, "GET", path, hdr)
            times.append((time.perf_counter() - t0) * 1000)
            assert s == 200, (path, s, body[:300])
            size = len(body)
        times.sort()
        p95 = times[max(0, int(round(0.95 * len(times))) - 1)]
        out[name] = p95
        print(f"{name:26} {statistics.median(times):8.1f} {p95:8.1f} {times[-1]:8.1f} {size:9,}")
    return hdr, out


def export(port, tok, hdr):
    print("\nexport of every stored run:")
    for name, path, headers in [
        ("console CSV", "/ui/runs/export.csv", hdr),
        ("console NDJSON", "/ui/runs/export.ndjson", hdr),
        ("GET /v1/runs NDJSON", "/v1/runs?format=ndjson", {"Authorization": "Bearer " + tok}),
    ]:
        c = conn(port)
        t0 = time.perf_counter()
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        assert r.status == 200, (path, r.status, r.read()[:300])
        lines = 0
        size = 0
        while True:
            chunk = r.read(1 << 20)
            if not chunk:
                break
            lines += chunk.count(b"\n")
            size += len(chunk)
        secs = time.perf_counter() - t0
        rows = lines - (1 if "CSV" in name else 0)
        print(f"{name:22} {rows:>9,} rows, {size / 1e6:7.1f} MB in {secs:6.2f} s = {rows / secs:>10,.0f} rows/s")


def live(port, tok, hdr, rollout_id, rounds):
    """Hold and resume the rollout `rounds` times with a console event stream
    open; the time from the API's answer to `change` on the stream."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(f"GET /ui/events HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: {hdr['Cookie']}\r\nAccept: text/event-stream\r\n\r\n".encode())
    events = []
    ready = threading.Event()

    def read():
        buf = b""
        while True:
            try:
                data = s.recv(65536)
            except OSError:
                return
            if not data:
                return
            buf += data
            while b"\n\n" in buf:
                ev, buf = buf.split(b"\n\n", 1)
                if b"event: ready" in ev:
                    ready.set()
                if b"event: change" in ev:
                    events.append(time.perf_counter())

    threading.Thread(target=read, daemon=True).start()
    assert ready.wait(10), "the event stream sent no `ready`"
    c = conn(port)
    auth = {"Authorization": "Bearer " + tok, "Content-Type": "application/json"}
    lat = []
    for i in range(rounds):
        action = "hold" if i % 2 == 0 else "resume"
        seen = len(events)
        s_, _, body = call(c, "POST", f"/v1/rollouts/{urllib.parse.quote(rollout_id)}/{action}", auth, json.dumps({"reason": f"bench {i}"}))
        done = time.perf_counter()
        assert s_ == 200, (action, s_, body[:300])
        deadline = done + 5
        while len(events) == seen and time.perf_counter() < deadline:
            time.sleep(0.005)
        assert len(events) > seen, f"no change event within 5 s of {action}"
        lat.append((events[seen] - done) * 1000)
        time.sleep(0.3)
    lat.sort()
    print(f"\nlive update: {rounds} holds/resumes, decision answered -> `change` on an open /ui/events stream:")
    print(f"p50 {statistics.median(lat):.0f} ms, p95 {lat[max(0, int(round(0.95 * len(lat))) - 1)]:.0f} ms, max {lat[-1]:.0f} ms")


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--token", required=True)
    a.add_argument("--work", required=True)
    a.add_argument("--runs", type=int, default=1_000_000)
    a.add_argument("--requests", type=int, default=100)
    a.add_argument("--live-rounds", type=int, default=20)
    o = a.parse_args()
    served = ingest(o.port, o.token, o.runs)
    rid = rollout(o.port, o.token, o.work, served)
    print(f"rollout {rid} in progress")
    hdr, _ = pages(o.port, o.token, rid, o.requests)
    export(o.port, o.token, hdr)
    live(o.port, o.token, hdr, rid, o.live_rounds)


if __name__ == "__main__":
    main()
