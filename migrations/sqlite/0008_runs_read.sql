-- Reading runs back (GET /v1/runs, `missionctl runs`, the console): newest
-- first, for one tenant or for all.
CREATE INDEX IF NOT EXISTS runs_tenant_created ON runs (tenant_id, created_at);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_at);
