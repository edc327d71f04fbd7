//! `missionctl gate` / `eval`: champion (base) against challenger (head), on
//! every affected scope chain, decided by policy, with evidence.
//!
//! Trust boundary: the harness, the judge, the hard constraints and the
//! guardrails all come from the **base** revision, so a pull request cannot
//! change the command that evaluates it or loosen its own gate. Eval cases
//! are the union of base and head by id, with the base definition winning,
//! so a pull request cannot weaken an existing test to get through.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde::Serialize;
use serde_json::{Value as Json, json};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::diagnostic::Diagnostic;
use crate::diff::{self, DiffReport, Status};
use crate::eval::assertions::{self, AssertionResult, Observed, Tag};
use crate::eval::judge::{self, Judge, Pairwise};
use crate::eval::{self, EvalConfig, RunOutput, stats};
use crate::gitrepo::Tree;
use crate::llm::Client;
use crate::pack::{self, Repo};
use crate::resolve::{self, ChainKey, Resolved};
use crate::store::Store;
use crate::validate;

#[derive(Debug, thiserror::Error)]
pub enum GateError {
    #[error(transparent)]
    Git(#[from] crate::gitrepo::GitError),
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

#[derive(Debug, Clone, Serialize)]
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
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct ScoreDelta {
    pub champion: Option<f64>,
    pub challenger: Option<f64>,
    pub delta: Option<f64>,
    pub ci95: Option<(f64, f64)>,
}

#[derive(Debug, Clone, Serialize)]
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
    pub thresholds: Json,
    pub blocked_by: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GuardrailRow {
    pub name: String,
    pub value: String,
    pub cap: String,
    pub exceeded: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Evidence {
    pub verdict: String,
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
    pub packs: Vec<PackEvidence>,
    pub guardrails: Vec<GuardrailRow>,
    pub validation_errors: Vec<Diagnostic>,
    pub approvals: Option<crate::github::approvals::ApprovalReport>,
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
    #[serde(skip)]
    pub diff: Option<DiffReport>,
    #[serde(skip)]
    pub results: Vec<Json>,
}

/// One (chain, case, variant) to run.
struct Job {
    pack_id: String,
    chain: ChainKey,
    variant: &'static str,
    resolved: Arc<Resolved>,
    case: Arc<Json>,
    tenant: String,
}

struct Done {
    job: Job,
    run: RunOutput,
    asserts: Vec<AssertionResult>,
    task: Option<f64>,
    voice: Option<f64>,
    judge_error: Option<String>,
    judge_usd: f64,
}

/// Median latency increases smaller than this are measurement noise, whatever
/// their percentage, and never trip the latency guardrail.
pub const LATENCY_NOISE_FLOOR_MS: f64 = 20.0;

/// Champion and challenger results for one (chain, case).
type Pair<'a> = (Option<&'a Done>, Option<&'a Done>);

/// Per-tenant daily spend: what the ledger says was spent today, plus what
/// this run has reserved. A call that would cross the cap is not made.
struct Budget {
    caps: HashMap<String, f64>,
    spent: HashMap<String, f64>,
    default_cap: f64,
    exhausted: BTreeSet<String>,
}

impl Budget {
    fn cap(&self, tenant: &str) -> f64 {
        self.caps.get(tenant).copied().unwrap_or(self.default_cap)
    }
    fn reserve(&mut self, tenant: &str, usd: f64) -> bool {
        let cap = self.cap(tenant);
        let s = self.spent.entry(tenant.to_string()).or_default();
        if *s + usd > cap + 1e-12 {
            self.exhausted.insert(tenant.to_string());
            return false;
        }
        *s += usd;
        true
    }
    fn settle(&mut self, tenant: &str, reserved: f64, actual: f64) {
        let s = self.spent.entry(tenant.to_string()).or_default();
        *s += actual - reserved;
    }
}

fn tenant_of(k: &ChainKey) -> String {
    k.tenant
        .clone()
        .or_else(|| k.user.as_ref().map(|u| format!("user:{u}")))
        .unwrap_or_else(|| "shared".into())
}

fn short_id(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The chains a changed pack affects in `repo`, sampled deterministically
/// (by a hash of the chain key) when there are more than `max`.
fn affected_chains(repo: &Repo, pack_id: &str, max: usize) -> (Vec<ChainKey>, usize) {
    let mut keys: Vec<ChainKey> = resolve::all_chains(repo)
        .into_iter()
        .filter(|k| {
            resolve::chain(repo, k)
                .is_ok_and(|idx| idx.iter().any(|i| repo.packs[*i].pack.id == pack_id))
        })
        .collect();
    let total = keys.len();
    if total > max {
        keys.sort_by_key(|k| Sha256::digest(format!("missionctl-sample:{k}").as_bytes()).to_vec());
        keys.truncate(max);
        keys.sort();
    }
    (keys, total)
}

/// Cases for a chain: the base definition of every case id, plus cases the
/// head adds. Returned in a stable order.
fn merged_cases(champion: Option<&Resolved>, challenger: &Resolved) -> Vec<Arc<Json>> {
    let cases = |r: &Resolved| -> Vec<Json> {
        r.content
            .pointer("/eval/cases")
            .and_then(Json::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut out: Vec<Json> = champion.map(cases).unwrap_or_default();
    let known: BTreeSet<String> = out
        .iter()
        .filter_map(|c| c.get("id").and_then(Json::as_str).map(String::from))
        .collect();
    for c in cases(challenger) {
        if c.get("id")
            .and_then(Json::as_str)
            .is_some_and(|id| !known.contains(id))
        {
            out.push(c);
        }
    }
    out.into_iter().map(Arc::new).collect()
}

fn num(v: &Json, ptr: &str, default: f64) -> f64 {
    v.pointer(ptr).and_then(Json::as_f64).unwrap_or(default)
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
    let repo_path = opts.repo.clone();
    let (base_rev, head_rev) = (opts.base.clone(), opts.head.clone());
    // libgit2 work is blocking: keep it off the async runtime.
    let loaded = tokio::task::spawn_blocking(move || -> Result<(Repo, Repo), GateError> {
        let bt = Tree::at_rev(&repo_path, &base_rev)?;
        let ht = Tree::at_rev(&repo_path, &head_rev)?;
        Ok((pack::load(&bt), pack::load(&ht)))
    })
    .await
    .map_err(|e| GateError::Config(format!("loading failed: {e}")))??;
    let (base, mut head) = loaded;

    let mission = base.mission.as_ref().ok_or_else(|| {
        GateError::Config(format!("the base revision `{}` has no valid mission.yaml; the gate reads its configuration from the base", opts.base))
    })?;
    let cfg = EvalConfig::from_mission(&mission.value.eval)?;
    let guard = base
        .guardrails
        .as_ref()
        .ok_or_else(|| {
            GateError::Config(format!(
                "the base revision `{}` has no valid policies/guardrails.yaml",
                opts.base
            ))
        })?
        .value
        .clone();

    // Validate the challenger under the base's policies.
    let head_policies = (head.hard.take(), head.guardrails.take(), head.tiers.take());
    head.hard = base.hard.clone();
    head.guardrails = base.guardrails.clone();
    head.tiers = base.tiers.clone();
    let validation_errors: Vec<Diagnostic> = validate::validate(&head, Some(&base))
        .into_iter()
        .filter(Diagnostic::is_error)
        .collect();
    let report = diff::diff(&base, &head);
    (head.hard, head.guardrails, head.tiers) = head_policies;

    let store = Store::connect(&opts.db_url).await?;
    let client = Client::new(cfg.concurrency, Some(store.clone()));
    let demo = if cfg.uses_demo() && !opts.skip_paid_calls {
        Some(
            crate::demo_model::start(
                "127.0.0.1:0"
                    .parse()
                    .map_err(|e| GateError::Config(format!("{e}")))?,
                crate::demo_model::DemoConfig {
                    latency: std::time::Duration::ZERO,
                },
            )
            .await
            .map_err(GateError::Demo)?,
        )
    } else {
        None
    };
    let demo_url = demo.as_ref().map(|d| d.url());

    let mut reasons: Vec<String> = Vec::new();
    let mut guardrails: Vec<GuardrailRow> = Vec::new();
    if !validation_errors.is_empty() {
        reasons.push(format!(
            "the challenger breaks {} validation rule(s) or hard constraint(s), first: {}:{}: {}: {}",
            validation_errors.len(),
            validation_errors[0].file,
            validation_errors[0].line,
            validation_errors[0].code,
            validation_errors[0].message
        ));
    }

    // Candidates: the changed packs, capped.
    let mut candidates: Vec<&diff::PackChange> = report
        .packs
        .iter()
        .filter(|p| p.status != Status::Removed)
        .collect();
    candidates.sort_by(|a, b| a.pack_id.cmp(&b.pack_id));
    let cap = guard.max_candidates_per_run as usize;
    let over = candidates.len() > cap;
    guardrails.push(GuardrailRow {
        name: "Changed packs in this run".into(),
        value: candidates.len().to_string(),
        cap: cap.to_string(),
        exceeded: over,
    });
    if over {
        reasons.push(format!(
            "{} packs changed; max_candidates_per_run is {cap} (split the pull request)",
            candidates.len()
        ));
        candidates.truncate(cap);
    }

    // Jobs.
    let mut jobs: Vec<Job> = Vec::new();
    let mut per_pack_chains: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut growth: BTreeMap<String, i64> = BTreeMap::new();
    let mut sample_notes = Vec::new();
    let mut max_growth: (i64, String) = (0, String::new());
    for pc in &candidates {
        let (keys, total) = affected_chains(&head, &pc.pack_id, cfg.max_chains);
        if keys.len() < total {
            sample_notes.push(format!(
                "{}: {} of {} affected chains evaluated (deterministic sample by chain hash; raise eval.max_chains to widen)",
                pc.pack_id,
                keys.len(),
                total
            ));
        }
        per_pack_chains.insert(pc.pack_id.clone(), (total, keys.len()));
        for key in keys {
            let Ok(challenger) = resolve::resolve(&head, &key) else {
                continue;
            };
            let champion = resolve::resolve(&base, &key).ok();
            if champion
                .as_ref()
                .is_some_and(|c| c.digest == challenger.digest)
            {
                continue;
            }
            let g = challenger.prompt_tokens as i64
                - champion
                    .as_ref()
                    .map_or(challenger.prompt_tokens as i64, |c| c.prompt_tokens as i64);
            let e = growth.entry(pc.pack_id.clone()).or_insert(i64::MIN);
            *e = (*e).max(g);
            if g > max_growth.0 {
                max_growth = (g, key.to_string());
            }
            let cases = merged_cases(champion.as_ref(), &challenger);
            let tenant = tenant_of(&key);
            let challenger = Arc::new(challenger);
            let champion = champion.map(Arc::new);
            for case in cases {
                if let Some(ch) = &champion {
                    jobs.push(Job {
                        pack_id: pc.pack_id.clone(),
                        chain: key.clone(),
                        variant: "champion",
                        resolved: ch.clone(),
                        case: case.clone(),
                        tenant: tenant.clone(),
                    });
                }
                jobs.push(Job {
                    pack_id: pc.pack_id.clone(),
                    chain: key.clone(),
                    variant: "challenger",
                    resolved: challenger.clone(),
                    case,
                    tenant: tenant.clone(),
                });
            }
        }
    }
    let growth_cap = guard.max_prompt_growth_tokens as i64;
    guardrails.push(GuardrailRow {
        name: "Prompt growth (largest chain)".into(),
        value: if max_growth.1.is_empty() {
            "0 tokens".into()
        } else {
            format!("{:+} tokens ({})", max_growth.0, max_growth.1)
        },
        cap: format!("{growth_cap} tokens"),
        exceeded: max_growth.0 > growth_cap,
    });
    if max_growth.0 > growth_cap {
        reasons.push(format!(
            "prompt grows by {} tokens on {}; max_prompt_growth_tokens is {growth_cap}",
            max_growth.0, max_growth.1
        ));
    }

    // Budget from the ledger.
    let today = crate::time_util::today();
    let tenants: BTreeSet<String> = jobs.iter().map(|j| j.tenant.clone()).collect();
    let mut spent = HashMap::new();
    for t in &tenants {
        spent.insert(t.clone(), store.spend_on(t, &today).await?);
    }
    let spent_before = spent.clone();
    let budget = Arc::new(Mutex::new(Budget {
        caps: guard
            .max_optimization_spend_per_day
            .tenants
            .clone()
            .into_iter()
            .collect(),
        default_cap: guard.max_optimization_spend_per_day.default,
        spent,
        exhausted: BTreeSet::new(),
    }));

    let judge_spec = cfg.judge.clone();
    let harness_desc = match &cfg.harness {
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
    let judge_desc = judge_spec.as_ref().map(|(s, k)| {
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

    // Run harness, assertions and per-output judging, concurrently.
    let cfg = Arc::new(cfg);
    let progress = if opts.progress && !jobs.is_empty() {
        let pb = indicatif::ProgressBar::new(jobs.len() as u64);
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} evaluating {pos}/{len} {wide_bar} {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        pb
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut set = tokio::task::JoinSet::new();
    let skip_paid = opts.skip_paid_calls;
    for job in jobs {
        let (cfg, client, budget, demo_url, judge_spec, store, pb, run_id) = (
            cfg.clone(),
            client.clone(),
            budget.clone(),
            demo_url.clone(),
            judge_spec.clone(),
            store.clone(),
            progress.clone(),
            run_id.clone(),
        );
        set.spawn(async move {
            let done = run_job(
                &cfg,
                &client,
                &budget,
                demo_url.as_deref(),
                judge_spec.as_ref(),
                &store,
                &run_id,
                job,
                skip_paid,
            )
            .await;
            pb.inc(1);
            done
        });
    }
    let mut done: Vec<Done> = Vec::new();
    while let Some(r) = set.join_next().await {
        match r {
            Ok(d) => done.push(d),
            Err(e) => return Err(GateError::Config(format!("an evaluation task failed: {e}"))),
        }
    }
    progress.finish_and_clear();
    // Nothing could run, and for a reason of setup: "could not evaluate" (exit 2).
    if let Some(fatal) = done
        .iter()
        .find(|d| d.run.fatal)
        .and_then(|d| d.run.error.as_ref())
        && done.iter().all(|d| d.run.error.is_some())
    {
        if let Some(d) = demo {
            d.shutdown().await;
        }
        return Err(GateError::Unreachable(fatal.clone()));
    }
    done.sort_by(|a, b| {
        (
            &a.job.pack_id,
            &a.job.chain,
            a.job.case.get("id").and_then(Json::as_str),
            a.job.variant,
        )
            .cmp(&(
                &b.job.pack_id,
                &b.job.chain,
                b.job.case.get("id").and_then(Json::as_str),
                b.job.variant,
            ))
    });

    // Pairwise judging per (chain, case).
    let mut pairwise_by_pack: BTreeMap<String, Pairwise> = BTreeMap::new();
    let mut pairwise_usd = 0.0;
    if let Some((spec, repeats)) = &judge_spec
        && !skip_paid
    {
        let j = Judge::new(&client, spec, *repeats, demo_url.as_deref(), &cfg);
        let mut i = 0;
        while i + 1 < done.len() {
            let (a, b) = (&done[i], &done[i + 1]);
            let same = a.job.chain == b.job.chain
                && a.job.case.get("id") == b.job.case.get("id")
                && a.job.variant == "challenger"
                && b.job.variant == "champion";
            if same && a.run.error.is_none() && b.run.error.is_none() {
                let (crit, _) = judge::criteria(&a.job.resolved.content);
                let input = eval::user_message(&a.job.case);
                if let Ok(p) = j
                    .pairwise(&crit, &input, &b.run.output, &a.run.output)
                    .await
                {
                    let e = pairwise_by_pack.entry(a.job.pack_id.clone()).or_default();
                    e.challenger_wins += p.challenger_wins;
                    e.champion_wins += p.champion_wins;
                    e.ties += p.ties;
                    e.order_disagreements += p.order_disagreements;
                }
                i += 2;
            } else {
                i += 1;
            }
        }
        pairwise_usd = j.spent_usd();
        if pairwise_usd > 0.0 {
            let _ = store
                .spend_record("shared", &today, pairwise_usd, "judge-pairwise", &run_id)
                .await;
        }
    }

    // Aggregate per pack.
    let mut regressions = Vec::new();
    let mut packs_out = Vec::new();
    let mut latency_rows = Vec::new();
    for pc in &candidates {
        let mine: Vec<&Done> = done
            .iter()
            .filter(|d| d.job.pack_id == pc.pack_id)
            .collect();
        let mut by_pair: BTreeMap<(String, String), Pair<'_>> = BTreeMap::new();
        for d in &mine {
            let id = d
                .job
                .case
                .get("id")
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string();
            let e = by_pair.entry((d.job.chain.to_string(), id)).or_default();
            if d.job.variant == "champion" {
                e.0 = Some(d);
            } else {
                e.1 = Some(d);
            }
        }
        let passes = |d: &Done| {
            d.run.error.is_none()
                && d.judge_error.is_none()
                && d.asserts.iter().all(|a| a.pass || a.skipped)
        };
        let (
            mut b,
            mut c,
            mut n_pairs,
            mut champ_pass,
            mut chall_pass,
            mut chall_only_pass,
            mut chall_only,
        ) = (0u64, 0u64, 0usize, 0usize, 0usize, 0usize, 0usize);
        let (mut task_d, mut voice_d, mut task_a, mut task_b, mut voice_a, mut voice_b) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let (mut lat_a, mut lat_b) = (vec![], vec![]);
        let mut errors = Vec::new();
        for ((chain, case_id), (ch, cl)) in &by_pair {
            let Some(cl) = cl else { continue };
            if let Some(e) = cl.run.error.as_ref().or(cl.judge_error.as_ref()) {
                errors.push(format!("{chain} / {case_id} (challenger): {e}"));
            }
            match ch {
                Some(ch) => {
                    if let Some(e) = ch.run.error.as_ref().or(ch.judge_error.as_ref()) {
                        errors.push(format!("{chain} / {case_id} (champion): {e}"));
                    }
                    n_pairs += 1;
                    let (pa, pb) = (passes(ch), passes(cl));
                    champ_pass += pa as usize;
                    chall_pass += pb as usize;
                    if pa && !pb {
                        b += 1;
                    }
                    if !pa && pb {
                        c += 1;
                    }
                    for (x, y) in ch.asserts.iter().zip(cl.asserts.iter()) {
                        if x.pass
                            && !y.pass
                            && matches!(y.tag, Tag::Safety | Tag::Format)
                            && ch.run.error.is_none()
                            && !y.needs_judge
                        {
                            regressions.push(Regression {
                                pack_id: pc.pack_id.clone(),
                                chain: chain.clone(),
                                case_id: case_id.clone(),
                                case_file: cl
                                    .job
                                    .case
                                    .get("file")
                                    .and_then(Json::as_str)
                                    .unwrap_or_default()
                                    .to_string(),
                                case_line: cl
                                    .job
                                    .case
                                    .get("line")
                                    .and_then(Json::as_u64)
                                    .unwrap_or(1),
                                tag: y.tag,
                                assertion: y.kind.clone(),
                                challenger_reason: y.reason.clone(),
                            });
                        }
                    }
                    if let (Some(x), Some(y)) = (ch.task, cl.task) {
                        task_d.push(y - x);
                        task_a.push(x);
                        task_b.push(y);
                    }
                    if let (Some(x), Some(y)) = (ch.voice, cl.voice) {
                        voice_d.push(y - x);
                        voice_a.push(x);
                        voice_b.push(y);
                    }
                    if ch.run.error.is_none() && cl.run.error.is_none() {
                        lat_a.push(ch.run.latency_ms);
                        lat_b.push(cl.run.latency_ms);
                    }
                }
                None => {
                    chall_only += 1;
                    chall_only_pass += passes(cl) as usize;
                    if let Some(t) = cl.task {
                        task_b.push(t);
                    }
                }
            }
        }
        // Thresholds from the champion (base) when it exists.
        let thr_src = mine
            .iter()
            .find(|d| d.job.variant == "champion")
            .or_else(|| mine.first())
            .map(|d| {
                d.job
                    .resolved
                    .content
                    .get("promotion")
                    .cloned()
                    .unwrap_or(Json::Null)
            })
            .unwrap_or(Json::Null);
        let min_pass = num(&thr_src, "/min_pass_rate", 0.0);
        let max_drop = num(&thr_src, "/max_pass_rate_drop", 0.05);
        let min_judge = thr_src.pointer("/min_judge_score").and_then(Json::as_f64);
        let max_judge_drop = num(&thr_src, "/max_judge_score_drop", 0.5);
        let alpha = num(&thr_src, "/alpha", 0.05);
        let champion_rate = (n_pairs > 0).then(|| champ_pass as f64 / n_pairs as f64);
        let challenger_rate = if n_pairs + chall_only > 0 {
            Some((chall_pass + chall_only_pass) as f64 / (n_pairs + chall_only) as f64)
        } else {
            None
        };
        let paired_challenger_rate = (n_pairs > 0).then(|| chall_pass as f64 / n_pairs as f64);
        let delta = match (champion_rate, paired_challenger_rate) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        };
        let p = (n_pairs > 0).then(|| stats::mcnemar_exact(b, c));
        let need = stats::min_discordant_for(alpha);
        let mut blocked_by = Vec::new();
        let mut insufficient = None;
        if n_pairs > 0 && (n_pairs as f64 * max_drop) < need as f64 {
            insufficient = Some(format!(
                "{n_pairs} paired cases cannot show a pass-rate drop of {:.0}% at α={alpha}: that needs at least {} cases ({need} discordant pairs); add eval cases",
                max_drop * 100.0,
                (need as f64 / max_drop.max(1e-9)).ceil()
            ));
        }
        if let Some(r) = challenger_rate
            && r + 1e-12 < min_pass
        {
            blocked_by.push(format!(
                "pass rate {:.0}% is below the floor of {:.0}%",
                r * 100.0,
                min_pass * 100.0
            ));
        }
        if let (Some(d), Some(pv)) = (delta, p)
            && -d > max_drop + 1e-12
        {
            if pv < alpha {
                blocked_by.push(format!(
                    "pass rate drops {:.0} points (McNemar p={pv:.3} < α={alpha}); the limit is {:.0}",
                    -d * 100.0,
                    max_drop * 100.0
                ));
            } else if insufficient.is_none() {
                insufficient = Some(format!(
                    "pass rate drops {:.0} points but it is not significant (McNemar p={pv:.3}); add eval cases for a decision",
                    -d * 100.0
                ));
            }
        }
        let ci = |d: &[f64], seed: &str| {
            stats::bootstrap_ci(
                d,
                0.95,
                2000,
                u64::from_le_bytes(
                    Sha256::digest(seed.as_bytes())[..8]
                        .try_into()
                        .unwrap_or([0; 8]),
                ),
            )
        };
        let judge_task = ScoreDelta {
            champion: mean(&task_a),
            challenger: mean(&task_b),
            delta: mean(&task_d),
            ci95: ci(&task_d, &pc.pack_id).map(|(_, lo, hi)| (lo, hi)),
        };
        let judge_voice = ScoreDelta {
            champion: mean(&voice_a),
            challenger: mean(&voice_b),
            delta: mean(&voice_d),
            ci95: ci(&voice_d, &format!("voice:{}", pc.pack_id)).map(|(_, lo, hi)| (lo, hi)),
        };
        if let (Some(min), Some(s)) = (min_judge, judge_task.challenger)
            && s < min
        {
            blocked_by.push(format!(
                "judge task score {s:.2} is below the floor of {min:.2}"
            ));
        }
        if let (Some(d), Some((_, hi))) = (judge_task.delta, judge_task.ci95)
            && -d > max_judge_drop
            && hi < 0.0
        {
            blocked_by.push(format!("judge task score drops {:.2} (95% CI upper bound {hi:.2} < 0); the limit is {max_judge_drop:.2}", -d));
        }
        let p50 = (median(&mut lat_a.clone()), median(&mut lat_b.clone()));
        let change = match p50 {
            (Some(a), Some(b)) if a > 0.0 => Some((b - a) / a * 100.0),
            _ => None,
        };
        // A latency regression needs evidence: an increase above the noise floor
        // (0.4 ms -> 0.5 ms is +25% and means nothing), and a paired bootstrap
        // interval of the per-case differences entirely above zero, so a busy
        // machine slowing a few requests at random does not block a change.
        let paired: Vec<f64> = lat_a.iter().zip(&lat_b).map(|(a, b)| b - a).collect();
        let clear =
            ci(&paired, &format!("latency:{}", pc.pack_id)).is_some_and(|(_, lo, _)| lo > 0.0);
        if let (Some(ch), (Some(a), Some(b))) = (change, p50)
            && b - a >= LATENCY_NOISE_FLOOR_MS
            && clear
        {
            latency_rows.push((pc.pack_id.clone(), ch));
        }
        for r in &blocked_by {
            reasons.push(format!("{}: {r}", pc.pack_id));
        }
        let (total, evaluated) = per_pack_chains.get(&pc.pack_id).copied().unwrap_or((0, 0));
        packs_out.push(PackEvidence {
            pack_id: pc.pack_id.clone(),
            scope_type: pc.scope_type.clone(),
            scope_id: pc.scope_id.clone(),
            base_version: pc.base_version.clone(),
            head_version: pc.head_version.clone(),
            chains_total: total,
            chains_evaluated: evaluated,
            pairs: n_pairs,
            champion_pass_rate: champion_rate,
            challenger_pass_rate: challenger_rate,
            pass_rate_delta: delta,
            discordant: (b, c),
            mcnemar_p: p,
            insufficient_evidence: insufficient,
            judge_task,
            judge_voice,
            pairwise: pairwise_by_pack.remove(&pc.pack_id).unwrap_or_default(),
            latency_p50_ms: p50,
            latency_change_pct: change,
            prompt_growth_tokens: growth.get(&pc.pack_id).copied().filter(|g| *g != i64::MIN).unwrap_or(0),
            errors,
            thresholds: json!({"min_pass_rate": min_pass, "max_pass_rate_drop": max_drop, "min_judge_score": min_judge, "max_judge_score_drop": max_judge_drop, "alpha": alpha}),
            blocked_by,
        });
    }
    // Safety first: it is what a reviewer must see on the first line.
    regressions.sort_by(|a, b| {
        (a.tag, &a.pack_id, &a.chain, &a.case_id).cmp(&(b.tag, &b.pack_id, &b.chain, &b.case_id))
    });
    let mut first: Vec<String> = Vec::new();
    for r in &regressions {
        first.push(format!(
            "{} regression in {} on {} / {}: {}",
            match r.tag {
                Tag::Safety => "safety",
                _ => "format",
            },
            r.pack_id,
            r.chain,
            r.case_id,
            r.challenger_reason
        ));
    }
    first.append(&mut reasons);
    let mut reasons = first;
    let lat_cap = guard.max_allowed_latency_regression_pct;
    let worst = latency_rows
        .iter()
        .cloned()
        .fold(None::<(String, f64)>, |acc, (p, c)| match acc {
            Some((_, w)) if w >= c => acc,
            _ => Some((p, c)),
        });
    guardrails.push(GuardrailRow {
        name: "Latency change (median, worst pack)".into(),
        value: worst
            .as_ref()
            .map_or("n/a".into(), |(p, c)| format!("{c:+.1}% ({p})")),
        cap: format!("+{lat_cap}%"),
        exceeded: worst.as_ref().is_some_and(|(_, c)| *c > lat_cap),
    });
    if let Some((p, c)) = &worst
        && *c > lat_cap
    {
        reasons.push(format!(
            "{p}: median latency rises {c:.1}%; max_allowed_latency_regression_pct is {lat_cap}"
        ));
    }
    let b = budget.lock().await;
    for t in &tenants {
        let before = spent_before.get(t).copied().unwrap_or(0.0);
        let now = b.spent.get(t).copied().unwrap_or(0.0);
        guardrails.push(GuardrailRow {
            name: format!("Spend today, tenant {t}"),
            value: format!("${now:.4} (this run ${:.4})", now - before),
            cap: format!("${:.2}", b.cap(t)),
            exceeded: b.exhausted.contains(t),
        });
    }
    let partial = !b.exhausted.is_empty();
    if partial {
        reasons.push(format!(
            "daily spend cap reached for {}; the gate stopped with partial results rather than overspend",
            b.exhausted.iter().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    drop(b);
    let needs_policy_owner = !report.policies_changed.is_empty();

    // Records.
    let api_keys = api_keys(&cfg);
    let scrub = |s: &str| -> String {
        let mut s = s.to_string();
        for k in &api_keys {
            s = s.replace(k.as_str(), "***");
        }
        s
    };
    let created_at = crate::time_util::now_rfc3339();
    let regressed: BTreeSet<(String, String, Tag)> = regressions
        .iter()
        .map(|r| (r.chain.clone(), r.case_id.clone(), r.tag))
        .collect();
    let results: Vec<Json> = done
        .iter()
        .map(|d| {
            let case_id = d.job.case.get("id").and_then(Json::as_str).unwrap_or_default();
            let chain = d.job.chain.to_string();
            let deterministic = |a: &&AssertionResult| !matches!(a.kind.as_str(), "llm-rubric" | "voice-rubric");
            let n = d.asserts.iter().filter(deterministic).count();
            let det = if n == 0 { 1.0 } else { d.asserts.iter().filter(deterministic).filter(|a| a.pass).count() as f64 / n as f64 };
            let failures: Vec<String> = d.asserts.iter().filter(|a| !a.pass && !a.skipped).map(|a| format!("{} [{}]: {}", a.kind, json!(a.tag).as_str().unwrap_or(""), a.reason)).collect();
            let is_ch = d.job.variant == "challenger";
            let mut comments = if let Some(e) = &d.run.error {
                format!("error: {e}")
            } else if failures.is_empty() {
                "all assertions pass".to_string()
            } else {
                failures.join("; ")
            };
            if let Some(e) = &d.judge_error {
                comments.push_str(&format!("; judge error: {e}"));
            }
            json!({
                "eval_id": short_id(&[&run_id, &chain, case_id, d.job.variant]),
                "run_id": short_id(&[&run_id, &chain, case_id, d.job.variant, "run"]),
                "deterministic_score": det,
                "llm_judge_score": d.task,
                "safety_regression_bool": is_ch && regressed.contains(&(chain.clone(), case_id.to_string(), Tag::Safety)),
                "format_regression_bool": is_ch && regressed.contains(&(chain.clone(), case_id.to_string(), Tag::Format)),
                "comments": scrub(&comments),
                "created_at": created_at,
                "pack_id": d.job.pack_id,
                "pack_version": d.job.resolved.pack_version,
                "variant": d.job.variant,
                "case_id": case_id,
                "scope_chain": chain,
                "assertions": d.asserts.iter().map(|a| json!({"type": a.kind, "tag": a.tag, "pass": a.pass, "skipped": a.skipped, "reason": scrub(&a.reason)})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let total_cost: f64 = done
        .iter()
        .map(|d| d.run.cost_usd + d.judge_usd)
        .sum::<f64>()
        + pairwise_usd;
    let requests = client.stats.requests.load(Ordering::Relaxed);
    let hits = client.stats.cache_hits.load(Ordering::Relaxed);
    if let Some(d) = demo {
        d.shutdown().await;
    }
    let approvals = match &opts.github {
        Some(ctx) => {
            let changed: Vec<diff::PackChange> = candidates.iter().map(|p| (*p).clone()).collect();
            match crate::github::approvals::evaluate(
                &ctx.gh,
                ctx.pr,
                &ctx.head_sha,
                &base,
                &head,
                &changed,
                &report.policies_changed,
            )
            .await
            {
                Ok(a) => Some(a),
                Err(e) => {
                    reasons.push(format!("could not read the pull request's reviews: {e}"));
                    None
                }
            }
        }
        None => None,
    };
    if let Some(a) = &approvals {
        for p in &a.not_promotable {
            reasons.push(format!(
                "{p} is at autonomy A0 (observe) and cannot be promoted"
            ));
        }
    }
    let blocked = !reasons.is_empty();
    let waiting = !blocked && approvals.as_ref().is_some_and(|a| !a.satisfied);
    let base_commit = base.commit.map(|c| c.to_string()).unwrap_or_default();
    let head_commit = head.commit.map(|c| c.to_string()).unwrap_or_default();
    let evidence = Evidence {
        verdict: if blocked {
            "BLOCKED".into()
        } else if waiting {
            "WAITING FOR APPROVAL".into()
        } else {
            "PASS".into()
        },
        blocked: blocked || waiting,
        reasons,
        run_id,
        base: opts.base.clone(),
        head: opts.head.clone(),
        base_commit,
        head_commit,
        harness: harness_desc,
        judge: judge_desc,
        paid_calls_skipped: opts.skip_paid_calls,
        regressions,
        packs: packs_out,
        guardrails,
        validation_errors,
        approvals,
        policy_changes: report.policies_changed.clone(),
        needs_policy_owner,
        sample_note: (!sample_notes.is_empty()).then(|| sample_notes.join("; ")),
        partial,
        model_requests: requests,
        cache_hits: hits,
        cache_hit_rate: if requests + hits > 0 {
            hits as f64 / (requests + hits) as f64
        } else {
            0.0
        },
        retries: client.stats.retries.load(Ordering::Relaxed),
        throttled: client.stats.throttled.load(Ordering::Relaxed),
        cost_usd: total_cost,
        started_at,
        finished_at: crate::time_util::now_rfc3339(),
        diff: Some(report),
        results,
    };
    if let Some(out) = &opts.out {
        write_evidence(out, &evidence)?;
    }
    Ok(evidence)
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

#[allow(clippy::too_many_arguments)]
async fn run_job(
    cfg: &EvalConfig,
    client: &Client,
    budget: &Mutex<Budget>,
    demo_url: Option<&str>,
    judge_spec: Option<&(eval::ModelSpec, u32)>,
    store: &Store,
    run_id: &str,
    job: Job,
    skip_paid: bool,
) -> Done {
    let skipped = |why: &str, job: Job| Done {
        run: RunOutput {
            error: Some(why.to_string()),
            ..RunOutput::default()
        },
        asserts: vec![],
        task: None,
        voice: None,
        judge_error: None,
        judge_usd: 0.0,
        job,
    };
    if skip_paid {
        return skipped(
            "not run: paid model calls are skipped for this pull request (fork without maintainer opt-in)",
            job,
        );
    }
    // Reserve the worst case for this call before making it.
    let est_prompt = crate::tokens::estimate(&eval::system_prompt(&job.resolved))
        + crate::tokens::estimate(&eval::user_message(&job.case));
    let (model, max_out) = match &cfg.harness {
        eval::Harness::OpenAi(s) => (s.model.clone(), s.max_tokens as u64),
        eval::Harness::Command { .. } => (String::new(), 0),
    };
    let est = cfg.cost(&model, est_prompt, max_out);
    if !budget.lock().await.reserve(&job.tenant, est) {
        return skipped(
            "not run: the tenant's daily spend cap would be exceeded",
            job,
        );
    }
    let run = eval::run_case(cfg, client, demo_url, &job.resolved, &job.case).await;
    budget.lock().await.settle(&job.tenant, est, run.cost_usd);
    if run.cost_usd > 0.0 {
        let _ = store
            .spend_record(
                &job.tenant,
                &crate::time_util::today(),
                run.cost_usd,
                "eval",
                run_id,
            )
            .await;
    }
    let contracts = job
        .resolved
        .content
        .pointer("/eval/contracts")
        .cloned()
        .unwrap_or(Json::Null);
    let allowed = eval::allowed_tools(&job.resolved);
    let obs = Observed {
        output: &run.output,
        tool_calls: &run.tool_calls,
        completion_tokens: run.completion_tokens,
        latency_ms: run.latency_ms,
        cost_usd: run.cost_usd,
        allowed_tools: &allowed,
        contracts: &contracts,
    };
    let mut asserts: Vec<AssertionResult> = job
        .case
        .get("assert")
        .and_then(Json::as_array)
        .map(|a| a.iter().map(|x| assertions::check(x, &obs)).collect())
        .unwrap_or_default();
    let mut task = None;
    let mut voice = None;
    let mut judge_error = None;
    let mut judge_usd = 0.0;
    if run.error.is_none()
        && let Some((spec, repeats)) = judge_spec
    {
        let j = Judge::new(client, spec, *repeats, demo_url, cfg);
        let input = eval::user_message(&job.case);
        for (i, a) in asserts.iter_mut().enumerate() {
            if !a.needs_judge {
                continue;
            }
            let rubric = job
                .case
                .pointer(&format!("/assert/{i}/value"))
                .and_then(Json::as_str)
                .unwrap_or_default()
                .to_string();
            let threshold = job
                .case
                .pointer(&format!("/assert/{i}/threshold"))
                .and_then(Json::as_f64);
            match j.assertion(&rubric, &input, &run.output).await {
                Ok((pass, score, reason)) => {
                    a.pass = threshold.map_or(pass, |t| score >= t);
                    a.score = score;
                    a.reason = format!("judge: {reason}");
                    a.needs_judge = false;
                }
                Err(e) => {
                    a.reason = format!("judge error: {e}");
                    a.needs_judge = false;
                    judge_error = Some(e);
                }
            }
        }
        let (crit, version) = judge::criteria(&job.resolved.content);
        match j.rubric(&crit, version, &input, &run.output).await {
            Ok(s) => {
                task = s.task;
                voice = s.voice;
            }
            Err(e) => judge_error = Some(e),
        }
        judge_usd = j.spent_usd();
        if judge_usd > 0.0 {
            budget.lock().await.settle(&job.tenant, 0.0, judge_usd);
            let _ = store
                .spend_record(
                    &job.tenant,
                    &crate::time_util::today(),
                    judge_usd,
                    "judge",
                    run_id,
                )
                .await;
        }
    } else {
        for a in asserts.iter_mut().filter(|a| a.needs_judge) {
            a.reason = if run.error.is_some() {
                "not judged: the run failed".into()
            } else {
                "skipped: no judge is configured in mission.yaml".into()
            };
            a.skipped = run.error.is_none();
            a.needs_judge = false;
        }
    }
    Done {
        job,
        run,
        asserts,
        task,
        voice,
        judge_error,
        judge_usd,
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |x| format!("{:.0}%", x * 100.0))
}

fn score(d: &ScoreDelta) -> String {
    match (d.challenger, d.delta, d.ci95) {
        (Some(s), Some(dl), Some((lo, hi))) => format!("{s:.2} ({dl:+.2}, CI {lo:+.2}..{hi:+.2})"),
        (Some(s), _, _) => format!("{s:.2}"),
        _ => "n/a".into(),
    }
}

/// `evidence.md`: the verdict on the first line, then what a reviewer needs.
pub fn render_markdown(e: &Evidence) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    if e.verdict == "WAITING FOR APPROVAL" {
        let who = e
            .approvals
            .as_ref()
            .map(|a| a.who_can_approve().join(", "))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "WAITING FOR APPROVAL: evals pass; approval still needed from {who}"
        );
    } else if let Some(first) = e.reasons.first() {
        let more = if e.reasons.len() > 1 {
            format!(" (+{} more)", e.reasons.len() - 1)
        } else {
            String::new()
        };
        let _ = writeln!(s, "BLOCKED: {first}{more}");
    } else {
        let _ = writeln!(
            s,
            "PASS: {} pack(s) evaluated, no blocking regression, all guardrails hold",
            e.packs.len()
        );
    }
    let _ = writeln!(
        s,
        "\n### missionctl gate: `{}` ({:.8}) → `{}` ({:.8})",
        e.base, e.base_commit, e.head, e.head_commit
    );
    if e.paid_calls_skipped {
        let _ = writeln!(
            s,
            "\n> Paid model calls were **skipped** (pull request from a fork, no maintainer opt-in). Only validation ran; a maintainer can opt in to run the evals."
        );
    }
    if !e.reasons.is_empty() {
        let _ = writeln!(s, "\n#### Blocking\n");
        for r in &e.reasons {
            let _ = writeln!(s, "- {r}");
        }
    }
    if let Some(a) = &e.approvals {
        let _ = writeln!(s, "\n#### Approvals\n");
        let _ = writeln!(
            s,
            "| Change | Autonomy | Tier | Needs | Approved by | Who can approve | |\n|---|---|---|---|---|---|---|"
        );
        for r in &a.requirements {
            let _ = writeln!(
                s,
                "| `{}` | {} | {} | {} | {} | {} | {} |",
                r.subject,
                r.autonomy
                    .map_or("-".to_string(), |x| format!("{x} ({})", x.meaning())),
                r.tier,
                if let Some(role) = &r.role {
                    format!("{} incl. {role}", r.needed)
                } else {
                    r.needed.to_string()
                },
                if r.approved_by.is_empty() {
                    "nobody yet".to_string()
                } else {
                    r.approved_by.join(", ")
                },
                r.owners
                    .iter()
                    .chain(r.role.iter())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                if r.satisfied { "ok" } else { "**waiting**" }
            );
        }
        if !a.stale.is_empty() {
            let _ = writeln!(
                s,
                "\nApprovals from {} predate the latest push and do not count under this tier.",
                a.stale.join(", ")
            );
        }
    }
    if !e.validation_errors.is_empty() {
        let _ = writeln!(s, "\n#### Validation errors (under the base's policies)\n");
        for d in e.validation_errors.iter().take(20) {
            let _ = writeln!(
                s,
                "- `{}:{}:{}` **{}**: {}",
                d.file, d.line, d.col, d.code, d.message
            );
        }
    }
    if !e.packs.is_empty() {
        let _ = writeln!(s, "\n#### Packs\n");
        let _ = writeln!(
            s,
            "| Pack | Version | Chains | Pairs | Champion pass | Challenger pass | Δ (McNemar p) | Judge task | Voice | Pairwise W/L/T | Decision |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
        for p in &e.packs {
            let _ = writeln!(
                s,
                "| `{}` ({} {}) | {} → {} | {}/{} | {} | {} | {} | {} | {} | {} | {}/{}/{} | {} |",
                p.pack_id,
                p.scope_type,
                p.scope_id,
                p.base_version.as_deref().unwrap_or("new"),
                p.head_version.as_deref().unwrap_or("-"),
                p.chains_evaluated,
                p.chains_total,
                p.pairs,
                pct(p.champion_pass_rate),
                pct(p.challenger_pass_rate),
                match (p.pass_rate_delta, p.mcnemar_p) {
                    (Some(d), Some(pv)) => format!("{:+.0} pts (p={pv:.3})", d * 100.0),
                    _ => "n/a".into(),
                },
                score(&p.judge_task),
                score(&p.judge_voice),
                p.pairwise.challenger_wins,
                p.pairwise.champion_wins,
                p.pairwise.ties,
                if p.blocked_by.is_empty() {
                    "ok".to_string()
                } else {
                    "**blocked**".to_string()
                }
            );
        }
        for p in &e.packs {
            if let Some(i) = &p.insufficient_evidence {
                let _ = writeln!(s, "\n> `{}`: insufficient evidence: {i}", p.pack_id);
            }
            for err in p.errors.iter().take(5) {
                let _ = writeln!(s, "\n> `{}`: error: {err}", p.pack_id);
            }
        }
    }
    let _ = writeln!(s, "\n#### Guardrails (from the base revision)\n");
    let _ = writeln!(s, "| Guardrail | Value | Cap | |\n|---|---|---|---|");
    for g in &e.guardrails {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} |",
            g.name,
            g.value,
            g.cap,
            if g.exceeded { "**exceeded**" } else { "ok" }
        );
    }
    if e.needs_policy_owner {
        let _ = writeln!(
            s,
            "\n#### Policy changes\n\nThis pull request changes {}; it needs a policy owner's approval. The gate evaluated it under the base's policies.",
            e.policy_changes
                .iter()
                .map(|p| format!("`{p}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if let Some(n) = &e.sample_note {
        let _ = writeln!(s, "\n> Sample: {n}");
    }
    if let Some(d) = &e.diff {
        let layers: Vec<_> = d.packs.iter().filter(|p| !p.prompts.is_empty()).collect();
        if !layers.is_empty() {
            let _ = writeln!(s, "\n#### Prompt diff by scope layer\n");
            for p in layers {
                for pd in &p.prompts {
                    let _ = writeln!(
                        s,
                        "<details><summary>{} {} · <code>{}</code> ({} → {} tokens)</summary>\n\n```diff\n{}```\n</details>\n",
                        p.scope_type,
                        p.scope_id,
                        pd.file,
                        pd.tokens_before,
                        pd.tokens_after,
                        pd.unified.replace("```", "ʼʼʼ")
                    );
                }
            }
        }
    }
    let _ = writeln!(
        s,
        "\n#### Run\n\nHarness: {}. Judge: {}. Model requests: {} sent, {} served from cache ({:.0}% hit rate); {} retried, {} throttled. Total cost: ${:.4}.{}",
        e.harness,
        e.judge.as_deref().unwrap_or("none"),
        e.model_requests,
        e.cache_hits,
        e.cache_hit_rate * 100.0,
        e.retries,
        e.throttled,
        e.cost_usd,
        if e.partial {
            " Results are partial (spend cap)."
        } else {
            ""
        }
    );
    s
}

pub fn write_evidence(dir: &std::path::Path, e: &Evidence) -> Result<(), GateError> {
    let w = |name: &str, body: String| -> Result<(), GateError> {
        let p = dir.join(name);
        std::fs::write(&p, body).map_err(|source| GateError::Write {
            path: p.display().to_string(),
            source,
        })
    };
    std::fs::create_dir_all(dir).map_err(|source| GateError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let mut jsonl = String::new();
    for r in &e.results {
        jsonl.push_str(&r.to_string());
        jsonl.push('\n');
    }
    w("eval_result.jsonl", jsonl)?;
    let mut full = serde_json::to_value(e).unwrap_or(Json::Null);
    if let (Json::Object(o), Some(d)) = (&mut full, &e.diff) {
        o.insert("diff".into(), serde_json::to_value(d).unwrap_or(Json::Null));
    }
    w(
        "evidence.json",
        serde_json::to_string_pretty(&full).unwrap_or_default(),
    )?;
    w("evidence.md", render_markdown(e))?;
    Ok(())
}
