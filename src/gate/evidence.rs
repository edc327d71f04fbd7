//! The gate's evidence: what `evidence.json`, `eval_result.jsonl` and
//! `evidence.md` hold, and what the GitHub report reads back.

use serde::{Deserialize, Serialize};

use crate::diagnostic::Diagnostic;
use crate::diff::DiffReport;
use crate::eval::judge::Pairwise;
use crate::model::{Tag, Variant, Verdict};
use crate::resolve::Thresholds;

use super::GateError;

/// A safety or format assertion the champion passed and the challenger fails.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Regression {
    pub pack_id: String,
    pub chain: String,
    pub case_id: String,
    /// Where the case is defined, for annotations.
    pub case_file: String,
    pub case_line: u64,
    pub tag: Tag,
    pub assertion: String,
    pub challenger_reason: String,
    /// Both outputs (the first 4,000 characters), for the example diff.
    #[serde(default)]
    pub champion_output: String,
    #[serde(default)]
    pub challenger_output: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct ScoreDelta {
    pub champion: Option<f64>,
    pub challenger: Option<f64>,
    pub delta: Option<f64>,
    pub ci95: Option<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PackEvidence {
    pub pack_id: String,
    pub scope_type: String,
    pub scope_id: String,
    pub base_version: Option<String>,
    pub head_version: Option<String>,
    pub chains_total: usize,
    pub chains_evaluated: usize,
    pub pairs: usize,
    pub champion_pass_rate: Option<f64>,
    pub challenger_pass_rate: Option<f64>,
    pub pass_rate_delta: Option<f64>,
    /// Discordant pairs: champion passes and challenger fails (b), and the reverse (c).
    pub discordant: (u64, u64),
    pub mcnemar_p: Option<f64>,
    pub insufficient_evidence: Option<String>,
    pub judge_task: ScoreDelta,
    pub judge_voice: ScoreDelta,
    pub pairwise: Pairwise,
    pub latency_p50_ms: (Option<f64>, Option<f64>),
    pub latency_change_pct: Option<f64>,
    pub prompt_growth_tokens: i64,
    pub errors: Vec<String>,
    /// Paired cases left out of the pass rates because an assertion they
    /// depend on could not be checked (judge-backed, no judge configured).
    #[serde(default)]
    pub not_evaluated: usize,
    /// Paired cases the budget did not pay for (a tenant's daily cap, the
    /// run's limit): left out of the pass rates, which are over the cases
    /// that ran.
    #[serde(default)]
    pub not_run_for_budget: usize,
    pub thresholds: Thresholds,
    pub blocked_by: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GuardrailRow {
    pub name: String,
    pub value: String,
    pub cap: String,
    pub exceeded: bool,
}

/// One assertion's outcome in an `eval_result` row.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AssertionRow {
    #[serde(rename = "type")]
    pub kind: String,
    pub tag: Tag,
    pub pass: bool,
    pub skipped: bool,
    pub reason: String,
}

/// A case's verdict on one variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaseOutcome {
    Pass,
    Fail,
    NotEvaluated,
    Error,
}

/// One `eval_result` record (the contract's fields, then documented extras).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalResult {
    pub eval_id: String,
    pub run_id: String,
    pub deterministic_score: f64,
    pub llm_judge_score: Option<f64>,
    pub safety_regression_bool: bool,
    pub format_regression_bool: bool,
    pub comments: String,
    pub created_at: String,
    pub pack_id: String,
    pub pack_version: String,
    pub variant: Variant,
    pub case_id: String,
    /// The case's verdict as promptfoo aggregates it: `pass`, `fail`, or
    /// `not_evaluated` (an assertion no judge could check), `error`.
    pub outcome: CaseOutcome,
    pub scope_chain: String,
    pub assertions: Vec<AssertionRow>,
    /// This output's own figures (a cached answer reports its recorded latency and no cost).
    pub latency_ms: f64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    pub cached: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Evidence {
    pub verdict: Verdict,
    pub blocked: bool,
    pub reasons: Vec<String>,
    pub run_id: String,
    pub base: String,
    pub head: String,
    pub base_commit: String,
    pub head_commit: String,
    pub harness: String,
    pub judge: Option<String>,
    pub paid_calls_skipped: bool,
    pub regressions: Vec<Regression>,
    /// The regressions grouped by pack, case, tag and assertion, most severe first.
    #[serde(default)]
    pub regression_groups: Vec<super::group::RegressionGroup>,
    pub packs: Vec<PackEvidence>,
    pub guardrails: Vec<GuardrailRow>,
    pub validation_errors: Vec<Diagnostic>,
    pub approvals: Option<crate::model::ApprovalReport>,
    pub policy_changes: Vec<String>,
    pub needs_policy_owner: bool,
    pub sample_note: Option<String>,
    pub partial: bool,
    pub model_requests: u64,
    pub cache_hits: u64,
    pub cache_hit_rate: f64,
    pub retries: u64,
    pub throttled: u64,
    pub cost_usd: f64,
    pub started_at: String,
    pub finished_at: String,
    /// The change by pack and scope layer (written to evidence.json; not read back).
    #[serde(default, skip_serializing_if = "Option::is_none", skip_deserializing)]
    pub diff: Option<DiffReport>,
    #[serde(skip)]
    pub results: Vec<EvalResult>,
}

fn write_file(path: &std::path::Path, body: String) -> Result<(), GateError> {
    std::fs::write(path, body).map_err(|source| GateError::Write {
        path: path.display().to_string(),
        source,
    })
}

fn json<T: Serialize>(v: &T, pretty: bool) -> Result<String, GateError> {
    let r = if pretty {
        serde_json::to_string_pretty(v)
    } else {
        serde_json::to_string(v)
    };
    r.map_err(|e| GateError::Write {
        path: "evidence".into(),
        source: std::io::Error::other(e),
    })
}

/// Read `evidence.json` and `evidence.md` back from `dir` (what `github report` posts).
pub(crate) fn read_evidence(dir: &std::path::Path) -> Result<(Evidence, String), String> {
    let json = std::fs::read_to_string(dir.join("evidence.json"))
        .map_err(|e| format!("evidence.json: {e}"))?;
    let md = std::fs::read_to_string(dir.join("evidence.md"))
        .map_err(|e| format!("evidence.md: {e}"))?;
    let e: Evidence = serde_json::from_str(&json).map_err(|e| {
        format!("evidence.json is not evidence this version of missionctl reads: {e}")
    })?;
    Ok((e, md))
}

/// `eval_result.jsonl`, `evidence.json` and `evidence.md` in `dir`.
pub(crate) fn write_evidence(dir: &std::path::Path, e: &Evidence) -> Result<(), GateError> {
    std::fs::create_dir_all(dir).map_err(|source| GateError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let mut jsonl = String::new();
    for r in &e.results {
        jsonl.push_str(&json(r, false)?);
        jsonl.push('\n');
    }
    write_file(&dir.join("eval_result.jsonl"), jsonl)?;
    write_file(&dir.join("evidence.json"), json(e, true)?)?;
    write_file(&dir.join("evidence.md"), super::markdown::render(e))?;
    Ok(())
}
