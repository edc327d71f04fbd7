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

impl Store {
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
