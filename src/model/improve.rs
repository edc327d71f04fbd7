//! The improvement worker's records: what it tells the optimiser model and
//! what the model answers, and how a run ended. Plain data, shared by the
//! worker ([`crate::improve`]) and the built-in demo optimiser.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Tag;
use super::words;

/// The optimiser's system message. The demo model recognises a request as
/// an optimiser request by this text.
pub const OPTIMISER_SYSTEM: &str = "You are missionctl's prompt optimiser. \
You receive an agent pack's editable prompt sections and voice profile, the full prompt the agent receives on a failing chain (every scope layer merged), its output contracts' schemas, the evaluation cases its current version fails with the outputs, the chains they failed on and the reasons, cases it passes, and the candidates tried so far with their scores. \
Propose one improved version that fixes as many failures as possible without breaking what passes: reflect on why each case failed, then edit only the editable sections and the voice profile. \
Keep the prompt short; never weaken a safety instruction. \
Reply with one JSON object in the stated answer_format and nothing else: no prose, no code fences.";

/// A voice profile, as `voice:` in a pack file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoiceProfile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tone: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub style_rules: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub banned_phrases: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sentence_words: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
}

/// One failed assertion of a case, as feedback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedCheck {
    /// The assertion type (`contains`, `is-json`, `llm-rubric`, …).
    #[serde(rename = "type")]
    pub kind: String,
    pub tag: Tag,
    /// What the assertion expects (its `value`), as text.
    pub expected: String,
    pub reason: String,
}

/// A case the current version fails or scores low on, with text feedback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaseFeedback {
    pub case_id: String,
    pub description: String,
    pub input: String,
    /// One output of the version being improved (the first failing chain's).
    pub output: String,
    /// Chains the case failed on, of those evaluated.
    pub chains_failed: usize,
    pub chains: usize,
    /// The chains (`domain/tenant/user`) the case failed on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_chains: Vec<String>,
    pub failed: Vec<FailedCheck>,
    /// The judge's rubric reason and per-criterion scores (1-5), when judged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub criteria: BTreeMap<String, f64>,
}

/// A case the current version passes, shown beside the failures so the
/// optimiser keeps what works.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassingExample {
    pub case_id: String,
    pub description: String,
    pub input: String,
    pub output: String,
}

/// The prompt the agent receives on one chain: every scope layer merged
/// (global, domain, tenant, user), as the harness sends it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResolvedPrompt {
    /// The chain (`domain/tenant/user`).
    pub chain: String,
    pub system: String,
}

/// What production runs say about the current version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TelemetrySignal {
    pub window_days: u32,
    pub runs: u64,
    pub success_rate: Option<f64>,
    /// (task type, runs, success rate), worst first.
    pub worst_task_types: Vec<(String, u64, f64)>,
    /// (error code, count), most frequent first.
    pub error_codes: Vec<(String, u64)>,
}

/// A candidate tried earlier in the run, so the optimiser can learn from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriedCandidate {
    pub candidate: u32,
    pub rationale: String,
    /// Cases it passes on every chain, and why it was set aside, if it was.
    pub passes: Vec<String>,
    pub outcome: String,
    /// Its mean case score on the feedback set (the cases the optimiser is
    /// shown), when it was evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback_score: Option<f64>,
}

/// The optimiser's task (the user message, as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OptimiserRequest {
    pub task: String,
    pub pack_id: String,
    pub version: String,
    /// Repository path -> current text of every prompt section it may edit.
    pub sections: BTreeMap<String, String>,
    pub voice: VoiceProfile,
    /// The full prompt the agent receives on the first failing chain.
    #[serde(default)]
    pub resolved_prompt: ResolvedPrompt,
    /// The output contracts' JSON schemas, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub contracts: BTreeMap<String, serde_json::Value>,
    pub failures: Vec<CaseFeedback>,
    /// Feedback-set cases the current version passes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passing: Vec<PassingExample>,
    /// Main's validation errors in the pack's own files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub validation: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<TelemetrySignal>,
    pub history: Vec<TriedCandidate>,
    pub rules: Vec<String>,
    pub answer_format: serde_json::Value,
}

/// The optimiser's answer: full new texts of the sections it edits, and the
/// whole voice profile when it changes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimiserAnswer {
    pub rationale: String,
    #[serde(default)]
    pub sections: BTreeMap<String, String>,
    #[serde(default)]
    pub voice: Option<VoiceProfile>,
}

words! {
    /// Why an improvement run stopped.
    pub enum StopReason ("stop") {
        /// Every case passes on every chain: nothing left to fix.
        NothingToFix = "nothing-to-fix",
        /// `max_candidates_per_run` candidates were tried.
        CandidateCap = "candidate-cap",
        /// The tenant's `max_optimization_spend_per_day` would be exceeded.
        SpendCap = "spend-cap",
        /// The last candidate improved no case over the best so far.
        NoImprovement = "no-improvement",
        /// The best candidate passes every case.
        AllFixed = "all-fixed",
        /// The optimiser proposed nothing that could be evaluated (no edit,
        /// or only edits already tried): no candidate was evaluated.
        NothingProposed = "nothing-proposed",
        /// Every eval case passes, but main fails validation for the pack
        /// or its production telemetry falls short of its KPI: failures the
        /// eval cases do not cover, reported (with eval cases to add)
        /// rather than optimised against.
        UncoveredFailures = "uncovered-failures",
        /// The run failed (the optimiser's or the harness's endpoint, the
        /// store, git, GitHub): exit 2, with the reason in `stop_detail`.
        Failed = "failed",
    }
}

words! {
    /// What became of one candidate.
    pub enum CandidateOutcome ("candidate.outcome") {
        /// Refused before evaluation: it edits something a proposal may not.
        OutOfScope = "out-of-scope",
        /// The optimiser's answer could not be used.
        Unusable = "unusable",
        /// A hard check failed (safety, format, validation, a guardrail).
        Discarded = "discarded",
        /// Evaluated, and on the Pareto front when the run ended.
        Front = "front",
        /// Evaluated, and dominated by another candidate.
        Dominated = "dominated",
        /// Evaluation stopped at the spend cap.
        Partial = "partial",
    }
}
