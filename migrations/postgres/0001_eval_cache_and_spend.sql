CREATE TABLE IF NOT EXISTS model_cache (
    key         TEXT PRIMARY KEY,
    response    TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS spend_ledger (
    id          BIGSERIAL PRIMARY KEY,
    tenant      TEXT NOT NULL,
    day         TEXT NOT NULL,
    usd         DOUBLE PRECISION NOT NULL,
    kind        TEXT NOT NULL,
    run_id      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS spend_ledger_tenant_day ON spend_ledger (tenant, day);
