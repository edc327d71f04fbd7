//! Storing a telemetry batch: parse and check it (pure, in `telemetry`),
//! label each row with the rollout arm that served it, and store it.

use crate::model::{ArmLabel, RunRow};
use crate::store::{Store, StoreError};
use crate::telemetry::{IngestReport, TenantScope, parse_batch};

/// Parse, check and store a batch.
pub async fn ingest(
    store: &Store,
    body: &str,
    scope: &TenantScope,
    arm_of: &(dyn Fn(&RunRow) -> Option<ArmLabel> + Sync),
) -> Result<IngestReport, IngestError> {
    let (rows, errors) = parse_batch(body, scope, arm_of).map_err(IngestError::Batch)?;
    let received = rows.len() + errors.len();
    let accepted = store.insert_runs(&rows).await?;
    Ok(IngestReport {
        received,
        accepted,
        duplicates: rows.len() as u64 - accepted,
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
