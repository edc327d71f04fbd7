# Sourced by the gate benchmarks: `bench_repo BIN REPO PORT CONCURRENCY`
# makes a template repository whose harness is the endpoint on 127.0.0.1:PORT
# (no judge, no API key), plus a `bench` domain with 500 cases, and a `challenger` branch
# that differs by one sentence and a version bump.
bench_repo() {
  local bin=$1 repo=$2 port=$3 conc=$4
  "$bin" init "$repo" >/dev/null
  (cd "$repo" && python3 - "$port" "$conc" <<'PY'
import sys
port, conc = sys.argv[1], sys.argv[2]
m = open('mission.yaml').read()
a, b = m.index('  judge:'), m.index('  concurrency:')
m = m[:a] + m[b:]
m = m.replace('base_url: demo', f'base_url: http://127.0.0.1:{port}').replace('concurrency: 8', f'concurrency: {conc}')
# The local endpoint needs no key (and a named, unset key variable is refused).
m = m.replace('    api_key_env: OPENAI_API_KEY\n', '', 1)
open('mission.yaml', 'w').write(m)
mkdir = __import__('os').makedirs
mkdir('packs/domains/bench/evals', exist_ok=True)
open('packs/domains/bench/pack.yaml', 'w').write(
    "id: bench-pack\nversion: 1.0.0\nscope: { type: domain, id: bench }\nprompt:\n  sections:\n"
    "    - id: bench-role\n      file: role.md\ntools:\n  autonomy: A1\n  allow: [docs.search]\n"
    "eval:\n  cases:\n    - evals/cases.yaml\n")
open('packs/domains/bench/role.md', 'w').write("## Role: benchmark assistant. Answer briefly.\n")
with open('packs/domains/bench/evals/cases.yaml', 'w') as f:
    for i in range(500):
        f.write(f"- id: case-{i}\n  vars: {{ input: \"Question number {i} about the weekly report\" }}\n  assert:\n    - {{ type: icontains, value: \"report\", tag: quality }}\n")
PY
  git add -A && git -c gc.auto=0 commit -qm "bench domain"
  git switch -q -c challenger
  echo "## Role: benchmark assistant. Answer briefly and clearly." > packs/domains/bench/role.md
  sed -i 's/^version: 1.0.0/version: 1.0.1/' packs/domains/bench/pack.yaml
  git -c gc.auto=0 commit -qam "challenger")
}
