//! Storing a telemetry batch: parse and check it (pure, in `telemetry`),
//! label each row with the rollout arm that served it, and store it.

use crate::store::{Store, StoreError};
use crate::telemetry::{Attribute, IngestReport, RowError, TenantScope, parse_batch};

/// Parse, check and store a batch. Rows the store refuses are reported by
/// line beside the rows the checks refused; the other rows are kept.
pub async fn ingest(
    store: &Store,
    body: &str,
    scope: &TenantScope,
    attribute: &Attribute<'_>,
) -> Result<IngestReport, IngestError> {
    let parsed = parse_batch(body, scope, attribute).map_err(IngestError::Batch)?;
    let received = parsed.rows.len() + parsed.errors.len();
    let stored = store.insert_runs(&parsed.rows).await?;
    let mut errors = parsed.errors;
    errors.extend(stored.refused.iter().map(|(i, why)| RowError {
        line: parsed.lines[*i],
        error: format!("the state store refused this row: {why}"),
        denied: false,
    }));
    errors.sort_by_key(|e| e.line);
    Ok(IngestReport {
        received,
        accepted: stored.inserted,
        duplicates: (parsed.rows.len() - stored.refused.len()) as u64 - stored.inserted,
        errors,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    Batch(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
