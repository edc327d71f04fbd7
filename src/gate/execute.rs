//! Run planned jobs: the harness, the deterministic assertions and the
//! per-output judge, concurrently, under the spend budget; then pairwise
//! judging per (chain, case). This is the library entry point for "evaluate
//! these variants on these cases with this harness and judge under this
//! budget": no files, no CLI.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::eval::assertions::{self, AssertionResult, Observed};
use crate::eval::judge::{Judge, Pairwise};
use crate::eval::llm::Client;
use crate::eval::{self, EvalConfig, ModelSpec, RunOutput};
use crate::model::Variant;
use crate::store::Store;

use super::GateError;
use super::budget::{self, TenantPurse};
use super::plan::Job;

/// Everything a job needs to run, shared by all jobs of a run.
pub struct Engine {
    pub cfg: Arc<EvalConfig>,
    pub client: Client,
    pub budget: budget::Shared,
    /// The built-in demo model's address, when the run uses it.
    pub demo_url: Option<String>,
    pub store: Store,
    pub run_id: String,
    /// Paid calls are skipped and the harness is paid: no case runs.
    pub skip_harness: bool,
    /// Paid calls are skipped and the judge is paid: nothing is judged.
    pub skip_judge: bool,
    /// At most `eval.concurrency` cases in flight (harness processes, or
    /// model requests with their retries; the model client also adapts its
    /// own rate under throttling).
    pub harness_slots: Arc<tokio::sync::Semaphore>,
    /// Stops the run when the endpoint is failing.
    pub breaker: Breaker,
    /// The OpenClaw Gateway and agents, for the `openclaw` harness.
    pub openclaw: Option<Arc<eval::openclaw::Target>>,
}

/// A circuit breaker over the harness requests: once at least
/// [`Breaker::MIN_FAILED`] cases have failed and failures outnumber
/// successes, the endpoint is taken to be failing (an unusable key, a model
/// that does not exist, a server answering errors or something else than
/// JSON): no further case is started, and the gate reports that it could
/// not evaluate, with the endpoint's error, instead of a 0% pass rate.
#[derive(Debug, Default)]
pub struct Breaker {
    failed: std::sync::atomic::AtomicUsize,
    ok: std::sync::atomic::AtomicUsize,
    open: std::sync::OnceLock<String>,
}

impl Breaker {
    pub const MIN_FAILED: usize = 5;

    /// Record one case's request outcome (`Some(error)` when it failed).
    pub fn record(&self, error: Option<&str>) {
        use std::sync::atomic::Ordering::SeqCst;
        match error {
            Some(e) => {
                let failed = self.failed.fetch_add(1, SeqCst) + 1;
                if failed >= Self::MIN_FAILED && failed > self.ok.load(SeqCst) {
                    let _ = self.open.set(e.to_string());
                }
            }
            None => {
                self.ok.fetch_add(1, SeqCst);
            }
        }
    }

    /// The error that opened the breaker, if it is open.
    pub fn open(&self) -> Option<&str> {
        self.open.get().map(String::as_str)
    }

    /// (failed, succeeded) so far.
    pub fn counts(&self) -> (usize, usize) {
        use std::sync::atomic::Ordering::SeqCst;
        (self.failed.load(SeqCst), self.ok.load(SeqCst))
    }
}

/// One job's outcome.
#[derive(Debug, Clone)]
pub struct Done {
    pub job: Job,
    pub run: RunOutput,
    pub asserts: Vec<AssertionResult>,
    pub task: Option<f64>,
    pub voice: Option<f64>,
    /// The rubric's score per criterion (1-5) and the judge's reason.
    pub criteria: BTreeMap<String, f64>,
    pub judge_reason: Option<String>,
    pub judge_error: Option<String>,
    pub judge_usd: f64,
    /// Not run because the budget (a tenant's daily cap, the run's limit)
    /// could not pay for it: left out of every pass rate, never a failure.
    pub unpaid: bool,
}

impl Done {
    fn not_run(job: Job, why: &str) -> Done {
        Done {
            unpaid: false,
            run: RunOutput {
                error: Some(why.to_string()),
                ..RunOutput::default()
            },
            asserts: vec![],
            task: None,
            voice: None,
            criteria: BTreeMap::new(),
            judge_reason: None,
            judge_error: None,
            judge_usd: 0.0,
            job,
        }
    }
}

impl Engine {
    fn judge_spec(&self) -> Option<&(ModelSpec, u32)> {
        self.cfg.judge.as_ref()
    }

    /// A judge paid from `tenant`'s share of the budget.
    fn judge(&self, tenant: &str) -> Option<Judge<'_>> {
        self.judge_spec().map(|(spec, repeats)| {
            Judge::new(
                &self.client,
                spec,
                *repeats,
                self.demo_url.as_deref(),
                &self.cfg,
            )
            .with_purse(Arc::new(TenantPurse {
                budget: self.budget.clone(),
                tenant: tenant.to_string(),
            }))
        })
    }

    /// Book `usd` to `tenant`. A failed ledger write stops all further spending.
    async fn book(&self, tenant: &str, usd: f64, kind: &str) {
        if usd <= 0.0 {
            return;
        }
        let day = crate::time_util::today();
        if let Err(e) = self
            .store
            .spend_record(tenant, &day, usd, kind, &self.run_id)
            .await
        {
            let mut b = budget::lock(&self.budget);
            b.ledger_failed
                .get_or_insert_with(|| format!("the spend ledger could not be written: {e}"));
        }
    }

    /// Run every job concurrently (the model client bounds the concurrency).
    pub(crate) async fn run_all(
        self: &Arc<Self>,
        jobs: Vec<Job>,
        progress: &indicatif::ProgressBar,
    ) -> Result<Vec<Done>, GateError> {
        let mut set = tokio::task::JoinSet::new();
        for job in jobs {
            let (engine, pb) = (self.clone(), progress.clone());
            set.spawn(async move {
                let d = engine.run_job(job).await;
                pb.inc(1);
                d
            });
        }
        let mut done = Vec::new();
        while let Some(r) = set.join_next().await {
            done.push(r.map_err(|e| GateError::Config(format!("an evaluation task failed: {e}")))?);
        }
        done.sort_by(|a, b| {
            (&a.job.pack_id, &a.job.chain, &a.job.case.id, a.job.variant).cmp(&(
                &b.job.pack_id,
                &b.job.chain,
                &b.job.case.id,
                b.job.variant,
            ))
        });
        Ok(done)
    }

    /// Reserve the worst case, run the harness, check, judge, settle.
    pub(crate) async fn run_job(&self, job: Job) -> Done {
        if self.skip_harness {
            return Done::not_run(
                job,
                "not run: paid model calls are skipped for this pull request (fork without maintainer opt-in)",
            );
        }

        let (model, max_out) = match self.cfg.harness.model_spec() {
            Some(s) => (s.model.clone(), u64::from(s.max_tokens)),
            None => (String::new(), 0),
        };
        // OpenClaw adds its own system prompt and tool schemas to every turn.
        let overhead = match &self.cfg.harness {
            eval::Harness::OpenClaw(_) => eval::openclaw::PROMPT_OVERHEAD_TOKENS,
            _ => 0,
        };
        let est_prompt = overhead
            + job.system_tokens
            + crate::tokens::count(&eval::sent_text(&job.case), self.cfg.token_family());
        let est = self.cfg.cost(&model, est_prompt, max_out);
        // At most `concurrency` cases in flight, so the breaker, checked
        // once a case holds its slot, stops what has not started yet. The
        // worst case is reserved once the slot is held, so cases waiting
        // for one hold no reservation.
        let slot = self.harness_slots.acquire().await.ok();
        if self.breaker.open().is_some() {
            return Done::not_run(job, "not run: the model endpoint is failing (circuit open)");
        }
        {
            let mut b = budget::lock(&self.budget);
            if !b.reserve(&job.tenant, est) {
                let why = match (&b.ledger_failed, b.run_limit_hit) {
                    (Some(e), _) => format!("not run: {e}"),
                    (None, true) => "not run: this run's spend limit would be exceeded".into(),
                    (None, false) => {
                        "not run: the tenant's daily spend cap would be exceeded".into()
                    }
                };
                drop(slot);
                return Done {
                    unpaid: true,
                    ..Done::not_run(job, &why)
                };
            }
        }
        let run = eval::run_case(
            &self.cfg,
            &self.client,
            self.demo_url.as_deref(),
            self.openclaw.as_deref(),
            &job.resolved,
            &job.system,
            &job.case,
        )
        .await;
        self.breaker.record(run.error.as_deref());
        budget::lock(&self.budget).settle(&job.tenant, est, run.cost_usd);
        self.book(&job.tenant, run.cost_usd, "eval").await;
        let allowed = job.resolved.allowed_tools();
        // `options.transform` applies to the output every assertion sees.
        let output = match &job.case.transform {
            Some(t) => t.apply(&run.output),
            None => run.output.clone(),
        };
        let obs = Observed {
            output: &output,
            tool_calls: &run.tool_calls,
            completion_tokens: run.completion_tokens,
            latency_ms: run.latency_ms,
            cost_usd: run.cost_reported.then_some(run.cost_usd),
            allowed_tools: &allowed,
            contracts: &job.contracts,
        };
        let asserts: Vec<AssertionResult> = job
            .case
            .leaves()
            .into_iter()
            .map(|(a, _)| assertions::check(a, &obs))
            .collect();
        let mut done = Done {
            job,
            run,
            asserts,
            task: None,
            voice: None,
            criteria: BTreeMap::new(),
            judge_reason: None,
            judge_error: None,
            judge_usd: 0.0,
            unpaid: false,
        };
        // The slot is held through judging, so at most `concurrency` jobs
        // hold a reservation at once (the model client caps concurrent
        // requests at the same number anyway).
        self.judge_output(&mut done).await;
        drop(slot);
        done
    }

    /// Judge-backed assertions and the rubric score of one output.
    async fn judge_output(&self, d: &mut Done) {
        let judge = match self.judge(&d.job.tenant) {
            Some(j) if d.run.error.is_none() => j,
            _ => {
                let failed = d.run.error.is_some();
                for a in d.asserts.iter_mut().filter(|a| a.needs_judge) {
                    a.reason = if failed {
                        "not judged: the run failed".into()
                    } else {
                        "skipped: no judge is configured in mission.yaml".into()
                    };
                    a.skipped = !failed;
                    a.needs_judge = false;
                }
                return;
            }
        };
        let input = eval::user_message(&d.job.case);
        let leaves = d.job.case.leaves();
        for (a, (spec, _)) in d.asserts.iter_mut().zip(leaves) {
            if !a.needs_judge {
                continue;
            }
            let (rubrics, threshold) = crate::eval::judge::rubric_for(spec);
            match judge_all(&judge, &rubrics, &input, &d.run.output).await {
                Ok((pass, score, reason)) => {
                    // A set threshold decides; `g-eval`'s is always set.
                    let pass = threshold.or(spec.threshold).map_or(pass, |t| score >= t);
                    a.pass = (pass != spec.kind.starts_with("not-")) || spec.weight == 0.0;
                    a.score = score;
                    a.reason = format!("judge: {reason}");
                }
                Err(e) => {
                    a.reason = format!("judge error: {e}");
                    d.judge_error = Some(e);
                }
            }
            a.needs_judge = false;
        }
        let (crit, version) = d.job.resolved.rubric();
        match judge.rubric(&crit, version, &input, &d.run.output).await {
            Ok(s) => {
                d.task = s.task;
                d.voice = s.voice;
                d.criteria = s.per_criterion;
                d.judge_reason = (!s.reason.is_empty()).then_some(s.reason);
            }
            Err(e) => d.judge_error = Some(e),
        }
        d.judge_usd = judge.spent_usd();
        // Each judge call was reserved and settled as it was made.
        self.book(&d.job.tenant, d.judge_usd, "judge").await;
    }

    /// Pairwise judging of champion against challenger per (chain, case),
    /// summed per pack. Returns the totals and what the judge spent.
    pub async fn pairwise(&self, done: &[Done]) -> (BTreeMap<String, Pairwise>, f64) {
        let mut by_pack: BTreeMap<String, Pairwise> = BTreeMap::new();
        let Some(j) = self.judge("shared").filter(|_| !self.skip_judge) else {
            return (by_pack, 0.0);
        };
        // `done` is sorted so a pair is (champion, challenger) side by side.
        for w in done.windows(2) {
            let (ch, cl) = (&w[0], &w[1]);
            let pair = ch.job.chain == cl.job.chain
                && ch.job.case.id == cl.job.case.id
                && ch.job.pack_id == cl.job.pack_id
                && ch.job.variant == Variant::Champion
                && cl.job.variant == Variant::Challenger;
            if !pair || ch.run.error.is_some() || cl.run.error.is_some() {
                continue;
            }
            if ch.run.output == cl.run.output {
                // The same answer cannot win against itself: a tie per
                // repeat, without asking (an unchanged case costs nothing).
                let e = by_pack.entry(cl.job.pack_id.clone()).or_default();
                e.ties += j.repeats;
                continue;
            }
            let (crit, _) = cl.job.resolved.rubric();
            let input = eval::user_message(&cl.job.case);
            if let Ok(p) = j
                .pairwise(&crit, &input, &ch.run.output, &cl.run.output)
                .await
            {
                let e = by_pack.entry(cl.job.pack_id.clone()).or_default();
                e.challenger_wins += p.challenger_wins;
                e.champion_wins += p.champion_wins;
                e.ties += p.ties;
                e.order_disagreements += p.order_disagreements;
            }
        }
        let usd = j.spent_usd();
        self.book("shared", usd, "judge-pairwise").await;
        (by_pack, usd)
    }
}

/// Every rubric of one assertion judged in turn: the mean score, every
/// rubric passing, and the reasons joined by blank lines (promptfoo's
/// `handleGEval` over a list of criteria).
async fn judge_all(
    judge: &Judge<'_>,
    rubrics: &[String],
    input: &str,
    output: &str,
) -> Result<(bool, f64, String), String> {
    let (mut pass, mut sum, mut reasons) = (true, 0.0, Vec::new());
    for r in rubrics {
        let (p, s, why) = judge.assertion(r, input, output).await?;
        pass &= p;
        sum += s;
        reasons.push(why);
    }
    Ok((
        pass,
        sum / rubrics.len().max(1) as f64,
        reasons.join("\n\n"),
    ))
}
