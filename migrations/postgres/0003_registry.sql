-- The last commit whose content was accepted (not refused): what the registry serves.
ALTER TABLE reconcile_state ADD COLUMN good_commit TEXT;

-- Requests the registry refused or that changed state, for audit.
CREATE TABLE IF NOT EXISTS audit_log (
    id          BIGSERIAL PRIMARY KEY,
    at          TEXT NOT NULL,
    token       TEXT NOT NULL,
    action      TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    detail      TEXT NOT NULL
);

-- Packs held after an automatic rollback: no version at or below held_version
-- is promoted again until a newer one is merged.
CREATE TABLE IF NOT EXISTS holds (
    source        TEXT NOT NULL,
    pack_id       TEXT NOT NULL,
    held_version  TEXT NOT NULL,
    reason        TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    PRIMARY KEY (source, pack_id)
);

ALTER TABLE rollouts ADD COLUMN source TEXT;
ALTER TABLE rollouts ADD COLUMN from_commit TEXT;
ALTER TABLE rollouts ADD COLUMN to_commit TEXT;
ALTER TABLE rollouts ADD COLUMN step_started_at TEXT;
ALTER TABLE rollouts ADD COLUMN params TEXT;
