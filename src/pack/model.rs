//! Typed views of the repository files. They are deserialized from JSON only
//! after the file passed its JSON Schema, so every shape error has already
//! been reported with a position; these types carry the values the engine
//! reasons about. Optional everywhere a child scope may omit a field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::model::{Autonomy, ScopeType, Tier};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    #[serde(rename = "type")]
    pub kind: ScopeType,
    pub id: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Section {
    pub id: String,
    pub file: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Prompt {
    #[serde(default)]
    pub sections: Vec<Section>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Tools {
    pub autonomy: Option<Autonomy>,
    pub allow: Option<Vec<String>>,
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Voice {
    #[serde(default)]
    pub banned_phrases: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Eval {
    #[serde(default)]
    pub cases: Vec<String>,
    #[serde(default)]
    pub contracts: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    pub user_template: Option<String>,
}

/// `skills:` in a pack file: SKILL.md files this layer adds, skill names it denies.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Skills {
    #[serde(default)]
    pub add: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

/// A pack file. Sections the engine merges generically (voice, kpis,
/// promotion, rollback, rubric) are read from the positioned tree instead.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pack {
    pub id: String,
    pub version: String,
    pub scope: Scope,
    pub tier: Option<Tier>,
    pub domains: Option<Vec<String>>,
    #[serde(default)]
    pub prompt: Prompt,
    #[serde(default)]
    pub tools: Tools,
    #[serde(default)]
    pub skills: Skills,
    /// The MCP servers (of mission.yaml's catalog) this layer's chain uses.
    #[serde(default)]
    pub mcp_servers: Option<Vec<String>>,
    /// The agents' model (`provider/model`), if this layer sets it.
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub voice: Voice,
    #[serde(default)]
    pub eval: Eval,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Mission {
    pub missionctl: u32,
    pub name: String,
    pub tier: Tier,
    pub main_branch: Option<String>,
    #[serde(default)]
    pub eval: serde_json::Value,
    #[serde(default)]
    pub store: serde_json::Value,
    #[serde(default)]
    pub github: serde_json::Value,
    #[serde(default)]
    pub openclaw: serde_json::Value,
    #[serde(default)]
    pub improve: serde_json::Value,
    #[serde(default)]
    pub marketplace: serde_json::Value,
}

impl Mission {
    pub(crate) fn main_branch(&self) -> &str {
        self.main_branch.as_deref().unwrap_or("main")
    }

    pub fn store_url(&self) -> Option<&str> {
        self.store.get("url").and_then(|u| u.as_str())
    }

    /// `github.check_name`: the name the gate's check run is posted under.
    pub fn check_name(&self) -> Option<&str> {
        self.github.get("check_name").and_then(|u| u.as_str())
    }

    /// `github.fork_paid_evals`: paid model calls run for pull requests from
    /// forks without the paid-evals label (off by default).
    pub fn fork_paid_evals(&self) -> bool {
        self.github
            .get("fork_paid_evals")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SafetyClause {
    pub id: String,
    pub text: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct DataBoundaries {
    #[serde(default = "yes")]
    pub tenant_isolation: bool,
    #[serde(default = "yes")]
    pub user_isolation: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HardConstraints {
    pub required_safety_clauses: Vec<SafetyClause>,
    pub forbidden_tools: Vec<String>,
    pub max_prompt_tokens: u64,
    pub max_autonomy: Autonomy,
    /// When set, the only models a pack may name.
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    #[serde(default)]
    pub banned_phrases: Vec<String>,
    #[serde(default)]
    pub data_boundaries: Option<DataBoundaries>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct SpendCap {
    pub default: f64,
    #[serde(default)]
    pub tenants: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Guardrails {
    pub max_optimization_spend_per_day: SpendCap,
    pub max_candidates_per_run: u32,
    pub max_prompt_growth_tokens: u64,
    pub max_allowed_latency_regression_pct: f64,
}

impl Guardrails {}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Approvals {
    #[serde(rename = "A1", default)]
    pub a1: u32,
    #[serde(rename = "A2", default = "one")]
    pub a2: u32,
    #[serde(rename = "A3", default = "two")]
    pub a3: u32,
}

fn one() -> u32 {
    1
}
fn two() -> u32 {
    2
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct TierPreset {
    pub description: Option<String>,
    pub max_autonomy: Autonomy,
    pub optimization_cadence: Option<String>,
    pub approvals: Approvals,
    pub a3_approver: Option<String>,
    pub policy_owner: Option<String>,
    #[serde(default)]
    pub dismiss_stale_approvals: bool,
    pub memory_scope: Option<String>,
    pub canary_steps: Option<Vec<u32>>,
    pub rollback_git: Option<String>,
    pub audit_retention_days: Option<u32>,
    /// The improvement worker's caps for this tier, within the guardrails'.
    pub max_candidates_per_run: Option<u32>,
    pub max_optimization_spend_per_run: Option<f64>,
    /// Whether the improvement worker may propose a partial fix: a
    /// candidate that raises the pass rate and breaks nothing but stays
    /// under an absolute floor (labelled, for reviewers to take or leave).
    #[serde(default)]
    pub propose_partial_fixes: bool,
    /// Whether a different proposal may supersede the pack's open
    /// improvement pull request (a new branch and pull request naming it;
    /// the old one commented on and closed) instead of waiting for it.
    #[serde(default)]
    pub supersede_open_proposals: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Tiers {
    pub personal: TierPreset,
    pub team: TierPreset,
    pub enterprise: TierPreset,
}

impl Tiers {
    pub fn get(&self, t: Tier) -> &TierPreset {
        match t {
            Tier::Personal => &self.personal,
            Tier::Team => &self.team,
            Tier::Enterprise => &self.enterprise,
        }
    }
}

/// Which chain to resolve.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ChainKey {
    pub domain: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

impl ChainKey {
    pub fn new(domain: &str, tenant: Option<&str>, user: Option<&str>) -> Self {
        ChainKey {
            domain: domain.to_string(),
            tenant: tenant.map(String::from),
            user: user.map(String::from),
        }
    }
}

impl std::fmt::Display for ChainKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.domain)?;
        if let Some(t) = &self.tenant {
            write!(f, "/{t}")?;
        }
        if let Some(u) = &self.user {
            write!(f, "/{u}")?;
        }
        Ok(())
    }
}

/// One message of a chat-format prompt (promptfoo's JSON message lists).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChatTurn {
    pub role: String,
    pub content: String,
}
