//! The `run_telemetry` record as stored, and a window of runs for KPIs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ArmLabel;

/// One `run_telemetry` record, as stored (with the arm it ran in, when known).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub run_id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub agent_id: String,
    pub pack_id: String,
    pub pack_version: String,
    pub task_type: String,
    pub latency_ms: f64,
    pub cost_usd: f64,
    pub success_bool: bool,
    pub error_code: Option<String>,
    pub created_at: String,
    /// The label of the most specific rollout on the run's chain (user,
    /// then tenant, domain, global) that this run is evidence for. What
    /// the console, exports and `missionctl runs` show; with one rollout
    /// on the chain, as before, that rollout's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arm: Option<ArmLabel>,
    /// Labels for the other rollouts on the chain this run is also
    /// evidence for (a domain and a tenant canary at once), stored in the
    /// `run_arms` table beside `runs`. Set by ingest; never read from the
    /// JSON record (a harness cannot label its own runs), and left empty
    /// when runs are read back.
    #[serde(skip)]
    pub other_arms: Vec<ArmLabel>,
    /// Attempts the turn took (an optional extension of `run_telemetry`:
    /// OpenClaw retries a failed model call within one run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
}

/// Outcomes of runs of one pack version, for KPIs.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunSample {
    pub success: Vec<bool>,
    pub latency_ms: Vec<f64>,
    pub cost_usd: f64,
    pub errors: BTreeMap<String, u64>,
}
