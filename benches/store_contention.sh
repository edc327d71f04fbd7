#!/usr/bin/env bash
# The state store under a busy disk (issue 15): examples/store_load.rs replays
# a 1,000-request gate run's store writes (1,000 cached responses, 1,000 ledger
# bookings, 8 in flight) per row (the old way) and batched (the writer), first
# with the disk idle, then while `dd ... oflag=dsync` writes beside it.
# Usage: bash benches/store_contention.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
cargo build --release --locked --example store_load >/dev/null 2>&1
bin=$PWD/target/release/examples/store_load
dir=$(mktemp -d -p "${TMPDIR:-/tmp}")
trap 'kill "${dd:-0}" 2>/dev/null || true; rm -rf "$dir"' EXIT
echo "machine: $(nproc) cores; $(df -h "$dir" | awk 'NR==2 {print $1}') for $dir"
echo "== disk idle"
mkdir "$dir/idle"; "$bin" "$dir/idle" "$n"
echo "== disk busy (dd bs=64k oflag=dsync in parallel)"
dd if=/dev/zero of="$dir/busy" bs=64k count=200000 oflag=dsync 2>/dev/null &
dd=$!
sleep 1
mkdir "$dir/busy-run"; "$bin" "$dir/busy-run" "$n"
kill "$dd" 2>/dev/null || true
