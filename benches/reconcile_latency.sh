#!/usr/bin/env bash
# Reconciler figures (reconciler issue):
#  1. merge-to-decision latency, from `git push` to the decision row in the
#     state store, with a watched local path and with a signed push webhook;
#  2. reconcile of one commit that changes all 10,000 packs of the synthetic repo.
# Usage: bash benches/reconcile_latency.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-10}
cargo build --release --locked --bin missionctl --example synth_repo >/dev/null
bin=$PWD/target/release/missionctl
synth=$PWD/target/release/examples/synth_repo
dir=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT

"$bin" init "$dir/seed" >/dev/null
git clone -q --bare "$dir/seed" "$dir/remote.git"
git clone -q "$dir/remote.git" "$dir/work"
git -C "$dir/work" config user.name bench; git -C "$dir/work" config user.email bench@localhost

# Time from the push to the n-th decision appearing in the SQLite file.
measure() { # mode db url_or_empty
  python3 - "$@" <<'PY'
import hashlib, hmac, json, sqlite3, subprocess, sys, time, urllib.request
mode, db, work, rounds, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
def count():
    try:
        c = sqlite3.connect(db, timeout=1); n = c.execute("select count(*) from decisions").fetchone()[0]; c.close(); return n
    except sqlite3.Error:
        return 0
deadline = time.time() + 60
while count() < 12 and time.time() < deadline: time.sleep(0.02)
lat = []
for i in range(rounds):
    before = count()
    path = f"{work}/packs/domains/hr-ops/prompts/role.md"
    with open(path, "a") as f: f.write(f"\nRound {i}.\n")
    subprocess.run(["sed", "-i", f"s/^version: .*/version: 2.{i}.0/", f"{work}/packs/domains/hr-ops/pack.yaml"], check=True)
    subprocess.run(["git", "-C", work, "commit", "-qam", f"round {i}"], check=True)
    t0 = time.time()
    subprocess.run(["git", "-C", work, "push", "-q", "origin", "main"], check=True)
    if mode == "webhook":
        body = json.dumps({"ref": "refs/heads/main"}).encode()
        sig = "sha256=" + hmac.new(b"bench-secret", body, hashlib.sha256).hexdigest()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/github/webhook", data=body, method="POST",
            headers={"X-GitHub-Event": "push", "X-GitHub-Delivery": f"bench-{i}", "X-Hub-Signature-256": sig, "Content-Type": "application/json"})
        urllib.request.urlopen(req, timeout=5).read()
    while count() <= before:
        if time.time() - t0 > 30: raise SystemExit("no decision within 30 s")
        time.sleep(0.002)
    lat.append((time.time() - t0) * 1000)
lat.sort()
print(f"{mode:<8} rounds {rounds}: median {lat[len(lat)//2]:.0f} ms, max {lat[-1]:.0f} ms (push included)")
PY
}

echo "machine: $(nproc) cores; poll interval 1h, so only the watch or the webhook can trigger"
port1=$((20000 + RANDOM % 10000))
"$bin" serve --repo "$dir/remote.git" --db "sqlite://$dir/watch.db" --listen "127.0.0.1:$port1" --poll-interval 1h 2>/dev/null & pids+=($!)
measure watch "$dir/watch.db" "$dir/work" "$rounds" "$port1"

port2=$((30000 + RANDOM % 10000))
MISSIONCTL_WEBHOOK_SECRET=bench-secret "$bin" serve --repo "file://$dir/remote.git" --cache-dir "$dir/cache" \
  --db "sqlite://$dir/hook.db" --listen "127.0.0.1:$port2" --poll-interval 1h 2>/dev/null & pids+=($!)
measure webhook "$dir/hook.db" "$dir/work" "$rounds" "$port2"

echo "== all 10,000 packs changed in one commit"
"$synth" --packs 10000 --out "$dir/synth" >/dev/null
start=$(date +%s%N); "$bin" reconcile --once --repo "$dir/synth" --db "sqlite://$dir/synth.db" --format json >/dev/null; end=$(date +%s%N)
echo "initial import of 10,000 packs: $(( (end - start) / 1000000 )) ms"
find "$dir/synth/packs" -name pack.yaml -print0 | xargs -0 sed -i 's/^version: 1.0.0$/version: 1.1.0/'
git -C "$dir/synth" -c user.name=b -c user.email=b@l -c gc.auto=0 commit -qam "bump every pack"
/usr/bin/time -f '%e s wall, %M KiB peak' -o "$dir/t" "$bin" reconcile --once --repo "$dir/synth" --db "sqlite://$dir/synth.db" --format json > "$dir/out.json"
echo "reconcile of the commit changing all packs: $(cat "$dir/t"); decisions: $(python3 -c "import json;print(len(json.load(open('$dir/out.json'))['decisions']))")"
