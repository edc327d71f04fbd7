-- Model response cache: keyed by everything that determines a response
-- (endpoint, model, parameters, full messages, rubric version). Errors are
-- never stored.
CREATE TABLE IF NOT EXISTS model_cache (
    key         TEXT PRIMARY KEY,
    response    TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- Spend ledger: every paid model call the gate makes, by tenant and UTC day,
-- so max_optimization_spend_per_day can be enforced across runs.
CREATE TABLE IF NOT EXISTS spend_ledger (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant      TEXT NOT NULL,
    day         TEXT NOT NULL,
    usd         REAL NOT NULL,
    kind        TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spend_ledger_tenant_day ON spend_ledger (tenant, day);
