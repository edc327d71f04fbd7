#!/usr/bin/env bash
# Improvement worker figures (issue 14), on the embedded template with the
# built-in demo model as harness, judge and optimiser:
#  1. the defect fixture (hr-ops-pack without its escalation rule): failing
#     cases before, fixed by the proposal, candidates, model calls, rollouts
#     (harness runs of one case on one chain: GEPA's "metric calls"), spend,
#     wall time; cold (empty store) and warm (a rerun: cached);
#  2. every template pack: the same figures for `improve --pack ID` on the
#     unmodified template (nothing to fix costs the signal only);
#  3. beside each, GEPA's auto-light budget for the same cases (issue 31).
#     DSPy's GEPA (dspy/teleprompt/gepa/gepa.py, stanfordnlp/dspy) sets
#     max_metric_calls for auto="light" with auto_budget(num_preds,
#     num_candidates=6, valset_size=V, minibatch_size=35, full_eval_steps=5):
#       N = int(max(2 * (num_preds * 2) * log2(6), 1.5 * 6))   (10 for one component)
#       total = V + 6 * 5 + N * 35 + ((N + 1) // 5 + 1) * V   (N >= 5)
#     = 380 + 4V metric calls for one component (the pack's editable text,
#     which the worker proposes in one step). A metric call is one case on
#     one chain; V, GEPA's valset, is the held-out selection set here:
#     selection cases x chains. The column "GEPA light, all cases" takes V
#     as every case x chain (GEPA without a separate valset).
# Usage: bash benches/improve.sh
#   MISSIONCTL_BIN=target/debug/missionctl bash benches/improve.sh  (no release build;
#   the call counts are the same, wall times are a debug build's)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${MISSIONCTL_BIN:-}" ]; then
  bin=$(realpath "$MISSIONCTL_BIN")
else
  cargo build --release --locked --bin missionctl >/dev/null
  bin=$PWD/target/release/missionctl
fi
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
selection = len(r.get("split", {}).get("selection", [])) or cases
feedback = len(r.get("split", {}).get("feedback", [])) or cases
gepa_all = 380 + 4 * cases * chains
gepa = 380 + 4 * selection * chains
c = r["calls"]
w = next((x for x in r["candidates"] if x["n"] == r["winner"]), None)
fixed = len(w["fixed"]) if w else 0
print(f"| {label} | {len(r['failures'])} | {fixed} | {feedback}/{selection} | {len(r['candidates'])} | {r['stop']} | "
      f"{c['optimiser']} | {c['evaluation']} | {c['cache_hits']} | {c['rollouts']} | {gepa} | {gepa_all} | "
      f"${r['spend_usd']:.4f} | {secs:.1f} s |")
PY
}

echo
echo "| run | failing | fixed | feedback/selection cases | candidates | stop | optimiser calls | model requests | cache hits | rollouts | GEPA light (V = selection) | GEPA light, all cases | spend | wall |"
echo "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
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

# Issue 31's other kinds of defect: a banned phrase in the hr-ops
# procedures (a validation error on main, no failing case), and a
# tenant-level defect (Acme's context asks for prose, so JSON answers fail
# on Acme's chains).
"$bin" init "$dir/banned" >/dev/null 2>&1
printf '\nWhen a request is outside HR, say that'"'"'s above my pay grade.\n' >> "$dir/banned/packs/domains/hr-ops/prompts/procedures.md"
git -C "$dir/banned" -c user.name=b -c user.email=b@localhost commit -qam "a banned phrase"
s=$(date +%s.%N)
"$bin" improve --pack hr-ops-pack --repo "$dir/banned" --db "sqlite://$dir/banned.db" --format json > "$dir/r.json"
e=$(date +%s.%N)
row "banned phrase in a prompt" "$dir/r.json" "$(echo "$e - $s" | bc)"
"$bin" init "$dir/tenant" >/dev/null 2>&1
printf '\nAnswer in plain prose, never JSON.\n' >> "$dir/tenant/packs/tenants/acme/context.md"
sed -i 's/^version: 1.0.0/version: 1.1.0/' "$dir/tenant/packs/tenants/acme/pack.yaml"
git -C "$dir/tenant" -c user.name=b -c user.email=b@localhost commit -qam "acme asks for prose"
s=$(date +%s.%N)
"$bin" improve --pack acme-tenant --repo "$dir/tenant" --db "sqlite://$dir/tenant.db" --format json > "$dir/r.json"
e=$(date +%s.%N)
row "tenant defect (Acme asks for prose)" "$dir/r.json" "$(echo "$e - $s" | bc)"

"$bin" init "$dir/t" >/dev/null 2>&1
for pack in $("$bin" packs list --repo "$dir/t" --format json | python3 -c 'import json,sys; print(" ".join(p["id"] for p in json.load(sys.stdin)))'); do
  s=$(date +%s.%N)
  "$bin" improve --pack "$pack" --repo "$dir/t" --db "sqlite://$dir/t-$pack.db" --format json > "$dir/r.json"
  e=$(date +%s.%N)
  row "$pack" "$dir/r.json" "$(echo "$e - $s" | bc)"
done
