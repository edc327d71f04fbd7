//! The model-response cache and the per-tenant spend ledger.

use super::{Store, StoreError};

impl Store {
    pub async fn cache_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        if let Some(v) = self.writer.pending(key) {
            return Ok(Some(v));
        }
        let v: Option<(String,)> =
            fetch_optional!(self, "SELECT response FROM model_cache WHERE key = $1", key)?;
        Ok(v.map(|r| r.0))
    }

    /// Queue `response` for the cache (committed in batches by the writer);
    /// written directly when the writer is gone.
    pub async fn cache_put(&self, key: &str, response: &str) -> Result<(), StoreError> {
        if self.writer.cache(key, response).await {
            return Ok(());
        }
        let now = crate::time_util::now_rfc3339();
        execute!(
            self,
            "INSERT INTO model_cache (key, response, created_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING",
            key,
            response,
            now
        )?;
        Ok(())
    }

    /// USD already spent by `tenant` on UTC `day` (YYYY-MM-DD).
    pub async fn spend_on(&self, tenant: &str, day: &str) -> Result<f64, StoreError> {
        let v: Option<(Option<f64>,)> = fetch_optional!(
            self,
            "SELECT SUM(usd) FROM spend_ledger WHERE tenant = $1 AND day = $2",
            tenant,
            day
        )?;
        Ok(v.and_then(|r| r.0).unwrap_or(0.0))
    }

    /// Book `usd` to `tenant`'s ledger. A failure here must stop spending:
    /// callers treat it as an error, never as a warning.
    pub async fn spend_record(
        &self,
        tenant: &str,
        day: &str,
        usd: f64,
        kind: &str,
        run_id: &str,
    ) -> Result<(), StoreError> {
        let now = crate::time_util::now_rfc3339();
        let row = super::writer::LedgerRow {
            tenant: tenant.to_string(),
            day: day.to_string(),
            usd,
            kind: kind.to_string(),
            run_id: run_id.to_string(),
            created_at: now.clone(),
        };
        // Committed by the writer with other bookings (one fsync for many),
        // acknowledged only once on disk.
        if let Some(r) = self.writer.ledger(row).await {
            return r.map_err(|message| StoreError::Ledger { message });
        }
        execute!(
            self,
            "INSERT INTO spend_ledger (tenant, day, usd, kind, run_id, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            tenant,
            day,
            usd,
            kind,
            run_id,
            now
        )?;
        Ok(())
    }
}
