#!/usr/bin/env bash
# Ingest does not starve serving or deciding (issue 23, report 7). One
# `serve` on SQLite with a canary of hr-ops 1.1.0 running. Measured twice,
# without and with a telemetry flood (50 posters sending 1,000-row batches
# in a loop, each from its own thread, in a separate process):
# - GET /v1/resolve latency (p50, p99, max over 2,000 sequential requests,
#   measured from a third process);
# - the time from posting a rollback's evidence (one batch of failing canary
#   runs) to the rollout showing `rolled_back`.
# Also prints the flood's rows stored per second and how many batches were
# answered 429 (Retry-After).
# Usage: bash benches/ingest_flood.sh
set -euo pipefail
source "$(dirname "$0")/fleet.sh"
run() { # label flood(0|1)
  local port=$((20000 + RANDOM % 20000)) db="sqlite://$dir/$1.db"
  rm -rf "$dir/work"; git clone -q "$dir/remote.git" "$dir/work"
  "$bin" serve --repo "$dir/remote.git" --db "$db" --listen "127.0.0.1:$port" --poll-interval 1h \
    --rollout-interval 100ms --tokens "$dir/tokens.yaml" 2>/dev/null & pids+=($!)
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.1; done
  # A canary of hr-ops 1.1.0.
  ( cd "$dir/work" && git -c user.name=b -c user.email=b@x switch -q -c bad &&
    sed -i 's/^version: 1.0.0/version: 1.1.0/' packs/domains/hr-ops/pack.yaml &&
    sed -i '0,/policies/s//Policies/' packs/domains/hr-ops/prompts/role.md &&
    git -c user.name=b -c user.email=b@x commit -qam bad && git switch -q main &&
    git -c user.name=b -c user.email=b@x merge -q --no-ff bad -m "Merge pull request #1 from x/bad" &&
    git push -q origin main )
  until curl -sf -H "Authorization: Bearer $tok" "http://127.0.0.1:$port/v1/rollouts" | grep -q running; do sleep 0.1; done
  python3 - "$1" "$port" "$tok" "$2" <<'PY'
import json, statistics, subprocess, sys, threading, time, urllib.request, urllib.error
label, port, tok, flood = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4] == "1"
base = f"http://127.0.0.1:{port}"
H = {"Authorization": f"Bearer {tok}"}
def get(path):
    return json.load(urllib.request.urlopen(urllib.request.Request(base + path, headers=H), timeout=30))
def post(body):
    req = urllib.request.Request(base + "/v1/runs", data=body, headers=H, method="POST")
    try:
        return urllib.request.urlopen(req, timeout=60).status
    except urllib.error.HTTPError as e:
        return e.code
now = lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
alice = get("/v1/resolve?domain=hr-ops&tenant=acme&user=alice")
flooder = None
if flood:
    # The flood: a separate process, 50 threads, 1,000-row batches of alice's champion runs.
    code = f'''
import json, threading, time, urllib.request, urllib.error
base, tok, pid, ver = {base!r}, {tok!r}, {alice["pack_id"]!r}, {alice["pack_version"]!r}
stop = time.monotonic() + 40
stats = {{"ok": 0, "429": 0, "other": 0, "rows": 0}}
def poster(p):
    n = 0
    while time.monotonic() < stop:
        n += 1
        rows = "".join(json.dumps({{"run_id": f"f{{p}}-{{n}}-{{i}}", "tenant_id": "acme", "user_id": "alice", "agent_id": "a", "pack_id": pid, "pack_version": ver, "task_type": "qa", "latency_ms": 100, "cost_usd": 0.001, "success_bool": True, "error_code": None, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}}) + "\\n" for i in range(1000)).encode()
        req = urllib.request.Request(base + "/v1/runs", data=rows, headers={{"Authorization": "Bearer " + tok}}, method="POST")
        try:
            urllib.request.urlopen(req, timeout=60); stats["ok"] += 1; stats["rows"] += 1000
        except urllib.error.HTTPError as e:
            stats["429" if e.code == 429 else "other"] += 1
            if e.code == 429: time.sleep(float(e.headers.get("Retry-After", "1")))
        except Exception:
            stats["other"] += 1
ts = [threading.Thread(target=poster, args=(p,)) for p in range(50)]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps(stats))
'''
    flooder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    time.sleep(3)
# Resolve latency from its own process.
lat = subprocess.run([sys.executable, "-c", f'''
import time, urllib.request
base, tok = {base!r}, {tok!r}
out = []
for i in range(2000):
    t = time.perf_counter()
    urllib.request.urlopen(urllib.request.Request(base + f"/v1/resolve?domain=hr-ops&tenant=acme&user=u{{i % 300}}", headers={{"Authorization": "Bearer " + tok}}), timeout=30).read()
    out.append((time.perf_counter() - t) * 1000)
print(" ".join(f"{{x:.3f}}" for x in out))
'''], capture_output=True, text=True, check=True).stdout.split()
lat = sorted(float(x) for x in lat)
p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
# The evidence: each of 600 users' arm, then failing canary runs.
rows = []
for u in range(600):
    r = get(f"/v1/resolve?domain=hr-ops&tenant=acme&user=e{u}")
    fail = (u % 3 == 0) if r["arm"] == "canary" else (u % 33 == 0)
    rows.append(json.dumps({"run_id": f"e{u}", "tenant_id": "acme", "user_id": f"e{u}", "agent_id": "a", "pack_id": r["pack_id"], "pack_version": r["pack_version"], "task_type": "qa", "latency_ms": 120, "cost_usd": 0.002, "success_bool": not fail, "error_code": "tool_error" if fail else None, "created_at": now()}))
body = ("\n".join(rows) + "\n").encode()
t0 = time.monotonic()
while post(body) == 429:
    time.sleep(0.05)
posted = time.monotonic() - t0
while True:
    rs = get("/v1/rollouts")["rollouts"]
    if any(r["state"] == "rolled_back" for r in rs):
        break
    if time.monotonic() - t0 > 60:
        print("no rollback within 60 s"); sys.exit(1)
    time.sleep(0.01)
decided = time.monotonic() - t0
fl = ""
if flooder:
    s = json.loads(flooder.communicate()[0])
    fl = f"; flood: {s['rows']/40:,.0f} rows/s stored, {s['ok']} batches taken, {s['429']} answered 429, {s['other']} other"
print(f"{label:<9} resolve p50 {p(0.5):.2f} ms  p99 {p(0.99):.2f} ms  max {lat[-1]:.2f} ms;  evidence posted in {posted*1000:.0f} ms, rollback decided {decided*1000:.0f} ms after it was sent{fl}")
PY
}
run no-flood 0
run flood 1
