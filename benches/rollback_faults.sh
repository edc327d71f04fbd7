#!/usr/bin/env bash
# The rollout lifecycle under faults (issue 23): each fault scenario of
# tests/it/faults.rs, ROUNDS times (default 20) per boundary, on SQLite and
# PostgreSQL: SIGKILL before the rollback transition, after it, before the
# revert is written, after it is pushed (and after a review branch is
# written), and a leader frozen (SIGSTOP) past its 2 s lease, thawed after
# another replica acted. Every round runs the invariant checker (one
# decision, one revert commit, the hold, git, store and registry agree, no
# rolled-back content served to any of 60 users). Prints the rounds run and
# the time per scenario; a failing round fails the script.
# Usage: bash benches/rollback_faults.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-20}
cargo build --locked --tests >/dev/null 2>&1
for t in crash_before_the_transition crash_after_the_transition \
         crash_before_the_revert_is_written crash_after_the_revert_is_pushed \
         crash_after_the_review_branch_is_written \
         a_frozen_leader_cannot_roll_back_twice a_frozen_leader_cannot_rewrite_a_step; do
  for store in sqlite postgres; do
    start=$(date +%s.%N)
    MISSIONCTL_FAULT_ROUNDS=$rounds cargo test --locked --test it -q -- \
      --exact "faults::$t::$store" >/tmp/rollback_faults.log 2>&1 ||
      { cat /tmp/rollback_faults.log; echo "FAILED: $t on $store"; exit 1; }
    end=$(date +%s.%N)
    printf '%-45s %-9s %3d rounds  %6.1f s\n' "$t" "$store" "$rounds" "$(echo "$end - $start" | bc)"
  done
done
