#!/usr/bin/env bash
# Telemetry ingest: rows per second through POST /v1/runs as NDJSON batches of
# 10,000 rows, into SQLite and into PostgreSQL, beside a bare floor measured in
# the same run: Python's sqlite3 `executemany` of the same rows (already
# parsed, in memory) into the same table and indexes, WAL, one transaction
# per batch. Every row the server takes is parsed, checked against the
# contract, the token's tenant and the packs that tenant's chains resolve to,
# labelled with its rollout arm and stored.
# Usage: bash benches/ingest.sh [BATCHES]   (PostgreSQL at MISSIONCTL_TEST_DATABASE_URL
# or postgres://postgres@127.0.0.1:5432/test; skipped if it does not answer)
set -euo pipefail
batches=${1:-20}
source "$(dirname "$0")/fleet.sh"
start_serve() { # db-url -> sets port
  port=$((20000 + RANDOM % 20000))
  "$bin" serve --repo "$dir/remote.git" --db "$1" --listen "127.0.0.1:$port" --poll-interval 1h --tokens "$dir/tokens.yaml" 2>/dev/null & pids+=($!)
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.1; done
}
gen() { # version: write the batches for the version the chain resolves to
  python3 - "$dir" "$batches" "$1" <<'PY'
import json, sys
d, batches, version = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for b in range(batches):
    with open(f"{d}/batch{b}.ndjson", "w") as f:
        for i in range(10000):
            f.write(json.dumps({"run_id": f"r{b}-{i}", "tenant_id": "acme", "user_id": f"u{i%500}", "agent_id": "hr-bot", "pack_id": "acme-alice", "pack_version": version, "task_type": "qa", "latency_ms": 100 + i % 300, "cost_usd": 0.0012, "success_bool": i % 20 != 0, "error_code": None if i % 20 else "timeout", "created_at": "2026-11-26T10:00:00Z"}) + "\n")
PY
}
post_all() { # label -> prints rows/s, sets rate
  local start end ms
  start=$(date +%s%N)
  for b in $(seq 0 $((batches - 1))); do
    curl -sf -X POST -H "Authorization: Bearer $tok" --data-binary "@$dir/batch$b.ndjson" "http://127.0.0.1:$port/v1/runs" >/dev/null
  done
  end=$(date +%s%N)
  ms=$(( (end - start) / 1000000 ))
  rate=$(( batches * 10000 * 1000 / ms ))
  echo "$1: $((batches * 10000)) rows in $ms ms = $rate rows/s"
}
echo "machine: $(nproc) cores; $batches batches of 10,000 NDJSON rows, one after another"
start_serve "sqlite://$dir/s.db"
version=$(curl -sf -H "Authorization: Bearer $tok" "http://127.0.0.1:$port/v1/resolve?domain=hr-ops&tenant=acme&user=alice" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pack_version"])')
gen "$version"
post_all "missionctl -> SQLite"; ours=$rate
kill "${pids[-1]}"; wait "${pids[-1]}" 2>/dev/null || true
python3 - "$dir" "$batches" "$ours" <<'PY'
import json, sqlite3, sys, time
d, batches, ours = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
src = sqlite3.connect(f"{d}/s.db")
schema = [r[0] for r in src.execute("SELECT sql FROM sqlite_master WHERE tbl_name = 'runs' AND sql IS NOT NULL")]
src.close()
db = sqlite3.connect(f"{d}/floor.db", isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
for s in schema:
    db.execute(s)
cols = ["run_id", "tenant_id", "user_id", "agent_id", "pack_id", "pack_version", "task_type", "latency_ms", "cost_usd", "success_bool", "error_code", "created_at"]
data = []
for b in range(batches):
    rows = []
    with open(f"{d}/batch{b}.ndjson") as f:
        for line in f:
            r = json.loads(line)
            rows.append(tuple(int(r[c]) if c == "success_bool" else r[c] for c in cols) + ("rollout:champion",))
    data.append(rows)
sql = f"INSERT INTO runs ({', '.join(cols)}, arm) VALUES ({', '.join('?' * (len(cols) + 1))}) ON CONFLICT (tenant_id, run_id) DO NOTHING"
t0 = time.perf_counter()
for rows in data:
    db.execute("BEGIN")
    db.executemany(sql, rows)
    db.execute("COMMIT")
dt = time.perf_counter() - t0
floor = int(batches * 10000 / dt)
print(f"floor (Python sqlite3 executemany, same table and indexes, WAL, one transaction per batch): {floor} rows/s")
print(f"missionctl / floor: {ours / floor:.2f}x")
PY
if pg=$(pg_db mc_ingest_bench); then
  start_serve "$pg"
  post_all "missionctl -> PostgreSQL"
  kill "${pids[-1]}"
else
  echo "PostgreSQL: skipped (no server answered)"
fi
