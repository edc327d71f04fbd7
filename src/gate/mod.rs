//! `missionctl gate` / `eval`: champion (base) against challenger (head), on
//! every affected scope chain, decided by policy, with evidence.
//!
//! Trust boundary: the harness, the judge, the hard constraints and the
//! guardrails all come from the **base** revision, so a pull request cannot
//! change the command that evaluates it or loosen its own gate. Eval cases
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
pub mod markdown;
pub mod plan;
pub mod score;
pub mod verdict;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

pub use evidence::{
    EvalResult, Evidence, GuardrailRow, PackEvidence, Regression, ScoreDelta, write_evidence,
};
pub use markdown::render as render_markdown;
pub use score::LATENCY_NOISE_FLOOR_MS;

use crate::eval::{self, EvalConfig};
use crate::llm::Client;
use crate::model::{Tag, Variant};
use crate::store::Store;
use budget::Budget;
use evidence::AssertionRow;
use execute::{Done, Engine};
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
    pub progress: bool,
    /// When set, the pull request's reviews are checked against the
    /// approvals the changed packs need.
    pub github: Option<GithubContext>,
}

pub struct GithubContext {
    pub gh: crate::github::Gh,
    pub pr: u64,
    pub head_sha: String,
}

fn short_id(parts: &[&str]) -> String {
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
fn api_keys(cfg: &EvalConfig) -> Vec<String> {
    let harness = match &cfg.harness {
        eval::Harness::OpenAi(s) => s.endpoint(None).api_key,
        eval::Harness::Command { .. } => None,
    };
    let judge = cfg
        .judge
        .as_ref()
        .and_then(|(s, _)| s.endpoint(None).api_key);
    harness.into_iter().chain(judge).collect()
}

/// The budget for the tenants the jobs bill, from today's ledger.
async fn budget(
    store: &Store,
    l: &Loaded,
    plan: &Plan,
) -> Result<(Budget, HashMap<String, f64>), GateError> {
    let today = crate::time_util::today();
    let tenants: BTreeSet<&str> = plan.jobs.iter().map(|j| j.tenant.as_str()).collect();
    let mut spent = HashMap::new();
    for t in tenants {
        spent.insert(t.to_string(), store.spend_on(t, &today).await?);
    }
    let cap = &l.guard.max_optimization_spend_per_day;
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

/// Start the built-in demo model when the configuration names it.
async fn start_demo(
    cfg: &EvalConfig,
    skip_paid: bool,
) -> Result<Option<crate::demo_model::DemoServer>, GateError> {
    if !cfg.uses_demo() || skip_paid {
        return Ok(None);
    }
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    crate::demo_model::start(
        addr,
        crate::demo_model::DemoConfig {
            latency: std::time::Duration::ZERO,
        },
    )
    .await
    .map(Some)
    .map_err(GateError::Demo)
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
fn results(
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
                scope_chain: chain,
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

/// The pull request's reviews against what the changed packs need (read
/// from GitHub; everything they are checked against comes from the base).
async fn approvals(
    ctx: Option<&GithubContext>,
    l: &Loaded,
    plan: &Plan,
) -> (
    Option<crate::github::approvals::ApprovalReport>,
    Option<String>,
) {
    let Some(ctx) = ctx else {
        return (None, None);
    };
    match crate::github::approvals::evaluate(
        &ctx.gh,
        ctx.pr,
        &ctx.head_sha,
        &l.base,
        &l.head,
        &plan.candidates,
        &l.report.policies_changed,
    )
    .await
    {
        Ok(a) => (Some(a), None),
        Err(e) => (None, Some(e.to_string())),
    }
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

fn progress_bar(show: bool, n: usize) -> indicatif::ProgressBar {
    if !show || n == 0 {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(n as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} evaluating {pos}/{len} {wide_bar} {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    pb
}

/// Run the gate. Never panics on input; configuration and network failures
/// are errors (exit 2), everything else is evidence.
pub async fn run(opts: GateOptions) -> Result<Evidence, GateError> {
    let started_at = crate::time_util::now_rfc3339();
    let run_id = short_id(&[
        &started_at,
        &opts.base,
        &opts.head,
        &std::process::id().to_string(),
    ]);
    // Load.
    let l = load(&opts).await?;
    let mission = l.base.mission.as_ref().ok_or_else(|| {
        GateError::Config(format!("the base revision `{}` has no valid mission.yaml; the gate reads its configuration from the base", opts.base))
    })?;
    let cfg = Arc::new(EvalConfig::from_mission(&mission.value.eval)?);
    // Plan.
    let plan = plan::plan(&l, cfg.max_chains);
    let store = Store::connect(&opts.db_url).await?;
    let (budget, spent_before) = budget(&store, &l, &plan).await?;
    let demo = start_demo(&cfg, opts.skip_paid_calls).await?;
    let engine = Arc::new(Engine {
        client: Client::new(cfg.concurrency, Some(store.clone())),
        cfg: cfg.clone(),
        budget: Arc::new(Mutex::new(budget)),
        demo_url: demo.as_ref().map(crate::demo_model::DemoServer::url),
        store,
        run_id: run_id.clone(),
        skip_paid: opts.skip_paid_calls,
    });
    // Execute.
    let pb = progress_bar(opts.progress, plan.jobs.len());
    let done = engine.run_all(plan.jobs.clone(), &pb).await;
    pb.finish_and_clear();
    let done = match done {
        Ok(d) => d,
        Err(e) => {
            if let Some(d) = demo {
                d.shutdown().await;
            }
            return Err(e);
        }
    };
    // Nothing could run, and for a reason of setup: "could not evaluate" (exit 2).
    if let Some(fatal) = done
        .iter()
        .find(|d| d.run.fatal)
        .and_then(|d| d.run.error.clone())
        && done.iter().all(|d| d.run.error.is_some())
    {
        if let Some(d) = demo {
            d.shutdown().await;
        }
        return Err(GateError::Unreachable(fatal));
    }
    let (pairwise, pairwise_usd) = engine.pairwise(&done).await;
    if let Some(d) = demo {
        d.shutdown().await;
    }
    // Score.
    let scores = score_all(&plan, &done, pairwise);
    let (approvals, approvals_error) = approvals(opts.github.as_ref(), &l, &plan).await;
    // Verdict.
    let b = engine.budget.lock().await.clone();
    let spend = spend_rows(&b, &spent_before);
    let mut guardrails = plan.guardrails.clone();
    let decided = verdict::decide(verdict::Inputs {
        validation_errors: &l.validation_errors,
        plan_reasons: plan.reasons.clone(),
        scores: &scores,
        latency_cap_pct: l.guard.max_allowed_latency_regression_pct,
        spend,
        ledger_failed: b.ledger_failed.clone(),
        approvals: approvals.as_ref(),
        approvals_error,
    });
    guardrails.extend(decided.guardrails);
    // Evidence.
    let results = results(&done, &decided.regressions, &run_id, &api_keys(&cfg));
    let cost: f64 = done
        .iter()
        .map(|d| d.run.cost_usd + d.judge_usd)
        .sum::<f64>()
        + pairwise_usd;
    let stats = &engine.client.stats;
    let (requests, hits) = (
        stats.requests.load(Ordering::Relaxed),
        stats.cache_hits.load(Ordering::Relaxed),
    );
    let (harness, judge) = describe(&cfg);
    let evidence = Evidence {
        verdict: decided.verdict,
        blocked: decided.verdict.holds_merge(),
        reasons: decided.reasons,
        run_id,
        base: opts.base.clone(),
        head: opts.head.clone(),
        base_commit: l.base.commit.map(|c| c.to_string()).unwrap_or_default(),
        head_commit: l.head.commit.map(|c| c.to_string()).unwrap_or_default(),
        harness,
        judge,
        paid_calls_skipped: opts.skip_paid_calls,
        regressions: decided.regressions,
        packs: scores.into_iter().map(|s| s.evidence).collect(),
        guardrails,
        validation_errors: l.validation_errors,
        approvals,
        needs_policy_owner: !l.report.policies_changed.is_empty(),
        policy_changes: l.report.policies_changed.clone(),
        sample_note: (!plan.sample_notes.is_empty()).then(|| plan.sample_notes.join("; ")),
        partial: decided.partial,
        model_requests: requests,
        cache_hits: hits,
        cache_hit_rate: if requests + hits > 0 {
            hits as f64 / (requests + hits) as f64
        } else {
            0.0
        },
        retries: stats.retries.load(Ordering::Relaxed),
        throttled: stats.throttled.load(Ordering::Relaxed),
        cost_usd: cost,
        started_at,
        finished_at: crate::time_util::now_rfc3339(),
        diff: Some(l.report),
        results,
    };
    if let Some(out) = &opts.out {
        write_evidence(out, &evidence)?;
    }
    Ok(evidence)
}
