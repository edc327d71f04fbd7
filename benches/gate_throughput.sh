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
"$bin" init "$dir/repo" >/dev/null
cd "$dir/repo"
# Point the harness at the running endpoint, no judge, the chosen concurrency.
python3 - "$port" "$conc" <<'PY'
import sys
port, conc = sys.argv[1], sys.argv[2]
m = open('mission.yaml').read()
a, b = m.index('  judge:'), m.index('  concurrency:')
m = m[:a] + m[b:]
m = m.replace('base_url: demo', f'base_url: http://127.0.0.1:{port}').replace('concurrency: 8', f'concurrency: {conc}')
open('mission.yaml', 'w').write(m)
PY
mkdir -p packs/domains/bench/evals
cat > packs/domains/bench/pack.yaml <<'Y'
id: bench-pack
version: 1.0.0
scope: { type: domain, id: bench }
prompt:
  sections:
    - id: bench-role
      file: role.md
tools:
  autonomy: A1
  allow: [docs.search]
eval:
  cases:
    - evals/cases.yaml
Y
echo "## Role: benchmark assistant. Answer briefly." > packs/domains/bench/role.md
python3 - <<'PY'
with open('packs/domains/bench/evals/cases.yaml', 'w') as f:
    for i in range(500):
        f.write(f"- id: case-{i}\n  vars: {{ input: \"Question number {i} about the weekly report\" }}\n  assert:\n    - {{ type: icontains, value: \"report\", tag: quality }}\n")
PY
git add -A && git -c gc.auto=0 commit -qm "bench domain"
git switch -q -c challenger
echo "## Role: benchmark assistant. Answer briefly and clearly." > packs/domains/bench/role.md
sed -i 's/^version: 1.0.0/version: 1.0.1/' packs/domains/bench/pack.yaml
git -c gc.auto=0 commit -qam "challenger"
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
