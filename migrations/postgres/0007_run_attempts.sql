-- How many attempts a turn took (OpenClaw retries a failed model call within
-- one run; the telemetry plugin reports the turn once, with its final
-- outcome, and this count). NULL when the harness does not say.
ALTER TABLE runs ADD COLUMN attempts INTEGER;
