-- The rollout lifecycle as a fenced state machine (see src/registry/effects.rs).
--
-- Leadership is an epoch: every takeover of a lease by another holder bumps
-- it, and every transition is written only while its writer's (holder,
-- epoch) is still the lease's, checked in the transition's own transaction.
ALTER TABLE leases ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;

-- Each rollout row carries a version; a transition updates it only from the
-- version it was computed on (compare-and-set), so a stale writer changes nothing.
ALTER TABLE rollouts ADD COLUMN row_version BIGINT NOT NULL DEFAULT 0;

-- Effects a transition owes beyond the store (a revert commit written and
-- pushed), recorded in the transition's transaction and finished by an
-- executor that can run again after any crash.
CREATE TABLE IF NOT EXISTS effects (
    effect_id        TEXT PRIMARY KEY,
    source           TEXT NOT NULL,
    pack_id          TEXT NOT NULL,
    kind             TEXT NOT NULL,
    payload          TEXT NOT NULL,
    state            TEXT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    last_error       TEXT,
    next_attempt_at  TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    done_at          TEXT,
    result           TEXT
);
CREATE INDEX IF NOT EXISTS effects_pending ON effects (source, state);
