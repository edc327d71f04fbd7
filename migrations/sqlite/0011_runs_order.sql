-- Reading runs back newest first (GET /v1/runs, the console, exports):
-- the whole sort key, so a page over every tenant is an index range in
-- order (with only created_at indexed, SQLite sorted ties per page and a
-- first page over 1,000,000 runs took 100 ms). Replaces runs_created.
CREATE INDEX IF NOT EXISTS runs_order ON runs (created_at, tenant_id, run_id);
DROP INDEX IF EXISTS runs_created;
