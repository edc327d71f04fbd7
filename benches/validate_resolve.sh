#!/usr/bin/env bash
# Whole-process timings of `validate` and `resolve` on the 10,000-pack
# synthetic repository (issue: foundation). Usage: bash benches/validate_resolve.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-20}
cargo build --release --locked --example synth_repo --bin missionctl >/dev/null
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
./target/release/examples/synth_repo --packs 10000 --out "$dir/repo"
bin=$PWD/target/release/missionctl
cd "$dir/repo"

# Median and max wall time (ms) of a command over $runs runs, plus peak RSS.
measure() {
  local label=$1; shift
  local times=()
  for _ in $(seq "$runs"); do
    local s e
    s=$(date +%s%N); "$@" >/dev/null 2>&1 || true; e=$(date +%s%N)
    times+=($(( (e - s) / 1000 )))
  done
  local sorted; sorted=$(printf '%s\n' "${times[@]}" | sort -n)
  local median; median=$(echo "$sorted" | awk -v n="$runs" 'NR==int((n+1)/2){print}')
  local max; max=$(echo "$sorted" | tail -n1)
  local rss; /usr/bin/time -f '%M' -o "$dir/rss" "$@" >/dev/null 2>&1 || true; rss=$(tail -n1 "$dir/rss")
  printf '%-48s median %7.1f ms   max %7.1f ms   peak RSS %s KiB\n' "$label" \
    "$(echo "$median/1000" | bc -l)" "$(echo "$max/1000" | bc -l)" "$rss"
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; runs: $runs"
measure "validate (work tree, 10,000 packs)" "$bin" validate
measure "validate --rev HEAD (object database)" "$bin" validate --rev HEAD
measure "resolve one chain (work tree)" "$bin" resolve --domain domain-03 --tenant tenant-003 --user user-00003
measure "resolve one chain --rev HEAD" "$bin" resolve --rev HEAD --domain domain-03 --tenant tenant-003 --user user-00003
