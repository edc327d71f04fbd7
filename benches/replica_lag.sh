#!/usr/bin/env bash
# Two `serve` replicas on one database while a commit (a version bump that
# is promoted into a canary) is merged and pushed every second for 60 s. A
# poller reads both replicas' /readyz every 20 ms; the lag of a commit is the
# time from its push to the moment both replicas serve it (or a later
# commit). Reports the largest and the median lag, on SQLite and PostgreSQL.
# Usage: bash benches/replica_lag.sh [SECONDS]
set -euo pipefail
secs=${1:-60}
source "$(dirname "$0")/fleet.sh"
run() { # label db-url
  rm -rf "$dir/work"; git clone -q "$dir/remote.git" "$dir/work"
  local pa=$((20000 + RANDOM % 20000)) pb=$((40000 + RANDOM % 20000))
  for p in $pa $pb; do
    "$bin" serve --repo "$dir/remote.git" --db "$2" --listen "127.0.0.1:$p" --poll-interval 1h --tokens "$dir/tokens.yaml" 2>/dev/null & pids+=($!)
  done
  for p in $pa $pb; do until curl -sf "http://127.0.0.1:$p/readyz" >/dev/null; do sleep 0.1; done; done
  python3 - "$1" "$dir/work" "$pa" "$pb" "$secs" <<'PY'
import json, statistics, subprocess, sys, threading, time, urllib.request
label, work, pa, pb, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
git = lambda *a: subprocess.run(["git", "-C", work, *a], check=True, capture_output=True, text=True).stdout.strip()
git("config", "user.email", "bench@example.com"); git("config", "user.name", "bench")
pushed = []          # (sha, time pushed)
order = {}           # sha -> index
seen = {pa: {}, pb: {}}  # port -> {sha: first time served}
stop = False
def poll():
    while not stop:
        for p in (pa, pb):
            try:
                c = json.load(urllib.request.urlopen(f"http://127.0.0.1:{p}/readyz", timeout=2))["commit"]
                seen[p].setdefault(c, time.monotonic())
            except Exception:
                pass
        time.sleep(0.02)
t = threading.Thread(target=poll); t.start()
pack = f"{work}/packs/domains/hr-ops/pack.yaml"
role = f"{work}/packs/domains/hr-ops/prompts/role.md"
end = time.monotonic() + secs
n = 0
while time.monotonic() < end:
    n += 1
    with open(role, "a") as f: f.write(f"\nNote {n}.\n")
    text = open(pack).read().splitlines()
    text = [f"version: 1.{n}.0" if l.startswith("version: ") else l for l in text]
    open(pack, "w").write("\n".join(text) + "\n")
    git("commit", "-qam", f"hr-ops 1.{n}.0")
    git("push", "-q", "origin", "HEAD:main")
    sha = git("rev-parse", "HEAD")
    order[sha] = len(pushed); pushed.append((sha, time.monotonic()))
    time.sleep(max(0, 1 - (time.monotonic() - pushed[-1][1])))
time.sleep(10)
stop = True; t.join()
lags = []
for i, (sha, at) in enumerate(pushed):
    both = []
    for p in (pa, pb):
        times = [tm for c, tm in seen[p].items() if order.get(c, -1) >= i]
        both.append(min(times) if times else None)
    if None in both:
        lags.append(float("inf"))
    else:
        lags.append(max(both) - at)
fin = [l for l in lags if l != float("inf")]
print(f"{label}: {len(pushed)} commits in {secs} s; lag to both replicas: median {statistics.median(fin)*1000:.0f} ms, max {max(fin)*1000:.0f} ms; never served by both: {len(lags) - len(fin)}")
PY
  for p in "${pids[@]: -2}"; do kill "$p" 2>/dev/null || true; done
}
echo "machine: $(nproc) cores; two replicas, one commit a second for $secs s"
run "SQLite" "sqlite://$dir/s.db"
if pg=$(pg_db mc_lag_bench); then
  run "PostgreSQL" "$pg"
else
  echo "PostgreSQL: skipped (no server answered)"
fi
