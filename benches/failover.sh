#!/usr/bin/env bash
# Failover after the leader is frozen (issue 23): two `serve` replicas on one
# store with --lease-ttl TTL (default 2s); once A leads, A is frozen with
# SIGSTOP and B's /readyz is polled every 10 ms until B leads. Reports the
# time from the freeze to B leading, per round, beside the goal (TTL + 1 s),
# on SQLite and PostgreSQL. A is thawed (SIGCONT) and stopped after each round.
# Usage: bash benches/failover.sh [ROUNDS] [TTL]
set -euo pipefail
rounds=${1:-10}; ttl=${2:-2s}
source "$(dirname "$0")/fleet.sh"
run() { # label db-url
  local times=()
  for r in $(seq "$rounds"); do
    local pa=$((20000 + RANDOM % 20000)) pb=$((40000 + RANDOM % 20000))
    "$bin" serve --repo "$dir/remote.git" --db "$2" --listen "127.0.0.1:$pa" --poll-interval 1h --lease-ttl "$ttl" --tokens "$dir/tokens.yaml" 2>/dev/null & local a=$!; pids+=($a)
    until curl -sf "http://127.0.0.1:$pa/readyz" | grep -q '"leader":true'; do sleep 0.05; done
    "$bin" serve --repo "$dir/remote.git" --db "$2" --listen "127.0.0.1:$pb" --poll-interval 1h --lease-ttl "$ttl" --tokens "$dir/tokens.yaml" 2>/dev/null & local b=$!; pids+=($b)
    until curl -sf "http://127.0.0.1:$pb/readyz" >/dev/null; do sleep 0.05; done
    local t
    t=$(python3 - "$a" "$pb" <<'PY'
import json, os, signal, sys, time, urllib.request
a, pb = int(sys.argv[1]), int(sys.argv[2])
os.kill(a, signal.SIGSTOP)
t0 = time.monotonic()
while True:
    try:
        if json.load(urllib.request.urlopen(f"http://127.0.0.1:{pb}/readyz", timeout=2))["leader"]:
            break
    except Exception:
        pass
    time.sleep(0.01)
print(f"{time.monotonic() - t0:.2f}")
os.kill(a, signal.SIGCONT)
PY
)
    times+=("$t")
    kill "$a" "$b" 2>/dev/null || true; wait "$a" "$b" 2>/dev/null || true
  done
  printf '%-10s lease %s: freeze to new leader (s): %s; max %s (goal <= TTL + 1 s)\n' "$1" "$ttl" "${times[*]}" \
    "$(printf '%s\n' "${times[@]}" | sort -g | tail -1)"
}
run sqlite "sqlite://$dir/failover.db"
if pg=$(pg_db mc_bench_failover); then run postgresql "$pg"; else echo "postgresql: skipped (no server)"; fi
