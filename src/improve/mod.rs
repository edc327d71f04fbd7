//! Controlled self-improvement: a worker that proposes challenger packs and
//! never promotes them (`missionctl improve`).
//!
//! One run, in the loop's order:
//! 1. **Signal** ([`signal`]): the champion (the pack at `--base`) is
//!    evaluated with the gate's engine, cache and ledger; what it fails or
//!    scores low on becomes text feedback per case, with the worst task
//!    types and error codes from run telemetry.
//! 2. **Propose** ([`propose`]): the optimiser model (`improve.model`)
//!    reflects on a minibatch of failures of the current parent and answers
//!    with new texts for the pack's own prompt sections and voice profile;
//!    [`scope`] refuses anything else before a cent is spent evaluating it.
//! 3. **Select** ([`select`]): each candidate, committed off `--base`, goes
//!    through the gate itself (champion against candidate, every hard check,
//!    the gate's statistics); a Pareto front over cases picks the next
//!    parent; the run stops at a cap, when a candidate improves nothing, or
//!    when everything passes.
//! 4. **Caps** are checked before each spend: `max_candidates_per_run`
//!    (guardrails, the tier, `--max-candidates`), the tenant's
//!    `max_optimization_spend_per_day` (the gate's reserve-then-settle
//!    ledger) and the run's budget (the tier's
//!    `max_optimization_spend_per_run`, `--budget-usd`).
//! 5. **Publish** ([`publish`]): the best candidate the gate passes and that
//!    beats the champion becomes a branch and, when asked, a pull request
//!    whose body is the evidence. Nothing merges it.
//! 6. **Audit**: every run is a row in the state store (`improve --list`).

mod candidates;
mod choose;
pub mod propose;
pub mod publish;
pub mod report;
pub mod scope;
pub mod select;
pub mod signal;
pub mod split;
mod worker;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value as Json, json};

use crate::eval::{ConfigError, ModelSpec};
use crate::pack::PackDoc;

pub use report::Report;
pub use worker::run;

#[derive(Debug, thiserror::Error)]
pub enum ImproveError {
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    #[error(transparent)]
    Gate(#[from] crate::gate::GateError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error(
        "the spend ledger could not be written ({0}); the run stopped, since spending it cannot record would break the caps"
    )]
    Ledger(crate::store::StoreError),
    #[error("GitHub: {0}")]
    GitHub(#[from] crate::github::GhError),
    #[error(
        "the optimiser failed: {0}. Nothing was proposed; check `improve.model` in mission.yaml (base_url is the endpoint's address, `http://host` or `http://host/v1`; model; api_key_env)"
    )]
    Optimiser(String),
    #[error(
        "the harness failed on {failed} of {runs} champion case run(s), so there is no signal to improve on: {first}. Check `eval.harness` in mission.yaml"
    )]
    Harness {
        failed: usize,
        runs: usize,
        first: String,
    },
    #[error("cannot start the demo model: {0}")]
    Demo(std::io::Error),
}

/// What to do with a winning candidate.
pub enum Publish {
    /// A local branch only (`--branch-only`, the default).
    Branch,
    /// Push the branch to `remote` and open a pull request (`--open-pr`).
    PullRequest {
        gh: Box<crate::github::Gh>,
        remote: String,
    },
}

/// A narration callback: one line per step.
pub type OnStep = Arc<dyn Fn(&str) + Send + Sync>;

/// One `missionctl improve` run.
pub struct ImproveOptions {
    pub repo: PathBuf,
    pub pack_id: String,
    /// The branch the champion is read from and a pull request targets.
    pub base: String,
    pub db_url: String,
    /// A store already open on `db_url` (as `GateOptions::store`), so one
    /// process keeps one pool and one writer; `None` opens `db_url`.
    pub store: Option<crate::store::Store>,
    /// What this run may spend in all (within the tier's and tenant's caps).
    pub budget_usd: Option<f64>,
    /// At most this many candidates (within the policy's caps).
    pub max_candidates: Option<u32>,
    pub publish: Publish,
    /// Called with one line per step, for narration.
    pub on_step: Option<OnStep>,
}

/// `improve:` in mission.yaml.
#[derive(Debug, Clone)]
pub struct Settings {
    pub model: ModelSpec,
    /// Failing cases the optimiser reflects on per step.
    pub minibatch: usize,
    pub telemetry_window_days: u32,
    /// Stop after this many evaluated candidates in a row improve no
    /// held-out case.
    pub patience: u32,
    /// Passing feedback-set cases shown beside the failures.
    pub passing_examples: usize,
}

/// The optimiser's default answer length: it returns whole sections.
const DEFAULT_MAX_TOKENS: u32 = 4000;

/// The optimiser's default sampling temperature: candidates should differ
/// from one another (DSPy's GEPA documentation recommends a reflection
/// model at temperature 1.0), unlike the harness and judge (0).
pub const DEFAULT_TEMPERATURE: f64 = 1.0;

/// A whole-number setting of `improve`, its default when absent, kept
/// within `min..=max` (the schema bounds it too; this keeps a hand-built
/// mission.yaml from asking for the absurd).
fn count(improve: &Json, key: &str, default: u64, min: u64, max: u64) -> u64 {
    improve
        .get(key)
        .and_then(Json::as_u64)
        .unwrap_or(default)
        .clamp(min, max)
}

impl Settings {
    pub fn from_mission(improve: &Json) -> Result<Settings, ConfigError> {
        let default = json!({"base_url": "demo", "model": "demo-optimiser"});
        let m = improve.get("model").unwrap_or(&default);
        let mut model = crate::eval::model_spec(m, "improve.model", "demo-optimiser")?;
        if m.get("max_tokens").is_none() {
            model.max_tokens = DEFAULT_MAX_TOKENS;
        }
        if m.get("temperature").is_none() {
            model.temperature = DEFAULT_TEMPERATURE;
        }
        Ok(Settings {
            model,
            minibatch: count(improve, "minibatch", 3, 1, 50) as usize,
            telemetry_window_days: count(improve, "telemetry_window_days", 7, 1, 90) as u32,
            patience: count(improve, "patience", 2, 1, 20) as u32,
            passing_examples: count(improve, "passing_examples", 2, 0, 20) as usize,
        })
    }
}

/// Whose ledger the optimiser's calls are paid from: the pack's tenant or
/// user, else `shared` (as the gate bills chains without a tenant).
pub fn tenant_of(doc: &PackDoc) -> String {
    use crate::model::ScopeType;
    match doc.pack.scope.kind {
        ScopeType::Tenant => doc.pack.scope.id.clone(),
        ScopeType::User => format!("user:{}", doc.pack.scope.id),
        ScopeType::Global | ScopeType::Domain => "shared".into(),
    }
}

/// The packs at `base` whose tier's `optimization_cadence` is `cadence`
/// (every pack whose cadence is not `off`, when `cadence` is `None`), by id.
pub fn due(
    repo: &std::path::Path,
    base: &str,
    cadence: Option<&str>,
) -> Result<Vec<String>, ImproveError> {
    let tree = crate::git::Tree::at_rev(repo, base)?;
    let r = crate::pack::load(&tree);
    let default_tier = r
        .mission
        .as_ref()
        .map(|m| m.value.tier)
        .ok_or_else(|| ImproveError::Usage(format!("`{base}` has no valid mission.yaml")))?;
    let tiers = r.tiers.as_ref().map(|t| t.value.clone());
    Ok(r.packs
        .iter()
        .filter(|p| {
            let tier = p.pack.tier.unwrap_or(default_tier);
            let c = tiers
                .as_ref()
                .and_then(|t| t.get(tier).optimization_cadence.clone())
                .unwrap_or_else(|| "off".into());
            match cadence {
                Some(want) => c == want,
                None => c != "off",
            }
        })
        .map(|p| p.pack.id.clone())
        .collect())
}
