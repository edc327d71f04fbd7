//! The registry's audit log: every refused or privileged request, by token name.

use super::{Store, StoreError};

/// One audit entry.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct AuditEntry {
    pub at: String,
    pub token: String,
    pub action: String,
    pub outcome: String,
    pub detail: String,
}

/// Telemetry batches the registry refused rows of (outcome `denied` on
/// `/v1/runs`: rows outside the token's tenant), per token.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow, serde::Serialize)]
pub struct RefusedTelemetry {
    pub token: String,
    pub batches: i64,
    pub last_at: String,
    pub last_detail: String,
}

impl Store {
    /// Telemetry refusals since `since` (RFC 3339, the log's own format),
    /// per token, with the newest refusal's reason.
    pub async fn refused_telemetry(
        &self,
        since: &str,
    ) -> Result<Vec<RefusedTelemetry>, StoreError> {
        Ok(fetch_all!(
            self,
            "SELECT a.token AS token, COUNT(*) AS batches, MAX(a.at) AS last_at, \
             (SELECT b.detail FROM audit_log b WHERE b.token = a.token AND b.outcome = 'denied' \
              AND b.action = '/v1/runs' ORDER BY b.id DESC LIMIT 1) AS last_detail \
             FROM audit_log a WHERE a.outcome = 'denied' AND a.action = '/v1/runs' AND a.at >= $1 \
             GROUP BY a.token ORDER BY a.token",
            since
        )?)
    }

    pub async fn audit(
        &self,
        token: &str,
        action: &str,
        outcome: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let now = crate::time_util::now_rfc3339();
        execute!(
            self,
            "INSERT INTO audit_log (at, token, action, outcome, detail) VALUES ($1, $2, $3, $4, $5)",
            now,
            token,
            action,
            outcome,
            detail
        )?;
        Ok(())
    }

    /// The most recent audit entries, newest first.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(fetch_all!(
            self,
            "SELECT at, token, action, outcome, detail FROM audit_log ORDER BY id DESC LIMIT $1",
            limit
        )?)
    }
}
