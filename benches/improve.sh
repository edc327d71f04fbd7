#!/usr/bin/env bash
# Improvement worker figures (issue 14), on the embedded template with the
# built-in demo model as harness, judge and optimiser:
#  1. the defect fixture (hr-ops-pack without its escalation rule): failing
#     cases before, fixed by the proposal, candidates, model calls, rollouts
#     (harness runs of one case on one chain: GEPA's "metric calls"), spend,
#     wall time; cold (empty store) and warm (a rerun: cached);
#  2. every template pack: the same figures for `improve --pack ID` on the
#     unmodified template (nothing to fix costs the signal only);
#  3. beside each, GEPA's auto-light budget for the same evaluation set:
#     380 + 4 x (cases x chains) metric calls.
# Usage: bash benches/improve.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin missionctl >/dev/null
bin=$PWD/target/release/missionctl
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
echo "machine: $(nproc) cores, $(free -g | awk '/Mem/ {print $2}') GiB"

row() { # label, report json file, seconds
  python3 - "$1" "$2" "$3" <<'PY'
import json, sys
label, path, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
r = json.load(open(path))[0]
cases = len(r["champion_scores"])
chains = r["chains"][1]
gepa = 380 + 4 * cases * chains
c = r["calls"]
w = next((x for x in r["candidates"] if x["n"] == r["winner"]), None)
fixed = len(w["fixed"]) if w else 0
print(f"| {label} | {len(r['failures'])} | {fixed} | {len(r['candidates'])} | {r['stop']} | "
      f"{c['optimiser']} | {c['evaluation']} | {c['cache_hits']} | {c['rollouts']} | {gepa} | "
      f"${r['spend_usd']:.4f} | {secs:.1f} s |")
PY
}

echo
echo "| run | failing | fixed | candidates | stop | optimiser calls | model requests | cache hits | rollouts | GEPA light budget | spend | wall |"
echo "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"
"$bin" init "$dir/defect" >/dev/null 2>&1
p="$dir/defect/packs/domains/hr-ops"
sed -i 's/are never handled by you: set `"escalate": true`,/are handled by you when you can;/' "$p/prompts/procedures.md"
sed -i 's/^version: 1.0.0/version: 1.1.0/' "$p/pack.yaml"
git -C "$dir/defect" -c user.name=b -c user.email=b@localhost commit -qam "drop the escalation rule"
for pass in cold warm; do
  s=$(date +%s.%N)
  "$bin" improve --pack hr-ops-pack --repo "$dir/defect" --db "sqlite://$dir/defect.db" --format json > "$dir/r.json"
  e=$(date +%s.%N)
  row "defect fixture, $pass" "$dir/r.json" "$(echo "$e - $s" | bc)"
done

# The cap reached: every candidate grows the prompt past a 5-token cap, so
# all max_candidates_per_run (4) are proposed, evaluated and discarded.
cp -r "$dir/defect" "$dir/capped"
sed -i 's/^max_prompt_growth_tokens: 400/max_prompt_growth_tokens: 5/' "$dir/capped/policies/guardrails.yaml"
git -C "$dir/capped" -c user.name=b -c user.email=b@localhost commit -qam "a 5-token growth cap"
s=$(date +%s.%N)
"$bin" improve --pack hr-ops-pack --repo "$dir/capped" --db "sqlite://$dir/capped.db" --format json > "$dir/r.json"
e=$(date +%s.%N)
row "defect, growth cap 5 tokens" "$dir/r.json" "$(echo "$e - $s" | bc)"

"$bin" init "$dir/t" >/dev/null 2>&1
for pack in $("$bin" packs list --repo "$dir/t" --format json | python3 -c 'import json,sys; print(" ".join(p["id"] for p in json.load(sys.stdin)))'); do
  s=$(date +%s.%N)
  "$bin" improve --pack "$pack" --repo "$dir/t" --db "sqlite://$dir/t-$pack.db" --format json > "$dir/r.json"
  e=$(date +%s.%N)
  row "$pack" "$dir/r.json" "$(echo "$e - $s" | bc)"
done
