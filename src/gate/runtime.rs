//! What runs a gate's jobs: the engine and what it starts (the demo model,
//! an OpenClaw Gateway), progress on a terminal or in CI logs, and the
//! champion-only evaluation the improvement worker reads its signal from.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::eval::EvalConfig;
use crate::eval::llm::Client;
use crate::store::Store;

use super::budget::{self, Budget};
use super::evidence::EvalResult;
use super::execute::{self, Done, Engine};
use super::{GateError, plan};

/// Start the built-in demo model when the configuration names it.
pub(super) async fn start_demo(
    cfg: &EvalConfig,
) -> Result<Option<crate::eval::demo_model::DemoServer>, GateError> {
    // The demo model costs nothing: it runs for forks too.
    if !cfg.uses_demo() {
        return Ok(None);
    }
    crate::eval::demo_model::start_loopback()
        .await
        .map(Some)
        .map_err(GateError::Demo)
}

/// How a run shows its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Off,
    /// A live bar (a terminal).
    Bar,
    /// One line every 15 s (CI logs, where a bar is noise).
    Lines,
}

/// How often [`Progress::Lines`] prints: every 15 s, or every
/// `MISSIONCTL_PROGRESS_SECS` seconds.
fn progress_every() -> std::time::Duration {
    let secs = std::env::var("MISSIONCTL_PROGRESS_SECS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| *s > 0.0)
        .unwrap_or(15.0);
    std::time::Duration::from_secs_f64(secs)
}

pub(super) fn progress_bar(show: Progress, n: usize) -> indicatif::ProgressBar {
    if show == Progress::Off || n == 0 {
        return indicatif::ProgressBar::hidden();
    }
    if show == Progress::Lines {
        let pb = indicatif::ProgressBar::hidden();
        pb.set_length(n as u64);
        let watch = pb.clone();
        let started = std::time::Instant::now();
        let every = progress_every();
        std::thread::spawn(move || {
            loop {
                std::thread::sleep(every);
                if watch.is_finished() {
                    break;
                }
                eprintln!(
                    "evaluating: {}/{} jobs done after {:.0} s",
                    watch.position(),
                    n,
                    started.elapsed().as_secs_f64()
                );
            }
        });
        return pb;
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

/// What a [`Runtime`] needs to start.
pub(crate) struct RuntimeSpec<'a> {
    pub cfg: Arc<EvalConfig>,
    pub store: Store,
    pub budget: Budget,
    pub run_id: String,
    pub skip_harness: bool,
    pub skip_judge: bool,
    /// The jobs it will run (the OpenClaw harness renders their packs as agents).
    pub jobs: &'a [plan::Job],
    pub openclaw: &'a crate::openclaw::Settings,
}

/// The engine and what it started for a run (the demo model, an OpenClaw
/// Gateway and its agents), stopped together by [`Runtime::shutdown`].
pub(crate) struct Runtime {
    pub engine: Arc<Engine>,
    demo: Option<crate::eval::demo_model::DemoServer>,
    openclaw: Option<Arc<crate::eval::openclaw::Target>>,
    /// The Gateway's state directory, when one was started.
    gateway_dir: Option<tempfile::TempDir>,
}

impl Runtime {
    pub async fn start(spec: RuntimeSpec<'_>) -> Result<Runtime, GateError> {
        let cfg = spec.cfg;
        let demo = start_demo(&cfg).await?;
        let demo_url = demo.as_ref().map(crate::eval::demo_model::DemoServer::url);
        let (openclaw, gateway_dir) = match &cfg.harness {
            crate::eval::Harness::OpenClaw(oc) if !spec.jobs.is_empty() && !spec.skip_harness => {
                let packs: Vec<Arc<crate::resolve::Resolved>> =
                    spec.jobs.iter().map(|j| j.resolved.clone()).collect();
                let dir = tempfile::Builder::new()
                    .prefix("missionctl-openclaw-")
                    .tempdir()
                    .map_err(|e| {
                        GateError::Config(format!("a temporary directory for OpenClaw: {e}"))
                    })?;
                let target = crate::eval::openclaw::Target::prepare(
                    oc,
                    demo_url.as_deref(),
                    &packs,
                    spec.openclaw,
                    dir.path(),
                    &spec.run_id,
                )
                .await;
                match target {
                    Ok(t) => (Some(Arc::new(t)), Some(dir)),
                    Err(e) => {
                        if let Some(d) = demo {
                            d.shutdown().await;
                        }
                        return Err(GateError::Unreachable(e.to_string()));
                    }
                }
            }
            _ => (None, None),
        };
        let engine = Arc::new(Engine {
            openclaw: openclaw.clone(),
            client: Client::new(cfg.concurrency, Some(spec.store.clone())),
            budget: Arc::new(std::sync::Mutex::new(spec.budget)),
            demo_url,
            store: spec.store,
            run_id: spec.run_id,
            skip_harness: spec.skip_harness,
            skip_judge: spec.skip_judge,
            breaker: execute::Breaker::default(),
            harness_slots: Arc::new(tokio::sync::Semaphore::new(cfg.harness_concurrency())),
            cfg,
        });
        Ok(Runtime {
            engine,
            demo,
            openclaw,
            gateway_dir,
        })
    }

    /// Run `jobs`: their outcomes, and why the run could not evaluate when
    /// it could not (nothing ran for a reason of setup, or the endpoint
    /// kept failing until the breaker stopped the run).
    pub async fn run(
        &self,
        mut jobs: Vec<plan::Job>,
        pb: &indicatif::ProgressBar,
    ) -> (Result<Vec<Done>, GateError>, Option<String>) {
        if matches!(self.engine.cfg.harness, crate::eval::Harness::OpenClaw(_)) {
            // One agent's cases one after another: OpenClaw 2026.9.6 turns on
            // the agent it served last took ~0.2 s here, on another agent
            // ~1.1 s (measured in BENCHMARKS.md). Stable: case order is kept.
            jobs.sort_by(|a, b| a.resolved.digest.cmp(&b.resolved.digest));
        }
        let done = self.engine.run_all(jobs, pb).await;
        let engine = &self.engine;
        let fatal = done
            .as_ref()
            .ok()
            .and_then(|done| {
                let f = done.iter().find(|d| d.run.fatal)?.run.error.clone();
                done.iter()
                    .all(|d| d.run.error.is_some())
                    .then_some(f)
                    .flatten()
            })
            .or_else(|| {
                engine.breaker.open().map(|e| {
                    let (failed, ok) = engine.breaker.counts();
                    format!(
                        "{failed} case(s) failed at the model endpoint and {ok} succeeded, so the run stopped early: {e}"
                    )
                })
            });
        (done, fatal)
    }

    /// (requests sent, cache hits, retries, throttled).
    pub fn client_counts(&self) -> (u64, u64, u64, u64) {
        let stats = &self.engine.client.stats;
        (
            stats.requests.load(Ordering::Relaxed),
            stats.cache_hits.load(Ordering::Relaxed),
            stats.retries.load(Ordering::Relaxed),
            stats.throttled.load(Ordering::Relaxed),
        )
    }

    pub fn budget(&self) -> Budget {
        budget::lock(&self.engine.budget).clone()
    }

    pub async fn shutdown(self) {
        // The cache entries still queued are committed before the run ends,
        // so a rerun finds them.
        self.engine.store.flush().await;
        if let Some(t) = &self.openclaw {
            t.shutdown().await;
        }
        drop(self.gateway_dir);
        if let Some(d) = self.demo {
            d.shutdown().await;
        }
    }
}

/// The champion's own evaluation, for the improvement worker's signal.
pub struct Baseline {
    pub run_id: String,
    pub done: Vec<Done>,
    pub results: Vec<EvalResult>,
    /// (requests sent, cache hits).
    pub requests: (u64, u64),
    pub cost_usd: f64,
    /// (affected chains, chains evaluated).
    pub chains: (usize, usize),
    /// Model calls (case runs and judge calls) the budget refused: the
    /// evaluation is incomplete when this is not zero.
    pub unpaid_calls: u64,
}

/// Evaluate pack `pack_id` as it is in `repo_at`, the pack repository
/// loaded at `rev` (no challenger), with the gate's engine, cache and
/// ledger. Cases the budget could not pay for are in `done` as not run.
pub async fn baseline(
    repo_at: &crate::pack::Repo,
    rev: &str,
    pack_id: &str,
    store: &Store,
    spend_limit_usd: Option<f64>,
) -> Result<Baseline, GateError> {
    let mission = repo_at
        .mission
        .as_ref()
        .ok_or_else(|| GateError::Config(format!("`{rev}` has no valid mission.yaml")))?;
    let guard = repo_at
        .guardrails
        .as_ref()
        .ok_or_else(|| GateError::Config(format!("`{rev}` has no valid policies/guardrails.yaml")))?
        .value
        .clone();
    let cfg = Arc::new(EvalConfig::from_mission(&mission.value.eval)?);
    let plan = plan::baseline(repo_at, pack_id, cfg.max_chains, cfg.token_family())
        .ok_or_else(|| GateError::Config(format!("`{rev}` has no pack `{pack_id}`")))?;
    super::check_keys(&cfg, false)?;
    let run_id = super::short_id(&[&crate::time_util::now_rfc3339(), rev, pack_id, "baseline"]);
    let store = store.clone();
    let (mut budget, _) =
        super::budget(&store, &guard, plan.jobs.iter().map(|j| j.tenant.as_str())).await?;
    budget.run_limit = spend_limit_usd;
    let rt = Runtime::start(RuntimeSpec {
        cfg: cfg.clone(),
        store,
        budget,
        run_id: run_id.clone(),
        skip_harness: false,
        skip_judge: false,
        jobs: &plan.jobs,
        openclaw: &repo_at.openclaw(),
    })
    .await?;
    let (done, fatal) = rt
        .run(plan.jobs.clone(), &indicatif::ProgressBar::hidden())
        .await;
    let (requests, hits, _, _) = rt.client_counts();
    let unpaid_calls = rt.budget().refused;
    rt.shutdown().await;
    let done = done?;
    if let Some(f) = fatal {
        return Err(GateError::Unreachable(f));
    }
    let results = super::results(&done, &[], &run_id, &super::api_keys(&cfg));
    let cost_usd = done.iter().map(|d| d.run.cost_usd + d.judge_usd).sum();
    Ok(Baseline {
        chains: plan.chains.get(pack_id).copied().unwrap_or((0, 0)),
        run_id,
        done,
        results,
        requests: (requests, hits),
        cost_usd,
        unpaid_calls,
    })
}
