-- Run ids are unique per tenant, not across tenants: one tenant can neither
-- shadow another's later run nor learn which ids exist.
ALTER TABLE runs DROP CONSTRAINT runs_pkey;
ALTER TABLE runs ADD PRIMARY KEY (tenant_id, run_id);
-- The canary controller reads one arm's runs since a step began.
CREATE INDEX IF NOT EXISTS runs_arm ON runs (arm, created_at);

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
