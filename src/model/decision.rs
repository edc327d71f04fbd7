//! The `promotion_decision` record and what serves.

use serde::{Deserialize, Serialize};

use super::{RollbackFigures, RolloutPlan, words};

words! {
    /// What a decision did. Stored and shown as `promote`, `reject`, `rollback`
    /// (the contract's enum), and `hold`, `resume` for a rollout held or
    /// resumed by a person.
    pub enum DecisionKind ("decision") {
        Promote = "promote",
        Reject = "reject",
        Rollback = "rollback",
        /// A rollout held at its current share by a person (no commit).
        Hold = "hold",
        /// A held rollout resumed by a person (no commit).
        Resume = "resume",
    }
}

/// A `promotion_decision` record with the documented extras.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub decision_id: String,
    pub scope_type: String,
    pub scope_id: String,
    pub champion_pack_version: Option<String>,
    pub challenger_pack_version: String,
    pub decision: DecisionKind,
    pub reason: String,
    pub decided_by: String,
    pub created_at: String,
    pub pack_id: String,
    pub commit: String,
    pub pull_request: Option<i64>,
    pub evidence_url: Option<String>,
    pub rollout: Option<RolloutPlan>,
    pub figures: Option<RollbackFigures>,
}

/// The version of one pack that serves, and the commit its content is read from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Serving {
    pub pack_id: String,
    pub scope_type: String,
    pub scope_id: String,
    pub version: String,
    pub digest: String,
    pub commit: String,
}
