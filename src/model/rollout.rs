//! Canary rollouts: the plan a promotion carries, the rollout's state, the
//! arms users are split into, and the figures behind every transition.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{UnknownWord, Word, words};

words! {
    /// Which side of a canary a user is in.
    pub enum Arm ("arm") {
        Champion = "champion",
        Canary = "canary",
    }
}

/// The arm of one rollout a run belongs to; stored as `<rollout_id>:<arm>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ArmLabel {
    pub rollout_id: String,
    pub arm: Arm,
}

impl ArmLabel {
    pub fn new(rollout_id: &str, arm: Arm) -> ArmLabel {
        ArmLabel {
            rollout_id: rollout_id.to_string(),
            arm,
        }
    }
}

impl fmt::Display for ArmLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.rollout_id, self.arm)
    }
}

impl FromStr for ArmLabel {
    type Err = UnknownWord;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (id, arm) = s.rsplit_once(':').ok_or_else(|| UnknownWord {
            field: "arm",
            value: s.to_string(),
            expected: "<rollout_id>:champion or <rollout_id>:canary".into(),
        })?;
        Ok(ArmLabel {
            rollout_id: id.to_string(),
            arm: Arm::parse(arm)?,
        })
    }
}

impl TryFrom<String> for ArmLabel {
    type Error = UnknownWord;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<ArmLabel> for String {
    fn from(l: ArmLabel) -> String {
        l.to_string()
    }
}

words! {
    /// Where a rollout is. `Running`, `Stalled` and `Held` are in progress;
    /// the others are final. A held rollout keeps its traffic split and does
    /// not advance until it is resumed; a regression still rolls it back.
    pub enum RolloutState ("state") {
        Running = "running",
        Stalled = "stalled",
        Held = "held",
        Completed = "completed",
        RolledBack = "rolled_back",
        Superseded = "superseded",
    }
}

impl RolloutState {
    /// Still moving (the controller evaluates it on every tick).
    pub(crate) fn in_progress(self) -> bool {
        matches!(self, Self::Running | Self::Stalled | Self::Held)
    }
}

words! {
    /// How an automatic rollback reaches git: pushed to the branch, or on a
    /// `missionctl/rollback-…` branch for review.
    pub enum RollbackGit ("rollback.git") {
        Push = "push",
        Branch = "branch",
    }
}

impl Default for RollbackGit {
    /// A pack that says nothing pushes its rollbacks.
    fn default() -> Self {
        RollbackGit::Push
    }
}

/// A pack's `rollback:` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RollbackRules {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_success_rate_drop: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_p95_latency_regression_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<RollbackGit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_auto_promotion: Option<bool>,
}

/// A KPI target: `{min: x}` or `{max: x}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Bound {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

/// The rollout plan a promote (or rollback) decision carries.
///
/// An `immediate` plan applies at once to everyone (initial imports and
/// rollbacks); otherwise the canary walks `steps` (percent of users).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RolloutPlan {
    pub steps: Vec<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub immediate: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_runs_per_arm: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_deadline_minutes: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_false_rollback_rate: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback: Option<RollbackRules>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kpis: Option<BTreeMap<String, Bound>>,
    /// Where the champion's content lives, for serving it during the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_commit: Option<String>,
    /// The rollout an automatic rollback ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_id: Option<String>,
}

impl RolloutPlan {
    /// Applied at once to 100% (initial imports and rollbacks).
    pub fn immediate() -> RolloutPlan {
        RolloutPlan {
            steps: vec![100],
            immediate: true,
            ..RolloutPlan::default()
        }
    }

    /// The canary's steps, always ending at 100%.
    pub(crate) fn canary_steps(&self) -> Vec<u32> {
        let mut steps: Vec<u32> = self.steps.iter().map(|s| (*s).min(100)).collect();
        if steps.is_empty() {
            steps = vec![10, 50, 100];
        }
        if steps.last() != Some(&100) {
            steps.push(100);
        }
        steps
    }

    pub(crate) fn rollback_git(&self) -> RollbackGit {
        self.rollback
            .as_ref()
            .and_then(|r| r.git)
            .unwrap_or_default()
    }
}

/// KPIs of one pack version (and arm).
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct Kpis {
    pub runs: usize,
    pub success_rate: Option<f64>,
    pub error_rate: Option<f64>,
    #[serde(default)]
    pub errors_by_code: BTreeMap<String, u64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p95_ms: Option<f64>,
    pub cost_per_run_usd: Option<f64>,
}

/// Wald's SPRT state on the canary's failures, against the champion's failure rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sprt {
    pub p0: f64,
    pub p1: f64,
    pub llr: f64,
    pub upper: f64,
    pub lower: f64,
}

/// Both arms' figures at one step, with the sequential test when it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepFigures {
    pub champion: Kpis,
    pub canary: Kpis,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sprt: Option<Sprt>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_runs_per_arm: Option<usize>,
}

words! {
    /// How a rollout step ended.
    pub enum StepOutcome ("step.outcome") {
        /// The canary held; the next step's share took over.
        Advanced = "advanced",
        /// The canary held at the last step: fully promoted.
        Completed = "completed",
        /// The canary regressed: the champion was pinned and reverted to.
        RolledBack = "rolled_back",
    }
}

words! {
    /// Where a rollout status's arm figures come from.
    pub enum FiguresFrom ("figures_from") {
        /// The current step's runs (a rollout in progress).
        Live = "live",
        /// The last recorded step (a finished rollout).
        LastStep = "last step",
        /// Withheld: a tenant-scoped reader of a pack several tenants
        /// share (the figures count every tenant's runs).
        Withheld = "withheld from tenant sign-ins: they count every tenant's runs",
    }
}

/// One finished step of a rollout: when it ended, how, and on what figures
/// (both arms and the sequential test), kept for as long as the rollout is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The canary share the step ran at, in percent.
    pub percent: u32,
    pub started_at: String,
    pub ended_at: String,
    pub outcome: StepOutcome,
    pub figures: StepFigures,
}

/// Why a rollout is where it is, the figures of its last transition, and
/// every finished step's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutDetail {
    pub why: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_step: Option<StepFigures>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub figures: Option<StepFigures>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<StepRecord>,
}

impl RolloutDetail {
    pub fn why(why: impl Into<String>) -> RolloutDetail {
        RolloutDetail {
            why: why.into(),
            last_step: None,
            figures: None,
            history: Vec::new(),
        }
    }

    /// A new reason, keeping the figures and steps recorded so far.
    pub fn next(prev: Option<&RolloutDetail>, why: impl Into<String>) -> RolloutDetail {
        match prev {
            Some(p) => RolloutDetail {
                why: why.into(),
                ..p.clone()
            },
            None => RolloutDetail::why(why),
        }
    }
}

/// What writing an automatic rollback's revert to git gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum GitOutcome {
    Reverted {
        revert_commit: String,
        branch: String,
    },
    Failed {
        revert_error: String,
    },
    /// Recorded with the transition; the executor has not written it yet.
    Pending {
        revert_pending: bool,
    },
    /// The branch no longer held the rolled-back version when the executor
    /// came to write the revert (someone reverted it first): nothing to write.
    NotNeeded {
        revert_not_needed: String,
    },
}

/// The figures a `rollback` decision of the canary controller carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackFigures {
    pub trigger: StepFigures,
    pub git: GitOutcome,
}

/// A canary rollout started by a promote decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rollout {
    pub rollout_id: String,
    pub decision_id: String,
    pub source: String,
    pub pack_id: String,
    pub from_version: Option<String>,
    pub to_version: String,
    pub from_commit: Option<String>,
    pub to_commit: String,
    pub steps: Vec<u32>,
    pub step: usize,
    pub state: RolloutState,
    pub detail: Option<RolloutDetail>,
    pub started_at: String,
    pub updated_at: String,
    pub step_started_at: String,
    pub params: RolloutPlan,
    /// The row's version in the store: a transition computed on this
    /// version is written only if the row is still at it.
    #[serde(skip)]
    pub row_version: i64,
}

impl Rollout {
    /// The canary share of the current step, in percent.
    pub fn percent(&self) -> u32 {
        self.steps.get(self.step).copied().unwrap_or(100)
    }

    /// The share after this step, while the rollout is in progress.
    pub fn next_step(&self) -> Option<u32> {
        if self.state.in_progress() {
            self.steps.get(self.step + 1).copied()
        } else {
            None
        }
    }
}

/// The placeholder a rollback decision's `commit` holds until its revert
/// commit exists (the executor or the reconciler replaces it).
pub fn pending_commit(transition: &str) -> String {
    format!("pending:{transition}")
}

/// A revert commit a rollback transition owes git: restore `pack_id` to
/// `to_version` while the branch still holds `bad_version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevertEffect {
    pub transition_id: String,
    /// The rollout the rollback ended, if one was in progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout_id: Option<String>,
    pub decision_id: String,
    pub pack_id: String,
    /// The version to restore (semver); none: the previous one on the branch.
    pub to_version: Option<String>,
    /// The version rolled back (semver): when the branch no longer holds
    /// it, there is nothing to revert.
    pub bad_version: Option<String>,
    pub reason: String,
    /// A review branch to write to; none: onto the source's branch.
    pub review_branch: Option<String>,
}

words! {
    /// Where an effect is.
    pub enum EffectState ("effect.state") {
        Pending = "pending",
        Done = "done",
    }
}

/// An effect recorded with a transition and finished by the executor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    pub effect_id: String,
    pub source: String,
    pub pack_id: String,
    pub state: EffectState,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub next_attempt_at: String,
    pub created_at: String,
    pub done_at: Option<String>,
    pub revert: RevertEffect,
    pub result: Option<GitOutcome>,
}
