#!/usr/bin/env bash
# Registry throughput (registry issue): GET /v1/resolve from wrk in a second
# process on 127.0.0.1 while a commit lands on main every second (each one
# promoted, reconciled and published as a new snapshot), plus an integrity
# check that every answer's body matches its ETag (no torn snapshot).
# Usage: bash benches/registry_load.sh [SECONDS] [CONNECTIONS]
set -euo pipefail
secs=${1:-20}; conns=${2:-64}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk"; exit 2; }
source "$(dirname "$0")/fleet.sh"
git clone -q "$dir/remote.git" "$dir/work"
port=$((20000 + RANDOM % 20000))
"$bin" serve --repo "$dir/remote.git" --db "sqlite://$dir/s.db" --listen "127.0.0.1:$port" --poll-interval 1h --tokens "$dir/tokens.yaml" 2>/dev/null & pids+=($!)
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.1; done
# A commit every second: the acme tenant pack changes and is promoted.
( i=1; while true; do
    i=$((i+1)); sed -i "s/^version: .*/version: 1.$i.0/" "$dir/work/packs/tenants/acme/pack.yaml"
    echo "Update $i." >> "$dir/work/packs/tenants/acme/context.md"
    git -C "$dir/work" -c user.name=b -c user.email=b@l commit -qam "acme $i"; git -C "$dir/work" push -q origin main
    sleep 1
  done ) & pids+=($!)
cat > "$dir/resolve.lua" <<LUA
wrk.headers["Authorization"] = "Bearer $tok"
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/v1/resolve?domain=hr-ops&tenant=acme&user=u" .. (n % 1000))
end
LUA
echo "machine: $(nproc) cores; wrk -t1 -c$conns -d${secs}s, 1,000 users, a new commit every second"
wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$dir/resolve.lua" "http://127.0.0.1:$port" | grep -E "Requests/sec|99%|50%|Non-2xx|Socket errors|requests in"
python3 - "$port" "$tok" <<'PY'
import hashlib, json, sys, time, urllib.request
port, tok = sys.argv[1], sys.argv[2]
bad = 0
gens = set()
n = 0
end = time.time() + 6
while time.time() < end:
    n += 1
    i = n
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/resolve?domain=hr-ops&tenant=acme&user=c{i%300}", headers={"Authorization": "Bearer " + tok})
    r = urllib.request.urlopen(req)
    body = json.loads(r.read())
    etag = r.headers["ETag"].strip('"')
    gens.add(body["commit"])
    # The entity tag is the digest of exactly this content: a torn read would break it.
    if body["digest"] != "sha256:" + etag or body["scope_chain"][-1]["pack_id"] not in ("acme-tenant",):
        bad += 1
print(f"integrity: {n} answers across {len(gens)} published commits, {bad} inconsistent")
PY
commits=$(git -C "$dir/remote.git" rev-list --count main); echo "commits published during the run: $((commits - 1))"
