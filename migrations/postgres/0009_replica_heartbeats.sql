-- Each replica of `serve` says it is alive (and which commit it serves)
-- every lease renewal; the console lists a replica not heard from in three
-- of its intervals as stale.
CREATE TABLE IF NOT EXISTS replica_heartbeats (
    replica    TEXT PRIMARY KEY,
    seen_at    TEXT NOT NULL,
    every_s    DOUBLE PRECISION NOT NULL,
    commit_sha TEXT
);
