-- Promotion decisions: one per (commit, pack), whatever the reconciler goes
-- through (crash, restart, a second replica). seq orders the audit history.
CREATE TABLE IF NOT EXISTS decisions (
    seq                     INTEGER PRIMARY KEY AUTOINCREMENT,
    decision_id             TEXT NOT NULL UNIQUE,
    commit_sha              TEXT NOT NULL,
    pack_id                 TEXT NOT NULL,
    scope_type              TEXT NOT NULL,
    scope_id                TEXT NOT NULL,
    champion_pack_version   TEXT,
    challenger_pack_version TEXT NOT NULL,
    decision                TEXT NOT NULL,
    reason                  TEXT NOT NULL,
    decided_by              TEXT NOT NULL,
    created_at              TEXT NOT NULL,
    pull_request            BIGINT,
    evidence_url            TEXT,
    rollout                 TEXT,
    figures                 TEXT,
    source                  TEXT NOT NULL,
    UNIQUE (commit_sha, pack_id)
);
CREATE INDEX IF NOT EXISTS decisions_pack ON decisions (pack_id);

-- Where each source's reconciliation stands. halted is set when history was
-- rewritten under the reconciler; it stops acting until an operator acknowledges.
CREATE TABLE IF NOT EXISTS reconcile_state (
    source       TEXT PRIMARY KEY,
    branch       TEXT NOT NULL,
    last_commit  TEXT,
    halted       TEXT,
    updated_at   TEXT NOT NULL
);

-- What is served now, per pack: the last good version on main.
CREATE TABLE IF NOT EXISTS serving (
    source       TEXT NOT NULL,
    pack_id      TEXT NOT NULL,
    scope_type   TEXT NOT NULL,
    scope_id     TEXT NOT NULL,
    version      TEXT NOT NULL,
    digest       TEXT NOT NULL,
    commit_sha   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (source, pack_id)
);

-- Every pack content ever reconciled on main, to recognise a return to an
-- earlier version as a rollback.
CREATE TABLE IF NOT EXISTS pack_history (
    source       TEXT NOT NULL,
    pack_id      TEXT NOT NULL,
    digest       TEXT NOT NULL,
    version      TEXT NOT NULL,
    commit_sha   TEXT NOT NULL,
    PRIMARY KEY (source, pack_id, digest)
);

-- Canary rollouts started by promote decisions.
CREATE TABLE IF NOT EXISTS rollouts (
    rollout_id   TEXT PRIMARY KEY,
    decision_id  TEXT NOT NULL,
    pack_id      TEXT NOT NULL,
    from_version TEXT,
    to_version   TEXT NOT NULL,
    steps        TEXT NOT NULL,
    step         BIGINT NOT NULL,
    state        TEXT NOT NULL,
    detail       TEXT,
    started_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rollouts_pack ON rollouts (pack_id);

-- Run telemetry from harnesses (the run_telemetry contract, plus the arm).
CREATE TABLE IF NOT EXISTS runs (
    run_id       TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    agent_id     TEXT NOT NULL,
    pack_id      TEXT NOT NULL,
    pack_version TEXT NOT NULL,
    task_type    TEXT NOT NULL,
    latency_ms   REAL NOT NULL,
    cost_usd     REAL NOT NULL,
    success_bool BIGINT NOT NULL,
    error_code   TEXT,
    created_at   TEXT NOT NULL,
    arm          TEXT
);
CREATE INDEX IF NOT EXISTS runs_pack_version ON runs (pack_id, pack_version);
