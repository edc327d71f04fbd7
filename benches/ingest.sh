#!/usr/bin/env bash
# Telemetry ingest (registry issue): rows per second through POST /v1/runs as
# NDJSON batches of 10,000 rows, into SQLite and into PostgreSQL.
# Usage: bash benches/ingest.sh [BATCHES]   (PostgreSQL at MISSIONCTL_TEST_DATABASE_URL
# or postgres://postgres@127.0.0.1:5432/test; skipped if it does not answer)
set -euo pipefail
cd "$(dirname "$0")/.."
batches=${1:-20}
cargo build --release --locked --bin missionctl >/dev/null
bin=$PWD/target/release/missionctl
dir=$(mktemp -d); pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT
"$bin" init "$dir/seed" >/dev/null
git clone -q --bare "$dir/seed" "$dir/remote.git"
tok=$("$bin" token new --name bench --role admin 2>"$dir/entry")
{ echo "tokens:"; grep '^  ' "$dir/entry"; } > "$dir/tokens.yaml"
python3 - "$dir" "$batches" <<'PY'
import json, sys
d, batches = sys.argv[1], int(sys.argv[2])
for b in range(batches):
    with open(f"{d}/batch{b}.ndjson", "w") as f:
        for i in range(10000):
            f.write(json.dumps({"run_id": f"r{b}-{i}", "tenant_id": "acme", "user_id": f"u{i%500}", "agent_id": "hr-bot", "pack_id": "acme-alice", "pack_version": "1.0.0+sha256.83ac2c58", "task_type": "qa", "latency_ms": 100 + i % 300, "cost_usd": 0.0012, "success_bool": i % 20 != 0, "error_code": None if i % 20 else "timeout", "created_at": "2026-11-26T10:00:00Z"}) + "\n")
PY
run() { # label db-url
  local port=$((20000 + RANDOM % 20000))
  "$bin" serve --repo "$dir/remote.git" --db "$2" --listen "127.0.0.1:$port" --poll-interval 1h --tokens "$dir/tokens.yaml" 2>/dev/null & local pid=$!; pids+=($pid)
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.1; done
  local start end
  start=$(date +%s%N)
  for b in $(seq 0 $((batches - 1))); do
    curl -sf -X POST -H "Authorization: Bearer $tok" --data-binary "@$dir/batch$b.ndjson" "http://127.0.0.1:$port/v1/runs" >/dev/null
  done
  end=$(date +%s%N)
  local ms=$(( (end - start) / 1000000 ))
  echo "$1: $((batches * 10000)) rows in $ms ms = $(( batches * 10000 * 1000 / ms )) rows/s"
  kill $pid
}
echo "machine: $(nproc) cores; $batches batches of 10,000 NDJSON rows, one after another"
run "SQLite" "sqlite://$dir/s.db"
pg=${MISSIONCTL_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
if psql "$pg" -qc "DROP DATABASE IF EXISTS mc_ingest_bench" >/dev/null 2>&1 && psql "$pg" -qc "CREATE DATABASE mc_ingest_bench" >/dev/null 2>&1; then
  run "PostgreSQL" "${pg%/*}/mc_ingest_bench"
  psql "$pg" -qc "DROP DATABASE IF EXISTS mc_ingest_bench WITH (FORCE)" >/dev/null 2>&1 || true
else
  echo "PostgreSQL: skipped (no server at $pg)"
fi
