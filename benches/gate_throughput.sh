#!/usr/bin/env bash
# Gate throughput (eval-gate issue): 500 cases x 2 variants against a local
# OpenAI-compatible endpoint (the demo model in a second process) that answers
# in 50 ms. Reports wall time, requests per second and peak memory, and the
# ideal (1000 x 50 ms) / concurrency. Usage: bash benches/gate_throughput.sh [CONCURRENCY]
set -euo pipefail
cd "$(dirname "$0")/.."
conc=${1:-8}
cargo build --release --locked --bin missionctl >/dev/null
bin=$PWD/target/release/missionctl
dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
"$bin" demo-model --listen "127.0.0.1:$port" --latency-ms 50 >/dev/null &
demo=$!
trap 'kill $demo 2>/dev/null; rm -rf "$dir"' EXIT
# shellcheck source=benches/bench_repo.sh
source benches/bench_repo.sh
bench_repo "$bin" "$dir/repo" "$port" "$conc"
cd "$dir/repo"
# Global safety cases also run on the chain: count the requests actually made.
start=$(date +%s%N)
/usr/bin/time -f '%M' -o "$dir/rss" "$bin" eval --base main --head challenger --db "sqlite://$dir/state.db" --out "$dir/ev" >/dev/null
end=$(date +%s%N)
wall_ms=$(( (end - start) / 1000000 ))
reqs=$(python3 -c "import json;print(json.load(open('$dir/ev/evidence.json'))['model_requests'])")
ideal_ms=$(python3 -c "print(round($reqs*50/$conc))")
echo "machine: $(nproc) cores; concurrency $conc; endpoint latency 50 ms"
echo "requests: $reqs   wall: ${wall_ms} ms   ideal (requests x 50 ms / concurrency): ${ideal_ms} ms   ratio: $(python3 -c "print(round($wall_ms/$ideal_ms,2))")"
echo "throughput: $(python3 -c "print(round($reqs/($wall_ms/1000),1))") requests/s   peak RSS: $(tail -n1 "$dir/rss") KiB"
