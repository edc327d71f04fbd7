-- One run can be evidence for several rollouts at once: a domain pack and
-- a tenant pack on the same chain, each with its own canary. `runs.arm`
-- keeps one label (the most specific rollout's); every other rollout the
-- run is evidence for gets a row here, written in the run's own insert
-- transaction and only when the run itself was new, so a re-sent run
-- never counts twice. `created_at` is the run's, copied so the canary
-- controller reads an arm's newest runs from the index alone.
CREATE TABLE IF NOT EXISTS run_arms (
    tenant_id   TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    arm         TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, run_id, arm)
);
CREATE INDEX IF NOT EXISTS run_arms_arm ON run_arms (arm, created_at);
