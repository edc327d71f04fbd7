# Sourced by the serve benchmarks: a release build, a fleet repository from
# `missionctl init` pushed to a bare remote, an admin token and its tokens
# file, and cleanup of every process started (append pids to `pids`).
# Sets: bin, dir, tok, pids.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --locked --bin missionctl >/dev/null
bin=$PWD/target/release/missionctl
dir=$(mktemp -d); pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT
"$bin" init "$dir/seed" >/dev/null
git clone -q --bare "$dir/seed" "$dir/remote.git"
tok=$("$bin" token new --name bench --role admin 2>"$dir/entry")
{ echo "tokens:"; grep '^  ' "$dir/entry"; } > "$dir/tokens.yaml"

# pg_db NAME: a fresh PostgreSQL database; prints its URL, or fails when no
# server answers at MISSIONCTL_TEST_DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test).
pg_db() {
  local pg=${MISSIONCTL_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
  psql "$pg" -qc "DROP DATABASE IF EXISTS $1 WITH (FORCE)" >/dev/null 2>&1 &&
    psql "$pg" -qc "CREATE DATABASE $1" >/dev/null 2>&1 &&
    echo "${pg%/*}/$1"
}
