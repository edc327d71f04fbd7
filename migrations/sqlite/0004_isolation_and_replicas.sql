-- Run ids are unique per tenant, not across tenants: one tenant can neither
-- shadow another's later run nor learn which ids exist. SQLite cannot change
-- a primary key in place, so the table is rebuilt (rows kept).
CREATE TABLE runs_by_tenant (
    run_id       TEXT NOT NULL,
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
    arm          TEXT,
    PRIMARY KEY (tenant_id, run_id)
);
INSERT INTO runs_by_tenant
    SELECT run_id, tenant_id, user_id, agent_id, pack_id, pack_version, task_type,
           latency_ms, cost_usd, success_bool, error_code, created_at, arm
    FROM runs;
DROP TABLE runs;
ALTER TABLE runs_by_tenant RENAME TO runs;
CREATE INDEX runs_pack_version ON runs (pack_id, pack_version);
-- The canary controller reads one arm's runs since a step began.
CREATE INDEX runs_arm ON runs (arm, created_at);

-- One canary controller across replicas: the holder of a named lease until
-- it expires (canonical UTC timestamps compare as text).
CREATE TABLE IF NOT EXISTS leases (
    name        TEXT PRIMARY KEY,
    holder      TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);

-- Bumped on every change to rollouts, so every replica notices another's
-- transition (see Store::positions).
CREATE TABLE IF NOT EXISTS epochs (
    name  TEXT PRIMARY KEY,
    n     BIGINT NOT NULL
);
INSERT INTO epochs (name, n) VALUES ('rollouts', 0) ON CONFLICT (name) DO NOTHING;

-- GitHub webhook deliveries already acted on, kept until they expire, so a
-- replayed delivery is ignored across restarts and replicas.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    delivery_id  TEXT PRIMARY KEY,
    expires_at   TEXT NOT NULL
);
