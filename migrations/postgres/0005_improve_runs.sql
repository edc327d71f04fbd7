-- The improvement worker's audit: one row per `missionctl improve` run,
-- with every candidate it tried (scores, discard reasons) as JSON.
CREATE TABLE IF NOT EXISTS improve_runs (
    run_id            TEXT PRIMARY KEY,
    pack_id           TEXT NOT NULL,
    tenant            TEXT NOT NULL,
    champion_version  TEXT NOT NULL,
    base_commit       TEXT NOT NULL,
    started_at        TEXT NOT NULL,
    finished_at       TEXT NOT NULL,
    stop              TEXT NOT NULL,
    candidates        BIGINT NOT NULL,
    spend_usd         DOUBLE PRECISION NOT NULL,
    branch            TEXT,
    pull_request      TEXT,
    report            TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS improve_runs_pack ON improve_runs (pack_id, started_at);
