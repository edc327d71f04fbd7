//! The `promotion_decision` record and what serves.

use serde::{Deserialize, Serialize};

use super::{RollbackFigures, RolloutPlan, Word, word_serde};

/// What a decision did. Stored and shown as `promote`, `reject`, `rollback`
/// (the contract's enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecisionKind {
    Promote,
    Reject,
    Rollback,
}

impl Word for DecisionKind {
    const FIELD: &'static str = "decision";
    const ALL: &'static [Self] = &[Self::Promote, Self::Reject, Self::Rollback];
    fn as_str(self) -> &'static str {
        match self {
            Self::Promote => "promote",
            Self::Reject => "reject",
            Self::Rollback => "rollback",
        }
    }
}
word_serde!(DecisionKind);

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
