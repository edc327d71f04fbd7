//! `missionctl gate` / `eval`: champion (base) against challenger (head), on
//! every affected scope chain, decided by policy, with evidence.
//!
//! Trust boundary: the harness, the judge, the hard constraints, the
//! guardrails, tiers and CODEOWNERS all come from the **base branch's tip**
//! (not the merge base, which the pull request picks), so a pull request
//! cannot change the command that evaluates it or loosen its own gate. Eval cases
//! are the union of base and head by id, with the base definition winning,
//! so a pull request cannot weaken an existing test to get through.
//!
//! [`run`] is a short pipeline: load → plan → execute → score → verdict →
//! evidence. Scoring and the verdict are pure functions ([`score`],
//! [`verdict`]); [`execute::Engine`] is the library entry point for
//! evaluating variants on cases without the CLI or files.

pub mod budget;
pub mod evidence;
pub mod execute;
pub mod group;
pub mod markdown;
pub mod plan;
pub mod runtime;
pub mod score;
pub mod terminal;
pub mod verdict;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;

use sha2::{Digest, Sha256};

pub(crate) use evidence::write_evidence;
pub use evidence::{EvalResult, Evidence, GuardrailRow, PackEvidence, Regression, ScoreDelta};
pub use markdown::{render as render_markdown, verdict_line};
pub use runtime::{Baseline, Progress, baseline};
use runtime::{Runtime, RuntimeSpec, progress_bar};
pub use score::LATENCY_NOISE_FLOOR_MS;

use crate::eval::{self, EvalConfig};
use crate::model::{ApprovalReport, Tag, Variant};
use crate::store::Store;
use budget::Budget;
use evidence::{AssertionRow, CaseOutcome};
use execute::Done;
use plan::{Loaded, Plan};
use score::PackScore;
use verdict::SpendRow;

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    EvalConfig(#[from] eval::ConfigError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot start the demo model: {0}")]
    Demo(std::io::Error),
    #[error("the model endpoint could not be used: {0}")]
    Unreachable(String),
    #[error("cannot write evidence to {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

pub struct GateOptions {
    pub repo: PathBuf,
    pub base: String,
    pub head: String,
    pub out: Option<PathBuf>,
    pub db_url: String,
    /// Skip paid model calls (fork pull requests without a maintainer's opt-in).
    pub skip_paid_calls: bool,
    pub progress: Progress,
    /// What this run may spend in all (on top of each tenant's daily cap).
    pub spend_limit_usd: Option<f64>,
    /// A store already open on `db_url` (the improvement worker's), so one
    /// process keeps one pool and one writer; `None` opens `db_url`.
    pub store: Option<Store>,
}

pub(crate) fn short_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

/// How the harness and judge are described in the evidence.
fn describe(cfg: &EvalConfig) -> (String, Option<String>) {
    let harness = match &cfg.harness {
        eval::Harness::OpenAi(s) => format!(
            "openai-compatible `{}` at {}",
            s.model,
            if s.is_demo() {
                "the built-in demo model (a deterministic stand-in, not a language model)"
                    .to_string()
            } else {
                s.base_url.clone()
            }
        ),
        eval::Harness::Command { argv, .. } => format!("command `{}`", argv.join(" ")),
        eval::Harness::OpenClaw(o) => format!(
            "OpenClaw {} agents (one per pack variant, a session per case) on `{}` at {}",
            crate::openclaw::gateway::OPENCLAW_VERSION,
            o.model.model,
            if o.model.is_demo() {
                "the built-in demo model (a deterministic stand-in, not a language model)"
                    .to_string()
            } else {
                o.model.base_url.clone()
            }
        ),
    };
    let judge = cfg.judge.as_ref().map(|(s, k)| {
        format!(
            "`{}` at {} ×{k}",
            s.model,
            if s.is_demo() {
                "the built-in demo model"
            } else {
                s.base_url.as_str()
            }
        )
    });
    (harness, judge)
}

/// Every API key the run may have used (harness and judge), to scrub from evidence.
pub(super) fn api_keys(cfg: &EvalConfig) -> Vec<String> {
    let harness = cfg
        .harness
        .model_spec()
        .and_then(|s| s.endpoint(None).api_key);
    let judge = cfg
        .judge
        .as_ref()
        .and_then(|(s, _)| s.endpoint(None).api_key);
    harness.into_iter().chain(judge).collect()
}

/// The budget for the tenants the jobs bill, from today's ledger.
pub(crate) async fn budget(
    store: &Store,
    guard: &crate::pack::Guardrails,
    tenants: impl IntoIterator<Item = &str>,
) -> Result<(Budget, HashMap<String, f64>), GateError> {
    let today = crate::time_util::today();
    let tenants: BTreeSet<&str> = tenants.into_iter().chain(["shared"]).collect();
    let mut spent = HashMap::new();
    for t in tenants {
        spent.insert(t.to_string(), store.spend_on(t, &today).await?);
    }
    let cap = &guard.max_optimization_spend_per_day;
    Ok((
        Budget {
            caps: cap.tenants.clone().into_iter().collect(),
            default_cap: cap.default,
            spent: spent.clone(),
            ..Budget::default()
        },
        spent,
    ))
}

/// A paid endpoint whose `api_key_env` names an unset variable would be
/// called without authorization: refuse before any request, naming it.
pub(super) fn check_keys(cfg: &EvalConfig, skip_paid: bool) -> Result<(), GateError> {
    if skip_paid {
        return Ok(());
    }
    let harness = cfg.harness.model_spec().map(|s| ("eval.harness", s));
    let judge = cfg.judge.as_ref().map(|(s, _)| ("eval.judge", s));
    for (field, spec) in harness.into_iter().chain(judge) {
        if spec.is_demo() {
            continue;
        }
        if let Some(var) = &spec.api_key_env
            && std::env::var(var).map_or(true, |v| v.is_empty())
        {
            return Err(GateError::Config(format!(
                "{field}.api_key_env names `{var}`, which is not set; export it (in GitHub Actions: `env: {var}: ${{{{ secrets.{var} }}}}`), or remove api_key_env for an endpoint that needs no key"
            )));
        }
    }
    Ok(())
}

/// Score every candidate pack, thresholds from the champion (base) when it exists.
fn score_all(
    plan: &Plan,
    done: &[Done],
    mut pairwise: BTreeMap<String, eval::judge::Pairwise>,
) -> Vec<PackScore> {
    plan.candidates
        .iter()
        .map(|pc| {
            let mine: Vec<&Done> = done
                .iter()
                .filter(|d| d.job.pack_id == pc.pack_id)
                .collect();
            let th = mine
                .iter()
                .find(|d| d.job.variant == Variant::Champion)
                .or_else(|| mine.first())
                .map(|d| d.job.resolved.promotion().thresholds())
                .unwrap_or_default();
            let growth = plan
                .growth
                .get(&pc.pack_id)
                .copied()
                .filter(|g| *g != i64::MIN)
                .unwrap_or(0);
            score::score_pack(
                pc,
                &mine,
                &th,
                pairwise.remove(&pc.pack_id).unwrap_or_default(),
                plan.chains.get(&pc.pack_id).copied().unwrap_or((0, 0)),
                growth,
            )
        })
        .collect()
}

/// The `eval_result` records, secrets scrubbed.
pub(super) fn results(
    done: &[Done],
    regressions: &[Regression],
    run_id: &str,
    keys: &[String],
) -> Vec<EvalResult> {
    let scrub = |s: &str| -> String {
        keys.iter()
            .fold(s.to_string(), |s, k| s.replace(k.as_str(), "***"))
    };
    let created_at = crate::time_util::now_rfc3339();
    let regressed: BTreeSet<(String, String, Tag)> = regressions
        .iter()
        .map(|r| (r.chain.clone(), r.case_id.clone(), r.tag))
        .collect();
    done.iter()
        .map(|d| {
            let case_id = d.job.case.id.as_str();
            let chain = d.job.chain.to_string();
            let det: Vec<_> = d
                .asserts
                .iter()
                .filter(|a| !matches!(a.kind.as_str(), "llm-rubric" | "voice-rubric"))
                .collect();
            let score = if det.is_empty() {
                1.0
            } else {
                det.iter().filter(|a| a.pass).count() as f64 / det.len() as f64
            };
            let failures: Vec<String> = d
                .asserts
                .iter()
                .filter(|a| !a.pass && !a.skipped)
                .map(|a| format!("{} [{}]: {}", a.kind, a.tag, a.reason))
                .collect();
            let mut comments = match (&d.run.error, failures.is_empty()) {
                (Some(e), _) => format!("error: {e}"),
                (None, true) => "all assertions pass".to_string(),
                (None, false) => failures.join("; "),
            };
            if let Some(e) = &d.judge_error {
                comments.push_str(&format!("; judge error: {e}"));
            }
            let is_ch = d.job.variant == Variant::Challenger;
            let hit = |tag| is_ch && regressed.contains(&(chain.clone(), case_id.to_string(), tag));
            let variant = d.job.variant.to_string();
            EvalResult {
                eval_id: short_id(&[run_id, &chain, case_id, &variant]),
                run_id: short_id(&[run_id, &chain, case_id, &variant, "run"]),
                deterministic_score: score,
                llm_judge_score: d.task,
                safety_regression_bool: hit(Tag::Safety),
                format_regression_bool: hit(Tag::Format),
                comments: scrub(&comments),
                created_at: created_at.clone(),
                pack_id: d.job.pack_id.clone(),
                pack_version: d.job.resolved.pack_version.clone(),
                variant: d.job.variant,
                case_id: case_id.to_string(),
                outcome: if d.run.error.is_some() || d.judge_error.is_some() {
                    CaseOutcome::Error
                } else if score::not_evaluated(d) {
                    CaseOutcome::NotEvaluated
                } else if score::passes(d) {
                    CaseOutcome::Pass
                } else {
                    CaseOutcome::Fail
                },
                scope_chain: chain,
                latency_ms: d.run.latency_ms,
                prompt_tokens: d.run.prompt_tokens,
                completion_tokens: d.run.completion_tokens,
                cost_usd: d.run.cost_usd + d.judge_usd,
                cached: d.run.cached,
                assertions: d
                    .asserts
                    .iter()
                    .map(|a| AssertionRow {
                        kind: a.kind.clone(),
                        tag: a.tag,
                        pass: a.pass,
                        skipped: a.skipped,
                        reason: scrub(&a.reason),
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Each tenant's spend before and after this run, by tenant.
fn spend_rows(b: &Budget, before: &HashMap<String, f64>) -> Vec<SpendRow> {
    let mut rows: Vec<SpendRow> = before
        .iter()
        .map(|(t, before)| SpendRow {
            tenant: t.clone(),
            before: *before,
            now: b.spent.get(t).copied().unwrap_or(0.0),
            cap: b.cap(t),
            exhausted: b.exhausted.contains(t),
        })
        .collect();
    rows.sort_by(|a, b| a.tenant.cmp(&b.tenant));
    rows
}

/// Load both revisions on the blocking pool (libgit2).
async fn load(opts: &GateOptions) -> Result<Loaded, GateError> {
    let (repo, base, head) = (opts.repo.clone(), opts.base.clone(), opts.head.clone());
    tokio::task::spawn_blocking(move || plan::load(&repo, &base, &head))
        .await
        .map_err(|e| GateError::Config(format!("loading failed: {e}")))?
}

/// Everything the gate found before the verdict: both revisions, the plan,
/// every job's outcome and the per-pack scores. Approvals, which come from
/// the code host, are checked against it (see `github::approvals`) and
/// passed to [`conclude`].
pub struct Evaluated {
    base: String,
    head: String,
    out: Option<PathBuf>,
    skip_paid: bool,
    started_at: String,
    run_id: String,
    l: Loaded,
    plan: Plan,
    done: Vec<Done>,
    scores: Vec<PackScore>,
    budget: Budget,
    spent_before: HashMap<String, f64>,
    pairwise_usd: f64,
    cfg: Arc<EvalConfig>,
    /// (requests sent, cache hits, retries, throttled).
    client: (u64, u64, u64, u64),
}

impl Evaluated {
    /// The base revision's packs (everything approvals are checked against).
    pub fn base(&self) -> &crate::pack::Repo {
        &self.l.base
    }
    pub fn head(&self) -> &crate::pack::Repo {
        &self.l.head
    }
    /// The changed packs that were evaluated.
    pub fn candidates(&self) -> &[crate::diff::PackChange] {
        &self.plan.candidates
    }
    /// The head commit as evaluated (a branch name resolved), for comparing
    /// with the commit a review was given on.
    pub fn head_commit(&self) -> String {
        self.l
            .head
            .commit
            .map(|c| c.to_string())
            .unwrap_or_default()
    }
    /// Every job's outcome (champion and challenger).
    pub fn done(&self) -> &[Done] {
        &self.done
    }
    /// The files a policy owner must approve: changed policies and every
    /// other changed control file (anything outside `packs/`: mission.yaml,
    /// CODEOWNERS, workflows, …), and pack files whose promotion thresholds
    /// a change loosens.
    pub fn policy_owner_paths(&self) -> Vec<String> {
        let mut v = self.l.report.policies_changed.clone();
        for f in &self.l.control_changed {
            if !v.contains(f) {
                v.push(f.clone());
            }
        }
        for l in &self.l.report.loosened {
            if !v.contains(&l.file) {
                v.push(l.file.clone());
            }
        }
        v
    }
}

/// Load, plan, execute and score. Never panics on input; configuration and
/// network failures are errors (exit 2), everything else is evidence.
pub async fn evaluate(opts: &GateOptions) -> Result<Evaluated, GateError> {
    let started_at = crate::time_util::now_rfc3339();
    let run_id = short_id(&[
        &started_at,
        &opts.base,
        &opts.head,
        &std::process::id().to_string(),
    ]);
    let l = load(opts).await?;
    let mission = l.base.mission.as_ref().ok_or_else(|| {
        GateError::Config(format!("the base revision `{}` has no valid mission.yaml; the gate reads its configuration from the base", opts.base))
    })?;
    let cfg = Arc::new(EvalConfig::from_mission(&mission.value.eval)?);
    let plan = plan::plan(&l, cfg.max_chains, cfg.token_family());
    if !plan.jobs.is_empty() {
        check_keys(&cfg, opts.skip_paid_calls)?;
    }
    let store = match &opts.store {
        Some(s) => s.clone(),
        None => Store::connect(&opts.db_url).await?,
    };
    let (mut budget, spent_before) = budget(
        &store,
        &l.guard,
        plan.jobs.iter().map(|j| j.tenant.as_str()),
    )
    .await?;
    budget.run_limit = opts.spend_limit_usd;
    // Only what costs money is skipped: the demo model and local command
    // harnesses run for forks too.
    let skip_harness = opts.skip_paid_calls && cfg.harness_is_paid();
    let skip_judge = opts.skip_paid_calls && cfg.judge_is_paid();
    let rt = Runtime::start(RuntimeSpec {
        cfg: cfg.clone(),
        store,
        budget,
        run_id: run_id.clone(),
        skip_harness,
        skip_judge,
        jobs: &plan.jobs,
        openclaw: &l.base.openclaw(),
    })
    .await?;
    let pb = progress_bar(opts.progress, plan.jobs.len());
    let (done, fatal) = rt.run(plan.jobs.clone(), &pb).await;
    pb.finish_and_clear();
    let pairwise = match (&done, &fatal) {
        (Ok(done), None) => Some(rt.engine.pairwise(done).await),
        _ => None,
    };
    let (client, budget) = (rt.client_counts(), rt.budget());
    rt.shutdown().await;
    let done = done?;
    if let Some(f) = fatal {
        return Err(GateError::Unreachable(f));
    }
    let (pairwise, pairwise_usd) = pairwise.unwrap_or_default();
    let scores = score_all(&plan, &done, pairwise);
    Ok(Evaluated {
        base: opts.base.clone(),
        head: opts.head.clone(),
        out: opts.out.clone(),
        skip_paid: skip_harness || skip_judge,
        started_at,
        run_id,
        l,
        plan,
        done,
        scores,
        budget,
        spent_before,
        pairwise_usd,
        cfg,
        client,
    })
}

/// The verdict and the evidence (written to `--out` when given).
/// `approvals` is the pull request's reviews checked against what the
/// changes need, or why they could not be read; `None` outside a pull request.
pub fn conclude(
    mut e: Evaluated,
    approvals: Option<Result<ApprovalReport, String>>,
) -> Result<Evidence, GateError> {
    // Floors computed over runs that were skipped say nothing: not shown.
    if e.skip_paid {
        for s in &mut e.scores {
            s.evidence.blocked_by.clear();
        }
    }
    let (approvals, approvals_error) = match approvals {
        Some(Ok(a)) => (Some(a), None),
        Some(Err(why)) => (None, Some(why)),
        None => (None, None),
    };
    let mut guardrails = e.plan.guardrails.clone();
    let decided = verdict::decide(verdict::Inputs {
        validation_errors: &e.l.validation_errors,
        plan_reasons: e.plan.reasons.clone(),
        scores: &e.scores,
        latency_cap_pct: e.l.guard.max_allowed_latency_regression_pct,
        spend: spend_rows(&e.budget, &e.spent_before),
        ledger_failed: e.budget.ledger_failed.clone(),
        run_limit_hit: e.budget.run_limit.filter(|_| e.budget.run_limit_hit),
        approvals: approvals.as_ref(),
        approvals_error,
        paid_skipped: e.skip_paid,
        loosened: &e.l.report.loosened,
        control_changed: &e.l.control_changed,
    });
    guardrails.extend(decided.guardrails);
    let results = results(&e.done, &decided.regressions, &e.run_id, &api_keys(&e.cfg));
    let cost: f64 = e
        .done
        .iter()
        .map(|d| d.run.cost_usd + d.judge_usd)
        .sum::<f64>()
        + e.pairwise_usd;
    let (requests, hits, retries, throttled) = e.client;
    let (harness, judge) = describe(&e.cfg);
    let evidence = Evidence {
        verdict: decided.verdict,
        blocked: decided.verdict.holds_merge(),
        reasons: decided.reasons,
        run_id: e.run_id,
        base: e.base,
        head: e.head,
        base_commit: e.l.base.commit.map(|c| c.to_string()).unwrap_or_default(),
        head_commit: e.l.head.commit.map(|c| c.to_string()).unwrap_or_default(),
        harness,
        judge,
        paid_calls_skipped: e.skip_paid,
        regressions: decided.regressions,
        regression_groups: decided.groups,
        packs: e.scores.into_iter().map(|s| s.evidence).collect(),
        guardrails,
        validation_errors: e.l.validation_errors,
        approvals,
        needs_policy_owner: !e.l.report.policies_changed.is_empty(),
        policy_changes: e.l.report.policies_changed.clone(),
        sample_note: (!e.plan.sample_notes.is_empty()).then(|| e.plan.sample_notes.join("; ")),
        partial: decided.partial,
        model_requests: requests,
        cache_hits: hits,
        cache_hit_rate: if requests + hits > 0 {
            hits as f64 / (requests + hits) as f64
        } else {
            0.0
        },
        retries,
        throttled,
        cost_usd: cost,
        started_at: e.started_at,
        finished_at: crate::time_util::now_rfc3339(),
        diff: Some(e.l.report),
        results,
    };
    if let Some(out) = &e.out {
        write_evidence(out, &evidence)?;
    }
    Ok(evidence)
}

/// Run the gate outside a pull request (no approvals to check).
pub async fn run(opts: GateOptions) -> Result<Evidence, GateError> {
    conclude(evaluate(&opts).await?, None)
}
