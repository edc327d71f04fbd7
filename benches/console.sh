#!/usr/bin/env bash
# The fleet console (issue 27) on the 10,000-pack synthetic repository with
# 1,000,000 stored runs: server time per page (fleet, pack, rollout, runs
# first page), runs export rate (CSV and NDJSON), and how long a decision
# takes to reach an open page's live stream. See benches/console.py.
# Usage: bash benches/console.sh [PACKS] [RUNS]   (defaults 10000 1000000)
set -euo pipefail
packs=${1:-10000}; runs=${2:-1000000}
cd "$(dirname "$0")/.."
cargo build --release --locked --bin missionctl --example synth_repo >/dev/null
target=${CARGO_TARGET_DIR:-$PWD/target}
bin=$target/release/missionctl
dir=$(mktemp -d); pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT
"$target/release/examples/synth_repo" --packs "$packs" --out "$dir/work" >/dev/null
git clone -q --bare "$dir/work" "$dir/remote.git"
git -C "$dir/work" remote remove origin 2>/dev/null || true
git -C "$dir/work" remote add origin "$dir/remote.git"
tok=$("$bin" token new --name bench --role admin 2>"$dir/entry")
{ echo "tokens:"; grep '^  ' "$dir/entry"; } > "$dir/tokens.yaml"
port=$((20000 + RANDOM % 20000))
"$bin" serve --repo "$dir/remote.git" --db "sqlite://$dir/s.db" --listen "127.0.0.1:$port" \
  --poll-interval 1s --tokens "$dir/tokens.yaml" 2>"$dir/serve.log" & pids+=($!)
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.2; done
echo "machine: $(nproc) cores, $(uptime | sed 's/.*load/load/')"
echo "repository: $packs packs; serve ready"
python3 benches/console.py --port "$port" --token "$tok" --work "$dir/work" --runs "$runs"
echo "database: $(du -h "$dir/s.db" | cut -f1)"
